"""No Lua input may end the process: values that cross between Lua coroutines and Python.

lupa binds every Lua value that reaches Python to the ``lua_State`` it arrived on. Inside a
coroutine that is the coroutine's own thread, which Lua frees when the coroutine is collected; a
Python reference that outlives it (a tool's function, a hook, a value held by an exception's
traceback until Python's cycle collector runs) then touches freed memory and the process dies
(lupa issue #84). Each script here crashed ``aikit run`` (SIGSEGV or a glibc abort) before the
host layer moved such values to the main thread and released what failing calls held.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

AIKIT = str(Path(sys.executable).with_name("aikit"))

SCRIPTS = {
    "a Lua tool that raises, called from coroutines": (
        """
        Tool.define{name = "boom", description = "raises", params = {}, fn = function() error("boom!") end}
        local failed = 0
        for i = 1, 1500 do
          coroutine.wrap(function()
            local ok = pcall(Tool.call, "boom", {})
            if not ok then failed = failed + 1 end
          end)()
        end
        print("failed", failed)
        """,
        "failed\t1500",
    ),
    "bad tool arguments inside coroutines": (
        """
        local n = 0
        for i = 1, 1500 do
          local co = coroutine.create(function() Tool.call("hash", {text = 1}) end)
          local ok = coroutine.resume(co)
          if not ok then n = n + 1 end
        end
        print("rejected", n)
        """,
        "rejected\t1500",
    ),
    "tools and hooks defined inside coroutines, used after them": (
        """
        for i = 1, 200 do
          coroutine.wrap(function()
            Tool.define{name = "t" .. (i % 5), description = "x", params = {},
                        fn = function() if i % 2 == 0 then error("even") end return i end}
            local h = Hook.register("tool.before", function() return nil end)
            h:remove()
            pcall(State.set, 1, 2, 3)
          end)()
          collectgarbage()
          for k = 0, 4 do pcall(Tool.call, "t" .. k, {}) end
        end
        print("done")
        """,
        "done",
    ),
    "failing tool calls in workflow steps": (
        """
        local steps = {}
        for i = 1, 60 do
          steps[i] = {id = "s" .. i, fn = function()
            local ok, err = pcall(Tool.call, "hash", {text = 1})
            return ok and "?" or err.code
          end}
        end
        for round = 1, 5 do
          local run = Workflow.new{name = "w", mode = "parallel", steps = steps}:run()
          assert(run.status == "succeeded", run.status)
          collectgarbage()
        end
        print("workflows ok")
        """,
        "workflows ok",
    ),
}


def aikit_run(tmp_path: Path, name: str, code: str, env: dict[str, str],
              timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``aikit run`` of ``code`` (written to ``tmp_path/name``) in ``tmp_path`` with ``env``."""
    script = tmp_path / name
    script.write_text(code)
    return subprocess.run([AIKIT, "run", str(script)], capture_output=True, text=True, timeout=timeout, cwd=tmp_path,
                          env=env)


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_the_process_survives(tmp_path: Path, name: str) -> None:
    code, expected = SCRIPTS[name]
    proc = aikit_run(tmp_path, "script.lua", code, dict(os.environ, AIKIT_DATA_DIR=str(tmp_path / "data")), timeout=240)
    assert proc.returncode == 0, f"exit status {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    assert expected in proc.stdout


def test_a_script_cannot_widen_the_policy_of_the_next_run(tmp_path: Path) -> None:
    """A script may write aikit.toml into its working directory; the next run must not take the
    rights it grants (a shell here), only warn that they were ignored until the user trusts it."""
    env = dict(os.environ, AIKIT_DATA_DIR=str(tmp_path / "data"), XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    env.pop("AIKIT_TRUST_PROJECT_CONFIG", None)
    first = aikit_run(tmp_path, "writer.lua",
                      'local f = assert(io.open("aikit.toml", "w"))\n'
                      'f:write(\'[security]\\nallowed_commands = ["sh"]\\nallowed_paths = ["/"]\\n\')\nf:close()\n'
                      'print("written")\n', env)
    assert first.returncode == 0 and "written" in first.stdout, first.stderr
    second = aikit_run(tmp_path, "attack.lua",
                       'local ok, err = pcall(Tool.call, "run_process", {command = {"sh", "-c", "echo pwned"}})\n'
                       'print(ok, ok and "" or err.code)\n'
                       'print(pcall(Tool.call, "read_file", {path = "/etc/hostname"}))\n', env)
    assert second.returncode == 0, second.stderr
    assert "pwned" not in second.stdout
    lines = second.stdout.splitlines()
    assert lines[0].startswith("false") and lines[1].startswith("false"), second.stdout
    assert "security.allowed_commands" in second.stderr and "aikit config trust" in second.stderr
