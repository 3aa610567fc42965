"""One process's telemetry (one per :class:`~aikit_components.components.Components`): aikit's
own spans (``spans.py``, recorded on the hot path at the cost of a small object and a queue
append), written to the local span store and, when configured, sent over OTLP/HTTP by background
threads (``writer.py``); and a ``MeterProvider`` when something reads metrics (OTLP or the
Prometheus endpoint of ``aikit serve --metrics-port``). It never touches OpenTelemetry's global
providers, so aikit does not fight with a user's own OTel setup; the OTel *context* is shared, so
spans nest across both."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import time
import weakref
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .otel_context import attach, detach, get_context, with_span
from .records import SpanRecord, TraceSummary
from .settings import TelemetrySettings
from .spans import Span
from .store import SpanStore
from .writer import ExportWorker, Reporter, SpanWriter

log = logging.getLogger("aikit.telemetry")

__all__ = ["MAX_ATTRIBUTE_CHARS", "Telemetry", "open_span_store"]


def open_span_store(settings: TelemetrySettings, *, shared: bool = True) -> SpanStore:
    """The span store ``settings`` name: in PostgreSQL with ``[storage] url`` (every kernel on the
    database writes and reads one store), else the SQLite file ``store_path``. ``shared``: see
    :class:`SpanStore`."""
    if settings.storage is not None:
        from .pg_store import PostgresSpanStore

        return PostgresSpanStore(settings.storage.database(), max_age_s=settings.store_max_age_s,  # type: ignore[return-value]
                                 max_bytes=settings.store_max_bytes, shared=shared)
    assert settings.store_path is not None
    return SpanStore(settings.store_path, max_age_s=settings.store_max_age_s, max_bytes=settings.store_max_bytes,
                     shared=shared)

#: Longer string attributes (captured content) are cut to this many characters.
MAX_ATTRIBUTE_CHARS = 16_384
_PROPAGATOR = TraceContextTextMapPropagator()
_SCOPE = "aikit"
_time_ns = time.time_ns
_get_current_span = trace.get_current_span


class Telemetry:
    """Tracing (and metrics) of one process. Build with :meth:`from_config`; a disabled one
    (``enabled`` False) records nothing and costs nothing."""

    def __init__(self, settings: TelemetrySettings, *, metric_readers: list[Any] | None = None,
                 service_name: str = "aikit") -> None:
        self.settings = settings
        self.enabled = settings.enabled
        self.capture_content = settings.capture_content
        self.latest_semconv = settings.latest_semconv
        self.traceparent_http = settings.traceparent_http
        self.writer: SpanWriter | None = None
        self.export: ExportWorker | None = None
        self.meter_provider: Any = None
        self.metrics: Any = None
        self.reporter = Reporter()
        self._reader: SpanStore | None = None
        self._closed = False
        self.prices: dict[str, dict[str, float]] = {}
        self._queue: Any = ()
        self._max_queue = 0  # disabled: start() makes spans that go nowhere
        self._wake_at = 0
        self._catch_up_at = 0
        for warning in settings.warnings:
            log.warning("aikit tracing: %s", warning)
        if not self.enabled:
            return
        if settings.otlp_traces_url:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter(endpoint=settings.otlp_traces_url, headers=dict(settings.otlp_headers),
                                        timeout=5)
            self.export = ExportWorker(exporter, label=settings.otlp_traces_url, reporter=self.reporter,
                                       max_queue=settings.queue_size, service_name=service_name)
        open_store = None
        if settings.store_path is not None:
            def open_store() -> SpanStore:
                return open_span_store(settings, shared=False)

        self.writer = SpanWriter(open_store, self.export, reporter=self.reporter, max_queue=settings.queue_size)
        self._queue = self.writer.queue
        self._max_queue = self.writer.max_queue
        self._wake_at = self.writer.wake_at
        self._catch_up_at = self.writer.catch_up_at
        readers = list(metric_readers or [])
        if settings.otlp_metrics_url:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
            from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

            readers.append(PeriodicExportingMetricReader(
                OTLPMetricExporter(endpoint=settings.otlp_metrics_url, headers=dict(settings.otlp_headers), timeout=5),
                export_timeout_millis=5000))
        if readers:
            from opentelemetry.sdk.metrics import MeterProvider

            from .metrics import Metrics
            from .otlp_export import resource

            self.meter_provider = MeterProvider(metric_readers=readers, resource=resource(service_name),
                                                shutdown_on_exit=False)
            self.metrics = Metrics(self.meter_provider.get_meter(_SCOPE))
        ref = weakref.ref(self)
        atexit.register(lambda: (t := ref()) is not None and t.close())

    @classmethod
    def from_config(cls, config: Any, data_dir: Path | str, *, env: Mapping[str, str] | None = None,
                    metric_readers: list[Any] | None = None) -> Telemetry:
        """The telemetry ``config``'s ``[telemetry]`` section and the OTel environment variables ask for."""
        telemetry = cls(TelemetrySettings.from_config(config, data_dir, env), metric_readers=metric_readers)
        prices = config.get("models.prices", None) if config is not None else None
        telemetry.prices = dict(prices or {})
        return telemetry

    @classmethod
    def disabled(cls) -> Telemetry:
        return cls(TelemetrySettings(enabled=False, store_path=None))

    # -- spans --------------------------------------------------------------------------------------
    def start(self, name: str, kind: SpanKind, attributes: dict[str, Any], parent: Any,
              start_time: int | None = None) -> Span:
        """A new span (``parent``: the parent span, any OTel span, or None for a root), queued
        for the writer thread (or dropped and counted when the queue is full). Not made current:
        the caller attaches it when its work runs inside it. ``attributes`` becomes the span's
        own dict (not copied)."""
        span = Span(name, kind, attributes, parent, start_time or _time_ns())
        queue = self._queue
        if len(queue) < self._max_queue:
            queue.append(span)
            queued = len(queue)
            if (queued == self._wake_at or queued == self._catch_up_at) and self.writer is not None:
                self.writer.catch_up(queued)
        elif self.writer is not None:
            self.writer.full()
        return span

    @contextlib.contextmanager
    def span(self, name: str, *, kind: SpanKind = SpanKind.INTERNAL, attributes: Mapping[str, Any] | None = None,
             parent: Any = None) -> Iterator[Any]:
        """A span around the block, current inside it (its children hang under it). ``parent``:
        an OTel context to start from (default: the current one). An exception in the block marks
        the span as failed and goes on."""
        if not self.enabled:
            yield trace.INVALID_SPAN
            return
        ctx = get_context() if parent is None else parent
        span = self.start(name, kind, dict(attributes or {}), _get_current_span(ctx))
        token = attach(with_span(ctx, span))
        try:
            yield span
        except BaseException as exc:
            span.fail(getattr(exc, "code", None) or type(exc).__name__, str(exc))
            raise
        finally:
            try:
                detach(token)
            except ValueError:  # the block ended in another contextvars context: nothing to restore here
                pass
            span.end()

    def text(self, value: Any) -> str:
        """``value`` as a string attribute (captured content), cut to :data:`MAX_ATTRIBUTE_CHARS`
        with one warning per process the first time."""
        if not isinstance(value, str):
            import json

            value = json.dumps(value, ensure_ascii=False, default=str)
        if len(value) > MAX_ATTRIBUTE_CHARS:
            self.reporter.once("cut", "a span attribute of %d characters was cut to %d (captured content is kept "
                               "short so spans stay cheap to store and send)", len(value), MAX_ATTRIBUTE_CHARS)
            value = value[:MAX_ATTRIBUTE_CHARS] + "…"
        return value

    def cost(self, model: str, input_tokens: int, output_tokens: int) -> float | None:
        """What a call cost in USD at ``[models.prices]`` (None when the model has no price)."""
        price = self.prices.get(model)
        if not price:
            return None
        return (input_tokens * float(price.get("input_per_mtok", 0.0))
                + output_tokens * float(price.get("output_per_mtok", 0.0))) / 1_000_000

    @staticmethod
    def fail(span: Any, error_type: str, message: str) -> None:
        """Mark ``span`` (aikit's or any OTel span) failed with ``error.type`` and ``message``."""
        span.set_attribute("error.type", error_type)
        span.set_status(Status(StatusCode.ERROR, message[:1000]))

    def fallback_spans(self, chat: Span, attempts: list[Any]) -> None:
        """One child span per model a fallback chain tried (``attempts``, the answering one last),
        laid end to end from the start of the ``chat`` span."""
        at = chat.start_time or 0
        for attempt in attempts:
            end = at + int(float(getattr(attempt, "elapsed_s", 0.0) or 0.0) * 1e9)
            model = str(attempt.model)
            span = self.start(f"chat {model}", SpanKind.CLIENT,
                              {"aikit.operation.kind": "llm.attempt", "gen_ai.operation.name": "chat",
                               "gen_ai.request.model": model, "gen_ai.provider.name": model.split("/", 1)[0]},
                              chat, start_time=at)
            if not attempt.ok:
                span.fail(str(attempt.kind or "error"), str(attempt.message or ""))
            span.end(end_time=max(end, at))
            at = end

    @staticmethod
    def current_trace_id() -> str | None:
        """The id of the trace running here (32 hex digits), None outside any span."""
        span = _get_current_span()
        if type(span) is Span:
            return format(span.trace_id, "032x")
        ctx = span.get_span_context()
        return format(ctx.trace_id, "032x") if ctx.is_valid else None

    @staticmethod
    def traceparent() -> str | None:
        """The W3C ``traceparent`` of the current span (None outside any span)."""
        span = _get_current_span()
        if type(span) is Span:
            return span.traceparent
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier)
        return carrier.get("traceparent")

    @staticmethod
    def context_from_env(env: Mapping[str, str] | None = None) -> Any:
        """The OTel context of a ``TRACEPARENT`` (and ``TRACESTATE``) in ``env`` (default: this
        process's environment), for a root span to continue a parent's trace; None without one."""
        env = os.environ if env is None else env
        value = env.get("TRACEPARENT")
        if not value:
            return None
        carrier = {"traceparent": value}
        if env.get("TRACESTATE"):
            carrier["tracestate"] = env["TRACESTATE"]
        ctx = _PROPAGATOR.extract(carrier)
        return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None

    # -- reading the store ------------------------------------------------------------------------
    def flush(self, *, export: bool = False) -> None:
        """Write what is queued to the store now (before reading it); ``export``: also send what
        waits for the collector (in this thread: a collector that hangs holds the caller)."""
        if self.writer is not None:
            self.writer.drain()
        if export and self.export is not None:
            self.export.drain()

    def store(self) -> SpanStore:
        """The local span store, for reading (raises ``AikitError`` when there is none)."""
        from ..errors import AikitError

        if self.settings.store_path is None:
            raise AikitError("tracing has no local span store (telemetry is disabled)", code="unavailable")
        if self._reader is None:
            self._reader = open_span_store(self.settings)
        return self._reader

    def traces(self, **filters: Any) -> list[TraceSummary]:
        self.flush()
        return self.store().traces(**filters)

    def trace(self, trace_id: str) -> list[SpanRecord]:
        self.flush()
        return self.store().trace(trace_id)

    # -- state ----------------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Spans dropped and delivery failures, per destination (a span the full queue turned
        away counts for both)."""
        out: dict[str, Any] = {}
        writer = self.writer
        if writer is None:
            return out
        if self.settings.store_path is not None:
            d = writer.delivery
            out["store"] = {"dropped": writer.dropped + d.dropped, "failures": d.failures, "pending": writer.pending,
                            "last_error": d.last_error}
        if self.export is not None:
            d = self.export.delivery
            out["otlp"] = {"dropped": writer.dropped + d.dropped, "failures": d.failures,
                           "pending": writer.pending + self.export.pending, "last_error": d.last_error}
        return out

    def close(self) -> None:
        """Write or send what is queued (briefly: a collector that hangs is given up on), stop."""
        if self._closed:
            return
        self._closed = True
        if self.writer is not None:
            self.writer.stop()
        if self.export is not None:
            self.export.shutdown()
        if self.meter_provider is not None:
            try:
                self.meter_provider.shutdown(timeout_millis=3000)
            except Exception:  # noqa: BLE001 - a collector that is down
                log.debug("metrics shutdown failed", exc_info=True)
        if self.export is not None and self.writer is not None:
            lost = self.export.delivery.dropped + self.writer.dropped
            if lost:
                log.warning("aikit tracing: %d spans could not be sent to %s (%s)", lost, self.settings.otlp_traces_url,
                            self.export.delivery.last_error or "queue full")
        if self._reader is not None:
            self._reader.close()
