"""DAP over TCP and stdio: ``aikit debug``, a kernel's DAP port, and debugpy in ``aikit serve``,
each driven by a real client over a real socket or pipe."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.dap_client import AIKIT, TIMEOUT, DapClient, start_debug
from tests.support.kernels import kernel_env, start_kernel
from tests.support.processes import stopped_after

SCRIPT = """\
local function fib(n)
  if n < 2 then return n end
  return fib(n - 1) + fib(n - 2)
end
local r = fib(10)
print('fib', r)
"""


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "fib.lua"
    path.write_text(SCRIPT)
    return path


def _env(tmp_path: Path) -> dict[str, str]:
    return kernel_env(tmp_path / "data")


def test_launch_breakpoint_step_out_and_run_to_the_end(script: Path, tmp_path: Path) -> None:
    proc, port = start_debug(str(script), cwd=tmp_path, env=_env(tmp_path))
    with stopped_after(proc):
        dap = DapClient.connect(port)
        caps = dap.request("initialize", adapterID="aikit", linesStartAt1=True)["body"]
        assert caps["supportsConditionalBreakpoints"] and caps["supportsConfigurationDoneRequest"]
        assert {f["filter"] for f in caps["exceptionBreakpointFilters"]} == {"raised", "uncaught"}
        dap.event("initialized")
        assert dap.request("launch", program=str(script))["success"]
        bps = dap.request("setBreakpoints", source={"path": str(script)},
                          breakpoints=[{"line": 2, "condition": "n == 3"}])["body"]["breakpoints"]
        assert bps[0]["verified"]
        assert dap.request("configurationDone")["success"]
        stopped = dap.event("stopped")["body"]
        assert stopped["reason"] == "breakpoint"
        frames = dap.request("stackTrace", threadId=1, startFrame=0, levels=2)["body"]
        assert frames["totalFrames"] == 9 and len(frames["stackFrames"]) == 2
        top = frames["stackFrames"][0]
        assert (top["name"], top["line"], top["source"]["path"]) == ("fib", 2, str(script))
        assert dap.request("evaluate", expression="n * 100", frameId=top["id"], context="watch")["body"]["result"] == "300"
        assert dap.request("stepOut", threadId=1)["success"]
        assert dap.event("stopped")["body"]["reason"] == "step"
        assert dap.request("evaluate", expression="n", frameId=1, context="repl")["body"]["result"] == "4"
        dap.request("setBreakpoints", source={"path": str(script)}, breakpoints=[])
        assert dap.request("continue", threadId=1)["success"]
        assert dap.event("output")["body"] == {"category": "stdout", "output": "fib\t55\n"}
        assert dap.event("exited")["body"] == {"exitCode": 0}
        dap.event("terminated")
        dap.request("disconnect")
        assert proc.wait(TIMEOUT) == 0


def test_stop_on_entry_and_uncaught_error(tmp_path: Path) -> None:
    path = tmp_path / "fails.lua"
    path.write_text("local limit = 2\nlocal t = nil\nprint(t.field)\n")
    proc, port = start_debug(cwd=tmp_path, env=_env(tmp_path))  # no script: the launch request names it
    with stopped_after(proc):
        dap = DapClient.connect(port)
        dap.request("initialize", adapterID="aikit")
        assert dap.request("launch", program=str(path), stopOnEntry=True)["success"]
        assert dap.request("setExceptionBreakpoints", filters=["uncaught"])["success"]
        dap.request("configurationDone")
        entry = dap.event("stopped")["body"]
        assert entry["reason"] == "entry"
        assert dap.request("stackTrace", threadId=1)["body"]["stackFrames"][0]["line"] == 1
        dap.request("continue", threadId=1)
        error = dap.event("stopped")["body"]
        assert error["reason"] == "exception" and "attempt to index a nil value" in error["text"]
        info = dap.request("exceptionInfo", threadId=1)["body"]
        assert "attempt to index" in info["description"]
        assert dap.request("stackTrace", threadId=1)["body"]["stackFrames"][0]["line"] == 3
        dap.request("continue", threadId=1)
        assert dap.event("exited")["body"] == {"exitCode": 1}
        dap.request("disconnect")
        assert proc.wait(TIMEOUT) == 1


def test_stdio_mode_speaks_dap_on_the_pipes(script: Path, tmp_path: Path) -> None:
    proc = subprocess.Popen([AIKIT, "debug", "--stdio"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=tmp_path, env=_env(tmp_path))
    try:
        assert proc.stdin is not None and proc.stdout is not None
        dap = DapClient(proc.stdout, proc.stdin)
        dap.request("initialize", adapterID="aikit")
        assert dap.request("launch", program=str(script))["success"]
        dap.request("setBreakpoints", source={"path": str(script)}, breakpoints=[{"line": 6}])
        dap.request("configurationDone")
        assert dap.event("stopped")["body"]["reason"] == "breakpoint"
        locals_ref = dap.request("scopes", frameId=1)["body"]["scopes"][0]["variablesReference"]
        variables = dap.request("variables", variablesReference=locals_ref)["body"]["variables"]
        values = {v["name"]: v["value"] for v in variables}
        assert values["r"] == "55" and values["fib"].startswith("function")
        dap.request("continue", threadId=1)
        assert dap.event("output")["body"]["output"] == "fib\t55\n"  # the script's stdout travels as events
        dap.event("terminated")
        dap.request("disconnect")
        assert proc.wait(TIMEOUT) == 0
    finally:
        proc.kill()


def test_malformed_messages_are_reported_and_the_session_goes_on(script: Path, tmp_path: Path) -> None:
    proc, port = start_debug(str(script), cwd=tmp_path, env=_env(tmp_path))
    with stopped_after(proc):
        dap = DapClient.connect(port)
        dap.send_raw(b"Content-Length: 9\r\n\r\n{not json")
        assert "malformed" in dap.event("output")["body"]["output"]
        dap.send_raw(b"Content-Length: banana\r\n\r\n")
        assert "Content-Length" in dap.event("output")["body"]["output"]
        unknown = dap.request("fly")
        assert unknown["success"] is False and "does not support" in unknown["message"]
        assert dap.request("scopes")["success"] is False  # no frameId
        assert dap.request("initialize", adapterID="aikit")["success"]
        second = DapClient.connect(port)  # one IDE at a time
        assert "already attached" in second.event("output")["body"]["output"]
        dap.request("launch", program=str(script))
        dap.request("configurationDone")
        assert dap.event("exited")["body"]["exitCode"] == 0
        dap.request("disconnect")
        assert proc.wait(TIMEOUT) == 0


def test_terminate_stops_a_script_that_runs_forever(tmp_path: Path) -> None:
    path = tmp_path / "forever.lua"
    path.write_text("print('running') io.stdout:flush()\nwhile true do end\n")
    proc, port = start_debug(str(path), cwd=tmp_path, env=_env(tmp_path))
    with stopped_after(proc):
        dap = DapClient.connect(port)
        dap.request("initialize", adapterID="aikit")
        dap.request("launch", program=str(path))
        dap.request("configurationDone")
        # terminate interrupts the running script: one asked for before it runs is not for it
        assert proc.stdout is not None and proc.stdout.readline() == "running\n"
        assert dap.request("terminate")["success"]
        assert dap.event("exited")["body"]["exitCode"] == 130
        dap.request("disconnect")
        assert proc.wait(TIMEOUT) == 130


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_ide_attaches_to_a_running_kernel_on_its_dap_port(tmp_path: Path) -> None:
    port = _free_port()
    kernel = start_kernel(tmp_path / "data", AIKIT_DAP_PORT=port)
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                dap = DapClient.connect(port)
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        dap.request("initialize", adapterID="aikit")
        assert dap.request("launch", program="x.lua")["success"] is False  # a kernel is attached to, not launched
        assert dap.request("attach")["success"]
        dap.request("configurationDone")
        msg_id = kernel.kc.execute("counter = 0\nwhile true do\n  counter = counter + 1\nend\n")
        while not dap.request("pause", threadId=1)["success"]:  # until the cell runs
            assert time.monotonic() < deadline
            time.sleep(0.05)
        stopped = dap.event("stopped")["body"]
        assert stopped["reason"] == "pause"
        frame = dap.request("stackTrace", threadId=1)["body"]["stackFrames"][0]
        assert frame["name"] == "cell [1]" and frame["source"]["name"] == "[1]"
        assert dap.request("evaluate", expression="counter > 0", frameId=frame["id"])["body"]["result"] == "true"
        dap.request("disconnect")  # the code runs on; the kernel's interrupt still stops it
        kernel.kc.control_channel.send(kernel.kc.session.msg("interrupt_request", {}))
        assert kernel.shell_reply(msg_id)["content"]["ename"] == "KeyboardInterrupt"
        assert kernel.value("counter > 0") == "true"
    finally:
        kernel.shutdown(now=True)


def test_serve_starts_debugpy_for_python_tool_authors(tmp_path: Path) -> None:
    pytest.importorskip("debugpy")
    port = _free_port()
    conn = tmp_path / "kernel.json"
    proc = subprocess.Popen([AIKIT, "serve", "-f", str(conn), "--debugpy", str(port)], stderr=subprocess.PIPE,
                            text=True, cwd=tmp_path, env={**_env(tmp_path), "JPY_PARENT_PID": str(os.getpid())})
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # debugpy may warn first (frozen modules)
            if f"debugpy listening on 127.0.0.1:{port}" in line:
                break
        dap = DapClient.connect(port)
        reply = dap.request("initialize", adapterID="debugpy", clientID="aikit-test")
        assert reply["success"] and reply["body"]["supportsConfigurationDoneRequest"]
        deadline = time.monotonic() + TIMEOUT
        while not conn.exists():  # the kernel itself started too
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        assert json.loads(conn.read_text())["transport"] == "tcp"
    finally:
        proc.kill()
        proc.wait(TIMEOUT)
