"""A stored trace as OTLP/JSON (``ExportTraceServiceRequest`` in the protobuf JSON mapping the
OTLP/HTTP spec uses: ids in hex, 64-bit integers as strings), for ``aikit trace export``: a file
any OTLP tool can load, or ``curl -H 'Content-Type: application/json' --data @trace.json
http://collector:4318/v1/traces``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .records import SpanRecord

__all__ = ["to_otlp_json"]

_KINDS = {"INTERNAL": 1, "SERVER": 2, "CLIENT": 3, "PRODUCER": 4, "CONSUMER": 5}
_STATUS = {"UNSET": 0, "OK": 1, "ERROR": 2}


def _any_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, (list, tuple)):
        return {"arrayValue": {"values": [_any_value(v) for v in value]}}
    return {"stringValue": str(value)}


def _attributes(attrs: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": _any_value(v)} for k, v in attrs.items()]


def _span(s: SpanRecord) -> dict[str, Any]:
    span: dict[str, Any] = {
        "traceId": s.trace_id, "spanId": s.span_id, "name": s.name, "kind": _KINDS.get(s.kind, 0),
        "startTimeUnixNano": str(s.start_ns), "endTimeUnixNano": str(s.end_ns if s.end_ns is not None else s.start_ns),
        "attributes": _attributes(s.attributes),
        "events": [{"timeUnixNano": str(e.get("time_ns", 0)), "name": e.get("name", ""),
                    "attributes": _attributes(e.get("attributes") or {})} for e in s.events],
        "status": {"code": _STATUS.get(s.status, 0), **({"message": s.status_message} if s.status_message else {})},
    }
    if s.parent_span_id:
        span["parentSpanId"] = s.parent_span_id
    return span


def to_otlp_json(spans: Sequence[SpanRecord], *, service_name: str = "aikit") -> dict[str, Any]:
    """``spans`` as one OTLP/JSON ``ExportTraceServiceRequest``."""
    return {"resourceSpans": [{
        "resource": {"attributes": _attributes({"service.name": service_name})},
        "scopeSpans": [{"scope": {"name": "aikit"}, "spans": [_span(s) for s in spans]}],
    }]}
