"""A small HTTP/1.1 client for the providers' JSON requests: keep-alive connections on asyncio
protocols, each request written in one piece, each response parsed as its bytes arrive.

Why not httpx for these: with a thousand agents asking a model at once, httpx and httpcore cost
about 1.6 ms of CPU per request on the event loop (the client's request and response models,
auth and redirect layers, anyio cancel scopes, a readability check with system calls on every
pooled connection it reuses, headers and body written separately); this client costs about a
tenth of that, and CPU on the loop is what many concurrent runs wait for. It does only what a
model request needs: ``POST`` a body already encoded, read the whole answer (``Content-Length``,
chunked, or until the server closes; ``gzip``/``deflate`` decoded), keep the connection for the
next request (at most ``max_connections``, idle ones closed after ``keepalive_expiry`` seconds),
TLS through :mod:`ssl` with httpx's verification settings (``SSL_CERT_FILE``/``SSL_CERT_DIR``
with ``trust_env``). Streams, requests through a proxy and custom transports stay on httpx:
:class:`~.http.HTTPEndpoint` decides (:func:`target_of` says which URLs this client takes).

Failures are httpx's exception classes (``ConnectError``, ``ConnectTimeout``, ``ReadTimeout``,
``ReadError``, ``RemoteProtocolError``, ``DecodingError``), so callers classify them as before.
Timeouts: connecting (TLS included) within ``connect_timeout_s``; then the server must send
something at least every ``timeout_s`` seconds (httpx's read timeout).
"""

from __future__ import annotations

import asyncio
import ssl
import zlib
from collections import deque
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

__all__ = ["KeepAlivePool", "Target", "WireResponse", "target_of"]

#: The longest response head (status line and headers) accepted.
MAX_HEAD_BYTES = 64 * 1024
#: The longest chunk-size line accepted.
MAX_CHUNK_LINE = 4096
ACCEPT_ENCODING = "gzip, deflate"
_DEFAULT_PORTS = {"http": 80, "https": 443}
#: Headers the client writes itself (any given are dropped).
_OWN_HEADERS = frozenset({"host", "content-length", "content-type", "transfer-encoding", "connection",
                          "accept-encoding"})

Origin = tuple[str, str, int]


@dataclass(frozen=True, slots=True)
class Target:
    """A URL this client can request: its origin (scheme, host, port), the ``Host`` header and the
    request target (path and query), as bytes."""

    origin: Origin
    host_header: bytes
    path: bytes


def target_of(url: str) -> Target | None:
    """The :class:`Target` of ``url``, or None for a URL this client leaves to httpx (another
    scheme, a user:password part, a host name that is not ASCII, an invalid port)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    if scheme not in _DEFAULT_PORTS or not host or parts.username is not None or not host.isascii():
        return None
    if port is None:
        port = _DEFAULT_PORTS[scheme]
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port == _DEFAULT_PORTS[scheme] else f"{shown}:{port}"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        return Target((scheme, host, port), host_header.encode("ascii"), path.encode("ascii"))
    except UnicodeEncodeError:  # a path with characters httpx would percent-encode
        return None


def header_block(headers: dict[str, str]) -> bytes | None:
    """``headers`` as request header lines (``Name: value\\r\\n`` each; the last of names that
    differ only in case wins), or None when one cannot be sent as it is (a line break in it)."""
    merged: dict[str, tuple[str, str]] = {}
    for name, value in headers.items():
        merged[name.lower()] = (name, value)
    lines = []
    for lower, (name, value) in merged.items():
        if lower in _OWN_HEADERS:
            continue
        if any(c in name for c in "\r\n\0: ") or any(c in value for c in "\r\n\0"):
            return None
        try:
            encoded = value.encode("ascii")
        except UnicodeEncodeError:
            encoded = value.encode("utf-8")
        lines.append(name.encode("ascii", "replace") + b": " + encoded.strip() + b"\r\n")
    lines.append(b"Accept-Encoding: " + ACCEPT_ENCODING.encode() + b"\r\n")
    lines.append(b"Connection: keep-alive\r\n")
    return b"".join(lines)


class WireResponse:
    """A response read whole: ``status_code``, ``headers`` (an ``httpx.Headers``, made when first
    asked for), ``content`` (decoded from its content encoding)."""

    __slots__ = ("_headers", "content", "raw_headers", "status_code")

    def __init__(self, status_code: int, raw_headers: list[tuple[bytes, bytes]], content: bytes) -> None:
        self.status_code = status_code
        self.raw_headers = raw_headers
        self.content = content
        self._headers: httpx.Headers | None = None

    @property
    def headers(self) -> httpx.Headers:
        if self._headers is None:
            self._headers = httpx.Headers(self.raw_headers)
        return self._headers

    def __repr__(self) -> str:
        return f"<WireResponse [{self.status_code}]>"


def _decoded(body: bytes, encoding: bytes) -> bytes:
    for coding in reversed(encoding.split(b",")):
        coding = coding.strip()
        try:
            if coding in (b"gzip", b"x-gzip"):
                body = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(body)
            elif coding == b"deflate":
                try:
                    body = zlib.decompress(body)
                except zlib.error:  # raw deflate, as some servers send it
                    body = zlib.decompress(body, -zlib.MAX_WBITS)
            elif coding not in (b"identity", b""):
                raise httpx.DecodingError(f"the response has content-encoding {coding.decode('latin-1')!r}, "
                                          f"which was not asked for (Accept-Encoding: {ACCEPT_ENCODING})")
        except zlib.error as exc:
            raise httpx.DecodingError(f"the {coding.decode('latin-1')} response body cannot be decoded: {exc}") from None
    return body


# Framings of a response body.
_LENGTH, _CHUNKED, _UNTIL_CLOSE = 1, 2, 3
# Where a chunked body is.
_SIZE, _DATA, _TRAILER = 1, 2, 3


class _Connection(asyncio.Protocol):
    """One connection: one request at a time, its response parsed in ``data_received``."""

    def __init__(self, pool: KeepAlivePool, origin: Origin, loop: asyncio.AbstractEventLoop) -> None:
        self.pool = pool
        self.origin = origin
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[WireResponse] | None = None
        self.closed = False
        self.counted = True  # counted in the pool's connections (until dropped)
        self.served = 0
        self.idle_since = 0.0
        self.last_data = 0.0
        self.timeout_s = 0.0
        self.timer: asyncio.TimerHandle | None = None  # armed while a request waits, maybe longer (see send)
        self.timer_due = 0.0  # when the timer fires
        self.got_bytes = False
        self._new_response()

    def _new_response(self) -> None:
        self.status = 0
        self.version = b""
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.framing = 0
        self.remaining = 0
        self.chunk_state = _SIZE
        self.chunks: list[bytes] = []
        self.encoding = b""
        self.keep_alive = True

    # ------------------------------------------------------------------ asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is None:  # bytes nobody asked for: this connection cannot be trusted
            self.drop()
            return
        self.last_data = self.loop.time()
        self.got_bytes = True
        try:
            response = self._parse()
        except httpx.HTTPError as exc:
            self._fail(exc)
            self.drop()
            return
        if response is not None:
            self._done(response)

    def eof_received(self) -> bool:
        if self.waiter is not None and self.framing == _UNTIL_CLOSE:
            self.keep_alive = False
            body = bytes(self.buffer)
            self.buffer.clear()
            try:
                self._done(self._response(body))
            except httpx.HTTPError as exc:
                self._fail(exc)
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        if self.waiter is not None:
            if self.framing == _UNTIL_CLOSE:
                self.eof_received()
            if self.waiter is not None:
                if not self.got_bytes:
                    error: httpx.HTTPError = httpx.RemoteProtocolError("Server disconnected without sending a response.")
                elif exc is not None:
                    error = httpx.ReadError(str(exc) or type(exc).__name__)
                else:
                    error = httpx.RemoteProtocolError("the server closed the connection before the end of the response")
                self._fail(error)
        self.drop()

    # ------------------------------------------------------------------ one request
    def send(self, data: bytes, timeout_s: float) -> asyncio.Future[WireResponse]:
        """Write one request; the future is its response."""
        assert self.transport is not None and self.waiter is None
        self.waiter = waiter = self.loop.create_future()
        self.got_bytes = False
        self.timeout_s = timeout_s
        self.last_data = now = self.loop.time()
        due = now + timeout_s
        # The timer of an earlier request stays armed (it re-arms itself for this one when it
        # fires): a timer per request, made and cancelled, is work on the loop for every request.
        if self.timer is None or self.timer_due > due:
            if self.timer is not None:
                self.timer.cancel()
            self.timer, self.timer_due = self.loop.call_at(due, self._check_timeout), due
        self.transport.write(data)
        return waiter

    def _check_timeout(self) -> None:
        self.timer = None
        if self.waiter is None:
            return
        due = self.last_data + self.timeout_s
        if self.loop.time() < due:  # data came meanwhile (or this is a later request): wait from the last of it
            self.timer, self.timer_due = self.loop.call_at(due, self._check_timeout), due
            return
        self._fail(httpx.ReadTimeout(f"no answer within {self.timeout_s:g} s"))
        self.drop()

    def _done(self, response: WireResponse) -> None:
        waiter, self.waiter = self.waiter, None  # the timer stays: see send
        self.served += 1
        if self.buffer:  # more than the response: nothing to reuse
            self.keep_alive = False
        if waiter is not None and not waiter.done():
            waiter.set_result(response)

    def _fail(self, error: BaseException) -> None:
        waiter, self.waiter = self.waiter, None
        self._stop_timer()
        self.keep_alive = False
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    def drop(self) -> None:
        """Close the connection (for good) and give its place in the pool back."""
        self.keep_alive = False
        self._stop_timer()
        if self.counted:
            self.counted = False
            self.pool.dropped(self)
        if self.transport is not None and not self.closed:
            self.transport.abort()

    def _stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    # ------------------------------------------------------------------ parsing
    def _parse(self) -> WireResponse | None:
        buf = self.buffer
        while not self.framing:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD_BYTES:
                    raise httpx.RemoteProtocolError(f"the response head is longer than {MAX_HEAD_BYTES} bytes")
                return None
            head = bytes(buf[:end])
            del buf[:end + 4]
            self._head(head)
        if self.framing == _LENGTH:
            if len(buf) < self.remaining:
                return None
            body = bytes(buf[:self.remaining])
            del buf[:self.remaining]
            return self._response(body)
        if self.framing == _CHUNKED:
            return self._chunked(buf)
        return None  # until the server closes: eof_received

    def _head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        status_line = lines[0].split(b" ", 2)
        version = status_line[0]
        if len(status_line) < 2 or not version.startswith(b"HTTP/1.") or not status_line[1].isdigit():
            raise httpx.RemoteProtocolError(f"the server's answer does not start with an HTTP/1.x status line: "
                                            f"{lines[0][:80]!r}")
        status = int(status_line[1])
        headers = []
        length: int | None = None
        chunked = coded = False
        connection = b""
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon:
                raise httpx.RemoteProtocolError(f"malformed header line in the response: {line[:80]!r}")
            name = name.strip()
            value = value.strip()
            headers.append((name, value))
            lower = name.lower()
            if lower == b"content-length":
                if not value.isdigit() or (length is not None and length != int(value)):
                    raise httpx.RemoteProtocolError(f"invalid Content-Length in the response: {value[:40]!r}")
                length = int(value)
            elif lower == b"transfer-encoding":
                coded = True
                chunked = value.lower().rsplit(b",", 1)[-1].strip() == b"chunked"
            elif lower == b"connection":
                connection += b"," + value.lower()
            elif lower == b"content-encoding":
                self.encoding = value.lower()
        if 100 <= status < 200:
            if status == 101:
                raise httpx.RemoteProtocolError("the server switched protocols, which was not asked for")
            self.encoding = b""
            return  # informational: the answer follows
        self.status = status
        self.version = version
        self.raw_headers = headers
        if version == b"HTTP/1.1":
            self.keep_alive = b"close" not in connection
        else:
            self.keep_alive = b"keep-alive" in connection
        if status in (204, 304):
            self.framing, self.remaining = _LENGTH, 0
        elif coded:
            self.framing = _CHUNKED if chunked else _UNTIL_CLOSE
        elif length is not None:
            self.framing, self.remaining = _LENGTH, length
        else:
            self.framing = _UNTIL_CLOSE
        if self.framing == _UNTIL_CLOSE:
            self.keep_alive = False

    def _chunked(self, buf: bytearray) -> WireResponse | None:
        while True:
            if self.chunk_state == _DATA:
                need = self.remaining + 2
                if len(buf) < need:
                    return None
                if buf[self.remaining:need] != b"\r\n":
                    raise httpx.RemoteProtocolError("a chunk of the response does not end with CRLF")
                self.chunks.append(bytes(buf[:self.remaining]))
                del buf[:need]
                self.chunk_state = _SIZE
                continue
            end = buf.find(b"\r\n")
            if end < 0:
                if len(buf) > MAX_CHUNK_LINE:
                    raise httpx.RemoteProtocolError("a chunk-size line of the response is too long")
                return None
            line = bytes(buf[:end])
            del buf[:end + 2]
            if self.chunk_state == _TRAILER:
                if not line:
                    return self._response(b"".join(self.chunks))
                continue
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise httpx.RemoteProtocolError(f"invalid chunk size in the response: {size_text[:40]!r}") from None
            if size < 0:
                raise httpx.RemoteProtocolError(f"invalid chunk size in the response: {size_text[:40]!r}")
            if size == 0:
                self.chunk_state = _TRAILER
            else:
                self.remaining = size
                self.chunk_state = _DATA

    def _response(self, body: bytes) -> WireResponse:
        if self.encoding:
            body = _decoded(body, self.encoding)
        response = WireResponse(self.status, self.raw_headers, body)
        keep_alive = self.keep_alive
        self._new_response()
        self.keep_alive = keep_alive
        return response


class KeepAlivePool:
    """Keep-alive connections to any number of origins, used on one event loop (see the module
    docstring). ``ssl_context`` verifies ``https`` servers (made with httpx's settings when None)."""

    def __init__(self, *, timeout_s: float, connect_timeout_s: float, max_connections: int = 1000,
                 keepalive_expiry: float = 30.0, trust_env: bool = True,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.max_connections = max(1, max_connections)
        self.keepalive_expiry = keepalive_expiry
        self.trust_env = trust_env
        self._ssl = ssl_context
        self._idle: dict[Origin, dict[_Connection, None]] = {}  # insertion-ordered: the newest last
        self._count = 0  # connections open or opening
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    @property
    def connections(self) -> int:
        """Connections open or opening."""
        return self._count

    async def post(self, target: Target, headers: bytes, body: bytes, extra: bytes = b"") -> WireResponse:
        """POST ``body`` (JSON) to ``target`` with the header lines ``headers`` (and ``extra``,
        header lines for this request only); the whole response."""
        data = b"".join((b"POST ", target.path, b" HTTP/1.1\r\nHost: ", target.host_header, b"\r\n", headers, extra,
                         b"Content-Type: application/json\r\nContent-Length: ", str(len(body)).encode(), b"\r\n\r\n",
                         body))
        conn = self._idle_connection(target.origin) or await self._acquire(target.origin, fresh=False)
        try:  # _exchange's, inline for the first try: a coroutine less per request
            response = await conn.send(data, self.timeout_s)
        except BaseException as exc:
            conn.drop()  # cancelled or failed half way: its state is unknown
            if not isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError)) or not conn.served or conn.got_bytes:
                raise
            # a kept-alive connection the server had closed before it read the request: once more
            # on a new one (the request was not processed)
            conn = await self._acquire(target.origin, fresh=True)
            return await self._exchange(conn, data)
        self._release(conn)
        return response

    async def _exchange(self, conn: _Connection, data: bytes) -> WireResponse:
        try:
            response = await conn.send(data, self.timeout_s)
        except BaseException:
            conn.drop()  # cancelled or failed half way: its state is unknown
            raise
        self._release(conn)
        return response

    # ------------------------------------------------------------------ connections
    async def _acquire(self, origin: Origin, *, fresh: bool) -> _Connection:
        if self._closed:
            raise httpx.ConnectError("the connection pool has been closed")
        loop = asyncio.get_running_loop()
        while True:
            conn = None if fresh else self._idle_connection(origin)
            if conn is not None:
                return conn
            if self._count < self.max_connections:
                self._count += 1
                return await self._connect(origin, loop)
            if not self._drop_idle():  # full: wait for a connection to come back or close
                waiter = loop.create_future()
                self._waiters.append(waiter)
                try:
                    await waiter
                except asyncio.CancelledError:
                    if waiter.done() and not waiter.cancelled():
                        self._wake()  # woken, then cancelled: the next one's turn
                    raise

    def _idle_connection(self, origin: Origin) -> _Connection | None:
        """The newest idle connection to ``origin`` still fit for a request (expired ones are
        closed on the way); None when there is none (or the pool is closed)."""
        idle = self._idle.get(origin)
        if not idle or self._closed:
            return None
        now = asyncio.get_running_loop().time()
        while idle:
            conn, _ = idle.popitem()
            if conn.closed or not conn.counted:
                continue
            if now - conn.idle_since > self.keepalive_expiry:
                conn.drop()
                continue
            return conn
        return None

    async def _connect(self, origin: Origin, loop: asyncio.AbstractEventLoop) -> _Connection:
        scheme, host, port = origin
        tls = self._ssl_context() if scheme == "https" else None
        try:
            try:
                async with asyncio.timeout(self.connect_timeout_s):
                    _, conn = await loop.create_connection(lambda: _Connection(self, origin, loop), host, port,
                                                           ssl=tls, server_hostname=host if tls is not None else None)
            except TimeoutError:
                raise httpx.ConnectTimeout(f"no connection within {self.connect_timeout_s:g} s") from None
            except ssl.SSLError as exc:
                raise httpx.ConnectError(f"TLS handshake with {host}:{port} failed: {exc}") from exc
            except OSError as exc:
                raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        except BaseException:
            self._count -= 1
            self._wake()
            raise
        if self._closed:
            conn.drop()
            raise httpx.ConnectError("the connection pool has been closed")
        return conn

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            context = httpx.create_ssl_context(trust_env=self.trust_env)
            context.set_alpn_protocols(["http/1.1"])
            self._ssl = context
        return self._ssl

    def _release(self, conn: _Connection) -> None:
        if not conn.keep_alive or conn.closed or not conn.counted or self._closed:
            conn.drop()
            return
        conn.idle_since = conn.loop.time()
        idle = self._idle.get(conn.origin)
        if idle is None:
            idle = self._idle[conn.origin] = {}
        idle[conn] = None
        self._wake()

    def _drop_idle(self) -> bool:
        """Close one idle connection (to make room for one to another origin); False if none."""
        for idle in self._idle.values():
            while idle:
                conn, _ = idle.popitem()
                if conn.counted:
                    conn.drop()
                    return True
        return False

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    # called by the connections
    def forget(self, conn: _Connection) -> None:
        idle = self._idle.get(conn.origin)
        if idle is not None:
            idle.pop(conn, None)

    def dropped(self, conn: _Connection) -> None:
        self.forget(conn)
        self._count -= 1
        self._wake()

    async def aclose(self) -> None:
        """Close the idle connections; those in use close when their response is read."""
        self._closed = True
        for idle in list(self._idle.values()):
            for conn in list(idle):
                conn.drop()
        self._idle.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(httpx.ConnectError("the connection pool has been closed"))

    @property
    def is_closed(self) -> bool:
        return self._closed
