"""The tracing interceptor: one span per operation, outermost in the pipeline (order
``TRACING``), so a rejected or cancelled operation is traced too.

An attempt's span starts at ``started`` and is made the current span (an OTel context attached
for the handler: operations the handler runs become its children, on this thread and in the
asyncio tasks it creates); it ends at ``finished`` or ``failed``. An operation rejected before it
ran gets a span that starts and ends at once, with the error. State writes are not spans but
events on the current span (``state.set``, ...): they are many, short, and a span each would
cost more than the write (bench/tracing.py).

This runs for every operation, so it is written for speed: the span is aikit's own small object
(``spans.py``) queued once for the writer thread, and nothing is built that is not recorded
(content only with ``capture_content``)."""

from __future__ import annotations

import time
from typing import Any

from opentelemetry.context import Context
from opentelemetry.trace import get_current_span

from ..errors import AikitError
from ..operations import TRACING, Interceptor, Operation, OperationKind
from .otel_context import SPAN_KEY, attach, detach, get_context, parent_span
from .semconv import SHAPES, generic_start
from .spans import Span, child_span
from .telemetry import Telemetry

__all__ = ["TracingInterceptor"]

_SPAN = "tracing.span"  # op.meta: (span, context token) of the running attempt
_STATE = "state.write"
_time_ns = time.time_ns


class TracingInterceptor(Interceptor):
    """Spans for every operation of a pipeline, recorded by ``telemetry`` (see the module doc)."""

    order = TRACING
    name = "tracing"
    decides = False

    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry
        self._start = telemetry.start
        writer = telemetry.writer
        self._queue = writer.queue if writer is not None else None
        self._max_queue = writer.max_queue if writer is not None else 0
        self._wake_at = writer.wake_at if writer is not None else 0
        self._catch_up_at = writer.catch_up_at if writer is not None else 0
        # what each kind adds when it ends; a finisher that only adds content is left out without it
        self._finish = {kind: shape.finish for kind, shape in SHAPES.items()
                        if shape.finish is not None and (telemetry.capture_content or not shape.content_only)}

    def wants_kind(self, kind: OperationKind) -> bool:
        return self.telemetry.enabled

    # -- notifications ------------------------------------------------------------------------------
    def started(self, op: Operation) -> None:
        kind_name = op.kind.name
        if kind_name == _STATE:
            return
        meta = op.meta
        if _SPAN in meta:  # a hook asked for another attempt after a success
            self._end(meta.pop(_SPAN), op, None)
        shape = SHAPES.get(kind_name)
        t = self.telemetry
        name, span_kind, attrs = (shape.start if shape is not None else generic_start)(op, t)
        if op.attempt > 1:
            attrs = {**attrs, "aikit.attempt": op.attempt}  # (a copy: they may be shared)
        ctx = get_context()
        parent = ctx.get(SPAN_KEY)
        if type(parent) is Span:
            span = child_span(name, span_kind, attrs, parent, _time_ns())
        else:  # a root, or the child of another tracer's span or of a remote parent
            span = Span(name, span_kind, attrs, None if parent is None else parent_span(ctx), _time_ns())
        queue = self._queue  # as Telemetry.start, inline: this runs for every operation
        if len(queue) < self._max_queue:
            queue.append(span)
            queued = len(queue)
            if queued == self._wake_at or queued == self._catch_up_at:
                t.writer.catch_up(queued)  # type: ignore[union-attr]
        else:
            t.writer.full()  # type: ignore[union-attr]
        # (a context of one key, the span's, is the common case: made without merging two dicts)
        meta[_SPAN] = (span, attach(Context({SPAN_KEY: span}) if len(ctx) == 1 and parent is not None
                                    else Context(ctx, **{SPAN_KEY: span})))
        if kind_name == "http":
            if t.traceparent_http:
                meta["traceparent"] = span.traceparent
        elif kind_name == "process":
            meta["traceparent"] = span.traceparent

    def finished(self, op: Operation, result: Any) -> None:
        kind_name = op.kind.name
        if kind_name == _STATE:
            self._state_event(op, None)
            return
        opened = op.meta.pop(_SPAN, None)
        if opened is None:
            return
        span, token = opened
        finish = self._finish.get(kind_name)
        if finish is not None:
            try:
                finish(op, result, span, self.telemetry)
            except Exception:  # noqa: BLE001 - a result of an unexpected shape must not fail the operation
                pass
        try:  # as _end, inline: this runs for every operation
            detach(token)
        except ValueError:  # the operation ended in another contextvars context: nothing to restore here
            pass
        if span.end_time is None:
            span.end_time = _time_ns()
        metrics = self.telemetry.metrics
        if metrics is not None:
            metrics.operation(op, span, None)

    def failed(self, op: Operation, error: AikitError) -> None:
        if op.kind.name == _STATE:
            self._state_event(op, error)
            return
        opened = op.meta.pop(_SPAN, None)
        if opened is None:  # rejected or cancelled before it ran: a span of no length says so
            shape = SHAPES.get(op.kind.name)
            name, span_kind, attrs = (shape.start if shape is not None else generic_start)(op, self.telemetry)
            attrs = {**attrs, "aikit.rejected": True}  # (a copy: they may be shared)
            span = self._start(name, span_kind, attrs, get_current_span())
            span.fail(error.code or type(error).__name__, error.message)
            span.end()
            if self.telemetry.metrics is not None:
                self.telemetry.metrics.operation(op, span, error)
            return
        self._end(opened, op, error)

    # -- helpers ------------------------------------------------------------------------------------------
    def _end(self, opened: tuple[Span, Any], op: Operation, error: AikitError | None) -> None:
        span, token = opened
        if error is not None:
            span.fail(error.code or type(error).__name__, error.message)
        try:
            detach(token)
        except ValueError:  # the operation ended in another contextvars context: nothing to restore here
            pass
        span.end()
        metrics = self.telemetry.metrics
        if metrics is not None:
            metrics.operation(op, span, error)

    @staticmethod
    def _state_event(op: Operation, error: AikitError | None) -> None:
        span = get_current_span()
        if not span.is_recording():
            return
        p = op.payload
        attrs: dict[str, Any] = {"aikit.state.scope": str(p.get("scope")), "aikit.state.key": str(p.get("key"))}
        if error is not None:
            attrs["error.type"] = error.code
        span.add_event(f"state.{op.name}", attrs)
