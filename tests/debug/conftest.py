"""The in-process debugging harness (``tests/support/debug_harness.py``) as a fixture."""

from __future__ import annotations

from pathlib import Path

import pytest

from aikit_kernel.lua.engine import LuaEngine
from tests.support.debug_harness import DebugHarness
from tests.support.lua import RecordingOutput


@pytest.fixture(params=["native", "lua"])
def harness(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DebugHarness:
    """A fresh engine with a debugger, once with the native C line filter, once with the Lua one."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AIKIT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("AIKIT_DEBUG_NATIVE", "1" if request.param == "native" else "0")
    output = RecordingOutput()
    engine = LuaEngine(output, max_memory=256 * 1024 * 1024)
    h = DebugHarness(engine)
    h.output = output
    yield h
    engine.close()
