"""Hostile or broken clients: raw frames sent on the kernel's sockets with a separate zmq DEALER.
After every case the kernel must still answer ``1+1`` correctly through a normal client."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from jupyter_client.session import DELIM, Session

from tests.support.kernels import Kernel, new_client, start_kernel
from tests.support.raw_client import RawClient

pytestmark = pytest.mark.xdist_group("robustness")

MAX_MB = 1  # AIKIT_MAX_MESSAGE_MB for this module's kernel


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Kernel:
    k = start_kernel(tmp_path_factory.mktemp("robust-data"), AIKIT_MAX_MESSAGE_MB=MAX_MB)
    yield k
    k.shutdown()


@pytest.fixture
def raw(kernel: Kernel):
    client = RawClient(kernel)
    yield client
    client.close()


def execute_content(code: str) -> dict[str, Any]:
    return {"code": code, "silent": False, "store_history": True, "user_expressions": {},
            "allow_stdin": False, "stop_on_error": True}


# ---------------------------------------------------------------------------------------------
def test_garbage_frames_are_dropped(kernel: Kernel, raw: RawClient) -> None:
    h = json.dumps({"msg_id": "x", "msg_type": "execute_request", "session": "s", "username": "u",
                    "date": "2024-01-01T00:00:00Z", "version": "5.4"}).encode()
    junk = [
        [b"garbage"],
        [b"\x00\xff" * 100],
        [b"", b"", b""],
        [DELIM],
        [DELIM, b"sig"],
        [DELIM, b"0" * 64, b"not json", b"{}", b"{}", b"{}"],
        [DELIM, b"", h, b"{}", b"{}", b"{}"],  # unsigned
    ]
    # Correctly signed but not a valid message: JSON that is not a header, content not an object.
    for header, content in ((b"[1, 2]", b"{}"), (b"{}", b"{}"), (h, b"[1]"), (b"\xff\xfe", b"{}"),
                            (json.dumps({"msg_type": 5, "msg_id": "y", "session": "s"}).encode(), b"{}")):
        parts = [header, b"{}", b"{}", content]
        junk.append([DELIM, raw.sign(parts), *parts])
    for frames in junk:
        raw.send(frames)
    assert raw.replies(0.5) == []
    kernel.assert_alive()


def test_missing_delimiter_is_dropped(kernel: Kernel, raw: RawClient) -> None:
    _, frames = raw.frames("execute_request", execute_content("missing_delim_ran = true"))
    assert frames[0] == DELIM
    raw.send(frames[1:])
    assert raw.replies(0.5) == []
    kernel.assert_alive()
    assert kernel.value("missing_delim_ran == nil") == "true"


def test_wrong_signature_is_dropped(kernel: Kernel, raw: RawClient) -> None:
    _, frames = raw.frames("execute_request", execute_content("bad_sig_ran = true"))
    frames[1] = b"0" * len(frames[1])
    raw.send(frames)
    _, frames2 = raw.frames("execute_request", execute_content("bad_sig_ran2 = true"))
    other = Session(key=b"not-the-key", signature_scheme="hmac-sha256")
    frames2[1] = other.sign(frames2[2:6])
    raw.send(frames2)
    assert raw.replies(0.5) == []
    kernel.assert_alive()
    assert kernel.value("return bad_sig_ran, bad_sig_ran2") == "nil\tnil"


def test_replayed_message_is_ignored(kernel: Kernel, raw: RawClient) -> None:
    msg_id, frames = raw.frames("execute_request", execute_content("replays = (replays or 0) + 1\nreplays"))
    raw.send(frames)
    raw.send(list(frames))  # identical bytes, identical signature
    replies = raw.replies(1.0)
    assert len(replies) == 1
    assert replies[0]["parent_header"]["msg_id"] == msg_id
    assert replies[0]["content"]["status"] == "ok"
    kernel.assert_alive()
    assert kernel.value("replays") == "1"


def test_unknown_message_type_gets_error_reply(kernel: Kernel, raw: RawClient) -> None:
    msg_id, frames = raw.frames("frobnicate_request", {"x": 1})
    raw.send(frames)
    reply = raw.recv(5)
    assert reply is not None
    assert reply["msg_type"] == "frobnicate_reply"
    assert reply["parent_header"]["msg_id"] == msg_id
    assert reply["content"]["status"] == "error"
    assert "frobnicate_request" in reply["content"]["evalue"]
    iopub = kernel.collect_iopub([msg_id], timeout=5)[msg_id]
    assert [(m["msg_type"], m["content"].get("execution_state")) for m in iopub] == [
        ("status", "busy"), ("status", "idle")]
    # a non-request unknown type gets no reply but is still framed by busy/idle
    msg_id, frames = raw.frames("frobnicate", {})
    raw.send(frames)
    assert raw.replies(0.3) == []
    iopub = kernel.collect_iopub([msg_id], timeout=5)[msg_id]
    assert [m["content"]["execution_state"] for m in iopub] == ["busy", "idle"]
    kernel.assert_alive()


def test_invalid_request_content_gets_error_reply(kernel: Kernel, raw: RawClient) -> None:
    msg_id, frames = raw.frames("execute_request", {"code": 12345})
    raw.send(frames)
    reply = raw.recv(5)
    assert reply is not None and reply["parent_header"]["msg_id"] == msg_id
    assert reply["content"]["status"] == "error"
    msg_id, frames = raw.frames("complete_request", {"code": "pri", "cursor_pos": "not a number"})
    raw.send(frames)
    reply = raw.recv(5)
    assert reply is not None and reply["content"]["status"] == "error"
    kernel.assert_alive()


def test_huge_message_is_dropped(kernel: Kernel, raw: RawClient) -> None:
    big = "x" * (2 * MAX_MB * 1024 * 1024)
    msg_id, frames = raw.frames("execute_request", execute_content(f"huge_ran = #[[{big}]]"))
    assert sum(len(f) for f in frames) > MAX_MB * 1024 * 1024
    raw.send(frames)
    assert raw.replies(1.0) == []
    kernel.assert_alive()
    assert kernel.value("huge_ran == nil") == "true"
    # below the limit is fine
    half = "y" * (MAX_MB * 1024 * 1024 // 2)
    msg_id, frames = raw.frames("execute_request", execute_content(f"#[[{half}]]"))
    raw.send(frames)
    reply = raw.recv(10)
    assert reply is not None and reply["content"]["status"] == "ok"
    kernel.collect_iopub([msg_id])


def test_garbage_on_control_and_stdin(kernel: Kernel) -> None:
    for channel in ("control", "stdin"):
        client = RawClient(kernel, channel)
        try:
            client.send([b"garbage"])
            client.send([DELIM, b"bad", b"{}", b"{}", b"{}", b"{}"])
            _, frames = client.frames("input_reply", {"value": "nobody asked"})  # unsolicited
            client.send(frames)
            assert client.replies(0.3) == []
        finally:
            client.close()
    kernel.assert_alive()


def test_abrupt_disconnect_mid_execution(kernel: Kernel) -> None:
    # a raw client starts a 1 s cell and vanishes
    gone = RawClient(kernel)
    gone_id, frames = gone.frames("execute_request", execute_content("sleep(1) disconnected_ran = 7"))
    gone.send(frames)
    kernel.wait_for_iopub(gone_id, "execute_input", timeout=5)
    gone.close()

    # so does a regular client
    kc2 = new_client(kernel.km)
    kc2.execute("sleep(0.2)", allow_stdin=False)
    time.sleep(0.05)
    kc2.stop_channels()

    # a new client gets correct results (its request waits for the running cell)
    kc3 = new_client(kernel.km)
    try:
        fresh = Kernel(kernel.km, kc3, kernel.data_dir)
        r = fresh.execute("return disconnected_ran, 40 + 2", timeout=30)  # a hang's bound only
        assert r.content["status"] == "ok"
        assert r.result_text == "7\t42"
        assert r.reply["parent_header"]["msg_id"] != gone_id
        assert fresh.value("1+1") == "2"
    finally:
        kc3.stop_channels()
    kernel.assert_alive()
