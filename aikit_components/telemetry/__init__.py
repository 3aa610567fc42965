"""Telemetry: OpenTelemetry GenAI spans for every operation, a local span store, OTLP export,
metrics (docs/observability.md).

- :class:`Telemetry` (``telemetry.py``): one per :class:`~aikit_components.components.Components`,
  built from ``[telemetry]`` and the OTel environment variables; its own providers, never the
  global ones.
- :class:`TracingInterceptor` (``interceptor.py``): the pipeline's outermost interceptor, one span
  per operation (span names and attributes per kind in ``semconv.py``): aikit's own light
  :class:`Span` (``spans.py``), queued for a writer thread (``writer.py``) that writes the store and
  feeds OTLP export (``otlp_export.py``: SDK ``ReadableSpan`` only there, off the hot path).
- :class:`SpanStore` (``store.py``) and its records (``records.py``): the local SQLite store read by
  ``Trace`` in Lua, ``aikit trace`` and the dashboard.
"""

from .interceptor import TracingInterceptor
from .records import SpanRecord, TraceSummary
from .settings import TelemetrySettings
from .spans import Span
from .store import SpanStore
from .telemetry import Telemetry, open_span_store

__all__ = ["Span", "SpanRecord", "SpanStore", "Telemetry", "TelemetrySettings", "TraceSummary", "TracingInterceptor",
           "open_span_store"]
