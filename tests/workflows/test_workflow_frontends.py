"""Workflows through the front doors a user meets: a real kernel over ZMQ (the live progress
display, a busy Lua step) and ``aikit run`` of a script in a subprocess.

A Lua workflow step that computes without ever awaiting is stopped by its timeout.

The step is stopped inside its own coroutine by the interrupt hook (``CoroutineDriver.cancel``):
the step is recorded ``timed_out``, a sibling step still completes, the cell ends normally and the
kernel (or script) goes on. The in-process rules are in ``test_lua_workflow.py::TestBusyLuaSteps``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.kernels import Kernel, start_kernel

AIKIT = str(Path(sys.executable).with_name("aikit"))
GENEROUS_S = 60  # a sanity bound only: were the step not stopped, the run would never end

BUSY_WORKFLOW = """
local wf = Workflow.new{name = 'busy', mode = 'parallel', fail_fast = false, steps = {
  {id = 'spin', timeout_s = 0.3, fn = function()
     local ok = pcall(function() while true do end end)  -- pcall does not swallow the timeout
     swallowed = true
     while true do end
   end},
  {id = 'sibling', fn = function() sleep(0.05) return 'sibling done' end},
}}
local record = wf:run()
"""


@pytest.fixture
def kernel(tmp_path: Path):
    k = start_kernel(tmp_path / "data", cwd=tmp_path)
    yield k
    k.shutdown(now=True)


def test_kernel_cell_with_a_busy_step(kernel: Kernel) -> None:
    result = kernel.execute(BUSY_WORKFLOW + "return record.status, record.steps.spin.status, "
                            "record.steps.spin.error.code, record.steps.sibling.output, swallowed == nil",
                            timeout=GENEROUS_S)
    assert result.content["status"] == "ok", result.content
    assert result.result_text == '"failed"\t"timed_out"\t"timeout"\t"sibling done"\ttrue'
    # the kernel stays usable, Lua workflow steps included
    kernel.assert_alive()
    assert kernel.value("return Workflow.new{name = 'after', steps = {{id = 'x', fn = function() "
                        "sleep(0.01) return 'x' end}}}:run().steps.x.output") == '"x"'


def test_aikit_run_of_a_script_with_a_busy_step(tmp_path: Path) -> None:
    script = tmp_path / "busy.lua"
    script.write_text(BUSY_WORKFLOW + """
print(record.status, record.steps.spin.status, record.steps.sibling.status, swallowed == nil)
print(record.steps.spin.error.message)
print('still running', 6 * 7)
""")
    env = dict(os.environ, AIKIT_DATA_DIR=str(tmp_path / "data"))
    proc = subprocess.run([AIKIT, "run", str(script)], check=False, capture_output=True, text=True, timeout=GENEROUS_S,
                          cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "failed\ttimed_out\tsucceeded\ttrue"
    assert "did not finish within 0.3 s" in lines[1]
    assert lines[2] == "still running\t42"


def test_kernel_live_progress_display(kernel: Kernel) -> None:
    result = kernel.execute("""
        local wf = Workflow.new{name = 'shown', steps = {
          {id = 'one', fn = function() sleep(0.3) return 1 end},
          {id = 'two', depends_on = {'one'}, fn = function() sleep(0.3) return 2 end},
          {id = 'three', depends_on = {'two'}, noop = true},
        }}
        return wf:run({}, {display = true}).status""", timeout=GENEROUS_S)
    assert result.content["status"] == "ok", result.content
    assert result.result_text == '"succeeded"'
    shown = result.of_type("display_data")
    updates = result.of_type("update_display_data")
    assert len(shown) == 1 and updates, [m["msg_type"] for m in result.outputs]
    display_id = shown[0]["content"]["transient"]["display_id"]
    assert all(m["content"]["transient"]["display_id"] == display_id for m in updates)
    assert "0/3 steps" in shown[0]["content"]["data"]["text/plain"]
    final = updates[-1]["content"]["data"]
    assert final["text/plain"] == "shown: 3/3 steps"
    assert "<table>" in final["text/html"] and final["text/html"].count("succeeded") == 3
    # it updated while running, not only at the end
    assert any("1/3 steps" in m["content"]["data"]["text/plain"] for m in updates), \
        [m["content"]["data"]["text/plain"] for m in updates]
