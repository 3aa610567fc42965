"""Every ```lua block in docs/lua-api.md and every examples/*.lua script runs without error."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from aikit_kernel.lua.api import install_globals
from aikit_kernel.lua.engine import LuaEngine

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "lua-api.md"
BLOCKS = re.findall(r"```lua\n(.*?)```", DOC.read_text(), flags=re.S)


class RecordingOutput:
    """An OutputSink that keeps everything (no stdin, like a frontend with allow_stdin false)."""

    def __init__(self) -> None:
        self.streams: list[tuple[str, str]] = []
        self.displays: list[tuple[dict, str | None, bool]] = []
        self.clears: list[bool] = []

    def write(self, name: str, text: str) -> None:
        self.streams.append((name, text))

    def display(self, data, metadata, display_id, update) -> None:
        self.displays.append((data, display_id, update))

    def clear(self, wait: bool) -> None:
        self.clears.append(wait)

    def flush(self) -> None:
        pass

    def readline(self, prompt: str, password: bool = False):
        raise AssertionError("not reached: stdin is not allowed")


def test_docs_have_examples() -> None:
    assert len(BLOCKS) >= 15


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_doc_example_runs(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AIKIT_DATA_DIR", str(tmp_path / "data"))
    out = RecordingOutput()
    engine = LuaEngine(out)
    install_globals(engine)
    result = engine.run_cell(BLOCKS[index], "[doc]")
    assert result.error is None, f"example {index} failed:\n{BLOCKS[index]}\n{result.error}"
    assert out.streams or out.displays, "every example shows something"


@pytest.mark.parametrize("script", sorted((ROOT / "examples").glob("*.lua")), ids=lambda p: p.name)
def test_example_script_runs(script: Path, tmp_path: Path) -> None:
    aikit = Path(sys.executable).with_name("aikit")
    proc = subprocess.run([str(aikit), "run", str(script), "tester"], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path, env={"AIKIT_DATA_DIR": str(tmp_path / "data"), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()
