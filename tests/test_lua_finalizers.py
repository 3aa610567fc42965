"""Lua finalizers (``__gc``) and the end of the process: the Lua state is freed whenever Python
collects its engine, which may be while the interpreter exits; a finalizer that called back into
Python then crashed the process (SIGSEGV at exit). Closing the engine runs the finalizers of what
is garbage already and switches off the others."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.lua import Lua

REPO = Path(__file__).resolve().parents[1]

# Each leaves a finalizer that calls Python (print, a host function, a tool, an open file's close)
# on an object still alive when the engine closes.
ALIVE_AT_CLOSE = [
    "g = setmetatable({}, {__gc = function() print('bye') end})",
    "g = setmetatable({}, {__gc = function() State.get('global', 'k') end})",
    "g = setmetatable({}, {__gc = function() Tool.call('hash', {text = 'x'}) end})",
    "f = io.open('left-open.txt', 'w') f:write('kept')",
    "local mt = {__gc = function() print('bye') end} objs = {} for i = 1, 100 do objs[i] = setmetatable({}, mt) end",
]

_SCRIPT = textwrap.dedent("""
    import sys, tempfile
    from pathlib import Path
    from tests.support.lua import open_lua
    lua = open_lua(Path(tempfile.mkdtemp()))
    result = lua.engine.run_cell(sys.argv[1], "[1]")
    assert result.error is None, result.error
    lua.close()
    print("closed")
""")


@pytest.mark.parametrize("code", ALIVE_AT_CLOSE)
def test_a_process_ends_cleanly_with_finalizers_left_in_lua(code: str, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", _SCRIPT, code], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"
    assert done.stdout.strip().endswith("closed")


def test_closing_runs_the_finalizers_of_garbage_and_keeps_files_written(lua: Lua, tmp_path: Path) -> None:
    lua.run("do local t = setmetatable({}, {__gc = function() print('collected') end}) end")
    lua.run("f = io.open('out.txt', 'w') f:write('written')")
    lua.close()
    assert "collected" in lua.stdout
    assert (tmp_path / "out.txt").read_text() == "written"


def test_setmetatable_still_returns_its_table_and_keeps_protection(lua: Lua) -> None:
    assert lua.run("local t = {} return setmetatable(t, {__gc = true}) == t") is True
    failure = lua.fail("local t = setmetatable({}, {__metatable = 'locked'}) setmetatable(t, {})")
    assert "cannot change a protected metatable" in failure.evalue
