"""The start of a script under ``aikit debug --port`` against the order of the client's requests,
many times, under load: the script must not start before the client has both attached (or
launched) and sent ``configurationDone``, the breakpoints sent before that must stop its first
pass, and a ``continue`` response must reach the client before the next ``stopped`` event.

Each round is a real ``aikit debug`` process and a client speaking the DAP wire format over TCP
(tests/support/dap_client.py), in one of the orders real clients use. A busy loop runs alongside.
Every wait is on a message (no sleeps); the socket timeout only bounds a hang.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.dap_client import TIMEOUT, DapClient, start_debug
from tests.support.kernels import kernel_env

# 30 process start-ups on a shared, loaded machine: minutes, not the default 300 s bound.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

ROUNDS = 30
PARALLEL = 3
SCRIPT = """\
started = true
local n = 0
for i = 1, 3 do
  n = n + i
end
print("n", n)
"""
BREAK_LINE = 4


@pytest.fixture
def busy_loop() -> Iterator[None]:
    """A process spinning on a core for the length of the test (load, as on a busy CI machine)."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        proc.kill()
        proc.wait()


def _breakpoints(script: Path, lines: list[int]) -> dict[str, object]:
    return {"source": {"path": str(script)}, "breakpoints": [{"line": line} for line in lines]}


def _vscode_order(dap: DapClient, script: Path, port: int) -> None:
    """VS Code: initialize; attach once answered; on ``initialized`` the breakpoints, the exception
    filters, then configurationDone."""
    dap.request("initialize", adapterID="aikit", clientID="vscode", linesStartAt1=True)
    dap.event("initialized")
    assert dap.request("attach", port=port)["success"]
    assert dap.request("setBreakpoints", **_breakpoints(script, [BREAK_LINE]))["body"]["breakpoints"][0]["verified"]
    assert dap.request("setExceptionBreakpoints", filters=[])["success"]
    assert dap.request("configurationDone")["success"]


def _pipelined(dap: DapClient, script: Path, port: int) -> None:
    """Every request written at once, without waiting for any response."""
    dap.send("initialize", adapterID="aikit", linesStartAt1=True)
    dap.send("attach", port=port)
    dap.send("setBreakpoints", **_breakpoints(script, [BREAK_LINE]))
    last = dap.send("configurationDone")
    while True:  # the responses, in order, up to configurationDone's
        message = dap.read()
        assert message is not None, "connection closed during the configuration"
        if message["type"] == "response":
            assert message["success"], message
            if message["request_seq"] == last:
                return
        else:
            dap.pending.append(message)


def _configured_before_attach(dap: DapClient, script: Path, port: int) -> None:
    """configurationDone before attach (DAP does not order them): the script must wait for the
    attach, so the global its first line sets is still nil in between."""
    dap.request("initialize", adapterID="aikit", linesStartAt1=True)
    dap.event("initialized")
    dap.request("setBreakpoints", **_breakpoints(script, [BREAK_LINE]))
    assert dap.request("configurationDone")["success"]
    reply = dap.request("evaluate", expression="started", context="repl")
    assert reply["success"] and reply["body"]["result"] == "nil", f"the script started before attach: {reply}"
    assert dap.request("attach", port=port)["success"]


def _launch_alongside(dap: DapClient, script: Path, port: int) -> None:
    """DebugClient.hitBreakpoint's order: launch written right after initialize's response, the
    breakpoints and configurationDone as soon as ``initialized`` arrives."""
    dap.request("initialize", adapterID="aikit", linesStartAt1=True)
    dap.send("launch", program=str(script))
    dap.event("initialized")
    dap.request("setBreakpoints", **_breakpoints(script, [BREAK_LINE]))
    assert dap.request("configurationDone")["success"]


ORDERS: list[Callable[[DapClient, Path, int], None]] = [
    _vscode_order, _pipelined, _configured_before_attach, _launch_alongside]


def _round(index: int, tmp_path: Path) -> str:
    """One debug session from start to exit; returns its order's name (asserts on the way)."""
    order = ORDERS[index % len(ORDERS)]
    workdir = tmp_path / f"round{index}"
    workdir.mkdir()
    script = workdir / "count.lua"
    script.write_text(SCRIPT)
    proc, port = start_debug(str(script), cwd=workdir, env=kernel_env(workdir / "data"))
    try:
        dap = DapClient.connect(port)
        order(dap, script, port)
        stopped = dap.event("stopped")["body"]
        assert stopped["reason"] == "breakpoint", f"{order.__name__}: {stopped}"
        frames = dap.request("stackTrace", threadId=1)["body"]["stackFrames"]
        assert (frames[0]["line"], frames[0]["source"]["path"]) == (BREAK_LINE, str(script)), order.__name__
        assert dap.request("evaluate", expression="i", frameId=frames[0]["id"], context="watch")["body"]["result"] == "1"

        # The next stop (second pass of the loop) comes after the continue response, never before.
        assert dap.request("continue", threadId=1)["success"]
        assert not [m for m in dap.pending if m.get("event") == "stopped"], f"{order.__name__}: stopped overtook continue"
        assert dap.event("stopped")["body"]["reason"] == "breakpoint"
        frames = dap.request("stackTrace", threadId=1)["body"]["stackFrames"]
        assert dap.request("evaluate", expression="i", frameId=frames[0]["id"], context="watch")["body"]["result"] == "2"

        dap.request("setBreakpoints", **_breakpoints(script, []))
        assert dap.request("continue", threadId=1)["success"]
        assert dap.event("output")["body"]["output"] == "n\t6\n"
        assert dap.event("exited")["body"] == {"exitCode": 0}
        dap.event("terminated")
        dap.request("disconnect")
        assert proc.wait(TIMEOUT) == 0
        return order.__name__
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_breakpoints_stop_the_script_whatever_the_request_order(tmp_path: Path, busy_loop: None) -> None:
    with ThreadPoolExecutor(PARALLEL) as pool:
        names = list(pool.map(lambda i: _round(i, tmp_path), range(ROUNDS)))
    assert sorted(set(names)) == sorted(o.__name__ for o in ORDERS)
    assert len(names) == ROUNDS
