"""Stream parsers for the LLM wire formats: server-sent events (OpenAI, Anthropic, llama.cpp) and
newline-delimited JSON (Ollama).

- :class:`SSEDecoder` / :func:`aiter_sse`: event/data/id/retry fields, multi-line data, comments,
  the ``[DONE]`` marker as :attr:`SSEEvent.is_done` (WHATWG rules).
- :func:`aiter_ndjson`: one JSON value per non-blank line.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from .base import ProviderError
from .wire_errors import BODY_LIMIT, quote_text

__all__ = ["SSEDecoder", "SSEEvent", "aiter_ndjson", "aiter_sse"]


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
                                f"(event {self.event!r}: {quote_text(self.data, 200)}; {exc})", kind="bad_response",
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
        elif field == "id" and "\0" not in value:
            self._last_id = value
        elif field == "retry" and value.isdigit():
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
                                f"({quote_text(line, 200)}; {exc})", kind="bad_response", provider=provider,
                                details={"line": line[:BODY_LIMIT]}) from None

    if hasattr(lines, "__aiter__"):
        async for line in lines:  # type: ignore[union-attr]
            if line.strip():
                yield decode(line)
    else:
        for line in lines:  # type: ignore[union-attr]
            if line.strip():
                yield decode(line)
