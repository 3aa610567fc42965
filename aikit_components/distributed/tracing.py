"""Carrying the W3C trace context (``traceparent``) from the caller into a Ray worker, so spans
made there are children of the step's span. OpenTelemetry is optional: without it, or without a
current span, nothing is carried."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

WORKER_SPAN = "aikit.ray.step"


def current_carrier() -> dict[str, str] | None:
    """The current span context as W3C headers (``traceparent``, ``tracestate``), or None."""
    try:
        from opentelemetry import propagate, trace
    except ImportError:
        return None
    if not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier or None


@contextmanager
def remote_span(carrier: dict[str, str] | None, name: str, attributes: dict[str, str]) -> Iterator[None]:
    """Inside a worker: a span ``name`` whose parent is the caller's (from ``carrier``); nothing
    without a carrier."""
    if not carrier:
        yield
        return
    from opentelemetry import context, propagate, trace

    token = context.attach(propagate.extract(carrier))
    try:
        with trace.get_tracer("aikit.distributed").start_as_current_span(name, attributes=attributes):
            yield
    finally:
        context.detach(token)
