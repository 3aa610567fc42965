"""One environment for every built-in tool test (``tests/support/tools.py``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aikit_components.tools import ToolContext
from tests.support.tools import ToolCaller, ToolEnv


@pytest.fixture
def env(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> ToolEnv:
    """The working directory ``tmp_path/work`` (the cwd) with the data directory ``work/data``, no
    inherited AIKIT_* setting, a directory outside with ``secret.txt``."""
    for name in list(os.environ):
        if name.startswith("AIKIT_"):
            monkeypatch.delenv(name)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    data = work / "data"
    monkeypatch.setenv("AIKIT_DATA_DIR", str(data))
    data.mkdir()
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.txt").write_text("top secret\n")
    return ToolEnv(work.resolve(), data.resolve(), outside.resolve())


@pytest.fixture
def workdir(env: ToolEnv) -> Path:
    return env.root


@pytest.fixture
def ctx(env: ToolEnv) -> ToolContext:
    return env.ctx


@pytest.fixture
def call(env: ToolEnv) -> ToolCaller:
    """``call(ctx, name, args)`` through the environment's registry."""
    return env.caller
