"""Shared HTTP plumbing for the LLM wire formats: one endpoint (base URL, key, timeouts, retries)
on an ``httpx.AsyncClient``, with retries and error classification.

- :class:`HTTPEndpoint`: ``post_json`` (one JSON request, retried) and ``stream_lines`` (a streamed
  response as text lines, retried until it opens), plus ``retry_stream`` for provider streams that
  may fail after opening but before producing anything (Anthropic's ``error`` event, say).
- Retries: kinds rate_limit / overloaded / server / timeout / connection, exponential backoff with
  full jitter; ``Retry-After`` (or ``retry-after-ms``) is honoured when it asks for at most
  ``max_retry_after_s`` seconds; a longer wait is not slept through: the error is raised at once
  (carrying ``retry_after``) so a fallback model can take over.
- HTTP errors become :class:`ProviderError` whose kind comes from :func:`classify_status` and whose
  message quotes the provider's own message and says what to do.
- The wire: ``post_json`` goes through :mod:`.http11` (a small keep-alive HTTP/1.1 client, a tenth
  of httpx's CPU per request: many agents at once wait for the event loop's CPU), streams and
  requests through a custom transport or a proxy from the environment through httpx.

The error messages live in :mod:`.wire_errors`, the SSE / NDJSON stream parsers in :mod:`.streams`
and tool-call argument coding in :mod:`.tool_arguments`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import random
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import httpx

from ..config import Secret
from ..jsontext import dumps_with
from ..operations import Pipeline
from ..operations.http import observe_client, run_request, shown_url
from .admission import admit
from .base import ProviderError
from .http11 import KeepAlivePool, Target, WireResponse, header_block, target_of
from .messages import Completion, Request, StreamEvent
from .pool import shard_pool
from .wire_errors import QUOTE_LIMIT, error_from_body, quote_text, retry_after_of, with_attempts

__all__ = ["DEFAULT_RETRIES", "DEFAULT_TIMEOUT_S", "HTTPClient", "HTTPEndpoint", "is_local_url"]

DEFAULT_TIMEOUT_S = 60.0
DEFAULT_RETRIES = 2
DEFAULT_BACKOFF_S = 0.5
DEFAULT_MAX_BACKOFF_S = 20.0
DEFAULT_MAX_RETRY_AFTER_S = 60.0
MAX_CONNECT_TIMEOUT_S = 15.0
USER_AGENT = "aikit/0.1 (providers)"

AuthScheme = Literal["bearer", "x-api-key"]
T = TypeVar("T")

log = logging.getLogger("aikit.providers.http")

_LOCAL_NAMES = frozenset({"localhost", "host.docker.internal"})
_BODY_JSON = dumps_with(ensure_ascii=False, allow_nan=False)  # a request body: no NaN, as the wire wants


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


# --------------------------------------------------------------------------------------------
# The endpoint
# --------------------------------------------------------------------------------------------


#: httpx's default pool holds 100 connections: the 101st concurrent model call (many agents at
#: once) would wait for a free one, so concurrent agents beyond 100 would run in waves.
CONNECTION_LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=1000, keepalive_expiry=30.0)


class HTTPEndpoint:
    """One provider endpoint: base URL, API key, headers, timeouts and retries over a lazily created
    ``httpx.AsyncClient`` (on the caller's event loop; a new loop gets a new client).

    ``name`` is the provider's configured name (``providers.<name>`` in the config), used in error
    messages. ``auth`` says how the key is sent: ``"bearer"`` (``Authorization: Bearer <key>``),
    ``"x-api-key"`` (Anthropic) or None. ``transport`` replaces the network (recording/replaying
    transports in tests). ``timeout_s`` bounds connecting (at most 15 s) and each read, so a stream
    fails when the server is silent that long. ``pipeline``: every request on the wire (each retry)
    runs through it as an operation of kind ``HTTP_REQUEST`` (:mod:`aikit_components.operations.http`).
    """

    def __init__(self, base_url: str, api_key: str | Secret | None = None, *, name: str = "",
                 headers: dict[str, str] | None = None, auth: AuthScheme | None = "bearer",
                 timeout_s: float = DEFAULT_TIMEOUT_S, retries: int = DEFAULT_RETRIES,
                 transport: httpx.AsyncBaseTransport | None = None, backoff_s: float = DEFAULT_BACKOFF_S,
                 max_backoff_s: float = DEFAULT_MAX_BACKOFF_S, max_retry_after_s: float = DEFAULT_MAX_RETRY_AFTER_S,
                 trust_env: bool = True, pipeline: Pipeline | None = None) -> None:
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
        self.pipeline = pipeline
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wire: KeepAlivePool | None = None
        self._wire_loop: asyncio.AbstractEventLoop | None = None
        self._wire_headers: bytes | None = b""
        self._targets: dict[str, tuple[Target, str, str] | None] = {}

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
                trust_env=self.trust_env, limits=CONNECTION_LIMITS)
            if self.transport is None:  # many connections at once stay cheap (providers/pool.py)
                shard_pool(self._client, CONNECTION_LIMITS, self.trust_env)
            if self.pipeline is not None:
                observe_client(self._client, self.pipeline)
            self._loop = loop
        return self._client

    def wire(self, url: str) -> tuple[KeepAlivePool, tuple[Target, str, str]] | None:
        """The keep-alive pool of the running loop (created on first use) and ``url``'s target,
        operation name and shown URL; None when ``url`` goes through httpx: a custom transport,
        a proxy from the environment (``trust_env``), a URL or header the small client leaves to httpx."""
        if self.transport is not None:
            return None
        loop = asyncio.get_running_loop()
        if self._wire is None or self._wire.is_closed or self._wire_loop is not loop:
            # as an httpx client is made per loop: the headers and the environment's proxies read anew
            self._wire = KeepAlivePool(timeout_s=self.timeout_s, connect_timeout_s=min(self.timeout_s,
                                       MAX_CONNECT_TIMEOUT_S), max_connections=CONNECTION_LIMITS.max_connections or 1000,
                                       keepalive_expiry=CONNECTION_LIMITS.keepalive_expiry or 30.0,
                                       trust_env=self.trust_env)
            self._wire_loop = loop
            self._wire_headers = header_block(self.request_headers())
            self._targets = {}
        if self._wire_headers is None:  # a header only httpx may send (it says what is wrong with it)
            return None
        if url in self._targets:
            target = self._targets[url]
        else:
            target = self._targets[url] = self._target(url)
        if target is None:
            return None
        return self._wire, target

    def _target(self, url: str) -> tuple[Target, str, str] | None:
        target = target_of(url)
        if target is None or (self.trust_env and env_proxy(target.origin[0])):
            return None
        parsed = httpx.URL(url)  # named as httpx names it (once per URL)
        return target, f"POST {parsed.host}", shown_url(parsed)

    async def _wire_post(self, pool: KeepAlivePool, where: tuple[Target, str, str], body: bytes) -> WireResponse:
        """One POST on the small client, an operation of kind ``HTTP_REQUEST`` as httpx's are
        (:func:`~aikit_components.operations.http.run_request`): tracing's ``traceparent`` included."""
        target, name, shown = where
        headers = self._wire_headers or b""
        if self.pipeline is None:
            return await pool.post(target, headers, body)

        async def send(traceparent: str | None) -> WireResponse:
            extra = b"traceparent: " + traceparent.encode("ascii") + b"\r\n" if traceparent else b""
            return await pool.post(target, headers, body, extra)

        return await run_request(self.pipeline, name, "POST", shown, send)

    async def aclose(self) -> None:
        client, self._client, self._loop = self._client, None, None
        wire, self._wire, self._wire_loop = self._wire, None, None
        if wire is not None and not wire.is_closed:
            await wire.aclose()
        if client is not None and not client.is_closed:
            await client.aclose()

    async def __aenter__(self) -> HTTPEndpoint:
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
                               retry_after=retry_after_of(headers), has_key=self.api_key is not None,
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
            return with_attempts(exc, attempt + 1,
                                 f"; it asks to wait {exc.retry_after:g} s, longer than max_retry_after_s "
                                 f"({self.max_retry_after_s:g} s), so aikit did not wait")
        return with_attempts(exc, attempt + 1)

    async def with_retries(self, attempt_fn: Callable[[], Awaitable[T]], retries: int | None = None) -> T:
        """Run ``attempt_fn`` until it succeeds or fails with a final :class:`ProviderError`."""
        attempt = 0
        while True:
            try:
                return await attempt_fn()
            except ProviderError as exc:
                delay = self._retry_or_raise(exc, attempt, retries)
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
                    delay = self._retry_or_raise(exc, attempt, retries)
            await asyncio.sleep(delay)
            attempt += 1

    def _retry_or_raise(self, exc: ProviderError, attempt: int, retries: int | None) -> float:
        """The delay before retrying after ``exc`` (logged), or ``exc`` raised as final."""
        delay = self.retry_delay(exc, attempt, retries)
        if delay is None:
            raise self._final(exc, attempt, retries) from exc.__cause__
        self._log_retry(exc, delay, attempt, retries)
        return delay

    # ------------------------------------------------------------------ requests
    def _encode(self, payload: Any) -> bytes:
        try:
            return _BODY_JSON(payload).encode("utf-8")
        except (TypeError, ValueError, RecursionError) as exc:
            raise ProviderError(f"the request to {self.name} cannot be encoded as JSON: {exc}; tool schemas, "
                                "arguments and messages must hold plain JSON values (no NaN)", kind="bad_request",
                                provider=self.name) from None

    async def _post_once(self, path: str, payload: Any) -> tuple[httpx.Response | WireResponse, Any]:
        url = self.url(path)
        await admit()  # sent at the pace the I/O loop keeps up with (providers/admission.py)
        body = self._encode(payload)
        response: httpx.Response | WireResponse
        try:
            wire = self.wire(url)
            if wire is not None:
                response = await self._wire_post(wire[0], wire[1], body)
            else:
                response = await self.client().post(url, content=body, headers={"Content-Type": "application/json"})
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
                f"{len(response.content)} bytes: {quote_text(snippet, 200)}; {exc}); check that "
                f"providers.{self.name}.base_url ({self.base_url}) points at the API, not a web page or proxy",
                kind="bad_response", provider=self.name, status=response.status_code,
                details={"url": url, "body": snippet}) from None
        return response, data

    async def post_json(self, path: str, payload: Any, *, retries: int | None = None) -> tuple[int, httpx.Headers, Any]:
        """POST ``payload`` as JSON to ``base_url + path``; ``(status, headers, decoded JSON)``."""
        response, data = await self.with_retries(lambda: self._post_once(path, payload), retries)
        return response.status_code, response.headers, data

    async def post_json_data(self, path: str, payload: Any, *, retries: int | None = None) -> Any:
        """:meth:`post_json`'s decoded JSON alone: the response's headers are not made into an
        ``httpx.Headers`` (a chat completion does not read them; many at once wait for the loop's CPU)."""
        _, data = await self.with_retries(lambda: self._post_once(path, payload), retries)
        return data

    async def _open_stream(self, path: str, payload: Any) -> httpx.Response:
        url = self.url(path)
        await admit()
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


def env_proxy(scheme: str) -> bool:
    """Whether the environment names a proxy for ``scheme`` (``HTTPS_PROXY``, ``ALL_PROXY``, ...
    as httpx reads them with ``trust_env``): such requests go through httpx, which uses it."""
    proxies = urllib.request.getproxies()
    return bool(proxies.get(scheme) or proxies.get("all"))


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


class ChatClient(HTTPClient):
    """What every HTTP chat provider shares: ``complete`` posts ``request_body(request)`` to
    ``path`` and parses the answer; ``stream`` retries ``stream_once`` (the wire format's own
    streaming) as long as no event was yielded. Subclasses set ``path`` and write the three."""

    path: str

    def request_body(self, request: Request, *, stream: bool = False) -> dict[str, Any]:
        raise NotImplementedError

    def parse_completion(self, data: Any, request: Request) -> Completion:
        raise NotImplementedError

    def stream_once(self, request: Request) -> AsyncIterator[StreamEvent]:
        raise NotImplementedError

    async def complete(self, request: Request) -> Completion:
        data = await self.http.post_json_data(self.path, self.request_body(request))
        return self.parse_completion(data, request)

    def stream(self, request: Request) -> AsyncIterator[StreamEvent]:
        return self.http.retry_stream(lambda: self.stream_once(request))
