"""What the span store holds: one :class:`SpanRecord` per span, and one :class:`TraceSummary` per
trace (the rows of ``aikit trace list`` and the dashboard). Plain data shared by the store, the
Lua ``Trace`` API, the CLI and the waterfall renderer (see docs/observability.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["SpanRecord", "TraceSummary"]


@dataclass(frozen=True, slots=True)
class SpanRecord:
    """One span as stored: ids in lowercase hex, times in Unix-epoch nanoseconds; ``end_ns`` is
    None while the span is still running."""

    trace_id: str                 # 32 lowercase hex digits
    span_id: str                  # 16 lowercase hex digits
    parent_span_id: str | None    # None for a root span
    name: str                     # "chat gpt-4o-mini", "execute_tool read_file", "execute_request", ...
    kind: str                     # "INTERNAL" | "CLIENT" | "SERVER" | "PRODUCER" | "CONSUMER"
    start_ns: int
    end_ns: int | None
    status: str                   # "UNSET" | "OK" | "ERROR"
    status_message: str           # "" unless ERROR
    attributes: dict[str, Any]    # OTel attribute values: str, bool, int, float, or lists of one of them
    events: list[dict[str, Any]]  # each {"name": str, "time_ns": int, "attributes": dict}

    @property
    def duration_ns(self) -> int | None:
        """How long the span took (None while running)."""
        return None if self.end_ns is None else self.end_ns - self.start_ns

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-like data (what ``Trace.get`` gives Lua, field for field)."""
        return {"trace_id": self.trace_id, "span_id": self.span_id, "parent_span_id": self.parent_span_id,
                "name": self.name, "kind": self.kind, "start_ns": self.start_ns, "end_ns": self.end_ns,
                "status": self.status, "status_message": self.status_message,
                "attributes": dict(self.attributes), "events": [dict(e) for e in self.events]}


@dataclass(frozen=True, slots=True)
class TraceSummary:
    """One trace at a glance: its root, its times, its size, errors, tokens and cost."""

    trace_id: str
    root_name: str                # name of the root span
    root_kind: str                # attribute "aikit.operation.kind" of the root ("cell", "script", "agent", ...)
    start_ns: int
    end_ns: int | None            # None while running
    span_count: int
    error_count: int              # spans with status ERROR
    input_tokens: int             # sums of gen_ai.usage.input_tokens / output_tokens over the trace
    output_tokens: int
    cost_usd: float | None        # sum of "aikit.cost.usd" (None when no span carries one)
    status: str                   # "running" | "ok" | "error"

    @property
    def duration_ns(self) -> int | None:
        return None if self.end_ns is None else self.end_ns - self.start_ns

    def to_dict(self) -> dict[str, Any]:
        return {"trace_id": self.trace_id, "root_name": self.root_name, "root_kind": self.root_kind,
                "start_ns": self.start_ns, "end_ns": self.end_ns, "span_count": self.span_count,
                "error_count": self.error_count, "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens, "cost_usd": self.cost_usd, "status": self.status}
