"""One process's telemetry (one per :class:`~aikit_components.components.Components`): its own
OpenTelemetry ``TracerProvider`` (never the global one, so aikit does not fight with a user's own
OTel setup) with the local span store and, when configured, OTLP/HTTP export; and a
``MeterProvider`` when something reads metrics (OTLP or the Prometheus endpoint of
``aikit serve --metrics-port``)."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import weakref
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .processors import ExportSpanProcessor, StoreSpanProcessor
from .records import SpanRecord, TraceSummary
from .settings import TelemetrySettings
from .store import SpanStore

log = logging.getLogger("aikit.telemetry")

__all__ = ["MAX_ATTRIBUTE_CHARS", "Telemetry"]

#: Longer string attributes (captured content) are cut to this many characters.
MAX_ATTRIBUTE_CHARS = 16_384
_PROPAGATOR = TraceContextTextMapPropagator()
_SCOPE = "aikit"


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
        self.store_processor: StoreSpanProcessor | None = None
        self.export_processor: ExportSpanProcessor | None = None
        self.provider: TracerProvider | None = None
        self.meter_provider: Any = None
        self.metrics: Any = None
        self._reader: SpanStore | None = None
        self._closed = False
        self._truncation_warned = False
        self.prices: dict[str, dict[str, float]] = {}
        for warning in settings.warnings:
            log.warning("aikit tracing: %s", warning)
        if not self.enabled:
            self.tracer: Any = trace.NoOpTracer()
            return
        resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or service_name})
        # Every operation is recorded (the local store is the point): no sampling, which also spares
        # the parent-based sampler's look-up on each span.
        provider = TracerProvider(resource=resource, shutdown_on_exit=False, sampler=ALWAYS_ON,
                                  span_limits=SpanLimits(max_span_attribute_length=4 * MAX_ATTRIBUTE_CHARS))
        if settings.store_path is not None:
            store_path = settings.store_path
            self.store_processor = StoreSpanProcessor(
                lambda: SpanStore(store_path, max_age_s=settings.store_max_age_s, max_bytes=settings.store_max_bytes,
                                  shared=False),
                max_queue=settings.queue_size)
            provider.add_span_processor(self.store_processor)
        if settings.otlp_traces_url:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter(endpoint=settings.otlp_traces_url, headers=dict(settings.otlp_headers),
                                        timeout=5)
            self.export_processor = ExportSpanProcessor(exporter, label=settings.otlp_traces_url,
                                                        max_queue=settings.queue_size)
            provider.add_span_processor(self.export_processor)
        self.provider = provider
        self.tracer = provider.get_tracer(_SCOPE)
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

            self.meter_provider = MeterProvider(metric_readers=readers, resource=resource, shutdown_on_exit=False)
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
    @contextlib.contextmanager
    def span(self, name: str, *, kind: SpanKind = SpanKind.INTERNAL, attributes: Mapping[str, Any] | None = None,
             parent: Any = None) -> Iterator[Any]:
        """A span around the block, current inside it (its children hang under it). ``parent``:
        an OTel context to start from (default: the current one). An exception in the block marks
        the span as failed and goes on."""
        if not self.enabled:
            yield trace.INVALID_SPAN
            return
        span = self.tracer.start_span(name, context=parent, kind=kind, attributes=attributes)
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        try:
            yield span
        except BaseException as exc:
            span.set_attribute("error.type", getattr(exc, "code", None) or type(exc).__name__)
            span.set_status(Status(StatusCode.ERROR, str(exc)[:1000]))
            raise
        finally:
            otel_context.detach(token)
            span.end()

    def text(self, value: Any) -> str:
        """``value`` as a string attribute (captured content), cut to :data:`MAX_ATTRIBUTE_CHARS`
        with one warning per process the first time."""
        if not isinstance(value, str):
            import json

            value = json.dumps(value, ensure_ascii=False, default=str)
        if len(value) > MAX_ATTRIBUTE_CHARS:
            if not self._truncation_warned:
                self._truncation_warned = True
                log.warning("aikit tracing: a span attribute of %d characters was cut to %d (captured content is "
                            "kept short so spans stay cheap to store and send)", len(value), MAX_ATTRIBUTE_CHARS)
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
        span.set_attribute("error.type", error_type)
        span.set_status(Status(StatusCode.ERROR, message[:1000]))

    def fallback_spans(self, chat: Any, attempts: list[Any]) -> None:
        """One child span per model a fallback chain tried (``attempts``, the answering one last),
        laid end to end from the start of the ``chat`` span."""
        parent = trace.set_span_in_context(chat)
        at = chat.start_time or 0
        for attempt in attempts:
            end = at + int(float(getattr(attempt, "elapsed_s", 0.0) or 0.0) * 1e9)
            model = str(attempt.model)
            span = self.tracer.start_span(f"chat {model}", context=parent, start_time=at, kind=SpanKind.CLIENT,
                                          attributes={"aikit.operation.kind": "llm.attempt",
                                                      "gen_ai.operation.name": "chat", "gen_ai.request.model": model,
                                                      "gen_ai.provider.name": model.split("/", 1)[0]})
            if not attempt.ok:
                self.fail(span, str(attempt.kind or "error"), str(attempt.message or ""))
            span.end(end_time=max(end, at))
            at = end

    @staticmethod
    def current_trace_id() -> str | None:
        """The id of the trace running here (32 hex digits), None outside any span."""
        ctx = trace.get_current_span().get_span_context()
        return format(ctx.trace_id, "032x") if ctx.is_valid else None

    @staticmethod
    def traceparent() -> str | None:
        """The W3C ``traceparent`` of the current span (None outside any span)."""
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
    def flush(self) -> None:
        """Write what is queued to the store now (before reading it)."""
        if self.store_processor is not None:
            self.store_processor.force_flush()

    def store(self) -> SpanStore:
        """The local span store, for reading (raises ``AikitError`` when there is none)."""
        from ..errors import AikitError

        if self.settings.store_path is None:
            raise AikitError("tracing has no local span store (telemetry is disabled)", code="unavailable")
        if self._reader is None:
            s = self.settings
            self._reader = SpanStore(s.store_path, max_age_s=s.store_max_age_s, max_bytes=s.store_max_bytes)
        return self._reader

    def traces(self, **filters: Any) -> list[TraceSummary]:
        self.flush()
        return self.store().traces(**filters)

    def trace(self, trace_id: str) -> list[SpanRecord]:
        self.flush()
        return self.store().trace(trace_id)

    # -- state ----------------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Spans dropped and delivery failures, per destination."""
        out: dict[str, Any] = {}
        for name, processor in (("store", self.store_processor), ("otlp", self.export_processor)):
            if processor is not None:
                w = processor.worker
                out[name] = {"dropped": w.dropped, "failures": w.failures, "pending": w.pending,
                             "last_error": w.last_error}
        return out

    def close(self) -> None:
        """Write or send what is queued (briefly: a collector that hangs is given up on), stop."""
        if self._closed:
            return
        self._closed = True
        if self.provider is not None:
            self.provider.shutdown()
        if self.meter_provider is not None:
            try:
                self.meter_provider.shutdown(timeout_millis=3000)
            except Exception:  # noqa: BLE001 - a collector that is down
                log.debug("metrics shutdown failed", exc_info=True)
        if self.export_processor is not None and self.export_processor.worker.dropped:
            w = self.export_processor.worker
            log.warning("aikit tracing: %d spans could not be sent to %s (%s)", w.dropped, self.settings.otlp_traces_url,
                        w.last_error or "queue full")
        if self._reader is not None:
            self._reader.close()
