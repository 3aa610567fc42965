"""Where spans go after the hot path: :class:`SpanWriter` takes each :class:`~.spans.Span` from a
bounded queue (one ``deque.append`` when the span starts, nothing when it ends) and, in its own
daemon thread, writes batches of them to the local :class:`~.store.SpanStore` (one transaction,
``executemany``) and hands the finished ones to :class:`ExportWorker`, whose thread converts them
to the SDK's ``ReadableSpan`` and sends them with the OTLP/HTTP exporter.

A span still running when its batch is written waits for the next batches while it is young
(:data:`HOLD_RUNNING_S`: most spans end sooner, and are then written once, ended); one that has
run longer is written as running (live views show it) and kept aside, and written again once it
has ended. An explicit drain (``Telemetry.flush``, the end) writes the young ones as running too.

A full queue drops spans: they are counted, and the first drop and the first failure of the store
or the collector are reported once, as one warning each (a collector that is down, a full disk, a
locked store: the run goes on)."""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from itertools import repeat
from typing import Any

from opentelemetry.trace import SpanKind

from ..jsontext import dumps_with
from .rows import SpanGroup
from .spans import SharedAttributes, Span
from .store import SpanStore

log = logging.getLogger("aikit.telemetry")

__all__ = ["BATCH", "ExportWorker", "Reporter", "SpanRows", "SpanWriter"]

#: Spans per OTLP request; an export queue this long wakes its thread.
BATCH = 512
_INTERNAL = SpanKind.INTERNAL
_time_ns = time.time_ns
_UNSET = "UNSET"
_popleft = collections.deque.popleft  # (the same string object as a span's status: a status set since is another)


# attribute dicts and event lists: JSON types already, ``str`` for anything else
_encode = dumps_with(ensure_ascii=False, default=str, separators=(",", ":"))


def _count(value: Any) -> int:
    """A token count attribute as the store's column (-1 when absent or not a number)."""
    if value is None:
        return -1
    if value.__class__ is int:
        return value
    return int(value) if value.__class__ is float and math.isfinite(value) else -1


def _amount(value: Any) -> float:
    """A cost attribute as the store's column (-1.0 when absent or not a finite number)."""
    if value is None:
        return -1.0
    if value.__class__ is float:
        return value if math.isfinite(value) else -1.0
    return float(value) if value.__class__ is int else -1.0


class SpanRows:
    """Makes the store's rows of spans (:data:`~.rows.ROW_FIELDS`) for one writer, remembering
    the hex of trace and parent ids (a trace's spans share them). The columns a span takes from
    its attributes are worked out once for attributes many spans share
    (:class:`~.spans.SharedAttributes`: a tool called the same way, call after call); other
    attribute dicts are each their own (ids, tokens, times), so they are encoded as they come."""

    #: Remembered ids of each kind; past this many, the memory starts again.
    LIMIT = 4096

    def __init__(self) -> None:
        self._trace_hex: dict[int, str] = {}
        self._span_hex: dict[int, str] = {}

    def row(self, span: Span, end_time: int | None) -> tuple[Any, ...]:
        """``span`` as a row, as it is now; ``end_time``: the span's end time as the caller read it
        (None: written as running), so the row and the caller's decision agree although the span
        may end meanwhile in another thread."""
        a = span.attributes
        events = span.events
        trace_id = span.trace_id
        trace_hex = self._trace_hex.get(trace_id)
        if trace_hex is None:
            trace_hex = self._remember_hex(self._trace_hex, trace_id, 16)
        parent = span.parent_id
        if parent:
            parent_hex = self._span_hex.get(parent)
            if parent_hex is None:
                parent_hex = self._remember_hex(self._span_hex, parent, 8)
        else:
            parent_hex = ""
        if a.__class__ is SharedAttributes:  # a tool's attributes, the same call after call: worked out once
            columns = a.row_columns
            if columns is None:
                columns = a.row_columns = _columns(a)
        else:
            columns = _columns(a)
        kind = span.kind
        return (trace_hex, span.span_id.to_bytes(8, "big").hex(), parent_hex, span.name,
                "INTERNAL" if kind is _INTERNAL else kind.name, span.start_time, -1 if end_time is None else end_time,
                span.status, span.status_message, columns[0],
                _encode([{"name": n, "time_ns": t, "attributes": e} for n, t, e in events]) if events else "[]"
                ) + columns[1]

    def _remember_hex(self, hexes: dict[int, str], number: int, size: int) -> str:
        if len(hexes) >= self.LIMIT:
            hexes.clear()
        value = hexes[number] = number.to_bytes(size, "big").hex()
        return value


def _columns(a: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    """What a row takes from the attributes ``a``: their JSON, and the row's last columns
    (operation kind, agent, tokens in and out, cost; absent ones as the store's sentinels)."""
    agent = a.get("gen_ai.agent.name")
    op_kind = a.get("aikit.operation.kind")
    tokens_in = a.get("gen_ai.usage.input_tokens")
    tokens_out = a.get("gen_ai.usage.output_tokens")
    cost = a.get("aikit.cost.usd")
    return _encode(a), (op_kind if op_kind.__class__ is str else str(op_kind or ""),
                        "" if agent is None else str(agent), -1 if tokens_in is None else _count(tokens_in),
                        -1 if tokens_out is None else _count(tokens_out), -1.0 if cost is None else _amount(cost))


class Reporter:
    """The one warning per kind of trouble (a full queue, a failing store, a failing collector)
    that a telemetry gives, however many times it happens."""

    def __init__(self) -> None:
        self._warned: set[str] = set()

    def once(self, key: str, message: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("aikit tracing: " + message, *args)


class _Delivery:
    """Counters of one destination (the store or the collector)."""

    def __init__(self, name: str, reporter: Reporter) -> None:
        self.name = name
        self.reporter = reporter
        self.dropped = 0  # spans lost: a queue was full or the delivery failed
        self.failures = 0
        self.last_error = ""

    def failed(self, error: str, lost: int) -> None:
        self.failures += 1
        self.dropped += lost
        self.last_error = error
        self.reporter.once(f"failed:{self.name}", "%s failed (%s); the run goes on, and the spans that could not be "
                           "delivered are dropped and counted", self.name, error)


class ExportWorker:
    """A bounded queue of finished spans and a daemon thread that converts them and sends them
    with ``exporter`` (an OTLP ``SpanExporter``) in batches."""

    def __init__(self, exporter: Any, *, label: str, reporter: Reporter, max_queue: int,
                 service_name: str = "aikit", delay_s: float = 1.0) -> None:
        self.exporter = exporter
        self.delivery = _Delivery(f"OTLP export to {label}", reporter)
        self._max_queue = max_queue
        self._delay_s = delay_s
        self._queue: collections.deque[Span] = collections.deque()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._stopping = False
        self._convert: Callable[[Span], Any] | None = None
        self._service_name = service_name
        self._thread = threading.Thread(target=self._run, name=f"aikit-otlp-{id(self):x}", daemon=True)
        _quiet_exporter_logs(self._thread.name)
        self._thread.start()

    def put(self, spans: Sequence[Span]) -> None:
        """Queue finished spans (from the writer thread); what does not fit is dropped and counted."""
        room = self._max_queue - len(self._queue)
        if room < len(spans):
            lost = len(spans) - max(room, 0)
            self.delivery.dropped += lost
            self.delivery.reporter.once("queue", "the %s queue is full (%d spans); spans are dropped and counted "
                                        "until it drains", self.delivery.name, self._max_queue)
            spans = spans[:max(room, 0)]
        self._queue.extend(spans)
        if len(self._queue) >= BATCH:
            self._wake.set()

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self._delay_s)
            self._wake.clear()
            if self._stopping:
                break
            self.drain()

    def drain(self, limit: int | None = None) -> None:
        """Send what is queued now (in the calling thread), batch by batch."""
        with self._lock:
            queue = self._queue
            batches = 0
            while queue and (limit is None or batches < limit):
                batches += 1
                spans = [queue.popleft() for _ in range(min(BATCH, len(queue)))]
                try:
                    error = self._send(spans)
                except Exception as exc:  # noqa: BLE001 - reported once, never raised into a run
                    error = f"{type(exc).__name__}: {exc}"
                if error is not None:
                    self.delivery.failed(error, len(spans))

    def _send(self, spans: list[Span]) -> str | None:
        from opentelemetry.sdk.trace.export import SpanExportResult

        if self._convert is None:
            from .otlp_export import readable_span_converter

            self._convert = readable_span_converter(self._service_name)
        convert = self._convert
        result = self.exporter.export([convert(s) for s in spans])
        return None if result is SpanExportResult.SUCCESS else "the collector did not accept the spans"

    @property
    def pending(self) -> int:
        return len(self._queue)

    def shutdown(self) -> None:
        # A collector that hangs must not hold the process: the worker gets a short while to finish
        # its export, what is left is sent once more only if the collector has been answering, the
        # exporter's shutdown interrupts its retries, and whatever is still queued is dropped (counted).
        self._stopping = True
        self._wake.set()
        self._thread.join(2.0)
        if self._queue and self.delivery.failures == 0 and not self._thread.is_alive():
            self.drain(limit=2)
        self.exporter.shutdown()
        self.delivery.dropped += len(self._queue)
        self._queue.clear()


#: After the span store failed to open, spans are dropped for this long before it is tried again.
REOPEN_DELAY_S = 10.0
#: A span still running when the writer thread takes it is written (as running) only once it has
#: run this long: written running, a span is written twice (its row, then the row updated once it
#: has ended), and most spans (a model call, an agent run) end within a second.
HOLD_RUNNING_S = 1.0
_HOLD_RUNNING_NS = int(HOLD_RUNNING_S * 1e9)
_NEVER = 1 << 63  # (a start time no span has: hold none)


class SpanWriter:
    """The queue the hot path appends started spans to, and the thread that writes them to the
    store (``open_store``: made in that thread on first use; None: no store) and hands finished
    ones to ``export`` (None: no OTLP)."""

    def __init__(self, open_store: Callable[[], SpanStore] | None, export: ExportWorker | None, *,
                 reporter: Reporter, max_queue: int = 8192, delay_s: float = 0.5) -> None:
        self.queue: collections.deque[Span] = collections.deque()
        self.max_queue = max_queue
        #: A queue this long wakes the thread (who appends a span checks): a quarter full, so a
        #: write takes many spans at once and the spans made while the thread waits for the GIL
        #: still fit. (Else it wakes every ``delay_s``.)
        self.wake_at = max(1, max_queue // 4)
        #: A queue this long makes the thread that appends (not an event loop's) wait for the
        #: write under way and write what is queued: nothing is dropped for want of a turn.
        self.catch_up_at = max(self.wake_at + 1, max_queue * 3 // 4)
        self.wake = threading.Event()
        self.export = export
        self.reporter = reporter
        self.delivery = _Delivery("span store", reporter)
        self.dropped = 0  # spans the full queue turned away (neither stored nor sent)
        self._open_store = open_store
        self._store: SpanStore | None = None
        self._retry_open_at = 0.0  # after a failed open: when to try again
        self._running: list[Span] = []  # written while running; to write again once ended
        self._young: list[Span] = []  # taken while running and young: not written yet
        self._rows = SpanRows()
        self._delay_s = delay_s
        self._lock = threading.Lock()  # one drain at a time (the thread or a flush)
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="aikit-span-writer", daemon=True)
        self._thread.start()

    def full(self) -> None:
        """Count a span turned away by the full queue (called by the hot path)."""
        self.dropped += 1
        self.reporter.once("queue", "the span queue is full (%d spans); spans are dropped and counted until it "
                           "drains", self.max_queue)

    def catch_up(self, queued: int) -> None:
        """The queue reached :attr:`wake_at` or :attr:`catch_up_at` (``queued``): write it in this
        thread when it runs no event loop and no write is under way (at ``catch_up_at``, once the
        write under way is done), else wake the writer thread. A thread making spans from Lua lets
        go of the GIL at every crossing, and the writer thread taking it back each time fell so far
        behind that the queue filled and spans were dropped; writing in line costs the spans'
        maker less than that contention did."""
        if asyncio.events._get_running_loop() is None and self._lock.acquire(  # (public: asyncio.events.__all__)
                blocking=queued >= self.catch_up_at):
            try:
                self._drain_held(hold=True)
            finally:
                self._lock.release()
        else:
            self.wake.set()

    def _run(self) -> None:
        while not self._stopping:
            self.wake.wait(self._delay_s)
            self.wake.clear()
            if self._stopping:
                break
            with self._lock:
                self._drain_held(hold=True)

    def drain(self) -> None:
        """Write what is queued, and the spans written while running that have ended since (in
        the calling thread), in one write: the fewer writes, the fewer times this thread takes
        the GIL back from the one making spans. Spans still running are written as running,
        however young."""
        with self._lock:
            self._drain_held(hold=False)

    def _drain_held(self, *, hold: bool) -> None:
        """:meth:`drain`, the lock held; ``hold``: keep spans still running that are younger than
        :data:`HOLD_RUNNING_S` for a later write."""
        queue = self.queue
        spans = list(map(_popleft, repeat(queue, len(queue))))  # (what is appended meanwhile stays)
        if self._young:  # (started before those queued since)
            spans[:0] = self._young
            self._young = []
        new = len(spans)
        if self._running:
            still: list[Span] = []
            for span in self._running:
                if span.end_time is None:
                    still.append(span)
                else:
                    spans.append(span)
            self._running = still
        if spans:
            self._deliver(spans, new, _time_ns() - _HOLD_RUNNING_NS if hold else _NEVER)

    def _deliver(self, spans: list[Span], new: int, young_since: int) -> None:
        """Write ``spans`` (the first ``new`` of them never written before; those still running
        that started after ``young_since`` wait in ``_young`` instead) and hand the ended
        ones to the export. Runs of new, ended spans alike but for their ids and times (a tool's
        spans called the same way, one after the other) go to the store as a :class:`SpanGroup`:
        one span's row and then three values per span, which the store writes without a row each."""
        rows: list[Any] = []
        running = self._running
        row = self._rows.row
        finished: list[Span] | None = [] if self.export is not None else None
        members: list[Any] = []  # of the group being gathered
        g_attrs: Any = None
        g_trace = g_parent = g_name = g_kind = None
        for span in spans[:new] if new < len(spans) else spans:
            end_time = span.end_time
            if end_time is None:
                if span.start_time > young_since:
                    self._young.append(span)
                    continue
                rows.append(row(span, None))
                running.append(span)
                g_attrs = None
                continue
            if finished is not None:
                finished.append(span)
            a = span.attributes
            if span.events is not None or span.status is not _UNSET:
                rows.append(row(span, end_time))
                g_attrs = None
            elif (a is g_attrs and span.trace_id == g_trace and span.parent_id == g_parent and span.name is g_name
                  and span.kind is g_kind):  # (g_attrs: shared attributes, or None)
                members += (span.span_id.to_bytes(8, "big").hex(), span.start_time, end_time)
            elif a.__class__ is SharedAttributes:
                group = SpanGroup(row(span, end_time))
                rows.append(group)
                members = group.members
                g_attrs, g_trace, g_parent, g_name, g_kind = a, span.trace_id, span.parent_id, span.name, span.kind
            else:
                rows.append(row(span, end_time))
                g_attrs = None
        for span in spans[new:]:  # written running before, ended since
            rows.append(row(span, span.end_time))
            if finished is not None:
                finished.append(span)
        if finished:
            self.export.put(finished)  # type: ignore[union-attr]
        if self._open_store is None:
            return
        try:
            self._write(rows)
        except Exception as exc:  # noqa: BLE001 - reported once, never raised into a run
            self.delivery.failed(f"{type(exc).__name__}: {exc}", len(spans))

    def _write(self, rows: list[Any]) -> None:
        if self._store is None:
            if time.monotonic() < self._retry_open_at:
                raise RuntimeError("the span store could not be opened (tried again shortly)")
            try:
                self._store = self._open_store()  # type: ignore[misc]
            except Exception as exc:
                # a full disk or a locked file passes: try again later, not at every batch
                self._retry_open_at = time.monotonic() + REOPEN_DELAY_S
                raise RuntimeError(f"opening the span store: {type(exc).__name__}: {exc}") from exc
        self._store.write_rows(rows)

    @property
    def pending(self) -> int:
        return len(self.queue) + len(self._young)

    def stop(self) -> None:
        """Stop the thread, write what is left (spans still running are written as they are)."""
        self._stopping = True
        self.wake.set()
        self._thread.join(2.0)
        self.drain()
        if self._store is not None:
            self._store.close()


class _OwnThreadFilter(logging.Filter):
    """Silences the OTLP exporter's per-attempt logs in aikit's export thread (aikit reports a
    failure once itself); other threads' exports (a user's own OTel setup) log as usual."""

    def __init__(self, thread_name: str) -> None:
        super().__init__()
        self.thread_name = thread_name

    def filter(self, record: logging.LogRecord) -> bool:
        return record.threadName != self.thread_name


def _quiet_exporter_logs(thread_name: str) -> None:
    for name in ("opentelemetry.exporter.otlp.proto.http.trace_exporter", "opentelemetry.exporter.otlp.common.http",
                 "opentelemetry.exporter.otlp.proto.http.metric_exporter"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _OwnThreadFilter) and f.thread_name == thread_name for f in logger.filters):
            logger.addFilter(_OwnThreadFilter(thread_name))
