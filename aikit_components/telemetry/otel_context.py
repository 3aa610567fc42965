"""The OpenTelemetry context, read and set without the API's layers of Python calls.

Each operation reads the current context, finds its parent span in it, and attaches a context
with its own span; through ``opentelemetry.context`` and ``opentelemetry.trace`` that is ten
Python calls and two copies of the context, as much as the rest of a span's hot path. With the
default runtime context (a ``ContextVar`` holding the OTel ``Context``), the same can be done on
the ``ContextVar`` itself: the variable is the one a token from ``opentelemetry.context.attach``
belongs to (``Token.var``), and the key of the current span is the one key of a context that
``set_span_in_context`` made from an empty one. Both are found once, through the public API, and
checked; with another runtime context (``OTEL_PYTHON_CONTEXT``) the API functions are used.

So: ``get_context()`` is the current ``Context``, ``context.get(SPAN_KEY)`` its span (or None),
``with_span(context, span)`` a copy of it with ``span`` current, ``attach(context)`` makes a
context current and returns a token for ``detach(token)``, which raises ``ValueError`` when the
token was made in another ``contextvars`` context (an operation that ended in another task; the
API logs that and goes on: callers ignore it)."""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any

from opentelemetry import context as api
from opentelemetry import trace
from opentelemetry.context import Context

__all__ = ["SPAN_KEY", "attach", "detach", "get_context", "parent_span", "with_span"]


def _span_key() -> str:
    keys = list(trace.set_span_in_context(trace.INVALID_SPAN, Context()))
    if len(keys) != 1:
        raise LookupError("unexpected context shape")
    return keys[0]


def _context_var() -> contextvars.ContextVar[Context] | None:
    current = api.get_current()
    token = api.attach(current)
    try:
        var = getattr(token, "var", None)
        if isinstance(token, contextvars.Token) and isinstance(var, contextvars.ContextVar) and var.get() is current:
            return var
        return None
    finally:
        api.detach(token)


SPAN_KEY: str = _span_key()
_var = _context_var()

get_context: Callable[[], Context]
attach: Callable[[Context], Any]
detach: Callable[[Any], None]
if _var is not None:
    get_context = _var.get
    attach = _var.set
    detach = _var.reset
else:  # another runtime context: the API
    get_context = api.get_current
    attach = api.attach
    detach = api.detach


def with_span(context: Context, span: Any) -> Context:
    """A copy of ``context`` where ``span`` is the current span."""
    return Context(context, **{SPAN_KEY: span})


def parent_span(context: Context) -> Any:
    """The current span of ``context`` as ``trace.get_current_span`` gives it (``INVALID_SPAN``
    when none), for a parent that is not one of aikit's spans."""
    return trace.get_current_span(context)
