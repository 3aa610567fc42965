"""The kill switch in a real kernel over ZMQ: `aikit stop --kernel`, `Event.publish("aikit.stop")`
and a notebook interrupt stop a workflow whose steps have a model stream, a program and an HTTP
request in flight (all held open by the test, so nothing depends on timing): the stream and the
request are closed (the local server sees the client go), the program's process is gone, the
steps are recorded `cancelled`, the ledger records the stop, and the kernel goes on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.support.agents import OPENAI, chat, config_text
from tests.support.kernels import Kernel, start_kernel
from tests.support.llm_server import Reply

AIKIT = str(Path(sys.executable).with_name("aikit"))

WORKFLOW = """
sub = Event.subscribe("workflow.*")
wf = Workflow.new{name = "busy", mode = "parallel", fail_fast = false, steps = {
  {id = "model", agent = Agent.new{name = "talker", model = "openai/m"}, input = "talk"},
  {id = "program", command = {"sleep", "3600"}},
  {id = "request", tool = "http_request", params = {url = "%s/slow"}},
  {id = "after", noop = true, depends_on = {"program"}},
}}
"""

STATUSES = """
local status, s = nil, {}
while status == nil do  -- the run ends (and says so) on the loop, maybe after the cell did
  local e = sub:receive(30)
  if e == nil then break end
  if e.topic == "workflow.finished" then status = e.payload.status end
  if e.topic == "workflow.step.failed" then s[e.payload.step] = e.payload.status end
end
"""
CHECK = STATUSES + "print(status, s.model, s.program, s.request, s.after)\n"


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    released = threading.Event()
    yield released
    released.set()  # let the server's handler threads end


@pytest.fixture
def stop_kernel(llm_server: Any, tmp_path: Path, gate: threading.Event) -> Iterator[Kernel]:
    (tmp_path / "aikit.toml").write_text(config_text(llm_server.url, "[security]\nallow_private_hosts = true\n"))
    kernel = start_kernel(tmp_path / "data", cwd=tmp_path, XDG_CONFIG_HOME=tmp_path / "xdg")
    yield kernel
    kernel.shutdown(now=True)


def hold_everything(server: Any, gate: threading.Event) -> None:
    body = json.dumps(chat("never seen")).encode()  # the model's answer, held after its first half
    server.reply(OPENAI, Reply(200, body, chunks=[body[:40], body[40:]], hold_after=1, gate=gate))
    server.reply("/slow", Reply(200, b"", content_type="text/plain", chunks=[b"first ", b"never"], hold_after=1,
                                gate=gate))


def sleepers(kernel: Kernel) -> list[psutil.Process]:
    """The kernel's `sleep 3600` programs still alive (a zombie is dead)."""
    found = []
    for child in psutil.Process(kernel.km.provisioner.pid).children(recursive=True):
        try:
            argv = child.cmdline()
            if [os.path.basename(a) for a in argv[-2:]] == ["sleep", "3600"] and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


def connections_to(kernel: Kernel, port: int) -> list[Any]:
    """The kernel's open TCP connections to the local server."""
    return [c for c in psutil.Process(kernel.km.provisioner.pid).net_connections(kind="tcp")
            if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED]


def wait_until(condition: Any, what: str, state: Any = None, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting: {what}" + (f" ({state()})" if state else ""))
        time.sleep(0.02)


def start_busy_workflow(kernel: Kernel, server: Any) -> str:
    kernel.ok(WORKFLOW % server.url)
    msg_id = kernel.kc.execute("record = wf:run()", allow_stdin=False)
    wait_until(lambda: len(connections_to(kernel, server.port)) == 2 and sleepers(kernel),
               "the model stream, the HTTP request and the program are all in flight",
               lambda: f"requests {[r.path for r in server.requests]}, "
                       f"connections {connections_to(kernel, server.port)}, sleepers {sleepers(kernel)}, "
                       f"{_finished(kernel)}")
    return msg_id


def _finished(kernel: Kernel) -> Any:
    """What the cell said if it already ended (for the message of a failed wait)."""
    try:
        return kernel.kc.get_shell_msg(timeout=0.5)["content"]
    except Exception:  # noqa: BLE001 - still running
        return "the cell still runs"


def assert_stopped(kernel: Kernel, server: Any, msg_id: str) -> None:
    result = kernel.request(msg_id, timeout=60)
    assert result.content["status"] == "error"
    wait_until(lambda: not connections_to(kernel, server.port), "the model stream and the request are closed")
    wait_until(lambda: not sleepers(kernel), "the program is killed")
    statuses = kernel.ok(CHECK).stdout.split()
    assert statuses == ["cancelled"] * 5
    assert kernel.value("1 + 1") == "2"  # the kernel goes on


def ledger_types(kernel: Kernel) -> list[str]:
    done = subprocess.run([AIKIT, "audit", "--data-dir", str(kernel.data_dir), "export"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [json.loads(line)["type"] for line in done.stdout.splitlines()]


def test_aikit_stop_kernel_stops_everything_in_flight(stop_kernel: Kernel, llm_server: Any, gate: threading.Event) -> None:
    hold_everything(llm_server, gate)
    msg_id = start_busy_workflow(stop_kernel, llm_server)
    stopped = subprocess.run([AIKIT, "stop", "--kernel", stop_kernel.km.connection_file], capture_output=True,
                             text=True, timeout=60)
    assert stopped.returncode == 0, stopped.stderr
    assert "task(s) cancelled" in stopped.stdout
    assert_stopped(stop_kernel, llm_server, msg_id)
    types = ledger_types(stop_kernel)
    assert "aikit.stopped" in types
    verified = subprocess.run([AIKIT, "audit", "--data-dir", str(stop_kernel.data_dir), "verify"],
                              capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0, verified.stderr


def test_a_notebook_interrupt_stops_what_the_cell_started(stop_kernel: Kernel, llm_server: Any,
                                                          gate: threading.Event) -> None:
    hold_everything(llm_server, gate)
    msg_id = start_busy_workflow(stop_kernel, llm_server)
    stop_kernel.km.interrupt_kernel()
    assert_stopped(stop_kernel, llm_server, msg_id)


def test_aikit_stop_all_finds_the_kernel_by_its_connection_file(stop_kernel: Kernel, llm_server: Any,
                                                                gate: threading.Event, tmp_path: Path) -> None:
    runtime_dir = tmp_path / "runtime"  # a runtime directory of our own, as Jupyter names its files
    runtime_dir.mkdir()
    (runtime_dir / "kernel-aikit-test.json").write_text(Path(stop_kernel.km.connection_file).read_text())
    (runtime_dir / "kernel-other.json").write_text(json.dumps({"kernel_name": "python3"}))  # not ours: skipped
    hold_everything(llm_server, gate)
    msg_id = start_busy_workflow(stop_kernel, llm_server)
    stopped = subprocess.run([AIKIT, "stop", "--all", "--runtime-dir", str(runtime_dir), "--timeout", "30"],
                             capture_output=True, text=True, timeout=300)
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped kernel-aikit-test.json" in stopped.stdout and "kernel-other" not in stopped.stdout
    assert_stopped(stop_kernel, llm_server, msg_id)


def test_event_publish_aikit_stop_from_lua_stops_the_run_and_not_the_cell(make_agent_lua: Any, llm_server: Any,
                                                                         gate: threading.Event) -> None:
    hold_everything(llm_server, gate)
    lua = make_agent_lua("[security]\nallow_private_hosts = true\n")
    out = lua.run(WORKFLOW % llm_server.url + """
local started = Event.subscribe("http.started")
wf = Workflow.new{name = "stopper", mode = "parallel", steps = {
  {id = "work", workflow = wf},
  {id = "stop", fn = function()
    started:receive(30)  -- the request is on its way
    Event.publish("aikit.stop", {by = "a step"})
  end},
}}
local ok, err = pcall(wf.run, wf)
return ok, err.code
""")
    assert out == (False, "cancelled")
    statuses = lua.run(STATUSES + "return status, s.model, s.program, s.request, s.after")
    assert statuses == ("cancelled",) * 5
    stops = [e for e in lua.components.audit.entries() if e.type in ("aikit.stop", "aikit.stopped")]
    assert [e.type for e in stops] == ["aikit.stop", "aikit.stopped"]
    assert stops[0].data["by"] == "a step" and stops[1].data["cancelled"] >= 1


def test_a_tool_call_waited_for_from_lua_ends_cancelled(make_agent_lua: Any) -> None:
    lua = make_agent_lua()
    components = lua.components
    started = components.events.subscribe("process.started")

    def stop_when_started() -> None:
        if started.receive(30) is not None:
            components.events.publish("aikit.stop", {"by": "a test"}, source="test")

    stopper = threading.Thread(target=stop_when_started)
    stopper.start()
    try:
        out = lua.run("local ok, err = pcall(Tool.call, 'run_process', {command = {'sleep', '3600'}})\n"
                      "return ok, err.code")
    finally:
        stopper.join(30)
    assert out == (False, "cancelled")
    wait_until(lambda: not [p for p in psutil.Process().children(recursive=True)
                            if p.status() != psutil.STATUS_ZOMBIE and p.cmdline()[-1:] == ["3600"]],
               "the program is killed")
