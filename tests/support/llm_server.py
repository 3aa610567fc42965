"""A real local HTTP server for provider tests: it replays scripted replies (canned files from
``tests/providers/fixtures/`` in the providers' wire formats) and records every request it
receives, so a test can assert the request wire format (headers, body) as well as the parsing of
the answer. A pytest plugin: the ``llm_server`` and ``refused_url`` fixtures serve every test.

    def test_x(llm_server):
        llm_server.reply("/v1/chat/completions", Reply.fixture("openai_chat_text.json"))
        ...  # point a provider at llm_server.url + "/v1"
        assert llm_server.requests[0].json()["model"] == "gpt-4.1"

Replies are queued per path and served in order; a request with no reply left gets HTTP 599 and
``{"error": "no scripted reply"}`` so a test notices. ``.sse`` / ``.ndjson`` fixtures are sent with
chunked transfer encoding, one event (or line) per chunk, as the real servers stream them.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.support.http import QuietHandler

FIXTURES = Path(__file__).resolve().parents[1] / "providers" / "fixtures"

CONTENT_TYPES = {".json": "application/json", ".sse": "text/event-stream; charset=utf-8",
                 ".ndjson": "application/x-ndjson"}


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def fixture_json(name: str) -> Any:
    return json.loads(fixture_text(name))


@dataclass
class Reply:
    """One scripted HTTP answer."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    delay_s: float = 0.0  # before the status line (a slow server)
    chunks: list[bytes] | None = None  # streamed with chunked transfer encoding
    chunk_delay_s: float = 0.0
    # Pause after this many chunks until ``gate`` is set (at most 30 s): a test can act while a
    # stream is half sent (see what the client shows so far, interrupt it) without guessing delays.
    hold_after: int | None = None
    gate: threading.Event | None = None

    @classmethod
    def json(cls, data: Any, status: int = 200, headers: dict[str, str] | None = None, **kw: Any) -> Reply:
        return cls(status, json.dumps(data).encode(), dict(headers or {}), **kw)

    @classmethod
    def text(cls, text: str, status: int = 200, content_type: str = "text/plain; charset=utf-8", **kw: Any) -> Reply:
        return cls(status, text.encode(), content_type=content_type, **kw)

    @classmethod
    def fixture(cls, name: str, status: int = 200, headers: dict[str, str] | None = None, **kw: Any) -> Reply:
        suffix = Path(name).suffix
        text = fixture_text(name)
        reply = cls(status, text.encode(), dict(headers or {}), CONTENT_TYPES.get(suffix, "application/octet-stream"), **kw)
        if suffix == ".sse":
            reply.chunks = [(part + "\n\n").encode() for part in text.split("\n\n") if part.strip()]
        elif suffix == ".ndjson":
            reply.chunks = [(line + "\n").encode() for line in text.splitlines() if line.strip()]
        return reply


@dataclass
class Recorded:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Disconnect:
    """A client that closed the connection while its reply was being sent."""

    path: str
    chunks_sent: int  # chunks written before the write that failed
    chunks_total: int


class _Server(ThreadingHTTPServer):
    request_queue_size = 1024  # listen backlog: many clients connecting at once are not refused or delayed


class LocalServer:
    """A ThreadingHTTPServer on 127.0.0.1 in a daemon thread."""

    def __init__(self, *, record: bool = True) -> None:
        self.requests: list[Recorded] = []
        self.disconnects: list[Disconnect] = []
        self._replies: dict[str, deque[Reply]] = defaultdict(deque)
        self._responders: dict[str, Callable[[Recorded], Reply]] = {}
        self._record = record  # False: a benchmark's thousands of requests are not kept
        self._lock = threading.Lock()
        server = self

        class Handler(QuietHandler):
            def _handle(self) -> None:
                body = self.read_body()
                path = self.path.split("?", 1)[0]
                recorded = Recorded(self.command, path, {k.lower(): v for k, v in self.headers.items()}, body)
                with server._lock:
                    if server._record:
                        server.requests.append(recorded)
                    queue = server._replies.get(path)
                    responder = server._responders.get(path)
                    reply = queue.popleft() if queue else None
                if reply is None:
                    reply = responder(recorded) if responder is not None else Reply.json(
                        {"error": f"no scripted reply for {self.command} {path}"}, status=599)
                self.chunks_sent = 0
                try:
                    self._send(reply)
                except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
                    self.close_connection = True
                    with server._lock:
                        server.disconnects.append(Disconnect(path, self.chunks_sent, len(reply.chunks or [])))

            def _send(self, reply: Reply) -> None:
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if reply.chunks is None:
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                    return
                self.send_header("Transfer-Encoding", "chunked")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                for chunk in reply.chunks:
                    if self._peer_closed():
                        raise ConnectionAbortedError("the client closed the connection")
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                    self.chunks_sent += 1
                    if reply.gate is not None and self.chunks_sent == reply.hold_after:
                        reply.gate.wait(30)
                    if reply.chunk_delay_s:
                        time.sleep(reply.chunk_delay_s)
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

            def _peer_closed(self) -> bool:
                """The client has closed its end (a write could still succeed into the buffer)."""
                readable, _, _ = select.select([self.connection], [], [], 0)
                if not readable:
                    return False
                try:
                    return self.connection.recv(1, socket.MSG_PEEK) == b""
                except OSError:
                    return True

            do_POST = do_GET = _handle

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def reply(self, path: str, *replies: Reply) -> None:
        """Queue ``replies`` for ``path`` (served in order, one per request)."""
        with self._lock:
            self._replies[path].extend(replies)

    def respond(self, path: str, responder: Callable[[Recorded], Reply]) -> None:
        """Answer requests to ``path`` with ``responder(request)`` once its queued replies are used up."""
        with self._lock:
            self._responders[path] = responder

    def requests_to(self, path: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def wait_for_disconnect(self, timeout: float = 10.0) -> Disconnect:
        """The first client disconnect, waiting for it up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self.disconnects:
                    return self.disconnects[0]
            time.sleep(0.01)
        raise AssertionError(f"no client closed its connection within {timeout} s")

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def llm_server() -> Any:
    server = LocalServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def refused_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
