"""JupyterLab's debugger protocol against a real kernel over ZMQ: debug_request/debug_reply on
control, debug_event on IOPub, with the message sequence JupyterLab sends."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any

import pytest

from aikit_kernel.lua.cells import HASH_SEED, murmur2_x86
from tests.support.kernels import REPO, Kernel, start_kernel

TIMEOUT = 15


class JupyterDebugClient:
    """What JupyterLab's debugger service does, over a blocking client."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.kc = kernel.kc
        self._seq = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    def request(self, command: str, **arguments: Any) -> dict[str, Any]:
        content = {"seq": next(self._seq), "type": "request", "command": command, "arguments": arguments}
        return self.raw(content)

    def raw(self, content: Any) -> dict[str, Any]:
        msg = self.kc.session.msg("debug_request", content)
        self.kc.control_channel.send(msg)
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            reply = self.kc.control_channel.get_msg(timeout=TIMEOUT)
            if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
                assert reply["msg_type"] == "debug_reply"
                return reply["content"]
        raise TimeoutError(f"no debug_reply to {content!r}")

    def event(self, name: str) -> dict[str, Any]:
        for i, e in enumerate(self.events):
            if e["event"] == name:
                return self.events.pop(i)
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            msg = self.kc.get_iopub_msg(timeout=TIMEOUT)
            if msg["msg_type"] == "debug_event":
                if msg["content"]["event"] == name:
                    return msg["content"]
                self.events.append(msg["content"])
        raise TimeoutError(name)

    def start(self) -> None:
        assert self.request("initialize", clientID="jupyterlab", adapterID="aikit", pathFormat="path")["success"]
        assert self.request("attach")["success"]
        assert self.event("initialized")


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory):
    k = start_kernel(tmp_path_factory.mktemp("dbgdata"))
    yield k
    k.shutdown(now=True)


@pytest.fixture
def client(kernel: Kernel):
    c = JupyterDebugClient(kernel)
    yield c
    c.request("disconnect", restart=False, terminateDebuggee=False)


def test_kernelspec_and_kernel_info_advertise_the_debugger(kernel: Kernel) -> None:
    spec = json.loads((REPO / "kernelspec" / "kernel.json").read_text())
    assert spec["metadata"]["debugger"] is True
    info = kernel.kc.kernel_info(reply=True, timeout=TIMEOUT)["content"]
    assert info["debugger"] is True and "debugger" in info["supported_features"]


def test_debug_info_tells_how_cells_are_named_and_dump_cell_follows_it(client: JupyterDebugClient) -> None:
    info = client.request("debugInfo")["body"]
    assert info["hashMethod"] == "Murmur2" and info["hashSeed"] == HASH_SEED and info["tmpFileSuffix"] == ".lua"
    code = "local greeting = 'hi'\nprint(greeting)\n"
    path = client.request("dumpCell", code=code)["body"]["sourcePath"]
    assert path == f"{info['tmpFilePrefix']}{murmur2_x86(code, info['hashSeed'])}.lua"  # JupyterLab's own formula
    assert Path(path).read_text() == code


def test_a_session_as_jupyterlab_runs_it(client: JupyterDebugClient, kernel: Kernel) -> None:
    client.start()
    code = "local total = 0\nfor i = 1, 4 do\n  total = total + i\nend\nprint('total', total)\n"
    path = client.request("dumpCell", code=code)["body"]["sourcePath"]
    bps = client.request("setBreakpoints", source={"path": path}, breakpoints=[{"line": 3, "condition": "i == 3"}],
                         sourceModified=False)["body"]["breakpoints"]
    assert bps[0]["verified"] and bps[0]["line"] == 3
    assert client.request("setExceptionBreakpoints", filters=[])["success"]
    assert client.request("configurationDone")["success"]
    info = client.request("debugInfo")["body"]
    assert info["isStarted"] and info["breakpoints"] == [{"source": path, "breakpoints": bps}]

    msg_id = kernel.kc.execute(code)
    stopped = client.event("stopped")["body"]
    assert stopped["reason"] == "breakpoint" and stopped["threadId"] == 1
    assert client.request("debugInfo")["body"]["stoppedThreads"] == [1]
    threads = client.request("threads")["body"]["threads"]
    assert threads == [{"id": 1, "name": "Lua"}]
    frames = client.request("stackTrace", threadId=1)["body"]["stackFrames"]
    assert frames[0]["source"]["path"] == path and frames[0]["line"] == 3
    scopes = client.request("scopes", frameId=frames[0]["id"])["body"]["scopes"]
    assert [s["name"] for s in scopes] == ["Locals", "Upvalues", "Globals"]
    local_vars = client.request("variables", variablesReference=scopes[0]["variablesReference"])["body"]["variables"]
    assert {v["name"]: v["value"] for v in local_vars} == {"i": "3"}
    assert all("type" not in v for v in local_vars), "JupyterLab's tree would print the type instead of the value"
    assert client.request("evaluate", expression="total", frameId=frames[0]["id"], context="hover")["body"]["result"] == "3"
    rich = client.request("richInspectVariables", variableName="total", frameId=frames[0]["id"])["body"]
    assert rich["data"]["text/plain"] == "3"
    assert client.request("next", threadId=1)["success"]
    assert client.event("stopped")["body"]["reason"] == "step"
    assert client.request("stackTrace", threadId=1)["body"]["stackFrames"][0]["line"] == 2
    assert client.request("continue", threadId=1)["success"]

    reply = kernel.shell_reply(msg_id)
    assert reply["content"]["status"] == "ok"
    variables = client.request("inspectVariables")["body"]["variables"]  # the variable explorer, idle
    assert {"name": "total", "value": "10", "variablesReference": 0, "evaluateName": "total"} in variables
    assert client.request("source", source={"path": path})["body"]["content"] == code


def test_pause_a_running_cell_and_interrupt_it_while_stopped(client: JupyterDebugClient, kernel: Kernel) -> None:
    client.start()
    msg_id = kernel.kc.execute("local n = 0\nwhile true do\n  n = n + 1\nend\n")
    deadline = time.monotonic() + TIMEOUT
    while not client.request("pause", threadId=1)["success"]:  # succeeds once the cell runs
        assert time.monotonic() < deadline
        time.sleep(0.05)
    stopped = client.event("stopped")["body"]
    assert stopped["reason"] == "pause"
    assert client.request("evaluate", expression="n > 0", frameId=1)["body"]["result"] == "true"
    kernel.kc.control_channel.send(kernel.kc.session.msg("interrupt_request", {}))
    reply = kernel.shell_reply(msg_id)
    assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "KeyboardInterrupt"
    assert kernel.value("1 + 1") == "2"


def test_bad_debug_requests_get_an_error_reply_and_the_kernel_stays_up(client: JupyterDebugClient, kernel: Kernel) -> None:
    assert client.request("fly")["success"] is False
    assert "does not support" in client.request("fly")["message"]
    assert client.raw({"seq": 1, "type": "request"})["success"] is False
    assert client.raw({"command": ["not", "a", "name"], "arguments": "nor these"})["success"] is False
    assert client.request("stackTrace", threadId=1)["success"] is False  # nothing is stopped
    assert client.request("scopes")["success"] is False  # missing frameId
    assert client.request("setBreakpoints", breakpoints=[])["success"] is False  # no source
    assert client.request("dumpCell", code=42)["success"] is False
    kernel.assert_alive()
    assert kernel.value("'still here'") == '"still here"'
