"""Shared fixtures for the adversarial corpus: a private working directory (the only allowed path,
with a data directory), an ``outside`` directory next to it that no tool may reach, a real
ToolRegistry to call tools through, and :func:`contained` to assert that an attack was refused
with a clear error (the code, what was refused, how to allow it legitimately)."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from aikit_components.errors import AikitError
from aikit_components.security import SecurityPolicy
from aikit_components.tools import ToolContext, ToolRegistry


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("AIKIT_DATA_DIR", str(tmp_path / "data"))
    return work.resolve()


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory outside the allowed paths; ``secret.txt`` inside holds SECRET."""
    out = tmp_path / "outside"
    out.mkdir()
    (out / "secret.txt").write_text("SECRET\n")
    return out.resolve()


def make_policy(work: Path, **kwargs: Any) -> SecurityPolicy:
    data = work.parent / "data"
    data.mkdir(exist_ok=True)
    return SecurityPolicy(allowed_paths=[work.resolve(), data.resolve()], **kwargs)


@pytest.fixture
def ctx(workdir: Path) -> ToolContext:
    return ToolContext(make_policy(workdir))


def make_caller(tools: Sequence[Any]) -> Callable[..., Any]:
    """``call(ctx, name, args)``: the tool through a real registry (argument validation included)."""
    registry = ToolRegistry()
    registry.register_all(list(tools))

    def call(ctx: ToolContext, name: str, args: dict[str, Any] | None = None) -> Any:
        return asyncio.run(registry.acall(name, args or {}, ctx))

    return call


def contained(code: str, fn: Callable[..., Any], *args: Any, says: Sequence[str] = (),
              how: Sequence[str] = ()) -> AikitError:
    """Run ``fn(*args)`` and assert it raised an aikit error with ``code`` whose message contains
    every phrase of ``says`` (what was refused) and at least one of ``how`` (how to allow it)."""
    with pytest.raises(AikitError) as info:
        fn(*args)
    error = info.value
    assert error.code == code, f"expected {code}, got {error.code}: {error.message}"
    for phrase in says:
        assert phrase in error.message, f"{phrase!r} not in: {error.message}"
    if how:
        assert any(phrase in error.message for phrase in how), f"none of {how} in: {error.message}"
    return error


def git(repo: Path, *args: str) -> str:
    """Set up fixtures with the real git, outside aikit's policy (the test plays the attacker)."""
    env = {"GIT_AUTHOR_NAME": "T", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "T",
           "GIT_COMMITTER_EMAIL": "t@example.org", "HOME": str(repo), "PATH": "/usr/bin:/bin",
           "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(workdir: Path) -> Path:
    """A git repository with one commit, inside the allowed paths."""
    path = workdir / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "a.txt").write_text("one\n")
    git(path, "add", "a.txt")
    git(path, "commit", "-q", "-m", "first")
    return path
