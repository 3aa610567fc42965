"""Tool calls made inside a Lua ``fn`` step are journaled like tool steps' calls: the run's context
reaches the Lua thread (the dispatcher runs each call in a copy of the caller's context)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

AIKIT = str(Path(sys.executable).with_name("aikit"))


def test_a_tool_call_from_a_lua_step_is_in_the_effect_journal(tmp_path: Path) -> None:
    script = tmp_path / "j.lua"
    script.write_text('local wf = Workflow.new{name = "j", steps = {\n'
                      '  {id = "w", fn = function()\n'
                      '    return Tool.call("write_file", {path = "out.txt", content = "x"})\n'
                      '  end},\n'
                      '}}\nprint(wf:run().status)\n')
    proc = subprocess.run([AIKIT, "run", str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env=dict(os.environ, AIKIT_DATA_DIR=str(tmp_path / "data")))
    assert proc.returncode == 0 and "succeeded" in proc.stdout, proc.stderr
    assert (tmp_path / "out.txt").read_text() == "x"
    with sqlite3.connect(tmp_path / "data" / "journal.sqlite") as db:
        assert db.execute("SELECT count(*) FROM effects").fetchone()[0] == 1
