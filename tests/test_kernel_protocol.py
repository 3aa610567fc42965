"""The protocol core (``aikit_kernel/kernel.py``) against an in-process fake interpreter.

The kernel runs in this process on real ZMQ sockets (its own :class:`Transport`, the process's
I/O loop, ``serve_forever`` on a thread standing in for the main thread), driven by
jupyter_client; the language is :class:`tests.support.fake_interpreter.FakeInterpreter`, so a
protocol bug shows up here without a Lua runtime in the way.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from queue import Empty
from typing import Any

import pytest
import zmq
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.session import Session

from aikit_kernel import runtime
from aikit_kernel.history import HistoryStore
from aikit_kernel.kernel import Kernel
from aikit_kernel.protocol import PROTOCOL_VERSION, Protocol
from aikit_kernel.transport import ConnectionInfo, Transport
from tests.support.fake_interpreter import FakeInterpreter

TIMEOUT = 15
MAX_MESSAGE_BYTES = 256 * 1024


class InProcessKernel:
    """A :class:`Kernel` serving a :class:`FakeInterpreter` on fresh loopback sockets.
    ``build_gate``: the interpreter is built on the serving thread once that event is set (the
    kernel answers kernel_info meanwhile, as ``aikit_kernel.kernel_process.run_kernel`` does)."""

    def __init__(self, data: Path, build_gate: threading.Event | None = None) -> None:
        self.info = ConnectionInfo.fresh()
        protocol = Protocol(self.info.key, self.info.signature_scheme)

        async def setup() -> Transport:
            return Transport(self.info)

        def factory(output: Any) -> FakeInterpreter:
            if build_gate is not None:
                assert build_gate.wait(TIMEOUT)
            return FakeInterpreter(output)

        self.transport = runtime.run_sync(setup(), timeout=TIMEOUT)
        self.history = HistoryStore(data / "history.sqlite", protocol.session_id)
        self.kernel = Kernel(self.transport, protocol, factory, self.history, max_message_bytes=MAX_MESSAGE_BYTES,
                             early_info=FakeInterpreter if build_gate is not None else None)
        self.transport.start_heartbeat()
        self.serving = runtime.submit(self.kernel.serve_sockets())
        self.thread = threading.Thread(target=self.kernel.serve_forever, name="fake-main", daemon=True)
        self.thread.start()
        self.kc = BlockingKernelClient()
        self.kc.load_connection_info(self.info.to_dict())
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=TIMEOUT)

    @property
    def fake(self) -> FakeInterpreter:
        return self.kernel.interpreter  # type: ignore[return-value]

    def close(self) -> None:
        self.kc.stop_channels()
        self.kernel.request_shutdown()
        self.thread.join(TIMEOUT)
        self.serving.cancel()

        async def close() -> None:
            self.history.close()
            self.transport.close()

        runtime.run_sync(close(), timeout=TIMEOUT)

    # ------------------------------------------------------------------ client side helpers
    def reply(self, msg_id: str, channel: str = "shell") -> dict[str, Any]:
        get = self.kc.get_shell_msg if channel == "shell" else self.kc.control_channel.get_msg
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            try:
                msg = get(timeout=max(0.01, deadline - time.monotonic()))
            except Empty:
                continue
            if msg["parent_header"].get("msg_id") == msg_id:
                return msg
        raise TimeoutError(f"no {channel} reply to {msg_id}")

    def iopub(self, msg_id: str) -> list[dict[str, Any]]:
        """IOPub messages of ``msg_id`` up to its idle status."""
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            try:
                msg = self.kc.get_iopub_msg(timeout=max(0.01, deadline - time.monotonic()))
            except Empty:
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            seen.append(msg)
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return seen
        raise TimeoutError(f"no idle for {msg_id}; got {[m['msg_type'] for m in seen]}")

    def request(self, msg_id: str, channel: str = "shell") -> tuple[dict[str, Any], list[dict[str, Any]]]:
        return self.reply(msg_id, channel), self.iopub(msg_id)

    def execute(self, code: str, **kwargs: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        kwargs.setdefault("allow_stdin", False)
        return self.request(self.kc.execute(code, **kwargs))

    def send_shell(self, msg_type: str, content: Any, **header: Any) -> str:
        """Send any (even invalid) request on the shell channel; returns its msg_id."""
        msg = self.kc.session.msg(msg_type, content)
        msg["header"].update(header)
        msg["content"] = content
        self.kc.shell_channel.send(msg)
        return msg["header"]["msg_id"]


@pytest.fixture
def k(tmp_path: Path) -> Iterator[InProcessKernel]:
    kernel = InProcessKernel(tmp_path)
    yield kernel
    kernel.close()


def types(messages: list[dict[str, Any]]) -> list[str]:
    return [m["msg_type"] if m["msg_type"] != "status" else m["content"]["execution_state"] for m in messages]


# ---------------------------------------------------------------------------- kernel_info


def test_kernel_info_describes_the_interpreter(k: InProcessKernel) -> None:
    reply, iopub = k.request(k.kc.kernel_info())
    content = reply["content"]
    assert content["status"] == "ok" and content["protocol_version"] == PROTOCOL_VERSION
    assert content["implementation"] == "aikit-fake" and content["language_info"]["name"] == "fake"
    assert content["banner"] == FakeInterpreter.banner and content["help_links"] == FakeInterpreter.help_links
    assert content["debugger"] is False and content["supported_features"] == []
    assert types(iopub) == ["busy", "idle"]


# ---------------------------------------------------------------------------- execute


def test_execute_ok_reply_and_iopub_in_order(k: InProcessKernel) -> None:
    reply, iopub = k.execute("print hello\nvalue 42", user_expressions={"a": "value A", "b": "fail E bad"})
    assert reply["msg_type"] == "execute_reply" and reply["metadata"]["status"] == "ok"
    content = reply["content"]
    assert content["status"] == "ok" and content["execution_count"] == 1 and content["payload"] == []
    assert content["user_expressions"]["a"] == {"status": "ok", "data": {"text/plain": "A"}, "metadata": {}}
    assert content["user_expressions"]["b"]["status"] == "error" and content["user_expressions"]["b"]["ename"] == "E"
    assert types(iopub) == ["busy", "execute_input", "stream", "execute_result", "idle"]
    assert iopub[1]["content"] == {"code": "print hello\nvalue 42", "execution_count": 1}
    assert iopub[2]["content"] == {"name": "stdout", "text": "hello\n"}
    assert iopub[3]["content"]["data"] == {"text/plain": "42"} and iopub[3]["content"]["execution_count"] == 1
    assert k.fake.executed[-1]["user_expressions"] == {"a": "value A", "b": "fail E bad"}


def test_execution_count_counts_stored_cells_only(k: InProcessKernel) -> None:
    assert k.execute("value 1")[0]["content"]["execution_count"] == 1
    reply, iopub = k.execute("print quiet\nvalue 2", silent=True)
    assert reply["content"]["execution_count"] == 1
    assert types(iopub) == ["busy", "stream", "idle"]  # no execute_input, no execute_result when silent
    assert k.execute("value 3", store_history=False)[0]["content"]["execution_count"] == 1
    assert k.execute("value 4")[0]["content"]["execution_count"] == 2
    assert [e["execution_count"] for e in k.fake.executed] == [1, 1, 1, 2]


def test_execute_error_reply_and_error_message(k: InProcessKernel) -> None:
    reply, iopub = k.execute("print before\nfail ValueError it broke", user_expressions={"a": "value A"})
    content = reply["content"]
    assert reply["metadata"]["status"] == "error"
    assert content["status"] == "error" and content["ename"] == "ValueError" and content["evalue"] == "it broke"
    assert content["traceback"] == ["ValueError: it broke"] and content["execution_count"] == 1
    assert content["user_expressions"] == {} and content["payload"] == []  # not evaluated after an error
    assert types(iopub) == ["busy", "execute_input", "stream", "error", "idle"]
    assert iopub[3]["content"] == {"ename": "ValueError", "evalue": "it broke", "traceback": ["ValueError: it broke"]}


def test_a_pager_payload_reaches_the_reply(k: InProcessKernel) -> None:
    reply, _ = k.execute("page some help")
    assert reply["content"]["payload"] == [{"source": "page", "data": {"text/plain": "some help"}, "start": 0}]


def test_an_interpreter_bug_is_an_error_reply_and_the_kernel_goes_on(k: InProcessKernel) -> None:
    reply, iopub = k.execute("crash internal bug")
    content = reply["content"]
    assert content["status"] == "error" and content["ename"] == "RuntimeError" and content["evalue"] == "internal bug"
    assert {"execution_count", "user_expressions", "payload", "traceback"} <= set(content)
    assert types(iopub)[0] == "busy" and types(iopub)[-1] == "idle" and "error" in types(iopub)
    assert k.execute("value fine")[0]["content"]["status"] == "ok"


def test_code_that_is_not_a_string_is_an_invalid_request(k: InProcessKernel) -> None:
    msg_id = k.send_shell("execute_request", {"code": 42, "silent": False})
    reply, iopub = k.request(msg_id)
    assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "InvalidRequest"
    assert types(iopub) == ["busy", "idle"]
    assert k.fake.executed == []


def test_an_error_aborts_the_requests_queued_behind_it(k: InProcessKernel) -> None:
    first = k.kc.execute("wait")
    second = k.kc.execute("value never")  # right behind the first, on the same connection
    deadline = time.monotonic() + TIMEOUT
    # The first runs (an interrupt before it starts would not be for it); the second waits in
    # the shell socket, read when the first fails.
    while not k.fake.executed and time.monotonic() < deadline:
        time.sleep(0.01)
    interrupt = k.kc.session.msg("interrupt_request", {})
    k.kc.control_channel.send(interrupt)
    assert k.reply(interrupt["header"]["msg_id"], "control")["content"]["status"] == "ok"
    assert k.reply(first)["content"]["ename"] == "KeyboardInterrupt"
    assert k.reply(second)["content"] == {"status": "aborted", "execution_count": 1}
    assert [e["code"] for e in k.fake.executed] == ["wait"]
    assert k.execute("value after")[0]["content"]["status"] == "ok"  # only what was queued is aborted


def test_stop_on_error_false_runs_the_next_request(k: InProcessKernel) -> None:
    first = k.kc.execute("fail E no", stop_on_error=False)
    second = k.kc.execute("value yes")
    assert k.reply(first)["content"]["status"] == "error"
    assert k.reply(second)["content"]["status"] == "ok"


def test_input_request_round_trip_on_stdin(k: InProcessKernel) -> None:
    msg_id = k.kc.execute("input name?", allow_stdin=True)
    request = k.kc.get_stdin_msg(timeout=TIMEOUT)
    assert request["msg_type"] == "input_request" and request["content"]["prompt"] == "name?"
    k.kc.input("Ada")
    reply, iopub = k.request(msg_id)
    assert reply["content"]["status"] == "ok"
    assert [m["content"]["text"] for m in iopub if m["msg_type"] == "stream"] == ["got Ada\n"]


def test_input_without_allow_stdin_fails_the_cell(k: InProcessKernel) -> None:
    reply, _ = k.execute("input name?", allow_stdin=False)
    assert reply["content"]["ename"] == "StdinNotAllowed"


# ---------------------------------------------------------------------------- other shell requests


def test_complete_inspect_and_is_complete_replies(k: InProcessKernel) -> None:
    reply, iopub = k.request(k.kc.complete("x = pri", 7))
    assert reply["msg_type"] == "complete_reply"
    assert reply["content"] == {"status": "ok", "matches": ["print", "printf"], "cursor_start": 4, "cursor_end": 7,
                                "metadata": {}}
    assert types(iopub) == ["busy", "idle"]
    found = k.request(k.kc.inspect("print", 5, detail_level=1))[0]["content"]
    assert found["found"] is True and found["data"]["text/plain"].endswith("(detail)")
    missing = k.request(k.kc.inspect("nope", 4))[0]["content"]
    assert missing == {"status": "ok", "found": False, "data": {}, "metadata": {}}
    assert k.request(k.kc.is_complete("a \\"))[0]["content"] == {"status": "incomplete", "indent": "  "}
    assert k.request(k.kc.is_complete(") x"))[0]["content"] == {"status": "invalid"}
    assert k.request(k.kc.is_complete("value 1"))[0]["content"] == {"status": "complete"}
    assert {name for name, _ in k.fake.calls} >= {"complete", "inspect", "is_complete"}


def test_every_interpreter_call_runs_on_the_serving_thread(k: InProcessKernel) -> None:
    k.execute("value 1")
    k.request(k.kc.complete("pr", 2))
    assert {thread for name, thread in k.fake.calls if name != "interrupt"} == {"fake-main"}


def test_history_request_returns_stored_cells(k: InProcessKernel) -> None:
    k.execute("value one")
    k.execute("print two")
    k.execute("value hidden", store_history=False)
    reply, _ = k.request(k.kc.history(hist_access_type="tail", n=10, output=True, raw=True))
    history = reply["content"]["history"]
    assert [entry[1:] for entry in history] == [[1, ["value one", "one"]], [2, ["print two", None]]]


def test_comm_requests(k: InProcessKernel) -> None:
    assert k.request(k.kc.comm_info())[0]["content"] == {"status": "ok", "comms": {}}
    msg_id = k.send_shell("comm_open", {"comm_id": "c1", "target_name": "nothing", "data": {}})
    iopub = k.iopub(msg_id)
    assert types(iopub) == ["busy", "comm_close", "idle"] and iopub[1]["content"]["comm_id"] == "c1"


def test_work_queued_while_idle_is_serviced_on_the_serving_thread(k: InProcessKernel) -> None:
    ran = threading.Event()
    threads: list[str] = []
    k.fake.queue(lambda: (threads.append(threading.current_thread().name), ran.set()))
    assert ran.wait(TIMEOUT) and threads == ["fake-main"]


def test_queued_work_that_fails_is_logged_and_the_kernel_goes_on(k: InProcessKernel,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> None:
        raise RuntimeError("a bug in queued work")

    k.fake.queue(broken)
    reply, _ = k.execute("value 42")
    assert reply["content"]["status"] == "ok"
    assert "a bug in queued work" in caplog.text


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the error is the point
def test_serving_that_ends_by_an_error_still_shuts_the_interpreter_down(tmp_path: Path) -> None:
    kernel = InProcessKernel(tmp_path)
    try:
        def escape() -> None:
            raise SystemExit("the serving thread is told to end")  # not an Exception: not caught

        fake = kernel.fake
        fake.queue(escape)
        assert fake.shut_down.wait(TIMEOUT)
        kernel.thread.join(TIMEOUT)
        assert fake.end_status == "failed" and not kernel.thread.is_alive()
    finally:
        kernel.close()


# ---------------------------------------------------------------------------- unknown and malformed


def test_an_unknown_request_gets_an_error_reply(k: InProcessKernel) -> None:
    msg_id = k.send_shell("frobnicate_request", {})
    reply, iopub = k.request(msg_id)
    assert reply["msg_type"] == "frobnicate_reply"
    assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "UnknownMessageType"
    assert types(iopub) == ["busy", "idle"]


def test_an_unknown_message_that_is_not_a_request_gets_no_reply(k: InProcessKernel) -> None:
    silent = k.send_shell("frobnicate", {})
    assert types(k.iopub(silent)) == ["busy", "idle"]
    after = k.kc.kernel_info()
    parents = []
    while not parents or parents[-1] != after:  # replies come in order: one for `silent` would come first
        parents.append(k.kc.get_shell_msg(timeout=TIMEOUT)["parent_header"].get("msg_id"))
    assert silent not in parents


def test_an_unknown_control_request_gets_an_error_reply(k: InProcessKernel) -> None:
    msg = k.kc.session.msg("frobnicate_request", {})
    k.kc.control_channel.send(msg)
    reply = k.reply(msg["header"]["msg_id"], "control")
    assert reply["content"]["ename"] == "UnknownMessageType"


@pytest.fixture
def raw_shell(k: InProcessKernel) -> Iterator[tuple[zmq.Socket, Session]]:
    """A DEALER socket on the kernel's shell port and a Session with the kernel's key: replies
    come back in order, so a dropped message is one whose reply never comes before the next's."""
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(k.info.url(k.info.shell_port))
    yield sock, Session(key=k.info.key, signature_scheme=k.info.signature_scheme)
    sock.close()


def assert_only_the_next_request_is_answered(sock: zmq.Socket, session: Session) -> None:
    msg = session.msg("kernel_info_request", {})
    session.send(sock, msg)
    assert sock.poll(TIMEOUT * 1000), "the kernel stopped answering"
    _, reply = session.feed_identities(sock.recv_multipart())
    assert session.deserialize(reply)["parent_header"]["msg_id"] == msg["header"]["msg_id"]


def test_a_message_with_a_bad_signature_is_dropped(raw_shell: tuple[zmq.Socket, Session]) -> None:
    sock, session = raw_shell
    frames = session.serialize(session.msg("execute_request", {"code": "value 1"}))
    frames[frames.index(b"<IDS|MSG>") + 1] = b"0" * 64
    sock.send_multipart(frames)
    assert_only_the_next_request_is_answered(sock, session)


@pytest.mark.parametrize("malformed", ["content_not_object", "no_msg_type", "not_json"])
def test_malformed_messages_are_dropped(k: InProcessKernel, raw_shell: tuple[zmq.Socket, Session],
                                        malformed: str) -> None:
    sock, session = raw_shell
    msg = session.msg("execute_request", {"code": "value 1"})
    if malformed == "content_not_object":
        msg["content"] = b"[1, 2]"  # JSON, but not an object
        frames = session.serialize(msg)
    elif malformed == "no_msg_type":
        del msg["header"]["msg_type"]
        frames = session.serialize(msg)
    else:
        parts = [b"{not json", b"{}", b"{}", b"{}"]
        frames = [b"<IDS|MSG>", session.sign(parts), *parts]  # signed, but the header is not JSON
    sock.send_multipart(frames)
    assert_only_the_next_request_is_answered(sock, session)
    assert k.fake.executed == []


def test_an_oversized_message_is_dropped(k: InProcessKernel, raw_shell: tuple[zmq.Socket, Session]) -> None:
    sock, session = raw_shell
    session.send(sock, session.msg("execute_request", {"code": "value " + "x" * MAX_MESSAGE_BYTES}))
    assert_only_the_next_request_is_answered(sock, session)
    assert k.fake.executed == []


# ---------------------------------------------------------------------------- control


def test_control_requests_are_answered_while_a_cell_runs(k: InProcessKernel) -> None:
    running = k.kc.execute("wait")
    deadline = time.monotonic() + TIMEOUT
    while not k.fake.executed and time.monotonic() < deadline:
        time.sleep(0.01)
    info = k.kc.session.msg("kernel_info_request", {})
    k.kc.control_channel.send(info)
    assert k.reply(info["header"]["msg_id"], "control")["content"]["implementation"] == "aikit-fake"
    interrupt = k.kc.session.msg("interrupt_request", {})
    k.kc.control_channel.send(interrupt)
    assert k.reply(interrupt["header"]["msg_id"], "control")["content"] == {"status": "ok"}
    reply, iopub = k.request(running)
    assert reply["content"]["ename"] == "KeyboardInterrupt" and types(iopub)[-1] == "idle"


def test_an_interrupt_before_the_run_begins_stops_the_run(k: InProcessKernel) -> None:
    """The request is served (busy is out) but its run has not begun, so the interpreter has
    nothing to stop: the run must still be interrupted as it begins, not run unstoppable."""
    running = k.kc.execute("gate")
    deadline = time.monotonic() + TIMEOUT
    while not k.fake.executed and time.monotonic() < deadline:
        time.sleep(0.01)
    interrupt = control_request(k, "interrupt_request")
    assert k.reply(interrupt, "control")["content"] == {"status": "ok"}
    k.fake.gate.set()
    assert k.reply(running)["content"]["ename"] == "KeyboardInterrupt"
    after, _ = k.execute("gate")  # the interrupt was for that request only
    assert after["content"]["status"] == "ok"


def test_an_interrupt_while_idle_does_not_reach_the_next_run(k: InProcessKernel) -> None:
    interrupt = control_request(k, "interrupt_request")
    assert k.reply(interrupt, "control")["content"] == {"status": "ok"}
    k.fake.gate.set()
    reply, iopub = k.execute("gate")
    assert reply["content"]["status"] == "ok"
    assert [m["content"]["data"]["text/plain"] for m in iopub if m["msg_type"] == "execute_result"] == ["ran"]


class BlockedLoop:
    """Holds the I/O loop in a callback until released: nothing the loop does (reading shell,
    answering control requests, sending IOPub) happens meanwhile."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def __enter__(self) -> BlockedLoop:
        def hold() -> None:
            self.entered.set()
            self.release.wait(TIMEOUT)

        runtime.call_soon(hold)
        assert self.entered.wait(TIMEOUT)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()


def control_request(k: InProcessKernel, msg_type: str) -> str:
    msg = k.kc.session.msg(msg_type, {})
    k.kc.control_channel.send(msg)
    return msg["header"]["msg_id"]


def test_kernel_info_on_control_is_answered_while_the_io_loop_is_blocked(k: InProcessKernel) -> None:
    """The control thread answers kernel_info itself (a frontend polls it to see the kernel
    alive); its busy/idle status, sent by the loop, follows once the loop runs again."""
    with BlockedLoop():
        info = control_request(k, "kernel_info_request")
        reply = k.reply(info, "control")  # the loop is still held here
        assert reply["content"]["implementation"] == "aikit-fake"
    assert types(k.iopub(info)) == ["busy", "idle"]
    after, _ = k.execute("value 1")  # and the loop serves as before
    assert after["content"]["status"] == "ok"


def test_control_replies_keep_their_order_when_the_loop_answers_first(k: InProcessKernel) -> None:
    """An interrupt is answered on the loop: a kernel_info behind it waits for it there, so the
    replies come back in the order of the requests."""
    with BlockedLoop():
        interrupt = control_request(k, "interrupt_request")
        info = control_request(k, "kernel_info_request")
    first = k.kc.control_channel.get_msg(timeout=TIMEOUT)
    second = k.kc.control_channel.get_msg(timeout=TIMEOUT)
    assert [first["parent_header"]["msg_id"], second["parent_header"]["msg_id"]] == [interrupt, info]
    assert first["content"] == {"status": "ok"} and second["content"]["status"] == "ok"


def test_kernel_info_is_answered_while_the_interpreter_is_built(tmp_path: Path) -> None:
    """With ``early_info`` the sockets are served before the interpreter exists: kernel_info (shell
    and control) is answered from the interpreter's class; an execute waits until it is built."""
    gate = threading.Event()
    kernel = InProcessKernel(tmp_path, build_gate=gate)  # its wait_for_ready got a kernel_info_reply
    try:
        assert not kernel.kernel.ready
        info = kernel.kc.session.msg("kernel_info_request", {})
        kernel.kc.control_channel.send(info)
        content = kernel.reply(info["header"]["msg_id"], "control")["content"]
        assert content["implementation"] == "aikit-fake" and content["language_info"]["name"] == "fake"
        assert content["debugger"] is False
        running = kernel.kc.execute("value 42")
        shell_info = kernel.kc.kernel_info()  # queued behind the execute: answered in order, after it
        gate.set()
        reply, iopub = kernel.request(running)
        assert reply["content"]["status"] == "ok" and kernel.kernel.ready
        assert [m["content"]["data"] for m in iopub if m["msg_type"] == "execute_result"] == [{"text/plain": "42"}]
        assert kernel.reply(shell_info)["content"]["implementation"] == "aikit-fake"
    finally:
        gate.set()
        kernel.close()


def test_an_interrupt_during_the_build_stops_the_cell_waiting_for_it(tmp_path: Path) -> None:
    """The user sees the queued cell as running: an interrupt before the interpreter exists must
    not be lost (the cell would then run, unstoppable by that interrupt)."""
    gate = threading.Event()
    kernel = InProcessKernel(tmp_path, build_gate=gate)
    try:
        waiting = kernel.kc.execute("value 1")
        deadline = time.monotonic() + TIMEOUT
        while kernel.kernel.requests_received < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        interrupt = kernel.kc.session.msg("interrupt_request", {})
        kernel.kc.control_channel.send(interrupt)
        assert kernel.reply(interrupt["header"]["msg_id"], "control")["content"] == {"status": "ok"}
        gate.set()
        reply, iopub = kernel.request(waiting)
        assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "KeyboardInterrupt"
        assert "error" in types(iopub) and kernel.fake.executed == []
        after, _ = kernel.execute("value 2")  # the interrupt was for that cell only
        assert after["content"]["status"] == "ok"
    finally:
        gate.set()
        kernel.close()


def test_the_interpreter_is_warmed_up_once_on_its_thread_when_idle(k: InProcessKernel) -> None:
    reply, _ = k.execute("value 1")
    assert reply["content"]["status"] == "ok"
    assert k.fake.warmed.wait(TIMEOUT)
    reply, _ = k.execute("value 2")
    assert reply["content"]["status"] == "ok"
    warm_ups = [thread for name, thread in k.fake.calls if name == "warm_up"]
    assert warm_ups == [k.thread.name]


def test_busy_and_execute_input_go_out_while_a_cell_still_runs(k: InProcessKernel) -> None:
    """The Lua thread publishes a request's messages as it makes them: busy and execute_input
    reach the client while a long cell still runs."""
    running = k.kc.execute("wait")
    seen: list[str] = []
    deadline = time.monotonic() + TIMEOUT
    while "execute_input" not in seen and time.monotonic() < deadline:
        try:
            msg = k.kc.get_iopub_msg(timeout=0.1)
        except Empty:
            continue
        if msg["parent_header"].get("msg_id") == running:
            seen.append(types([msg])[0])
    assert seen == ["busy", "execute_input"]  # and the cell blocks until interrupted: it still runs
    while not k.fake.executed and time.monotonic() < deadline:  # (execute_input goes out just before it starts)
        time.sleep(0.01)
    assert k.fake.executed
    interrupt = k.kc.session.msg("interrupt_request", {})
    k.kc.control_channel.send(interrupt)
    reply = k.reply(running)
    assert reply["content"]["ename"] == "KeyboardInterrupt"


def test_shutdown_request_replies_and_shuts_the_interpreter_down(tmp_path: Path) -> None:
    kernel = InProcessKernel(tmp_path)
    try:
        msg = kernel.kc.session.msg("shutdown_request", {"restart": True})
        kernel.kc.control_channel.send(msg)
        reply = kernel.reply(msg["header"]["msg_id"], "control")
        assert reply["content"] == {"status": "ok", "restart": True}
        assert kernel.fake.shut_down.wait(TIMEOUT)
        kernel.thread.join(TIMEOUT)
        assert not kernel.thread.is_alive()
    finally:
        kernel.close()


def test_status_messages_frame_every_request(k: InProcessKernel) -> None:
    """busy first and idle last, exactly once each, for every kind of request."""
    requests = [k.kc.execute("print a\nvalue b", allow_stdin=False), k.kc.execute("fail E x", stop_on_error=False),
                k.kc.complete("p", 1), k.kc.inspect("print", 5), k.kc.is_complete("x"), k.kc.kernel_info(),
                k.kc.history(), k.send_shell("frobnicate_request", {})]
    for msg_id in requests:
        got = types(k.iopub(msg_id))
        assert got[0] == "busy" and got[-1] == "idle" and got.count("busy") == got.count("idle") == 1, got


def test_requests_sent_back_to_back_are_served_in_order_each_framed_by_its_statuses(k: InProcessKernel) -> None:
    """The serving thread reads requests from the shell socket itself: sent without waiting,
    they are answered in order, and each one's IOPub messages go out together, between its own
    busy and idle."""
    sent = [k.kc.execute(f"value {i}") for i in range(5)]
    replies = [k.reply(msg_id) for msg_id in sent]
    assert [r["content"]["execution_count"] for r in replies] == [1, 2, 3, 4, 5]
    seen: list[tuple[str, str]] = []
    deadline = time.monotonic() + TIMEOUT
    while (sent[-1], "idle") not in seen and time.monotonic() < deadline:
        try:
            msg = k.kc.get_iopub_msg(timeout=0.1)
        except Empty:
            continue
        if msg["parent_header"].get("msg_id") in sent:
            seen.append((msg["parent_header"]["msg_id"], types([msg])[0]))
    expected = [(msg_id, kind) for msg_id in sent for kind in ("busy", "execute_input", "execute_result", "idle")]
    assert seen == expected


def test_the_history_of_the_last_cells_is_written_at_shutdown(tmp_path: Path) -> None:
    """History writes are batched on the I/O loop a little after the cells: the cells answered
    right before a shutdown are still written."""
    kernel = InProcessKernel(tmp_path)
    try:
        kernel.execute("value last")
    finally:
        kernel.close()
    store = HistoryStore(tmp_path / "history.sqlite", "another-session")
    try:
        assert [entry[2] for entry in store.tail(5, True)] == [("value last", "last")]
    finally:
        store.close()
