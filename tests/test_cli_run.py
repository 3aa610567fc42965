"""`aikit run`: output, arguments, stdin, exit statuses, tracebacks and Ctrl-C, as a terminal user sees them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

AIKIT = str(Path(sys.executable).with_name("aikit"))
ROOT = Path(__file__).resolve().parent.parent


def run(tmp_path: Path, code: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    script = tmp_path / "script.lua"
    script.write_text(code)
    env = dict(os.environ, AIKIT_DATA_DIR=str(tmp_path / "data"))
    return subprocess.run([AIKIT, "run", str(script), *args], input=stdin, capture_output=True, text=True,
                          timeout=60, cwd=tmp_path, env=env)


def test_hello_example_greets_by_argument(tmp_path: Path) -> None:
    proc = subprocess.run([AIKIT, "run", str(ROOT / "examples" / "hello.lua"), "Ada"], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path, env=dict(os.environ, AIKIT_DATA_DIR=str(tmp_path / "d")))
    assert proc.returncode == 0, proc.stderr
    assert "Hello, Ada!" in proc.stdout
    assert "sum of 1..10 =\t55" in proc.stdout


def test_arguments_and_varargs(tmp_path: Path) -> None:
    proc = run(tmp_path, 'local a, b = ...\nprint(arg[0]:match("script.lua$"), arg[1], arg[2], a, b, #arg)', "x", "y")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "script.lua\tx\ty\tx\ty\t2\n"


def test_stdout_stderr_and_stdin(tmp_path: Path) -> None:
    proc = run(tmp_path, 'io.stderr:write("err\\n")\nlocal n = io.read("n")\nio.write(n * 2, "\\n")\nprint(io.read())',
               stdin="21\nsecond line\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "42\nsecond line\n"
    assert proc.stderr == "err\n"


def test_runtime_error_exits_1_with_traceback(tmp_path: Path) -> None:
    proc = run(tmp_path, "local function f()\n  error('boom')\nend\nf()\n")
    assert proc.returncode == 1
    assert "script.lua:2: boom" in proc.stderr
    assert "stack traceback" in proc.stderr and "script.lua:4" in proc.stderr
    assert "\x1b[" not in proc.stderr  # no colour codes when stderr is not a terminal


def test_syntax_error_exits_1(tmp_path: Path) -> None:
    proc = run(tmp_path, "x = = 1\n")
    assert proc.returncode == 1
    assert "LuaSyntaxError" in proc.stderr and "script.lua:1:" in proc.stderr


def test_missing_script_exits_2(tmp_path: Path) -> None:
    proc = subprocess.run([AIKIT, "run", str(tmp_path / "nope.lua")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "no such file" in proc.stderr


def test_shebang_line_is_ignored(tmp_path: Path) -> None:
    proc = run(tmp_path, "#!/usr/bin/env aikit run\nprint('ok')\nerror('line 3')\n")
    assert proc.stdout == "ok\n"
    assert "script.lua:3: line 3" in proc.stderr


def test_ctrl_c_interrupts_a_busy_loop(tmp_path: Path) -> None:
    script = tmp_path / "loop.lua"
    script.write_text("print('started')\nio.stdout:flush()\nwhile true do end\n")
    proc = subprocess.Popen([AIKIT, "run", str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path, env=dict(os.environ, AIKIT_DATA_DIR=str(tmp_path / "data")))
    assert proc.stdout is not None
    assert proc.stdout.readline() == "started\n"
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 130
    assert "KeyboardInterrupt" in err
    sessions = subprocess.run([AIKIT, "sessions", "list", "--json"], capture_output=True, text=True, timeout=60,
                              cwd=tmp_path, env=dict(os.environ, AIKIT_DATA_DIR=str(tmp_path / "data")))
    assert [s["status"] for s in json.loads(sessions.stdout)] == ["interrupted"]  # not "failed": it was stopped


def test_the_kernel_section_of_aikit_toml_limits_the_script(tmp_path: Path) -> None:
    """`aikit run` reads [kernel] settings (the same ones the kernel reads) from aikit.toml."""
    (tmp_path / "aikit.toml").write_text("[kernel]\nmax_memory_mb = 16\n")
    proc = run(tmp_path, "local t = {} for i = 1, 1e8 do t[i] = ('x'):rep(64) .. i end")
    assert proc.returncode == 1
    assert "LuaMemoryError" in proc.stderr and "16 MiB" in proc.stderr


def test_an_invalid_kernel_setting_stops_a_script_with_its_name(tmp_path: Path) -> None:
    (tmp_path / "aikit.toml").write_text('[kernel]\nlog_level = "LOUD"\n')
    proc = run(tmp_path, "print('not reached')")
    assert proc.returncode == 1 and proc.stdout == ""
    assert "aikit run: kernel.log_level must be one of" in proc.stderr


def test_failed_workflow_prints_a_step_table_and_strict_fails(tmp_path: Path) -> None:
    code = ("local r = Workflow.new{name = 'w', steps = {{id = 'a', fn = function() error('boom') end},"
            " {id = 'b', depends_on = {'a'}, noop = true}}}:run()\nprint(r.status)\n")
    proc = run(tmp_path, code)
    assert proc.returncode == 0 and proc.stdout == "failed\n"
    assert "workflow 'w' failed" in proc.stderr
    header = next(line for line in proc.stderr.splitlines() if line.startswith("step"))
    assert header.split() == ["step", "status", "attempts", "error"]
    assert any(line.split()[:2] == ["a", "failed"] for line in proc.stderr.splitlines()) and "boom" in proc.stderr
    script = tmp_path / "script.lua"
    strict = subprocess.run([AIKIT, "run", "--strict", str(script)], capture_output=True, text=True, timeout=60,
                            cwd=tmp_path, env=dict(os.environ, AIKIT_DATA_DIR=str(tmp_path / "data")))
    assert strict.returncode == 1 and "workflow_failed" in strict.stderr and strict.stdout == ""


def test_no_unretrieved_future_warning_from_a_failing_tool_in_a_step(tmp_path: Path) -> None:
    proc = run(tmp_path, "Workflow.new{name = 'w', steps = {{id = 'x', fn = function() "
                         "return Tool.call('read_file', {}) end}}}:run()\n")
    assert "never retrieved" not in proc.stderr


PROGRESS_SCRIPT = """
local wf = Workflow.new{name = 'report', steps = {
  {id = 'ask', fn = function() return Agent.new{model = 'test'}:run('Say hello in five words') end},
  {id = 'sum', depends_on = {'ask'}, fn = function() return 1 end},
  {id = 'bad', depends_on = {'sum'}, fn = function() error('no data') end},
}}
print(wf:run().status)
"""


def test_workflow_progress_in_a_log_is_a_line_per_step_and_a_summary_with_tokens(tmp_path: Path) -> None:
    proc = run(tmp_path, PROGRESS_SCRIPT)
    assert proc.returncode == 0 and proc.stdout == "failed\n", proc.stderr
    lines = proc.stderr.splitlines()
    assert any(line.startswith("  ✔ report [") and " ask: succeeded (" in line for line in lines), proc.stderr
    assert any(" bad: failed (" in line and line.endswith("no data") for line in lines), proc.stderr
    summary = next(line for line in lines if line.startswith("report: 3/3 steps"))
    assert "2 succeeded" in summary and "1 failed" in summary and " tokens" in summary, summary


def test_workflow_progress_on_a_terminal_is_a_live_line_with_steps_time_and_tokens(tmp_path: Path) -> None:
    import pexpect

    script = tmp_path / "script.lua"
    script.write_text(PROGRESS_SCRIPT)
    env = dict(os.environ, AIKIT_DATA_DIR=str(tmp_path / "data"), TERM="xterm")
    term = pexpect.spawn(AIKIT, ["run", str(script)], cwd=str(tmp_path), env=env, encoding="utf-8", timeout=60,
                         dimensions=(30, 200))
    try:
        term.expect(r"report: \d/3 done")  # the live line: done / total ...
        term.expect(r"running ")  # ... the steps running ...
        term.expect(r"report: 3/3 steps \(.*\) in [\d.]+ (ms|s), \d[\d,]* tokens")  # the summary at the end
        term.expect(pexpect.EOF)
    finally:
        term.close()
    assert term.exitstatus == 0


def test_a_streamed_answer_cut_by_max_tokens_says_so_where_it_is_printed(tmp_path: Path) -> None:
    proc = run(tmp_path, "local a = Agent.new{model = Agent.scripted{{text = 'The three reasons are: first,', "
                         "stop_reason = 'max_tokens'}}}\nlocal r = a:run('why?', {stream = true})\n"
                         "print(r.stop_reason)\n")
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line]
    assert lines[0] == "The three reasons are: first,"
    assert lines[1].startswith("[cut off: the answer reached max_tokens; raise max_tokens in Agent.new")
    assert lines[2] == "max_tokens"


def test_a_script_runs_with_the_collector_settings_of_a_kernel(tmp_path: Path) -> None:
    """`aikit run` sets the garbage collector as a kernel process does (aikit_kernel/collector.py):
    the runtime built before the script is frozen (not traversed again) and full collections are
    rarer."""
    code = ("import gc\n"
            "from aikit_kernel.cli.run import open_script_runtime\n"
            "from aikit_kernel.collector import MIDDLE_COLLECTIONS_PER_FULL\n"
            "from aikit_kernel.output import TerminalOutput\n"
            "lua = open_script_runtime('s.lua', TerminalOutput())\n"
            "print(gc.get_freeze_count() > 10_000, gc.get_threshold()[2] == MIDDLE_COLLECTIONS_PER_FULL)\n"
            "lua.close('completed')\n")
    env = dict(os.environ, AIKIT_DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "True"]
