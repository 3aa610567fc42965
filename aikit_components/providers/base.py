"""The provider contract and error classification.

A provider turns a :class:`Request` into a :class:`Completion` (``complete``) or a stream of
:class:`StreamEvent` (``stream``) over one wire format. Failures are :class:`ProviderError`
with a ``kind`` that decides what happens next:

| kind | examples | retried | falls back to the next model |
|---|---|---|---|
| rate_limit | HTTP 429 | yes (Retry-After honoured) | yes |
| overloaded | HTTP 529, 503 "overloaded" | yes | yes |
| server | HTTP 5xx | yes | yes |
| timeout | connect/read timeout | yes | yes |
| connection | refused, reset, DNS | yes | yes |
| auth | HTTP 401/403 | no | no: the message says which key to set |
| bad_request | HTTP 400/404/422 | no | no: the message quotes the provider |
| content_filter | a refusal by the provider's safety system | no | no |
| bad_response | a 200 that is not the API's format (wrong base URL, a proxy page) | no | yes |
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from ..errors import AikitError
from .messages import Completion, Request, StreamEvent

RETRYABLE = frozenset({"rate_limit", "overloaded", "server", "timeout", "connection"})


class ProviderError(AikitError):
    """An LLM provider failed; ``kind`` classifies it (see the module docstring)."""

    code = "provider_error"

    def __init__(self, message: str, *, kind: str, provider: str = "", status: int | None = None,
                 retry_after: float | None = None, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, details={**(details or {}), "kind": kind, "provider": provider, "status": status})
        self.kind = kind
        self.provider = provider
        self.status = status
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE

    @property
    def falls_back(self) -> bool:
        """Another model may succeed where this one failed."""
        return self.kind in RETRYABLE or self.kind == "bad_response"


def classify_status(status: int, body: str = "") -> str:
    """The error kind of an HTTP status (and body hints such as "overloaded")."""
    lowered = body.lower()
    if status == 429:
        return "rate_limit"
    if status in (401, 403):
        return "auth"
    if status == 529 or (status == 503 and "overload" in lowered):
        return "overloaded"
    if status >= 500:
        return "server"
    if status == 400 and ("content_filter" in lowered or "content filter" in lowered or "safety" in lowered):
        return "content_filter"
    return "bad_request"


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    import time
    from email.utils import parsedate_to_datetime

    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class Provider(Protocol):
    """One wire format bound to one endpoint (base URL, key, timeouts, retries)."""

    name: str  # "openai", "anthropic", "ollama", "local", ...

    async def complete(self, request: Request) -> Completion:
        """One completion; raise :class:`ProviderError` on failure (after its own retries)."""
        ...

    def stream(self, request: Request) -> AsyncIterator[StreamEvent]:
        """The same as a stream; the last event is ``end`` with the assembled Completion."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
