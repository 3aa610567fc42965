"""aikit's own span: a small object recorded on the hot path (ids, parent, name, kind, start and
end times, an attributes dict, events, status), instead of an OpenTelemetry SDK span.

A :class:`Span` is an ``opentelemetry.trace.Span``, so it lives in the OpenTelemetry context like
any other: operations started inside it are its children, ``trace.get_current_span()`` finds it,
a user's own OTel spans in the same process nest under it, and the W3C propagator reads its ids.
What the SDK does per span (attribute validation and copying, a lock, a sampler, span processors
called synchronously) is not done here: a span is queued once, when it starts, to the telemetry's
writer thread (``writer.py``), which writes it to the store and converts the finished ones to the
SDK's ``ReadableSpan`` for OTLP export, off the Lua thread and the I/O loop.

Ids come from :func:`random.getrandbits` (what the SDK's default id generator uses; reseeded in a
forked child), stored as integers and formatted as hex only by the writer."""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

__all__ = ["MAX_ATTRIBUTE_LENGTH", "SharedAttributes", "Span", "attribute_value", "child_span", "new_span_id",
           "new_trace_id"]

#: Longer strings set through :meth:`Span.set_attribute` are cut (aikit's own captured content is
#: cut shorter, with a warning, by ``Telemetry.text``).
MAX_ATTRIBUTE_LENGTH = 65_536
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_getrandbits = random.getrandbits
_time_ns = time.time_ns


def new_trace_id() -> int:
    """A random, non-zero 128-bit trace id."""
    return _getrandbits(128) or 1


def new_span_id() -> int:
    """A random, non-zero 64-bit span id."""
    return _getrandbits(64) or 1


def attribute_value(value: Any) -> Any:
    """``value`` as an OpenTelemetry attribute value (str, bool, int, float or a tuple of one of
    them; long strings cut to :data:`MAX_ATTRIBUTE_LENGTH`), or None when it cannot be one."""
    if isinstance(value, str):
        return value if len(value) <= MAX_ATTRIBUTE_LENGTH else value[:MAX_ATTRIBUTE_LENGTH]
    if isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        items = tuple(attribute_value(v) for v in value)
        return items if None not in items else tuple(str(v) for v in value)
    return None


class SharedAttributes(dict):  # type: ignore[type-arg]
    """Attributes that many spans start with (a tool's spans called the same way), made once and
    never changed: a span that sets an attribute copies them first (:meth:`Span.set_attribute`).
    ``row_columns`` is for the writer thread, which works out once what the store's row of such a
    span takes from them (``writer.SpanRows``)."""

    __slots__ = ("row_columns",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.row_columns: Any = None

    def _read_only(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("shared span attributes are read-only: copy them (dict(attributes)) to change them")

    __setitem__ = __delitem__ = update = setdefault = pop = popitem = clear = _read_only  # type: ignore[assignment]
    __ior__ = _read_only  # type: ignore[assignment]


class Span(trace.Span):
    """One span (see the module doc). Made by ``Telemetry.start_span``; ``end`` ends it (the
    writer thread notices: nothing is queued at the end). Times are Unix-epoch nanoseconds, as
    in OpenTelemetry; ``status`` is ``"UNSET"``, ``"OK"`` or ``"ERROR"``."""

    __slots__ = ("attributes", "end_time", "events", "kind", "name", "parent_id", "remote_parent", "span_id",
                 "start_time", "status", "status_message", "trace_id", "_context")

    def __init__(self, name: str, kind: SpanKind, attributes: dict[str, Any], parent: Any, start_time: int) -> None:
        self.name = name
        self.kind = kind
        self.attributes = attributes
        self.start_time = start_time
        self.end_time: int | None = None
        self.events: list[tuple[str, int, dict[str, Any]]] | None = None
        self.status = "UNSET"
        self.status_message = ""
        self.span_id = _getrandbits(64) or 1
        self._context: SpanContext | None = None
        if type(parent) is Span:  # the common case: a child of one of aikit's spans
            self.trace_id = parent.trace_id
            self.parent_id = parent.span_id
            self.remote_parent = False
            return
        ctx = parent.get_span_context() if parent is not None else None
        if ctx is not None and ctx.is_valid:  # another tracer's span, or a remote parent (TRACEPARENT)
            self.trace_id = ctx.trace_id
            self.parent_id = ctx.span_id
            self.remote_parent = bool(ctx.is_remote)
        else:
            self.trace_id = _getrandbits(128) or 1
            self.parent_id = 0
            self.remote_parent = False

    # -- opentelemetry.trace.Span -------------------------------------------------------------
    def get_span_context(self) -> SpanContext:
        context = self._context
        if context is None:
            context = self._context = SpanContext(self.trace_id, self.span_id, False, _SAMPLED)
        return context

    def is_recording(self) -> bool:
        return self.end_time is None

    def set_attribute(self, key: str, value: Any) -> None:
        if self.end_time is None:
            value = attribute_value(value)
            if value is not None:
                attributes = self.attributes
                if type(attributes) is not dict:  # SharedAttributes: copied on the first change
                    attributes = self.attributes = dict(attributes)
                attributes[str(key)] = value

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        # (set_attribute for each, inline: the finishers of model calls and agent runs set several)
        if self.end_time is not None:
            return
        mine = self.attributes
        for key, value in attributes.items():
            cls = value.__class__
            if cls is str:
                if len(value) > MAX_ATTRIBUTE_LENGTH:
                    value = value[:MAX_ATTRIBUTE_LENGTH]
            elif cls is not int and cls is not float and cls is not bool:
                value = attribute_value(value)
                if value is None:
                    continue
            if type(mine) is not dict:  # SharedAttributes: copied on the first change
                mine = self.attributes = dict(mine)
            mine[key if key.__class__ is str else str(key)] = value

    def add_event(self, name: str, attributes: Mapping[str, Any] | None = None, timestamp: int | None = None) -> None:
        if self.end_time is not None:
            return
        event = (str(name), timestamp or _time_ns(), dict(attributes) if attributes else {})
        if self.events is None:
            self.events = [event]
        else:
            self.events.append(event)

    def update_name(self, name: str) -> None:
        if self.end_time is None:
            self.name = str(name)

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self.end_time is not None:
            return
        if isinstance(status, Status):
            code, description = status.status_code, status.description if description is None else description
        else:
            code = status
        if code is StatusCode.UNSET or self.status == "OK":  # OK is final, as in the SDK
            return
        self.status = code.name
        self.status_message = (description or "")[:1000] if code is StatusCode.ERROR else ""

    def record_exception(self, exception: BaseException, attributes: Mapping[str, Any] | None = None,
                         timestamp: int | None = None, escaped: bool = False) -> None:
        self.add_event("exception", {"exception.type": type(exception).__name__,
                                     "exception.message": str(exception)[:1000], **(attributes or {})}, timestamp)

    def end(self, end_time: int | None = None) -> None:
        """End the span (a second call does nothing). ``end_time`` is set last: the writer thread
        takes a span with an end time as complete."""
        if self.end_time is None:
            self.end_time = end_time or _time_ns()

    # -- aikit ------------------------------------------------------------------------------------
    def fail(self, error_type: str, message: str) -> None:
        """Mark the span failed: ``error.type`` and status ERROR with ``message``."""
        if self.end_time is None:
            attributes = self.attributes
            if type(attributes) is not dict:  # SharedAttributes: copied on the first change
                attributes = self.attributes = dict(attributes)
            attributes["error.type"] = str(error_type)
            self.status = "ERROR"
            self.status_message = str(message)[:1000]

    @property
    def trace_id_hex(self) -> str:
        return format(self.trace_id, "032x")

    @property
    def traceparent(self) -> str:
        """The span's W3C ``traceparent`` header value."""
        return f"00-{self.trace_id:032x}-{self.span_id:016x}-01"

    def __repr__(self) -> str:
        return f"Span({self.name!r}, trace={self.trace_id:032x}, span={self.span_id:016x})"


_new = object.__new__


def child_span(name: str, kind: SpanKind, attributes: dict[str, Any], parent: Span, start_time: int) -> Span:
    """``Span(name, kind, attributes, parent, start_time)`` for a parent that is one of aikit's
    spans (the tracing interceptor's common case), without the class call's layers (its
    ``__init__`` called through the type: a third of the span's cost)."""
    span = _new(Span)
    span.name = name
    span.kind = kind
    span.attributes = attributes
    span.start_time = start_time
    span.end_time = None
    span.events = None
    span.status = "UNSET"
    span.status_message = ""
    span.span_id = _getrandbits(64) or 1
    span._context = None
    span.trace_id = parent.trace_id
    span.parent_id = parent.span_id
    span.remote_parent = False
    return span
