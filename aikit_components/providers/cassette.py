"""Record and replay LLM HTTP traffic, so tests and demos run offline with the exact wire format.

:class:`CassetteTransport` is an ``httpx.AsyncBaseTransport``; give it to a provider
(``transport=``) or to every provider of a registry (``registry.transport = cassette.transport``).

Modes
    ``record``  forward each request to ``inner`` (default ``httpx.AsyncHTTPTransport()``) and
                write the exchange to the cassette; the file is started afresh by the first
                exchange recorded. Streamed responses pass through to the caller as they arrive
                and are written when the response is closed.
    ``replay``  never touch the network: answer from the cassette. A request with no recording
                raises :class:`CassetteMiss` (naming the file and the request).
    ``auto``    ``replay`` when the file exists, else ``record``.

What is written (one exchange per request): method, URL (query parameters that look secret
masked, user:password removed), request headers and response headers minus anything
secret-looking (Authorization, x-api-key, cookies, ``*key*``, ``*token*``, ``*secret*``,
``*auth*``, ...), the request body (as JSON when it is JSON), the status, and the response body
as text exactly as received (after content decoding), SSE and NDJSON streams included. Values of
the secret headers are also masked wherever else they appear. Transport failures (timeouts,
refused connections) are recorded too and raised again, instantly, on replay. No timestamps: the
same traffic gives the same file.

Matching (replay)
    A request is matched by **method + path + query + body** (the host is ignored, so a
    recording made against one server replays against another base URL; JSON bodies compare
    after key sorting). Among recordings with the same key, the first one not yet used answers:
    identical requests replay in recorded order (a 429 then the 200 of the retry). Each exchange
    stores its match ``key`` (computed before secrets were masked); delete it after editing a
    recorded request by hand so it is computed from the file.

File format
    ``.jsonl``: one exchange per line (appended). Any other name: one JSON document
    ``{"aikit_cassette": 1, "exchanges": [...]}``, rewritten after each exchange.

Replayed streamed bodies come back in chunks: one SSE event (``\\n\\n``) per chunk for
``text/event-stream``, one line per chunk for NDJSON, else the whole body.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import threading
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

from ..errors import InvalidArgument, NotFound
from ..operations.http import MASK, SECRET_QUERY, clean_url

__all__ = ["Cassette", "CassetteMiss", "CassetteTransport", "MODES"]

MODES = ("record", "replay", "auto")
FORMAT_VERSION = 1

#: Header names (lowercase) never written, besides any containing the fragments below.
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "x-api-key", "api-key", "cookie", "set-cookie",
                             "x-goog-api-key", "openai-organization", "openai-project"})
_SECRET_FRAGMENTS = ("auth", "key", "token", "secret", "password", "cookie", "session", "credential")
#: Response headers dropped because the recorded body is already decoded.
_DROPPED_RESPONSE_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding", "connection",
                                       "keep-alive"})


class CassetteMiss(NotFound):
    """Replay found no recording for a request."""

    code = "cassette_miss"


def _is_secret_header(name: str) -> bool:
    lower = name.lower()
    return lower in _SECRET_HEADERS or any(f in lower for f in _SECRET_FRAGMENTS)


def _match_key(method: str, url: str, body: dict[str, Any]) -> str:
    parts = urlsplit(url)
    if "json" in body:
        canon = json.dumps(body["json"], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    else:
        canon = body.get("text") or body.get("base64") or ""
    digest = hashlib.sha256(canon.encode("utf-8")).hexdigest()[:16]
    path = parts.path + ("?" + parts.query if parts.query else "")
    return f"{method.upper()} {path} {digest}"


def _encode_body(raw: bytes) -> dict[str, Any]:
    """A body as ``{"json": ...}``, ``{"text": ...}``, ``{"base64": ...}`` or ``{}`` (empty)."""
    if not raw:
        return {}
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(raw).decode("ascii")}
    try:
        value = json.loads(text)
    except ValueError:
        return {"text": text}
    # keep the exact text when re-serialising would change it, so the replay is byte-identical
    if isinstance(value, (dict, list)) and json.dumps(value, ensure_ascii=False) == text:
        return {"json": value}
    return {"json": value, "text": text}


def _decode_body(body: dict[str, Any]) -> bytes:
    if "text" in body:
        return body["text"].encode("utf-8")
    if "json" in body:
        return json.dumps(body["json"], ensure_ascii=False).encode("utf-8")
    if "base64" in body:
        return base64.b64decode(body["base64"])
    return b""


def _chunks(data: bytes, content_type: str) -> list[bytes]:
    """Split a recorded body into the chunks it is streamed back in."""
    if not data:
        return []
    ctype = content_type.lower()
    if "event-stream" in ctype:
        sep = b"\n\n"
    elif "ndjson" in ctype or "jsonl" in ctype or "jsonlines" in ctype:
        sep = b"\n"
    else:
        return [data]
    out: list[bytes] = []
    start = 0
    while True:
        at = data.find(sep, start)
        if at < 0:
            break
        out.append(data[start:at + len(sep)])
        start = at + len(sep)
    if start < len(data):
        out.append(data[start:])
    return out


def _scrub(value: Any, secrets: Iterable[str]) -> Any:
    """Replace every occurrence of each secret in the strings of ``value``."""
    secrets = [s for s in secrets if s and len(s) >= 6]
    if not secrets:
        return value

    def walk(node: Any) -> Any:
        if isinstance(node, str):
            for s in secrets:
                if s in node:
                    node = node.replace(s, MASK)
            return node
        if isinstance(node, dict):
            return {walk(k): walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(value)


def _secret_values(headers: httpx.Headers) -> list[str]:
    out = []
    for name, value in headers.multi_items():
        if _is_secret_header(name) and value:
            out.append(value)
            scheme, _, token = value.partition(" ")
            if token and scheme.lower() in ("bearer", "basic", "token"):
                out.append(token)
    return out


def _header_dict(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Headers as ``{name: value}`` (lowercase names; a list of values for a repeated header)."""
    out: dict[str, Any] = {}
    for name, value in pairs:
        name = name.lower()
        if name not in out:
            out[name] = value
        elif isinstance(out[name], list):
            out[name].append(value)
        else:
            out[name] = [out[name], value]
    return out


def _header_pairs(headers: Any) -> list[tuple[str, str]]:
    """The inverse of :func:`_header_dict` (also accepts a list of ``[name, value]`` pairs)."""
    if isinstance(headers, dict):
        return [(k, v) for k, vals in headers.items() for v in (vals if isinstance(vals, list) else [vals])]
    return [(k, v) for k, v in headers or []]


def _secret_query_values(url: httpx.URL) -> list[str]:
    return [v for k, v in parse_qsl(urlsplit(str(url)).query, keep_blank_values=True) if v and SECRET_QUERY.search(k)]


class Cassette:
    """The recordings of one cassette file; several transports may share one (one per provider).

    ``path``: the file; ``mode``: record | replay | auto (resolved at construction: ``auto`` is
    ``replay`` when the file exists). ``redact``: extra strings masked wherever they appear.
    """

    def __init__(self, path: str | os.PathLike[str], mode: str = "auto", *, redact: Iterable[str] = ()) -> None:
        if mode not in MODES:
            raise InvalidArgument(f"cassette mode must be one of {', '.join(MODES)}, got {mode!r}",
                                  details={"mode": mode})
        self.path = Path(path)
        self.mode = ("replay" if self.path.exists() else "record") if mode == "auto" else mode
        self.redact = [r for r in redact if r]
        self.jsonl = self.path.suffix.lower() == ".jsonl"
        self._lock = threading.Lock()
        self.exchanges: list[dict[str, Any]] = []
        self._used: set[int] = set()
        self._started = False  # record: the file has been (re)started
        if self.mode == "replay":
            if not self.path.exists():
                raise NotFound(f"cassette {self.path} does not exist (mode 'replay'): record it first with "
                               f"mode 'record' or 'auto'", details={"cassette": str(self.path)})
            self.exchanges = self._load()

    # ---- file -------------------------------------------------------------------------------

    def _load(self) -> list[dict[str, Any]]:
        text = self.path.read_text(encoding="utf-8")
        try:
            if self.jsonl:
                return [json.loads(line) for line in text.splitlines() if line.strip()]
            data = json.loads(text) if text.strip() else {"exchanges": []}
        except ValueError as exc:
            raise InvalidArgument(f"cassette {self.path} is not valid JSON: {exc}",
                                  details={"cassette": str(self.path)}) from None
        if isinstance(data, list):
            return data
        if not isinstance(data, dict) or not isinstance(data.get("exchanges"), list):
            raise InvalidArgument(f"cassette {self.path} has no \"exchanges\" list", details={"cassette": str(self.path)})
        return data["exchanges"]

    def _write(self, exchange: dict[str, Any]) -> None:
        with self._lock:
            self.exchanges.append(exchange)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.jsonl:
                mode = "a" if self._started else "w"
                with open(self.path, mode, encoding="utf-8") as fh:
                    fh.write(json.dumps(exchange, ensure_ascii=False) + "\n")
            else:
                tmp = self.path.with_name(self.path.name + ".tmp")
                doc = {"aikit_cassette": FORMAT_VERSION, "exchanges": self.exchanges}
                tmp.write_text(json.dumps(doc, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
                os.replace(tmp, self.path)
            self._started = True

    # ---- recording --------------------------------------------------------------------------

    def request_record(self, request: httpx.Request) -> tuple[dict[str, Any], list[str]]:
        """The recorded form of a request (its body must have been read) and its secret values."""
        secrets = _secret_values(request.headers) + _secret_query_values(request.url) + self.redact
        headers = _header_dict((k, v) for k, v in request.headers.multi_items() if not _is_secret_header(k))
        record = {"method": request.method, "url": clean_url(request.url), "headers": headers,
                  "body": _encode_body(request.content)}
        return record, secrets

    def record(self, req: dict[str, Any], secrets: list[str], response: dict[str, Any] | None = None,
               error: dict[str, Any] | None = None) -> None:
        """Write one exchange (a response or a transport error)."""
        exchange: dict[str, Any] = {"request": req}
        if response is not None:
            exchange["response"] = response
        if error is not None:
            exchange["error"] = error
        exchange["key"] = _match_key(req["method"], req["url"], req["body"])
        self._write(_scrub(exchange, secrets))

    # ---- replaying --------------------------------------------------------------------------

    def take(self, request: httpx.Request) -> dict[str, Any]:
        """The first unused recording matching ``request`` (see the module doc); marks it used."""
        url = clean_url(request.url)
        key = _match_key(request.method, url, _encode_body(request.content))
        with self._lock:
            for index, exchange in enumerate(self.exchanges):
                if index in self._used:
                    continue
                req = exchange.get("request", {})
                stored = exchange.get("key") or _match_key(req.get("method", ""), req.get("url", ""),
                                                           req.get("body", {}))
                if stored == key:
                    self._used.add(index)
                    return exchange
            same_path = [i for i, e in enumerate(self.exchanges)
                         if urlsplit(e.get("request", {}).get("url", "")).path == urlsplit(url).path]
        body = _scrub(request.content.decode("utf-8", "replace"),
                      _secret_values(request.headers) + _secret_query_values(request.url) + self.redact)
        if len(body) > 300:
            body = body[:300] + "..."
        hint = ""
        if same_path:
            used = sum(1 for i in same_path if i in self._used)
            hint = (f" ({len(same_path)} recording(s) for this path, {used} already used; the request body differs "
                    "or the request was repeated more often than recorded)")
        raise CassetteMiss(
            f"no recording in cassette {self.path} for {request.method} {url}{hint}; request body: {body}. "
            "Record it again with mode 'record'",
            details={"cassette": str(self.path), "method": request.method, "url": url, "key": key},
        )

    def unused(self) -> list[dict[str, Any]]:
        """Recordings not replayed yet (replay mode)."""
        with self._lock:
            return [e for i, e in enumerate(self.exchanges) if i not in self._used]

    def transport(self, provider: str | None = None, inner: httpx.AsyncBaseTransport | None = None
                  ) -> CassetteTransport:
        """A transport on this cassette; usable as a registry transport factory
        (``registry.transport = cassette.transport``)."""
        return CassetteTransport(self, inner=inner)

    def __repr__(self) -> str:
        return f"Cassette({str(self.path)!r}, mode={self.mode!r}, exchanges={len(self.exchanges)})"


class _ReplayStream(httpx.AsyncByteStream):
    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk


class _RecordingStream(httpx.AsyncByteStream):
    """Passes the inner response's decoded bytes through and records the exchange on close."""

    def __init__(self, cassette: Cassette, req: dict[str, Any], secrets: list[str], response: httpx.Response,
                 headers: dict[str, Any]) -> None:
        self._cassette = cassette
        self._req = req
        self._secrets = secrets
        self._response = response
        self._headers = headers
        self._parts: list[bytes] = []
        self._complete = False
        self._error: BaseException | None = None
        self._recorded = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.aiter_bytes():
                self._parts.append(chunk)
                yield chunk
            self._complete = True
        except httpx.TransportError as exc:
            self._error = exc
            raise

    async def aclose(self) -> None:
        try:
            await self._response.aclose()
        finally:
            self._save()

    def _save(self) -> None:
        if self._recorded:
            return
        self._recorded = True
        response: dict[str, Any] = {"status": self._response.status_code, "headers": self._headers,
                                    "body": _encode_text_body(b"".join(self._parts))}
        if not self._complete:
            response["truncated"] = True
        error = None
        if self._error is not None:
            error = {"type": type(self._error).__name__, "message": str(self._error), "during": "body"}
        self._cassette.record(self._req, self._secrets, response, error)


def _encode_text_body(raw: bytes) -> dict[str, Any]:
    """A response body kept as received: text (``{"text"}``) or ``{"base64"}``."""
    if not raw:
        return {}
    try:
        return {"text": raw.decode("utf-8")}
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(raw).decode("ascii")}


def _transport_error(error: dict[str, Any], request: httpx.Request) -> httpx.TransportError:
    cls = getattr(httpx, str(error.get("type", "")), None)
    if not (isinstance(cls, type) and issubclass(cls, httpx.TransportError)):
        cls = httpx.TransportError
    return cls(str(error.get("message", "")) or "recorded transport error", request=request)


class CassetteTransport(httpx.AsyncBaseTransport):
    """An httpx transport recording to / replaying from a cassette (see the module doc).

    ``path`` is a file path (a :class:`Cassette` is made for it) or a :class:`Cassette` shared
    with other transports; ``mode`` applies to a path only.
    """

    def __init__(self, path: str | os.PathLike[str] | Cassette, mode: str = "auto",
                 inner: httpx.AsyncBaseTransport | None = None, *, redact: Iterable[str] = ()) -> None:
        self.cassette = path if isinstance(path, Cassette) else Cassette(path, mode, redact=redact)
        self._inner = inner
        self._owns_inner = inner is None
        self._inner_loop: asyncio.AbstractEventLoop | None = None

    @property
    def mode(self) -> str:
        """``record`` or ``replay`` (``auto`` already resolved)."""
        return self.cassette.mode

    @property
    def path(self) -> Path:
        return self.cassette.path

    def _inner_transport(self) -> httpx.AsyncBaseTransport:
        if self._owns_inner:
            # a pool's connections belong to the loop that opened them: a new loop gets a new pool
            loop = asyncio.get_running_loop()
            if self._inner is None or self._inner_loop is not loop:
                self._inner = httpx.AsyncHTTPTransport()
                self._inner_loop = loop
        assert self._inner is not None
        return self._inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        if self.cassette.mode == "replay":
            return self._replay(request)
        return await self._record(request)

    def _replay(self, request: httpx.Request) -> httpx.Response:
        exchange = self.cassette.take(request)
        response = exchange.get("response")
        error = exchange.get("error")
        if response is None:
            raise _transport_error(error or {}, request)
        headers = _header_pairs(response.get("headers"))
        ctype = next((v for k, v in headers if k.lower() == "content-type"), "")
        chunks = _chunks(_decode_body(response.get("body") or {}), ctype)
        if error is not None and error.get("during") == "body":
            chunks = chunks + [_FailAfter(error)]  # type: ignore[list-item]
            return httpx.Response(response["status"], headers=headers, stream=_FailingReplayStream(chunks, request),
                                  request=request)
        return httpx.Response(response["status"], headers=headers, stream=_ReplayStream(chunks), request=request)

    async def _record(self, request: httpx.Request) -> httpx.Response:
        req, secrets = self.cassette.request_record(request)
        try:
            inner = await self._inner_transport().handle_async_request(request)
        except httpx.TransportError as exc:
            self.cassette.record(req, secrets, None, {"type": type(exc).__name__, "message": str(exc)})
            raise
        inner.request = request
        headers = _header_dict((k, v) for k, v in inner.headers.multi_items()
                               if not _is_secret_header(k) and k.lower() not in _DROPPED_RESPONSE_HEADERS)
        stream = _RecordingStream(self.cassette, req, secrets, inner, headers)
        return httpx.Response(inner.status_code, headers=_header_pairs(headers), stream=stream, request=request,
                              extensions=inner.extensions)

    async def aclose(self) -> None:
        if self._owns_inner and self._inner is not None:
            inner, self._inner, loop = self._inner, None, self._inner_loop
            self._inner_loop = None
            if loop is asyncio.get_running_loop():
                await inner.aclose()

    def __repr__(self) -> str:
        return f"CassetteTransport({str(self.cassette.path)!r}, mode={self.cassette.mode!r})"


class _FailAfter:
    def __init__(self, error: dict[str, Any]) -> None:
        self.error = error


class _FailingReplayStream(httpx.AsyncByteStream):
    """Replays a body that failed part-way when recorded: the chunks, then the recorded error."""

    def __init__(self, chunks: list[Any], request: httpx.Request) -> None:
        self._chunks = chunks
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            if isinstance(chunk, _FailAfter):
                raise _transport_error(chunk.error, self._request)
            yield chunk
