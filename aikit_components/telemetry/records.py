"""The span and trace records the span store keeps (minimal version for the dashboard branch;
the ``tracing`` helper's version replaces it at merge)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class SpanRecord:
    """One span as stored: OpenTelemetry fields, times in Unix epoch nanoseconds."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str
    start_ns: int
    end_ns: int | None
    status: str
    status_message: str
    attributes: dict[str, Any]
    events: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class TraceSummary:
    """One trace at a glance: its root, times, counts, tokens, cost and status."""

    trace_id: str
    root_name: str
    root_kind: str
    start_ns: int
    end_ns: int | None
    span_count: int
    error_count: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    status: str
