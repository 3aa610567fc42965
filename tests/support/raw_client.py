"""A bare zmq DEALER on one kernel channel that signs with the kernel's key: for tests that send
frames a well-behaved client never would (hostile or broken clients, fuzzing)."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import zmq
from jupyter_client.session import Session

from tests.support.kernels import Kernel


class RawClient:
    """A bare DEALER on one kernel channel, signing with the kernel's key."""

    def __init__(self, kernel: Kernel, channel: str = "shell") -> None:
        info = kernel.km.get_connection_info()
        self.key = info["key"] if isinstance(info["key"], bytes) else info["key"].encode()
        self.session = Session(key=self.key, signature_scheme=info["signature_scheme"], username="raw")
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.connect(f"{info['transport']}://{info['ip']}:{info[channel + '_port']}")

    def frames(self, msg_type: str, content: dict[str, Any]) -> tuple[str, list[bytes]]:
        msg = self.session.msg(msg_type, content=content)
        return msg["header"]["msg_id"], self.session.serialize(msg)

    def sign(self, parts: list[bytes]) -> bytes:
        h = hmac.new(self.key, digestmod=hashlib.sha256)
        for p in parts:
            h.update(p)
        return h.hexdigest().encode()

    def send(self, frames: list[bytes]) -> None:
        self.sock.send_multipart(frames)

    def recv(self, timeout: float) -> dict[str, Any] | None:
        """The next reply within ``timeout`` seconds (deserialized), or None."""
        if not self.sock.poll(int(timeout * 1000)):
            return None
        frames = self.sock.recv_multipart()
        _, rest = self.session.feed_identities(frames)
        return self.session.deserialize(rest)

    def replies(self, window: float) -> list[dict[str, Any]]:
        """Every reply arriving within ``window`` seconds."""
        out = []
        deadline = time.monotonic() + window
        while (remaining := deadline - time.monotonic()) > 0:
            msg = self.recv(remaining)
            if msg is not None:
                out.append(msg)
        return out

    def close(self) -> None:
        self.sock.close(linger=0)
        self.ctx.term()
