"""The tracing interceptor: one span per operation, outermost in the pipeline (order
``TRACING``), so a rejected or cancelled operation is traced too.

An attempt's span starts at ``started`` and is made the current span (an OTel context attached
for the handler: operations the handler runs become its children, on this thread and in the
asyncio tasks it creates); it ends at ``finished`` or ``failed``. An operation rejected before it
ran gets a span that starts and ends at once, with the error. State writes are not spans but
events on the current span (``state.set``, ...): they are many, short, and a span each would
cost more than the write (bench/tracing.py)."""

from __future__ import annotations

from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from ..errors import AikitError
from ..operations import TRACING, Interceptor, Operation, OperationKind
from .semconv import SHAPES, generic_start
from .telemetry import Telemetry

__all__ = ["TracingInterceptor"]

_SPAN = "tracing.span"  # op.meta: (span, context token) of the running attempt
_STATE_KINDS = ("state.write",)
_set_span_in_context = trace.set_span_in_context
_attach, _detach = otel_context.attach, otel_context.detach
_get_current_span = trace.get_current_span


class TracingInterceptor(Interceptor):
    """Spans for every operation of a pipeline, recorded by ``telemetry`` (see the module doc)."""

    order = TRACING
    name = "tracing"
    decides = False

    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry
        self._tracer = telemetry.tracer

    def wants_kind(self, kind: OperationKind) -> bool:
        return self.telemetry.enabled

    # -- notifications ------------------------------------------------------------------------------
    def started(self, op: Operation) -> None:
        meta = op.meta
        kind_name = op.kind.name
        if kind_name in _STATE_KINDS:
            return
        previous = meta.get(_SPAN)
        if previous is not None:  # a hook asked for another attempt after a success
            self._end(previous, op, None)
        shape = SHAPES.get(kind_name)
        t = self.telemetry
        name, span_kind, attrs = (shape.start if shape is not None else generic_start)(op, t)
        if op.attempt > 1:
            attrs["aikit.attempt"] = op.attempt
        span = self._tracer.start_span(name, kind=span_kind, attributes=attrs)
        meta[_SPAN] = (span, _attach(_set_span_in_context(span)))
        if kind_name == "http":
            if t.traceparent_http:
                meta["traceparent"] = t.traceparent()
        elif kind_name == "process":
            meta["traceparent"] = t.traceparent()

    def finished(self, op: Operation, result: Any) -> None:
        kind_name = op.kind.name
        if kind_name in _STATE_KINDS:
            self._state_event(op, None)
            return
        opened = op.meta.pop(_SPAN, None)
        if opened is None:
            return
        span = opened[0]
        shape = SHAPES.get(kind_name)
        if shape is not None and shape.finish is not None:
            try:
                shape.finish(op, result, span, self.telemetry)
            except Exception:  # noqa: BLE001 - a result of an unexpected shape must not fail the operation
                pass
        self._end(opened, op, None)

    def failed(self, op: Operation, error: AikitError) -> None:
        if op.kind.name in _STATE_KINDS:
            self._state_event(op, error)
            return
        opened = op.meta.pop(_SPAN, None)
        if opened is None:  # rejected or cancelled before it ran: a span of no length says so
            shape = SHAPES.get(op.kind.name)
            name, span_kind, attrs = (shape.start if shape is not None else generic_start)(op, self.telemetry)
            attrs["aikit.rejected"] = True
            span = self._tracer.start_span(name, kind=span_kind, attributes=attrs)
            self._fail(span, error)
            span.end()
            if self.telemetry.metrics is not None:
                self.telemetry.metrics.operation(op, span, error)
            return
        self._end(opened, op, error)

    # -- helpers ------------------------------------------------------------------------------------------
    def _end(self, opened: tuple[Any, Any], op: Operation, error: AikitError | None) -> None:
        span, token = opened
        if error is not None:
            self._fail(span, error)
        _detach(token)
        span.end()
        metrics = self.telemetry.metrics
        if metrics is not None:
            metrics.operation(op, span, error)

    @staticmethod
    def _fail(span: Any, error: AikitError) -> None:
        span.set_attribute("error.type", error.code or type(error).__name__)
        span.set_status(Status(StatusCode.ERROR, error.message[:1000]))

    def _state_event(self, op: Operation, error: AikitError | None) -> None:
        span = _get_current_span()
        if not span.is_recording():
            return
        p = op.payload
        attrs: dict[str, Any] = {"aikit.state.scope": str(p.get("scope")), "aikit.state.key": str(p.get("key"))}
        if error is not None:
            attrs["error.type"] = error.code
        span.add_event(f"state.{op.name}", attrs)
