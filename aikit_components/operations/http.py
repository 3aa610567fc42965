"""Outgoing HTTP requests as operations (kind :data:`HTTP_REQUEST`), for every httpx client aikit
makes: the web tools and the model providers install :class:`OperationTransport` (or call
:func:`observe_client`), so one request is one operation whichever client sent it.

An operation is one request on the wire (each redirect hop and each retry is its own): name
``"GET example.com"``, payload ``{method, url}``. It ends when the response headers arrive; a
streamed body is read after it. Nothing secret is in the payload or the events: no headers, no
body, the URL without user:password and with secret-looking query values masked. Events:
``http.started`` ``{method, url}``, ``http.finished`` (adds ``status``, ``duration_ms``),
``http.failed`` (adds ``code``, ``message``). An interceptor that raises in ``before`` (an approval,
a policy) stops the request: the client's caller gets that error, and nothing is sent.

Errors of the transport (``httpx.ConnectError``, timeouts) reach the client unchanged, so its own
retries and error messages work as before.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from ..errors import AikitError
from .operation import Operation, OperationKind
from .pipeline import Pipeline

__all__ = ["HTTP_REQUEST", "OperationTransport", "observe_client", "run_request", "shown_url"]

T = TypeVar("T")

# A failed request's event names what went wrong on the wire, not "internal_error".
_TRANSPORT_CODES: tuple[tuple[type[Exception], str], ...] = (
    (httpx.TimeoutException, "timeout"),
    (httpx.HTTPError, "io_error"),
)


def _failed_fields(op: Operation, error: AikitError) -> dict[str, Any]:
    raised = op.meta.get("exception")
    for kind, code in _TRANSPORT_CODES:
        if isinstance(raised, kind):
            return {"code": code, "message": f"{type(raised).__name__}: {raised}" if str(raised)
                    else type(raised).__name__}
    return {"code": error.code, "message": error.message}


HTTP_REQUEST = OperationKind(
    "http",
    topics=("http.started", "http.finished", "http.failed"),
    source="http",
    describe=lambda op: f"HTTP request {op.name!r}",
    event_fields=lambda op: {"method": op.payload["method"], "url": op.payload["url"]},
    finished_fields=lambda op, response: {"status": response.status_code},
    failed_fields=_failed_fields,
    converts_errors=False,
)


MASK = "****"
SECRET_QUERY = re.compile(r"(key|token|secret|password|signature|sig|auth|credential)", re.IGNORECASE)


def clean_url(url: httpx.URL | str) -> str:
    """The URL with user:password removed and secret-looking query values masked (the rule of
    payloads, events and recorded cassettes)."""
    parts = urlsplit(str(url))
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, MASK if SECRET_QUERY.search(k) else v) for k, v in pairs])
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def shown_url(url: httpx.URL) -> str:
    """``url`` as payloads and events show it: see :func:`clean_url`."""
    if not url.query and not url.userinfo:
        return str(url)
    return clean_url(url)


async def run_request(pipeline: Pipeline, name: str, method: str, shown: str,
                      send: Callable[[str | None], Awaitable[T]], context: Any = None) -> T:
    """One request on the wire as an operation of kind :data:`HTTP_REQUEST` named ``name``
    (``"POST api.openai.com"``), ``shown`` being its URL as :func:`shown_url` shows it.
    ``send(traceparent)`` sends it, with tracing's ``traceparent`` header when that is not None;
    what it raises reaches the caller unchanged (the event names it)."""
    op = Operation(HTTP_REQUEST, name, {"method": method, "url": shown}, context)

    async def handler(op: Operation) -> T:
        try:
            return await send(op.meta.get("traceparent"))  # set by tracing, when it is on and sends one
        except Exception as exc:
            op.meta["exception"] = exc
            raise

    return await pipeline.arun(op, handler)


class OperationTransport(httpx.AsyncBaseTransport):
    """Wraps an httpx transport: each request it handles runs through ``pipeline`` as an
    operation of kind :data:`HTTP_REQUEST` (``context`` is handed to the interceptors)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, pipeline: Pipeline, context: Any = None) -> None:
        self.inner = inner
        self.pipeline = pipeline
        self.context = context

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        inner = self.inner

        async def send(traceparent: str | None) -> httpx.Response:
            if traceparent:
                request.headers["traceparent"] = traceparent
            return await inner.handle_async_request(request)

        return await run_request(self.pipeline, f"{request.method} {url.host}", request.method, shown_url(url),
                                 send, self.context)

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def __aenter__(self) -> OperationTransport:
        await self.inner.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.inner.__aexit__(*exc)

    def __repr__(self) -> str:
        return f"OperationTransport({self.inner!r})"


def observe_client(client: httpx.AsyncClient, pipeline: Pipeline, context: Any = None) -> httpx.AsyncClient:
    """Run every request ``client`` sends through ``pipeline``: its transport and its mounted ones
    (the proxies httpx mounts from the environment when ``trust_env`` is set and no transport was
    given) are wrapped in :class:`OperationTransport`. Returns ``client``."""
    # httpx has no public way to wrap the transports it built (passing one turns off the
    # environment's proxies), so this reaches into the client once, at creation.
    client._transport = OperationTransport(client._transport, pipeline, context)
    client._mounts = {pattern: None if transport is None else OperationTransport(transport, pipeline, context)
                      for pattern, transport in client._mounts.items()}
    return client
