"""Span processors that take spans off the caller's thread: :class:`StoreSpanProcessor` writes
them to the local :class:`~.store.SpanStore` (at start and at end, so live views see running
spans), :class:`ExportSpanProcessor` sends finished spans to an OTLP exporter.

Both queue spans in a bounded deque (appending costs well under a microsecond; nothing waits on
I/O on the Lua thread or the I/O loop) and a daemon thread writes or sends them in batches. A
full queue drops spans: they are counted, and the first drop and the first failure of the store
or the collector are reported once, as one warning each (a collector that is down, a full disk,
a locked store: the run goes on)."""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from .records import SpanRecord
from .store import SpanStore

log = logging.getLogger("aikit.telemetry")

__all__ = ["ExportSpanProcessor", "StoreSpanProcessor", "span_record"]


def span_record(span: ReadableSpan) -> SpanRecord:
    """``span`` as a :class:`SpanRecord` (a running span's attributes as they are now). Sequence
    values stay tuples (the store writes them as JSON lists, and reads back lists)."""
    ctx = span.get_span_context()
    parent = span.parent
    for _ in range(3):  # a running span's attributes may change while they are copied
        try:
            attributes = dict(span.attributes or {})
            break
        except RuntimeError:
            continue
    else:
        attributes = {}
    status = span.status
    return SpanRecord(
        trace_id=format(ctx.trace_id, "032x"), span_id=format(ctx.span_id, "016x"),
        parent_span_id=format(parent.span_id, "016x") if parent is not None else None,
        name=span.name, kind=span.kind.name, start_ns=span.start_time or 0, end_ns=span.end_time,
        status=status.status_code.name,
        status_message=(status.description or "") if status.status_code.name == "ERROR" else "", attributes=attributes,
        events=[{"name": e.name, "time_ns": e.timestamp, "attributes": dict(e.attributes)}
                for e in span.events] if span.events else [],
    )


class _BatchWorker:
    """A bounded queue of spans and a daemon thread that hands them over in batches to
    ``deliver`` (which returns an error text on failure, None on success)."""

    def __init__(self, name: str, deliver: Callable[[list[Any]], str | None], *, max_queue: int,
                 batch: int = 512, delay_s: float = 0.5) -> None:
        self.name = name
        self._deliver = deliver
        self._max_queue = max_queue
        self._batch = batch
        self._delay_s = delay_s
        self._queue: collections.deque[Any] = collections.deque()
        self._wake = threading.Event()
        self._lock = threading.Lock()  # one delivery at a time (the worker or a flush)
        self._stopping = False
        self.dropped = 0  # spans lost: queue full or a failed delivery
        self.failures = 0
        self.last_error = ""
        self._warned_drop = self._warned_failure = False
        self._thread = threading.Thread(target=self._run, name=f"aikit-{name}", daemon=True)
        self._thread.start()

    def put(self, item: Any) -> None:
        queue = self._queue
        if len(queue) >= self._max_queue:
            self.dropped += 1
            if not self._warned_drop:
                self._warned_drop = True
                log.warning("aikit tracing: the %s queue is full (%d spans); spans are dropped and counted "
                            "until it drains", self.name, self._max_queue)
            return
        queue.append(item)
        if len(queue) >= self._batch:
            self._wake.set()

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self._delay_s)
            self._wake.clear()
            if self._stopping:
                break
            self.drain()

    def drain(self, limit: int | None = None) -> None:
        """Deliver what is queued now (in the calling thread), batch by batch."""
        with self._lock:
            queue = self._queue
            batches = 0
            while queue and (limit is None or batches < limit):
                batches += 1
                items = [queue.popleft() for _ in range(min(self._batch, len(queue)))]
                try:
                    error = self._deliver(items)
                except Exception as exc:  # noqa: BLE001 - reported once, never raised into a run
                    error = f"{type(exc).__name__}: {exc}"
                if error is not None:
                    self.failures += 1
                    self.dropped += len(items)
                    self.last_error = error
                    if not self._warned_failure:
                        self._warned_failure = True
                        log.warning("aikit tracing: %s failed (%s); the run goes on, and the spans that could not "
                                    "be delivered are dropped and counted", self.name, error)

    def stop(self, timeout_s: float) -> None:
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout_s)

    @property
    def busy(self) -> bool:
        """Still delivering (a stop timed out while a delivery hangs)."""
        return self._thread.is_alive()

    @property
    def pending(self) -> int:
        return len(self._queue)


#: After the span store failed to open, spans are dropped for this long before it is tried again.
REOPEN_DELAY_S = 10.0


class StoreSpanProcessor(SpanProcessor):
    """Writes every span to the local store when it starts and when it ends. Within one batch a
    span that already ended is written once, as ended; so short spans cost one row write."""

    def __init__(self, open_store: Callable[[], SpanStore], *, max_queue: int = 2048, delay_s: float = 0.5) -> None:
        self._open_store = open_store
        self._store: SpanStore | None = None
        self._retry_open_at = 0.0
        self.worker = _BatchWorker("span store", self._write, max_queue=max_queue, delay_s=delay_s)

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self.worker.put(span)

    def on_end(self, span: ReadableSpan) -> None:
        self.worker.put(span)

    def _write(self, spans: list[Any]) -> str | None:
        latest: dict[int, Any] = {}
        for span in spans:
            latest[span.get_span_context().span_id] = span
        if self._store is None:
            if time.monotonic() < self._retry_open_at:
                return "the store could not be opened (tried again shortly)"
            try:
                self._store = self._open_store()
            except Exception as exc:
                # a full disk or a locked file passes: try again later, not at every batch
                self._retry_open_at = time.monotonic() + REOPEN_DELAY_S
                return f"opening the span store: {type(exc).__name__}: {exc}"
        self._store.write([span_record(s) for s in latest.values()])
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        self.worker.drain()
        return True

    def shutdown(self) -> None:
        self.worker.stop(2.0)
        self.worker.drain()
        if self._store is not None:
            self._store.close()


class ExportSpanProcessor(SpanProcessor):
    """Sends finished spans to ``exporter`` (OTLP/HTTP) in batches from its own thread."""

    def __init__(self, exporter: SpanExporter, *, label: str, max_queue: int = 2048, delay_s: float = 1.0) -> None:
        self.exporter = exporter
        self.worker = _BatchWorker(f"OTLP export to {label}", self._send, max_queue=max_queue, delay_s=delay_s)
        _quiet_exporter_logs(self.worker._thread.name)

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        self.worker.put(span)

    def _send(self, spans: Sequence[ReadableSpan]) -> str | None:
        result = self.exporter.export(spans)
        return None if result is SpanExportResult.SUCCESS else "the collector did not accept the spans"

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        self.worker.drain()
        return True

    def shutdown(self) -> None:
        # A collector that hangs must not hold the process: the worker gets a short while to finish
        # its export, what is left is sent once more only if the collector has been answering, the
        # exporter's shutdown interrupts its retries, and whatever is still queued is dropped (counted).
        worker = self.worker
        worker.stop(2.0)
        if worker.pending and worker.failures == 0 and not worker.busy:
            worker.drain(limit=2)
        self.exporter.shutdown()
        worker.dropped += worker.pending


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
