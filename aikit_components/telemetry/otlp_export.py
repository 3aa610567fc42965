"""aikit's spans as the OpenTelemetry SDK's ``ReadableSpan``, what the OTLP exporter sends. Used
only by the export thread (``writer.ExportWorker``): the hot path never builds SDK objects."""

from __future__ import annotations

import os
from collections.abc import Callable

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags

from .spans import Span

__all__ = ["readable_span_converter", "resource"]

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_SCOPE = InstrumentationScope("aikit")
_UNSET = Status(StatusCode.UNSET)
_OK = Status(StatusCode.OK)


class _HashedOnce(Resource):
    """A ``Resource`` whose hash is worked out once. The exporter groups each batch's spans by
    resource, hashing it per span, and ``Resource.__hash__`` encodes the attributes to JSON each
    time: a third of the exporter's work for a span. (A resource never changes: its attributes
    are read-only.)"""

    def __init__(self, resource: Resource) -> None:
        super().__init__(resource.attributes, resource.schema_url)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:  # (as Resource's: a class that sets __hash__ restates it)
        return super().__eq__(other)


def resource(service_name: str = "aikit") -> Resource:
    """The resource aikit's spans and metrics are reported with (``OTEL_SERVICE_NAME`` wins)."""
    return _HashedOnce(Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or service_name}))


def readable_span_converter(service_name: str = "aikit") -> Callable[[Span], ReadableSpan]:
    """A function from a finished :class:`~.spans.Span` to a ``ReadableSpan`` of the ``aikit``
    scope, with the resource of ``service_name``."""
    res = resource(service_name)

    def convert(span: Span) -> ReadableSpan:
        parent = (SpanContext(span.trace_id, span.parent_id, span.remote_parent, _SAMPLED)
                  if span.parent_id else None)
        events = tuple(Event(name, attributes, timestamp) for name, timestamp, attributes in span.events or ())
        if span.status == "ERROR":
            status = Status(StatusCode.ERROR, span.status_message or None)
        else:
            status = _OK if span.status == "OK" else _UNSET
        return ReadableSpan(name=span.name, context=span.get_span_context(), parent=parent, resource=res,
                            attributes=span.attributes, events=events, kind=span.kind, status=status,
                            start_time=span.start_time, end_time=span.end_time, instrumentation_scope=_SCOPE)

    return convert
