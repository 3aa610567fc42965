"""The five ZMQ sockets of a kernel, its connection file and the heartbeat thread."""

from __future__ import annotations

import json
import os
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio
import zmq.backend

from .control_channel import ControlChannel
from .protocol import json_kind

CHANNELS = ("shell", "control", "stdin", "iopub", "hb")

# pyzmq's send_multipart and recv_multipart run a Python layer per frame whose flag arithmetic
# goes through enum objects: ~10 us for a six-frame message, against ~1.5 us calling the compiled
# socket's send and recv with int flags. A cell's round trip reads one message and sends five.
_CompiledSocket = zmq.backend.Socket
_SNDMORE, _NOBLOCK = int(zmq.SNDMORE), int(zmq.NOBLOCK)
_EVENTS, _POLLIN = int(zmq.EVENTS), int(zmq.POLLIN)
#: Frames this long or longer are sent without a copy (pyzmq's own threshold for copy=False).
_COPY_BELOW = zmq.COPY_THRESHOLD


def send_frames(sock: zmq.Socket, frames: list[bytes]) -> None:
    """``sock.send_multipart(frames)`` for a plain (not asyncio) socket, without pyzmq's per-frame
    Python layer; large frames are sent without a copy."""
    send = _CompiledSocket.send
    last = len(frames) - 1
    for i, frame in enumerate(frames):
        send(sock, frame, _SNDMORE if i < last else 0, len(frame) < _COPY_BELOW)


def recv_frames(sock: zmq.Socket) -> list[bytes]:
    """``sock.recv_multipart(zmq.NOBLOCK)`` for a plain socket (raises ``zmq.Again`` when nothing
    waits), without pyzmq's per-frame Python layer. Frames are received as ``zmq.Frame``, which
    know whether more follow: asking the socket (``getsockopt(RCVMORE)``) costs an enum lookup
    per frame, half the cost of a six-frame message."""
    recv = _CompiledSocket.recv
    frame = recv(sock, _NOBLOCK, False)
    frames = [frame.bytes]
    while frame.more:
        frame = recv(sock, _NOBLOCK, False)
        frames.append(frame.bytes)
    return frames


def has_message(sock: zmq.Socket) -> bool:
    """Whether a message waits in ``sock`` (a plain socket). Cheaper than a receive that finds
    nothing: pyzmq's ``zmq.Again`` is built in Python (imports and error text included)."""
    return bool(_CompiledSocket.get(sock, _EVENTS) & _POLLIN)


class ConnectionFileError(ValueError):
    """A connection file that cannot be used, and why (a message for the user)."""


def read_connection_file(path: str | os.PathLike[str], *, ports_required: bool = True) -> dict[str, Any]:
    """The contents of the connection file ``path``, checked: a JSON object whose ports (each
    ``<channel>_port``) are whole numbers from 1 to 65535 (``ports_required`` False: 0 or missing
    too, for a kernel that picks its own) and whose ``ip``, ``key``, ``transport`` and
    ``signature_scheme`` are strings. Raises :class:`ConnectionFileError` saying what is wrong,
    or ``OSError`` when the file cannot be read."""
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConnectionFileError(f"{path} is not a kernel connection file: it is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ConnectionFileError(f"{path} is not a kernel connection file: expected a JSON object with the "
                                  f"kernel's ports, ip and key, got {json_kind(data)}")
    problems = []
    lowest = 1 if ports_required else 0
    for channel in CHANNELS:
        port = data.get(f"{channel}_port")
        if port is None:
            if ports_required:
                problems.append(f"{channel}_port is missing")
        elif isinstance(port, bool) or not isinstance(port, int) or not lowest <= port <= 65535:
            problems.append(f"{channel}_port must be a port number ({lowest}-65535), got {json.dumps(port)}")
    for name in ("ip", "key", "transport", "signature_scheme"):
        if name in data and not isinstance(data[name], str):
            problems.append(f"{name} must be a string, got {json.dumps(data[name])}")
    if problems:
        raise ConnectionFileError(f"{path} is not a usable kernel connection file: {'; '.join(problems)}")
    return data


@dataclass
class ConnectionInfo:
    """The contents of a Jupyter connection file."""

    transport: str = "tcp"
    ip: str = "127.0.0.1"
    key: bytes = b""
    signature_scheme: str = "hmac-sha256"
    shell_port: int = 0
    control_port: int = 0
    stdin_port: int = 0
    iopub_port: int = 0
    hb_port: int = 0
    # CurveZMQ keys (Z85 text, as ipykernel 7 and jupyter_client 8.10 write them): when present,
    # every socket encrypts, and only clients holding the keys can talk to the kernel.
    curve_publickey: bytes | None = None
    curve_secretkey: bytes | None = None

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ConnectionInfo:
        """The connection file ``path`` (ports may be 0 or missing: the kernel picks them); raises
        :class:`ConnectionFileError` when it is not one."""
        data = read_connection_file(path, ports_required=False)
        public, secret = data.get("curve_publickey"), data.get("curve_secretkey")
        return cls(
            curve_publickey=str(public).encode() if public and secret else None,
            curve_secretkey=str(secret).encode() if public and secret else None,
            transport=data.get("transport", "tcp"),
            ip=data.get("ip", "127.0.0.1"),
            key=str(data.get("key", "")).encode(),
            signature_scheme=data.get("signature_scheme", "hmac-sha256"),
            **{f"{ch}_port": int(data.get(f"{ch}_port", 0)) for ch in CHANNELS},
        )

    @classmethod
    def fresh(cls) -> ConnectionInfo:
        """A new loopback connection with random ports and a random key."""
        return cls(key=str(uuid.uuid4()).encode())

    def to_dict(self) -> dict[str, Any]:
        data = {
            "transport": self.transport, "ip": self.ip, "key": self.key.decode(),
            "signature_scheme": self.signature_scheme, "kernel_name": "aikit",
            **{f"{ch}_port": getattr(self, f"{ch}_port") for ch in CHANNELS},
        }
        if self.curve_publickey and self.curve_secretkey:
            data.update(curve_publickey=self.curve_publickey.decode(), curve_secretkey=self.curve_secretkey.decode())
        return data

    def write(self, path: str | os.PathLike[str]) -> None:
        """Write the file readable by its owner only, atomically: a client polling for it never
        reads half a file."""
        target = Path(path)
        partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(self.to_dict(), indent=2))
        os.replace(partial, target)

    def url(self, port: int) -> str:
        if self.transport == "ipc":
            return f"ipc://{self.ip}-{port}"
        return f"tcp://{self.ip}:{port}"


class Transport:
    """Owns the sockets. Create on the I/O thread. stdin is an asyncio socket, used by that
    thread only; shell and IOPub are plain sockets: shell has one owner thread at a time (the
    I/O loop, then the thread serving requests, see Kernel), IOPub is shared under the
    Messenger's lock. The control socket is served by a thread of its own (:class:`ControlChannel`)."""

    def __init__(self, info: ConnectionInfo) -> None:
        self.info = info
        self.context = zmq.asyncio.Context()
        # The same ZMQ context, seen as a blocking one: its sockets are plain zmq.Socket.
        blocking = zmq.Context.shadow(self.context.underlying)
        self.shell = self._bind(zmq.ROUTER, "shell", blocking)
        # Requests wait in the socket while a cell runs (read when it ends): never turn any away.
        self.shell.rcvhwm = 0
        self.control = ControlChannel(self._bind(zmq.ROUTER, "control", blocking))
        self.stdin = self._bind(zmq.ROUTER, "stdin")
        # XPUB, not PUB: it also reads subscriptions, so each new subscriber can be sent an
        # `iopub_welcome` (JEP 65, see iopub.py). Verbose: a second client subscribing to the
        # same topic is reported too, so it gets its own welcome.
        self.iopub = self._bind(zmq.XPUB, "iopub", blocking)
        self.iopub.setsockopt(zmq.XPUB_VERBOSE, 1)
        # A dropped IOPub message can be the final `status: idle` a client waits for: never drop.
        # Output is batched (see iopub.py), so the queue stays short in practice.
        self.iopub.sndhwm = 0
        self._hb_thread: threading.Thread | None = None
        self._hb_context = zmq.Context()
        self._hb_socket = self._hb_context.socket(zmq.REP)
        self._hb_socket.linger = 0
        self._encrypt(self._hb_socket)
        self.info.hb_port = self._bind_port(self._hb_socket, self.info.hb_port)

    def _bind(self, kind: int, channel: str, context: zmq.Context | None = None) -> Any:
        sock = (context or self.context).socket(kind)
        sock.linger = 1000
        if kind == zmq.ROUTER:
            sock.router_handover = 1
        self._encrypt(sock)
        port = self._bind_port(sock, getattr(self.info, f"{channel}_port"))
        setattr(self.info, f"{channel}_port", port)
        return sock

    def _encrypt(self, sock: zmq.Socket) -> None:
        """Make ``sock`` a CurveZMQ server when the connection file carries keys."""
        if not (self.info.curve_publickey and self.info.curve_secretkey):
            return
        if not zmq.has("curve"):
            raise RuntimeError("the connection file asks for CurveZMQ encryption, but this libzmq has no CURVE "
                               "support (reinstall pyzmq from its wheel)")
        sock.curve_server = True
        sock.curve_secretkey = self.info.curve_secretkey
        sock.curve_publickey = self.info.curve_publickey

    def _bind_port(self, sock: zmq.Socket, port: int) -> int:
        if self.info.transport == "tcp" and port == 0:
            return sock.bind_to_random_port(f"tcp://{self.info.ip}")
        sock.bind(self.info.url(port))
        return port

    def start_heartbeat(self) -> None:
        """Echo heartbeat pings on their own thread (a blocked Lua thread must not look dead)."""

        def echo() -> None:
            try:
                zmq.proxy(self._hb_socket, self._hb_socket)
            except zmq.ContextTerminated:
                pass
            except zmq.ZMQError:
                pass
            finally:
                self._hb_socket.close(linger=0)

        self._hb_thread = threading.Thread(target=echo, name="aikit-heartbeat", daemon=True)
        self._hb_thread.start()

    def close(self) -> None:
        self.control.close(linger=200)  # stops its thread first: term() waits for every socket
        for sock in (self.shell, self.stdin, self.iopub):
            sock.close(linger=200)
        if self._hb_thread is None:  # never started: nobody else will close it, and term() would wait
            self._hb_socket.close(linger=0)
        self.context.term()
        self._hb_context.term()
