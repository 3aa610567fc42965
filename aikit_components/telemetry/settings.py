"""The ``[telemetry]`` settings, with the OpenTelemetry environment variables applied on top:
``OTEL_SDK_DISABLED``, ``OTEL_EXPORTER_OTLP_ENDPOINT`` (and ``..._TRACES_ENDPOINT``),
``OTEL_EXPORTER_OTLP_HEADERS`` (and ``..._TRACES_HEADERS``), ``OTEL_SEMCONV_STABILITY_OPT_IN`` and
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

log = logging.getLogger(__name__)

__all__ = ["TelemetrySettings", "parse_headers"]

_TRUE = ("1", "true", "yes", "on")
# OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT: "true" in older instrumentations, one of
# NO_CONTENT / SPAN_ONLY / EVENT_ONLY / SPAN_AND_EVENT with the latest experimental conventions.
_CAPTURE = (*_TRUE, "span_only", "span_and_event", "event_only")


def parse_headers(text: str, source: str) -> tuple[dict[str, str], str | None]:
    """``key=value,key2=value2`` (values URL-encoded, as the OTLP exporter spec says) as a dict, and
    a warning naming ``source`` when some entries were malformed (they are left out; values are never
    repeated in the warning: they are usually credentials)."""
    headers: dict[str, str] = {}
    bad = 0
    for entry in text.split(","):
        if not entry.strip():
            continue
        key, sep, value = entry.partition("=")
        key = unquote(key.strip())
        if not sep or not key or any(c in key for c in " \t\r\n:"):
            bad += 1
            continue
        headers[key.lower()] = unquote(value.strip())
    if bad:
        return headers, (f"{source}: {bad} malformed entr{'y' if bad == 1 else 'ies'} left out (expected "
                         f"key=value pairs separated by commas); spans are sent without them")
    return headers, None


def _signal_url(base: str, signal: str) -> str:
    base = base.strip()
    if base.rstrip("/").endswith(f"/v1/{signal}"):
        return base
    return base.rstrip("/") + f"/v1/{signal}"


@dataclass
class TelemetrySettings:
    """What the telemetry of one process does (see docs/observability.md)."""

    enabled: bool = True
    capture_content: bool = False
    store_path: Path | None = None  # None: no local store
    store_max_age_s: float = 7 * 86400
    store_max_bytes: int = 200 * 2**20
    otlp_traces_url: str = ""
    otlp_metrics_url: str = ""
    otlp_headers: dict[str, str] = field(default_factory=dict)
    traceparent_http: bool = True
    latest_semconv: bool = False  # OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental
    queue_size: int = 8192
    warnings: list[str] = field(default_factory=list)
    #: ``[storage]`` when it names a PostgreSQL database: spans are stored there, not in store_path
    storage: Any = None

    @classmethod
    def from_config(cls, config: Any, data_dir: Path | str, env: Mapping[str, str] | None = None) -> TelemetrySettings:
        """The settings of ``config``'s ``[telemetry]`` section (``config`` may be None: the
        defaults) with the environment's OpenTelemetry variables applied."""
        env = os.environ if env is None else env

        def get(key: str, default: Any) -> Any:
            if config is None:
                return default
            value = config.get(f"telemetry.{key}", default)
            return default if value is None else value

        warnings: list[str] = []
        enabled = bool(get("enabled", True)) and env.get("OTEL_SDK_DISABLED", "").strip().lower() not in _TRUE
        capture = bool(get("capture_content", False)) or (
            env.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "").strip().lower() in _CAPTURE)
        store = str(get("store_path", "") or "")
        store_path = Path(store).expanduser() if store else Path(data_dir) / "traces.sqlite"
        endpoint = str(get("otlp_endpoint", "") or "") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
        traces_url = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "") or (
            _signal_url(endpoint, "traces") if endpoint else "")
        metrics_url = env.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "") or (
            _signal_url(endpoint, "metrics") if endpoint else "")
        headers: dict[str, str] = {}
        for source, text in (("OTEL_EXPORTER_OTLP_HEADERS", env.get("OTEL_EXPORTER_OTLP_HEADERS", "")),
                             ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", env.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "")),
                             ("[telemetry] otlp_headers", str(get("otlp_headers", "") or ""))):
            if text:
                parsed, warning = parse_headers(text, source)
                headers.update(parsed)
                if warning:
                    warnings.append(warning)
        opt_in = {p.strip() for p in env.get("OTEL_SEMCONV_STABILITY_OPT_IN", "").split(",")}
        return cls(
            enabled=enabled, capture_content=capture, store_path=store_path,
            store_max_age_s=float(get("store_max_age_days", 7)) * 86400,
            store_max_bytes=int(float(get("store_max_mb", 200)) * 2**20),
            otlp_traces_url=traces_url, otlp_metrics_url=metrics_url, otlp_headers=headers,
            traceparent_http=bool(get("traceparent_http", True)),
            latest_semconv="gen_ai_latest_experimental" in opt_in,
            queue_size=max(16, int(get("queue_size", 8192))),
            warnings=warnings,
            storage=_postgres_storage(config),
        )


def _postgres_storage(config: Any) -> Any:
    """``config``'s ``[storage]`` when it names a PostgreSQL database, else None."""
    if config is None:
        return None
    from ..storage.settings import StorageSettings

    storage = StorageSettings.from_config(config)
    return storage if storage.postgres else None
