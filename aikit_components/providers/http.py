"""Shared HTTP plumbing for the LLM wire formats: one endpoint (base URL, key, timeouts, retries)
on an ``httpx.AsyncClient``, error classification, and the SSE / NDJSON stream parsers.

- :class:`HTTPEndpoint`: ``post_json`` (one JSON request, retried) and ``stream_lines`` (a streamed
  response as text lines, retried until it opens), plus ``retry_stream`` for provider streams that
  may fail after opening but before producing anything (Anthropic's ``error`` event, say).
- Retries: kinds rate_limit / overloaded / server / timeout / connection, exponential backoff with
  full jitter; ``Retry-After`` (or ``retry-after-ms``) is honoured when it asks for at most
  ``max_retry_after_s`` seconds; a longer wait is not slept through: the error is raised at once
  (carrying ``retry_after``) so a fallback model can take over.
- HTTP errors become :class:`ProviderError` whose kind comes from :func:`classify_status` and whose
  message quotes the provider's own message and says what to do.
- :class:`SSEDecoder` / :func:`aiter_sse` (event/data/id/retry fields, multi-line data, comments,
  the ``[DONE]`` marker as :attr:`SSEEvent.is_done`) and :func:`aiter_ndjson`.
- Tool-call arguments that are not a JSON object become ``{"_raw": "<text>"}``; :func:`argument_error`
  tells the agent so it can report the problem back to the model.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import random
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import httpx

from ..config import Secret
from .base import ProviderError, classify_status, parse_retry_after
from .messages import ToolCall, new_call_id

__all__ = [
    "DEFAULT_RETRIES", "DEFAULT_TIMEOUT_S", "HTTPEndpoint", "RAW_ARGUMENTS_KEY", "SSEDecoder", "SSEEvent",
    "aiter_ndjson", "aiter_sse", "argument_error", "decode_arguments", "encode_arguments", "error_from_body",
    "is_local_url", "make_tool_call", "not_streaming_error",
]

DEFAULT_TIMEOUT_S = 60.0
DEFAULT_RETRIES = 2
DEFAULT_BACKOFF_S = 0.5
DEFAULT_MAX_BACKOFF_S = 20.0
DEFAULT_MAX_RETRY_AFTER_S = 60.0
MAX_CONNECT_TIMEOUT_S = 15.0
USER_AGENT = "aikit/0.1 (providers)"
QUOTE_LIMIT = 500
BODY_LIMIT = 2000

AuthScheme = Literal["bearer", "x-api-key"]
T = TypeVar("T")

log = logging.getLogger("aikit.providers.http")

_LOCAL_NAMES = frozenset({"localhost", "host.docker.internal"})


def is_local_url(url: str) -> bool:
    """True for loopback / private / link-local hosts and ``localhost``/``*.local`` names, where
    local servers (vLLM, llama.cpp, Ollama, LM Studio) usually need no API key."""
    host = (urlsplit(url).hostname or "").lower()
    if host in _LOCAL_NAMES or host.endswith(".localhost") or host.endswith(".local"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_link_local or address.is_unspecified


def not_streaming_error(name: str, base_url: str) -> ProviderError:
    """A stream request answered without a single stream event (the server ignored ``stream``)."""
    return ProviderError(f"{name} answered a streaming request without any stream events; check that {base_url} "
                         "supports streaming for this API, or use complete() instead", kind="bad_response",
                         provider=name)


def _quote(text: str, limit: int = QUOTE_LIMIT) -> str:
    text = " ".join(str(text).split())
    return '"' + (text if len(text) <= limit else text[:limit] + "...") + '"'


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------

#: Error ``type`` values in bodies (Anthropic's, OpenAI's codes) that decide the kind by themselves.
_TYPE_KINDS = {
    "overloaded_error": "overloaded",
    "rate_limit_error": "rate_limit",
    "rate_limit_exceeded": "rate_limit",
    "insufficient_quota": "rate_limit",
    "authentication_error": "auth",
    "permission_error": "auth",
    "invalid_api_key": "auth",
    "api_error": "server",
    "server_error": "server",
    "timeout_error": "timeout",
    "invalid_request_error": "bad_request",
    "not_found_error": "bad_request",
    "request_too_large": "bad_request",
}


def _provider_message(body: Any) -> tuple[str, str | None]:
    """The provider's own error message and error type/code from a decoded error body."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            message = error.get("message") or error.get("msg") or ""
            etype = error.get("type") or error.get("code")
            code = error.get("code")
            if isinstance(code, str) and code in _TYPE_KINDS:  # OpenAI: type "tokens", code "rate_limit_exceeded"
                etype = code
            return str(message or json.dumps(error, ensure_ascii=False)), (str(etype) if etype else None)
        if isinstance(error, str):
            return error, None
        for key in ("message", "detail", "msg"):
            if body.get(key):
                detail = body[key]
                return (detail if isinstance(detail, str) else json.dumps(detail, ensure_ascii=False)), body.get("type")
    if isinstance(body, list) and body:
        return _provider_message(body[0])
    return "", None


def error_from_body(name: str, body: Any, *, status: int | None = None, url: str = "",
                    retry_after: float | None = None, has_key: bool = True,
                    request_id: str | None = None, raw: str = "") -> ProviderError:
    """A :class:`ProviderError` from an error body (an HTTP error response, or an error event in
    a stream when ``status`` is None), with a message that quotes the provider and says what to do."""
    message, etype = _provider_message(body)
    text = raw or (json.dumps(body, ensure_ascii=False) if body is not None else "")
    if not message:
        message = text.strip() or (f"HTTP {status}" if status else "unknown error")
    if status is not None:
        kind = classify_status(status, text)
        if etype in _TYPE_KINDS and kind in ("bad_request", "server"):
            refined = _TYPE_KINDS[etype]
            # an explicit type refines a generic status (e.g. 500 + overloaded_error), never downgrades
            if kind == "server" and refined in ("overloaded", "timeout") or kind == "bad_request" and refined == "auth":
                kind = refined
    else:
        kind = _TYPE_KINDS.get(etype or "", "server")
    where = f"HTTP {status}" if status is not None else "in the stream"
    quoted = _quote(message)
    if kind == "auth":
        config = (f"config providers.{name}.api_key, or providers.{name}.api_key_env naming an environment "
                  "variable")
        if not has_key:
            text_out = (f"{name} requires an API key and none is set ({where}: {quoted}); "
                        f"set the API key for {name} ({config})")
        else:
            text_out = (f"{name} rejected the request ({where}: {quoted}); check the API key for {name} ({config})"
                        + ("; it may also lack access to this model" if status == 403 else ""))
    elif kind == "rate_limit":
        text_out = (f"{name} rate limit reached ({where}: {quoted}); wait, lower the request rate, "
                    "or configure a fallback model")
        if etype == "insufficient_quota":
            text_out = (f"{name} quota exhausted ({where}: {quoted}); check the plan and billing of the account, "
                        "or configure a fallback model")
    elif kind == "overloaded":
        text_out = f"{name} is overloaded ({where}: {quoted}); try again later or configure a fallback model"
    elif kind == "server":
        text_out = f"{name} had a server error ({where}: {quoted}); try again later or configure a fallback model"
    elif kind == "timeout":
        text_out = f"{name} timed out ({where}: {quoted}); try again, or raise timeout_s"
    elif kind == "content_filter":
        text_out = f"{name} refused the content ({where}: {quoted}); rephrase the request"
    elif status == 404:
        text_out = (f"{name} refused the request ({where}: {quoted}); check the model name and that base_url "
                    f"points at the API root" + (f" (requested {url})" if url else ""))
    else:
        text_out = f"{name} refused the request ({where}: {quoted}); fix the request as the message says"
    details: dict[str, Any] = {"provider_message": message}
    if etype:
        details["error_type"] = etype
    if url:
        details["url"] = url
    if not request_id and isinstance(body, dict) and isinstance(body.get("request_id"), str):
        request_id = body["request_id"]  # Anthropic repeats its request-id header in the body
    if request_id:
        details["request_id"] = request_id
    if text:
        details["body"] = text[:BODY_LIMIT]
    if etype == "insufficient_quota":
        details["no_retry"] = True
    return ProviderError(text_out, kind=kind, provider=name, status=status, retry_after=retry_after, details=details)


def _with_attempts(exc: ProviderError, attempts: int, note: str = "") -> ProviderError:
    """The same error, its message telling how many attempts were made."""
    if attempts <= 1 and not note:
        return exc
    suffix = note or f" (gave up after {attempts} attempts)"
    details = {k: v for k, v in exc.details.items() if k not in ("kind", "provider", "status")}
    details["attempts"] = attempts
    new = ProviderError(exc.message + suffix, kind=exc.kind, provider=exc.provider, status=exc.status,
                        retry_after=exc.retry_after, details=details)
    new.__cause__ = exc.__cause__
    return new


def _retry_after_of(headers: httpx.Headers) -> float | None:
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    return parse_retry_after(headers.get("retry-after"))


# --------------------------------------------------------------------------------------------
# The endpoint
# --------------------------------------------------------------------------------------------


class HTTPEndpoint:
    """One provider endpoint: base URL, API key, headers, timeouts and retries over a lazily created
    ``httpx.AsyncClient`` (on the caller's event loop; a new loop gets a new client).

    ``name`` is the provider's configured name (``providers.<name>`` in the config), used in error
    messages. ``auth`` says how the key is sent: ``"bearer"`` (``Authorization: Bearer <key>``),
    ``"x-api-key"`` (Anthropic) or None. ``transport`` replaces the network (recording/replaying
    transports in tests). ``timeout_s`` bounds connecting (at most 15 s) and each read, so a stream
    fails when the server is silent that long.
    """

    def __init__(self, base_url: str, api_key: str | Secret | None = None, *, name: str = "",
                 headers: dict[str, str] | None = None, auth: AuthScheme | None = "bearer",
                 timeout_s: float = DEFAULT_TIMEOUT_S, retries: int = DEFAULT_RETRIES,
                 transport: httpx.AsyncBaseTransport | None = None, backoff_s: float = DEFAULT_BACKOFF_S,
                 max_backoff_s: float = DEFAULT_MAX_BACKOFF_S, max_retry_after_s: float = DEFAULT_MAX_RETRY_AFTER_S,
                 trust_env: bool = True) -> None:
        if not base_url or "://" not in base_url:
            raise ProviderError(f"base_url {base_url!r} for {name or 'the provider'} is not an absolute URL; "
                                f"set providers.{name or '<name>'}.base_url to e.g. https://host/v1",
                                kind="bad_request", provider=name)
        if timeout_s <= 0:
            raise ProviderError(f"timeout_s must be greater than 0, got {timeout_s}", kind="bad_request", provider=name)
        if retries < 0:
            raise ProviderError(f"retries must be 0 or more, got {retries}", kind="bad_request", provider=name)
        self.base_url = base_url.rstrip("/")
        self.name = name or urlsplit(base_url).hostname or "provider"
        self.api_key: Secret | None = Secret(api_key) if api_key else None
        self.headers = dict(headers or {})
        self.auth = auth
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.transport = transport
        self.backoff_s = float(backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self.max_retry_after_s = float(max_retry_after_s)
        self.trust_env = trust_env
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"HTTPEndpoint({self.base_url!r}, name={self.name!r}, key={'set' if self.api_key else 'none'})"

    # ------------------------------------------------------------------ client
    def url(self, path: str) -> str:
        return self.base_url + "/" + path.lstrip("/")

    def request_headers(self) -> dict[str, str]:
        """The headers every request carries (the key revealed here and only here)."""
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self.api_key is not None:
            if self.auth == "bearer":
                headers["Authorization"] = "Bearer " + self.api_key.reveal()
            elif self.auth == "x-api-key":
                headers["x-api-key"] = self.api_key.reveal()
        headers.update(self.headers)
        return headers

    def client(self) -> httpx.AsyncClient:
        """The AsyncClient of the running loop (created on first use)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._client.is_closed or self._loop is not loop:
            self._client = httpx.AsyncClient(
                transport=self.transport, headers=self.request_headers(), follow_redirects=False,
                timeout=httpx.Timeout(self.timeout_s, connect=min(self.timeout_s, MAX_CONNECT_TIMEOUT_S)),
                trust_env=self.trust_env)
            self._loop = loop
        return self._client

    async def aclose(self) -> None:
        client, self._client, self._loop = self._client, None, None
        if client is not None and not client.is_closed:
            await client.aclose()

    async def __aenter__(self) -> "HTTPEndpoint":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ errors
    def error_from_response(self, status: int, headers: httpx.Headers, body: bytes, url: str = "") -> ProviderError:
        raw = body.decode("utf-8", errors="replace")
        try:
            decoded: Any = json.loads(raw) if raw.strip() else None
        except ValueError:
            decoded = None
        request_id = headers.get("x-request-id") or headers.get("request-id")
        return error_from_body(self.name, decoded if decoded is not None else {"message": raw.strip()[:QUOTE_LIMIT]}
                               if raw.strip() else None, status=status, url=url,
                               retry_after=_retry_after_of(headers), has_key=self.api_key is not None,
                               request_id=request_id, raw=raw)

    def _transport_error(self, exc: Exception, url: str) -> ProviderError:
        details = {"url": url, "exception": type(exc).__name__}
        if isinstance(exc, httpx.TimeoutException):
            phase = "connect" if isinstance(exc, httpx.ConnectTimeout) else "answer"
            return ProviderError(f"{self.name} did not {phase} within {self.timeout_s:g} s (POST {url}); check that "
                                 "the server is up, or raise timeout_s", kind="timeout", provider=self.name,
                                 details=details)
        if isinstance(exc, (httpx.UnsupportedProtocol, httpx.InvalidURL)):
            return ProviderError(f"cannot request {url} for {self.name}: {exc}; fix providers.{self.name}.base_url",
                                 kind="bad_request", provider=self.name, details=details)
        if isinstance(exc, httpx.ConnectError):
            return ProviderError(f"cannot connect to {self.name} at {self.base_url}: {exc or 'connection refused'}; "
                                 "check base_url and that the server is running", kind="connection",
                                 provider=self.name, details=details)
        return ProviderError(f"the connection to {self.name} failed (POST {url}): {type(exc).__name__}: {exc}",
                             kind="connection", provider=self.name, details=details)

    # ------------------------------------------------------------------ retries
    def retry_delay(self, exc: ProviderError, attempt: int, retries: int | None = None) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None when ``exc`` is final."""
        limit = self.retries if retries is None else retries
        if not exc.retryable or attempt >= limit or exc.details.get("no_retry"):
            return None
        if exc.retry_after is not None:
            return exc.retry_after if exc.retry_after <= self.max_retry_after_s else None
        return random.uniform(0.0, min(self.max_backoff_s, self.backoff_s * (2 ** attempt)))

    def _log_retry(self, exc: ProviderError, delay: float, attempt: int, retries: int | None) -> None:
        """Say that (and why, and how long) a failed attempt is retried, as HTTP clients do; the
        numbers ride along as record attributes (``retry_delay_s``, ``retry_after``, ``attempt``)."""
        limit = self.retries if retries is None else retries
        why = "as Retry-After asks" if exc.retry_after is not None else "backoff with jitter"
        log.info("%s: %s failure (%s); retrying in %.3f s (%s), retry %d of %d", self.name, exc.kind,
                 exc.status or "no status", delay, why, attempt + 1, limit,
                 extra={"provider": self.name, "kind": exc.kind, "retry_delay_s": delay,
                        "retry_after": exc.retry_after, "attempt": attempt + 1})

    def _final(self, exc: ProviderError, attempt: int, retries: int | None) -> ProviderError:
        limit = self.retries if retries is None else retries
        if (exc.retryable and exc.retry_after is not None and exc.retry_after > self.max_retry_after_s
                and attempt < limit and not exc.details.get("no_retry")):
            return _with_attempts(exc, attempt + 1, f"; it asks to wait {exc.retry_after:g} s, longer than "
                                                    f"max_retry_after_s ({self.max_retry_after_s:g} s), so aikit did not wait")
        return _with_attempts(exc, attempt + 1)

    async def with_retries(self, attempt_fn: Callable[[], Awaitable[T]], retries: int | None = None) -> T:
        """Run ``attempt_fn`` until it succeeds or fails with a final :class:`ProviderError`."""
        attempt = 0
        while True:
            try:
                return await attempt_fn()
            except ProviderError as exc:
                delay = self.retry_delay(exc, attempt, retries)
                if delay is None:
                    raise self._final(exc, attempt, retries) from exc.__cause__
                self._log_retry(exc, delay, attempt, retries)
            await asyncio.sleep(delay)
            attempt += 1

    async def retry_stream(self, open_stream: Callable[[], AsyncIterator[T]],
                           retries: int | None = None) -> AsyncIterator[T]:
        """Items of ``open_stream()``, retried (a fresh call) on a retryable :class:`ProviderError`
        raised before the first item; once an item was yielded, errors pass through unchanged."""
        attempt = 0
        while True:
            yielded = False
            delay: float | None = None
            async with aclosing(open_stream()) as items:  # type: ignore[type-var]
                try:
                    async for item in items:
                        yielded = True
                        yield item
                    return
                except ProviderError as exc:
                    if yielded:
                        raise
                    delay = self.retry_delay(exc, attempt, retries)
                    if delay is None:
                        raise self._final(exc, attempt, retries) from exc.__cause__
                    self._log_retry(exc, delay, attempt, retries)
            await asyncio.sleep(delay)
            attempt += 1

    # ------------------------------------------------------------------ requests
    def _encode(self, payload: Any) -> bytes:
        try:
            return json.dumps(payload, ensure_ascii=False, allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise ProviderError(f"the request to {self.name} cannot be encoded as JSON: {exc}; tool schemas, "
                                "arguments and messages must hold plain JSON values (no NaN)", kind="bad_request",
                                provider=self.name) from None

    async def _post_once(self, path: str, payload: Any) -> tuple[int, httpx.Headers, Any]:
        url = self.url(path)
        try:
            response = await self.client().post(url, content=self._encode(payload),
                                                headers={"Content-Type": "application/json"})
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, url) from exc
        if response.status_code >= 400:
            raise self.error_from_response(response.status_code, response.headers, response.content, url)
        try:
            data = json.loads(response.content)
        except ValueError as exc:
            ctype = response.headers.get("content-type", "no content-type")
            snippet = response.content[:200].decode("utf-8", errors="replace")
            raise ProviderError(
                f"{self.name} answered HTTP {response.status_code} with a body that is not valid JSON ({ctype}, "
                f"{len(response.content)} bytes: {_quote(snippet, 200)}; {exc}); check that "
                f"providers.{self.name}.base_url ({self.base_url}) points at the API, not a web page or proxy",
                kind="bad_response", provider=self.name, status=response.status_code,
                details={"url": url, "body": snippet}) from None
        return response.status_code, response.headers, data

    async def post_json(self, path: str, payload: Any, *, retries: int | None = None) -> tuple[int, httpx.Headers, Any]:
        """POST ``payload`` as JSON to ``base_url + path``; ``(status, headers, decoded JSON)``."""
        return await self.with_retries(lambda: self._post_once(path, payload), retries)

    async def _open_stream(self, path: str, payload: Any) -> httpx.Response:
        url = self.url(path)
        client = self.client()
        request = client.build_request("POST", url, content=self._encode(payload),
                                       headers={"Content-Type": "application/json",
                                                "Accept": "text/event-stream, application/x-ndjson, application/json"})
        try:
            response = await client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, url) from exc
        if response.status_code >= 400:
            try:
                body = await response.aread()
            except httpx.HTTPError:
                body = b""
            finally:
                await response.aclose()
            raise self.error_from_response(response.status_code, response.headers, body, url)
        return response

    async def stream_lines(self, path: str, payload: Any, *, retries: int | None = None) -> AsyncIterator[str]:
        """POST ``payload`` and yield the response body as text lines (without line endings, blank
        lines included). Opening is retried; errors after the first line are raised as they come."""
        response = await self.with_retries(lambda: self._open_stream(path, payload), retries)
        url = str(response.request.url)
        try:
            async for line in response.aiter_lines():
                yield line
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, url) from exc
        finally:
            await response.aclose()


# --------------------------------------------------------------------------------------------
# Stream parsers
# --------------------------------------------------------------------------------------------


@dataclass
class SSEEvent:
    """One server-sent event."""

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None

    @property
    def is_done(self) -> bool:
        """OpenAI's end marker ``data: [DONE]``."""
        return self.data.strip() == "[DONE]"

    def json(self, provider: str = "") -> Any:
        try:
            return json.loads(self.data)
        except ValueError as exc:
            raise ProviderError(f"{provider or 'the provider'} sent a stream event whose data is not valid JSON "
                                f"(event {self.event!r}: {_quote(self.data, 200)}; {exc})", kind="bad_response",
                                provider=provider, details={"event": self.event, "data": self.data[:BODY_LIMIT]}) from None


class SSEDecoder:
    """Incremental ``text/event-stream`` decoder (WHATWG rules): feed it lines, get events."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._last_id: str | None = None
        self._retry: int | None = None

    def feed(self, line: str) -> SSEEvent | None:
        line = line.rstrip("\r\n")
        if not line:
            return self._dispatch()
        if line.startswith(":"):  # comment / keep-alive
            return None
        field, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if field == "event":
            self._event = value
        elif field == "data":
            self._data.append(value)
        elif field == "id":
            if "\0" not in value:
                self._last_id = value
        elif field == "retry":
            if value.isdigit():
                self._retry = int(value)
        return None

    def flush(self) -> SSEEvent | None:
        """The event in progress when the stream ended without its blank line (lenient)."""
        return self._dispatch()

    def _dispatch(self) -> SSEEvent | None:
        if not self._data:
            self._event = ""
            return None
        event = SSEEvent(self._event or "message", "\n".join(self._data), self._last_id, self._retry)
        self._event, self._data, self._retry = "", [], None
        return event


async def aiter_sse(lines: AsyncIterable[str] | Iterable[str]) -> AsyncIterator[SSEEvent]:
    """Server-sent events from lines (``[DONE]`` is yielded: check :attr:`SSEEvent.is_done`)."""
    decoder = SSEDecoder()
    if hasattr(lines, "__aiter__"):
        async for line in lines:  # type: ignore[union-attr]
            event = decoder.feed(line)
            if event is not None:
                yield event
    else:
        for line in lines:  # type: ignore[union-attr]
            event = decoder.feed(line)
            if event is not None:
                yield event
    last = decoder.flush()
    if last is not None:
        yield last


async def aiter_ndjson(lines: AsyncIterable[str] | Iterable[str], provider: str = "") -> AsyncIterator[Any]:
    """Decoded JSON values from newline-delimited JSON lines (blank lines skipped)."""

    def decode(line: str) -> Any:
        try:
            return json.loads(line)
        except ValueError as exc:
            raise ProviderError(f"{provider or 'the provider'} sent a stream line that is not valid JSON "
                                f"({_quote(line, 200)}; {exc})", kind="bad_response", provider=provider,
                                details={"line": line[:BODY_LIMIT]}) from None

    if hasattr(lines, "__aiter__"):
        async for line in lines:  # type: ignore[union-attr]
            if line.strip():
                yield decode(line)
    else:
        for line in lines:  # type: ignore[union-attr]
            if line.strip():
                yield decode(line)


# --------------------------------------------------------------------------------------------
# Tool-call arguments
# --------------------------------------------------------------------------------------------

RAW_ARGUMENTS_KEY = "_raw"


def decode_arguments(raw: Any) -> tuple[dict[str, Any], str | None]:
    """Arguments as an object, and a problem description when they are not a JSON object (then
    the arguments are ``{"_raw": <the text>}``)."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}, None
    if isinstance(raw, dict):
        return raw, None
    if not isinstance(raw, str):
        return {RAW_ARGUMENTS_KEY: json.dumps(raw, ensure_ascii=False)}, "the arguments are not a JSON object"
    try:
        value = json.loads(raw)
    except ValueError as exc:
        detail = f"{exc.msg} at position {exc.pos}" if isinstance(exc, json.JSONDecodeError) else str(exc)
        return {RAW_ARGUMENTS_KEY: raw}, f"the arguments are not valid JSON ({detail})"
    if not isinstance(value, dict):
        return {RAW_ARGUMENTS_KEY: raw}, "the arguments are not a JSON object"
    return value, None


def make_tool_call(name: str, raw_arguments: Any, call_id: str | None = None) -> ToolCall:
    """A ToolCall from wire arguments (a JSON string or an object); bad arguments are flagged."""
    arguments, problem = decode_arguments(raw_arguments)
    call = ToolCall(name, arguments, call_id or new_call_id())
    if problem:
        call.arguments_error = problem  # type: ignore[attr-defined]  # see argument_error()
    return call


def argument_error(call: ToolCall) -> str | None:
    """Why a tool call's arguments could not be decoded (None when they are fine): the agent should
    return this to the model as an error result instead of running the tool."""
    problem = getattr(call, "arguments_error", None) or getattr(call, "parse_error", None)
    if problem is None and set(call.arguments) == {RAW_ARGUMENTS_KEY} and isinstance(call.arguments[RAW_ARGUMENTS_KEY], str):
        problem = "the arguments are not a JSON object"
    if problem is None:
        return None
    raw = call.arguments.get(RAW_ARGUMENTS_KEY, "")
    return f"{problem}; tool {call.name!r} was not run. Send the arguments again as one JSON object. Received: {raw[:500]}"


def encode_arguments(call: ToolCall) -> str:
    """Arguments as a JSON string for wire formats that want one (a flagged call's raw text is sent
    back as the model wrote it)."""
    if set(call.arguments) == {RAW_ARGUMENTS_KEY} and isinstance(call.arguments[RAW_ARGUMENTS_KEY], str):
        return call.arguments[RAW_ARGUMENTS_KEY]
    return json.dumps(call.arguments, ensure_ascii=False)


class HTTPClient:
    """What every HTTP provider shares: a repr without secrets, ``aclose`` and ``async with``.
    Subclasses set ``name`` and ``http`` (an :class:`HTTPEndpoint`)."""

    name: str
    http: HTTPEndpoint

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, base_url={self.http.base_url!r})"

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()
