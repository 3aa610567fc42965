"""JEP 65: the IOPub socket is an XPUB that greets every new subscriber with `iopub_welcome`,
before any other message, without dropping or reordering what other clients receive."""

from __future__ import annotations

from typing import Any

import pytest
import zmq
from jupyter_client.session import Session

from tests.support.kernels import DEFAULT_TIMEOUT, Kernel, start_kernel


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory):
    k = start_kernel(tmp_path_factory.mktemp("welcome") / "data")
    yield k
    k.shutdown()


class Subscriber:
    """A raw SUB socket on the kernel's IOPub port, decoding messages with the kernel's key."""

    def __init__(self, kernel: Kernel, topic: bytes = b"") -> None:
        info = kernel.km.get_connection_info(session=False)
        self.session = Session(key=kernel.km.session.key, signature_scheme=kernel.km.session.signature_scheme)
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.SUB)
        self.socket.linger = 0
        self.socket.setsockopt(zmq.SUBSCRIBE, topic)
        self.socket.connect(f"tcp://{info['ip']}:{info['iopub_port']}")

    def next(self, timeout: float = DEFAULT_TIMEOUT) -> tuple[list[bytes], dict[str, Any]]:
        """The next message: (topic frames, message)."""
        if not self.socket.poll(timeout * 1000):
            raise TimeoutError(f"no IOPub message within {timeout} s")
        frames = self.socket.recv_multipart()
        idents, rest = self.session.feed_identities(frames)
        return idents, self.session.deserialize(rest)

    def close(self) -> None:
        self.socket.close()
        self.context.term()


def test_each_new_subscriber_is_welcomed_first(kernel: Kernel) -> None:
    first = Subscriber(kernel)
    second = None
    try:
        _, msg = first.next()
        assert msg["msg_type"] == "iopub_welcome"
        assert msg["content"] == {"subscription": ""}
        assert msg["parent_header"] == {}
        # A second client on the same (empty) topic gets its own welcome too.
        second = Subscriber(kernel)
        _, msg = second.next()
        assert msg["msg_type"] == "iopub_welcome"
        # Both still receive a cell's output, in order, and the kernel is fine.
        msg_id = kernel.kc.execute('print("after welcome")')
        for sub in (first, second):
            seen = []
            while not (seen and seen[-1]["msg_type"] == "status" and seen[-1]["content"]["execution_state"] == "idle"):
                _, msg = sub.next()
                if msg["parent_header"].get("msg_id") == msg_id:
                    seen.append(msg)
            assert [m["msg_type"] for m in seen] == ["status", "execute_input", "stream", "status"]
            assert seen[2]["content"]["text"] == "after welcome\n"
        kernel.shell_reply(msg_id)
        kernel.collect_iopub([msg_id])
    finally:
        first.close()
        if second is not None:
            second.close()
    kernel.assert_alive()


def test_subscriber_joining_during_a_flood_gets_welcome_then_every_line(kernel: Kernel) -> None:
    n = 200000
    msg_id = kernel.kc.execute(f"for i = 1, {n} do print(i) end")
    early = kernel.wait_for_iopub(msg_id, "stream")  # the flood has begun
    late = Subscriber(kernel)
    try:
        _, first = late.next()
        assert first["msg_type"] == "iopub_welcome"
        # From the welcome on, the late client sees a gapless tail of the output and the idle.
        text = []
        while True:
            _, msg = late.next()
            if msg["msg_type"] == "stream":
                text.append(msg["content"]["text"])
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
        lines = "".join(text).split()
        assert lines, "the late subscriber got no output"
        assert lines == [str(i) for i in range(int(lines[0]), n + 1)]
    finally:
        late.close()
    # The client that was there from the start lost nothing.
    result = early + kernel.collect_iopub([msg_id], timeout=60)[msg_id]
    printed = "".join(m["content"]["text"] for m in result if m["msg_type"] == "stream").split()
    assert printed == [str(i) for i in range(1, n + 1)]
    assert kernel.shell_reply(msg_id)["content"]["status"] == "ok"


def test_a_topic_subscriber_gets_a_welcome_under_its_topic(kernel: Kernel) -> None:
    sub = Subscriber(kernel, topic=b"kernel.abc")
    try:
        idents, msg = sub.next()
        assert idents == [b"kernel.abc"]
        assert msg["msg_type"] == "iopub_welcome"
        assert msg["content"] == {"subscription": "kernel.abc"}
    finally:
        sub.close()
    kernel.assert_alive()


def test_a_pending_subscription_is_welcomed_before_the_next_message() -> None:
    """Without waiting for the idle-time watcher: the first send after a subscription arrives
    sends the welcome first (so a client starting with the kernel sees welcome before `starting`)."""
    from aikit_kernel import runtime
    from aikit_kernel.iopub import Messenger
    from aikit_kernel.protocol import Protocol
    from aikit_kernel.transport import ConnectionInfo, Transport

    info = ConnectionInfo.fresh()
    protocol = Protocol(info.key)

    async def setup() -> tuple[Transport, Messenger]:
        transport = Transport(info)
        return transport, Messenger(protocol, {"iopub": transport.iopub})

    transport, messenger = runtime.run_sync(setup(), timeout=10)
    context = zmq.Context()
    sub = context.socket(zmq.SUB)
    sub.linger = 0
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(info.url(info.iopub_port))
    try:
        assert transport.iopub.poll(timeout=10_000) & zmq.POLLIN  # seen, not yet read
        messenger.status("starting", None)
        session = Session(key=info.key)
        received = []
        for _ in range(2):
            assert sub.poll(10_000)
            received.append(session.deserialize(session.feed_identities(sub.recv_multipart())[1]))
        assert [m["msg_type"] for m in received] == ["iopub_welcome", "status"]
    finally:
        sub.close()
        context.term()

        async def close() -> None:
            transport.close()

        runtime.run_sync(close(), timeout=10)
