"""The telemetry pieces in process, against real SQLite files, a real PostgreSQL and a real
OTLP/HTTP receiver: the span store's contract on both backends (upserts, summaries, prefixes,
live cursor, pruning), the bounded export queue, settings from the environment, OTLP/JSON export."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.trace import SpanKind

from aikit_components.config import Config
from aikit_components.telemetry import SpanRecord, Telemetry, TelemetrySettings, open_span_store
from aikit_components.telemetry.otlp_json import to_otlp_json
from aikit_components.telemetry.pg_store import PostgresSpanStore
from aikit_components.telemetry.settings import parse_headers
from aikit_kernel.cli.main import main

NOW = time.time_ns()


def record(trace: str, span: str, parent: str | None = None, *, end: int | None = 2, status: str = "UNSET",
           start: int = 1, **attrs: Any) -> SpanRecord:
    """A span record; ``start`` and ``end`` count nanoseconds from the test module's start
    unless they are absolute times already."""
    start = start if start > 10**18 else NOW + start
    end = end if end is None or end > 10**18 else NOW + end
    return SpanRecord(trace.ljust(32, "0"), span.ljust(16, "0"), parent.ljust(16, "0") if parent else None,
                      f"span {span}", "INTERNAL", start, end, status, "boom" if status == "ERROR" else "", attrs, [])


@pytest.fixture(params=["sqlite", "postgres"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., Any]:
    """``open_store(**bounds)``: a span store on the backend under test (``[storage] url`` on a
    PostgreSQL of its own schema, or traces.sqlite), as tracing opens it."""
    config = None
    if request.param == "postgres":
        config = Config.load(cwd=tmp_path, env={"AIKIT_STORAGE__URL": request.getfixturevalue("pg_url")},
                             user_dir=tmp_path / "u")
    opened: list[Any] = []

    def make(**bounds: Any) -> Any:
        settings = dataclasses.replace(TelemetrySettings.from_config(config, tmp_path), **bounds)
        opened.append(open_span_store(settings))
        return opened[-1]

    yield make
    for store in opened:
        store.close()


def test_store_upserts_and_summarizes(open_store: Callable[..., Any]) -> None:
    store = open_store()
    cursor = store.change_cursor()
    store.write([record("aa", "1", end=None, **{"aikit.operation.kind": "cell"})])
    running = store.traces()[0]
    assert (running.status, running.end_ns, running.root_kind, running.span_count) == ("running", None, "cell", 1)
    store.write([record("aa", "2", "1", **{"gen_ai.agent.name": "writer", "gen_ai.usage.input_tokens": 10,
                                            "gen_ai.usage.output_tokens": 3, "aikit.cost.usd": 0.5}),
                 record("aa", "3", "1", status="ERROR", **{"gen_ai.usage.input_tokens": 1}),
                 record("aa", "1", end=9, **{"aikit.operation.kind": "cell"})])
    s = store.traces()[0]
    assert (s.status, s.end_ns, s.span_count, s.error_count) == ("ok", NOW + 9, 3, 1)
    assert (s.input_tokens, s.output_tokens, s.cost_usd) == (11, 3, 0.5)
    assert store.traces(agent="writer")[0].trace_id == s.trace_id and store.traces(agent="writ") == []
    assert store.traces(errors_only=True)[0].trace_id == s.trace_id
    spans = store.trace(s.trace_id[:8])
    assert [x.span_id[:1] for x in spans] == ["1", "2", "3"] and spans[0].end_ns == NOW + 9
    with pytest.raises(KeyError):
        store.trace("abc")
    with pytest.raises(KeyError):
        store.trace("ffffffffff")
    now, changed = store.changed_since(cursor)
    assert now > cursor and changed == [s.trace_id]
    assert store.changed_since(now) == (now, [])


def test_runs_of_alike_spans_are_stored_span_by_span(open_store: Callable[..., Any]) -> None:
    """A loop of one tool makes runs of spans that differ only in ids and times (written as
    groups by the SQLite store): each is stored whole, in order, and a span of a run written
    running is updated once it ends."""
    store = open_store()
    attrs = {"aikit.operation.kind": "tool", "gen_ai.tool.name": "add"}
    calls = [record("bb", f"{i + 2:x}", "1", start=i + 2, end=i + 3, **attrs) for i in range(13)]
    running = [record("bb", "1", end=None, **{"aikit.operation.kind": "cell"})]
    running += [dataclasses.replace(r, end_ns=None) for r in calls[:7]]
    store.write(running)
    assert store.traces()[0].span_count == 8
    failed = [dataclasses.replace(calls[i], status="ERROR", status_message="boom") for i in (7, 8, 9, 10)]
    store.write(calls[:7] + failed + calls[11:] + [record("bb", "1", start=1, end=99, **{"aikit.operation.kind": "cell"})])
    s = store.traces()[0]
    assert (s.status, s.span_count, s.error_count, s.end_ns) == ("ok", 14, 4, NOW + 99)
    spans = store.trace(s.trace_id)
    assert [x.span_id for x in spans[1:]] == [r.span_id for r in calls]
    assert all(x.end_ns == r.end_ns and x.attributes == attrs and x.parent_span_id == r.parent_span_id
               for x, r in zip(spans[1:], calls, strict=True))
    assert [x.status for x in spans[8:12]] == ["ERROR"] * 4 and spans[8].status_message == "boom"


def test_store_prunes_by_age_and_size(open_store: Callable[..., Any]) -> None:
    store = open_store(store_max_age_s=3600, store_max_bytes=300_000)
    old = time.time_ns() - 7200 * 10**9
    store.write([record("01", "1", start=old, end=old + 1)])
    fresh = time.time_ns()
    for i in range(60):
        blob = os.urandom(5_000).hex()  # not "x" * 10000, which PostgreSQL would compress to nothing
        store.write([record(f"{i + 10:02x}", "1", start=fresh + i, end=fresh + i + 1, blob=blob)])
    removed = store.prune()
    left = store.traces(limit=1000)
    assert removed > 1 and "01".ljust(32, "0") not in {t.trace_id for t in left}
    assert 0 < len(left) < 60 and left[0].trace_id == "45".ljust(32, "0")  # the newest stay


def test_attributes_keep_their_types_through_the_writer(tmp_path: Path) -> None:
    """The writer remembers the JSON of repeated attribute dicts; values that are equal in Python
    but not the same JSON (True, 1, 1.0, "1") each keep their own, span after span."""
    telemetry = Telemetry(TelemetrySettings(store_path=tmp_path / "traces.sqlite"))
    values: list[Any] = [True, 1, 1.0, "1", "1", 1, True, ["1"], "x" * 70_000]
    with telemetry.span("root") as root:
        for value in values:
            with telemetry.span("leaf", attributes={"aikit.operation.kind": "tool", "v": value}):
                pass
    spans = telemetry.trace(format(root.trace_id, "032x"))
    leaves = [s.attributes["v"] for s in spans if s.name == "leaf"]
    assert [(type(v), v) for v in leaves] == [(type(v), v) for v in values]
    assert all(s.parent_span_id == format(root.span_id, "016x") for s in spans if s.name == "leaf")
    telemetry.close()


def test_a_thread_making_spans_faster_than_the_writer_writes_them_loses_none(tmp_path: Path) -> None:
    """The thread that fills the queue (off an event loop) writes it itself, waiting for a write
    under way if need be: a small queue and a tight loop of spans drop nothing."""
    telemetry = Telemetry(TelemetrySettings(store_path=tmp_path / "traces.sqlite", queue_size=64))
    with telemetry.span("root") as root:
        for i in range(2000):
            with telemetry.span("leaf", attributes={"aikit.operation.kind": "tool", "i": i % 3}):
                pass
    telemetry.flush()
    assert telemetry.writer is not None and telemetry.writer.dropped == 0
    assert len(telemetry.trace(format(root.trace_id, "032x"))) == 2001
    telemetry.close()


def test_young_running_spans_wait_for_a_later_write_and_old_ones_are_written_running(tmp_path: Path) -> None:
    """The writer's own writes (its thread, a thread catching up) leave a span that is still
    running and young for a later write, so a span that ends soon is written once, ended; a span
    running for longer is written running; an explicit flush writes every span, young or not."""
    telemetry = Telemetry(TelemetrySettings(store_path=tmp_path / "traces.sqlite"))
    writer = telemetry.writer
    assert writer is not None
    reader = telemetry.store()
    hour = 3600 * 10**9

    def stored(span: Any) -> list[Any]:
        try:
            spans = reader.trace(span.trace_id_hex)
        except KeyError:  # (no span of the trace stored)
            return []
        return [s for s in spans if s.span_id == format(span.span_id, "016x")]

    young = telemetry.start("young", SpanKind.INTERNAL, {"aikit.operation.kind": "tool"}, None)
    young.start_time = time.time_ns() + hour  # (young at any write in this test, however late it comes)
    writer.catch_up(writer.wake_at)
    assert stored(young) == [] and writer.pending >= 1
    young.end(young.start_time + 1)
    writer.catch_up(writer.wake_at)
    assert [(s.name, s.end_ns) for s in stored(young)] == [("young", young.start_time + 1)]

    old = telemetry.start("old", SpanKind.INTERNAL, {"aikit.operation.kind": "tool"}, None)
    old.start_time -= hour
    writer.catch_up(writer.wake_at)
    assert [(s.name, s.end_ns) for s in stored(old)] == [("old", None)]

    flushed = telemetry.start("flushed", SpanKind.INTERNAL, {"aikit.operation.kind": "tool"}, None)
    flushed.start_time = time.time_ns() + hour
    telemetry.flush()
    assert [(s.name, s.end_ns) for s in stored(flushed)] == [("flushed", None)]
    assert writer.pending == 0
    old.end()
    flushed.end()
    telemetry.close()


def test_settings_follow_the_otel_environment(tmp_path: Path) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/", "OTEL_EXPORTER_OTLP_HEADERS": "a=1,b=x%20y",
           "OTEL_SEMCONV_STABILITY_OPT_IN": "http,gen_ai_latest_experimental",
           "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "SPAN_ONLY"}
    s = TelemetrySettings.from_config(None, tmp_path, env)
    assert s.enabled and s.capture_content and s.latest_semconv
    assert s.otlp_traces_url == "http://collector:4318/v1/traces" and s.otlp_headers == {"a": "1", "b": "x y"}
    assert s.store_path == tmp_path / "traces.sqlite" and s.warnings == []
    assert not TelemetrySettings.from_config(None, tmp_path, {"OTEL_SDK_DISABLED": "true"}).enabled
    assert parse_headers("ok=1,broken,=x", "X")[0] == {"ok": "1"}
    assert "2 malformed entries" in (parse_headers("ok=1,broken,=x", "X")[1] or "")


def test_a_full_export_queue_drops_counts_and_warns_once(tmp_path: Path, otlp_receiver: Any,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    receiver = otlp_receiver("hang")
    settings = TelemetrySettings(store_path=None, otlp_traces_url=receiver.url + "/v1/traces", queue_size=16)
    telemetry = Telemetry(settings)
    with caplog.at_level(logging.WARNING, logger="aikit.telemetry"):
        for i in range(200):
            with telemetry.span(f"s{i}"):
                pass
        receiver.wait_for(lambda r: r.requests >= 1)
        stats = telemetry.stats()["otlp"]
        assert stats["dropped"] >= 200 - 16 - 512
        receiver.release()
        telemetry.close()
    queue_full = [r for r in caplog.records if "queue is full" in r.getMessage()]
    assert len(queue_full) == 1


def test_spans_reach_the_receiver_with_parent_links(otlp_receiver: Any) -> None:
    receiver = otlp_receiver()
    telemetry = Telemetry(TelemetrySettings(store_path=None, otlp_traces_url=receiver.url + "/v1/traces"))
    with telemetry.span("outer", attributes={"aikit.operation.kind": "script"}), telemetry.span("inner") as inner:
        assert telemetry.current_trace_id() == format(inner.get_span_context().trace_id, "032x")
        assert telemetry.traceparent().split("-")[2] == format(inner.get_span_context().span_id, "016x")
    telemetry.flush(export=True)
    receiver.wait_for(lambda r: len(r.spans) == 2)
    outer, inner_span = receiver.named("outer")[0], receiver.named("inner")[0]
    assert inner_span["parent_span_id"] == outer["span_id"] and outer["parent_span_id"] is None
    assert outer["attributes"] == {"aikit.operation.kind": "script"}
    telemetry.close()
    assert Telemetry.current_trace_id() is None


def test_otlp_json_export() -> None:
    spans = [record("ab", "1", **{"n": 3, "f": 1.5, "ok": True, "l": ["a", "b"]}),
             record("ab", "2", "1", status="ERROR")]
    data = to_otlp_json(spans)
    exported = data["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert exported[1]["parentSpanId"] == spans[0].span_id and exported[1]["status"] == {"code": 2, "message": "boom"}
    attrs = {a["key"]: a["value"] for a in exported[0]["attributes"]}
    assert attrs == {"n": {"intValue": "3"}, "f": {"doubleValue": 1.5}, "ok": {"boolValue": True},
                     "l": {"arrayValue": {"values": [{"stringValue": "a"}, {"stringValue": "b"}]}}}


def test_with_storage_url_the_spans_of_every_kernel_go_to_postgres(pg_url: str, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Two processes' telemetry (two data directories) on one database: each sees the other's
    traces, ``aikit trace list`` elsewhere sees both, and no traces.sqlite is written."""
    env = {"AIKIT_STORAGE__URL": pg_url}
    first, second = (Telemetry.from_config(Config.load(cwd=tmp_path, env=env, user_dir=tmp_path / "u"),
                                           tmp_path / name) for name in ("k1", "k2"))
    try:
        for telemetry, name in ((first, "one"), (second, "two")):
            telemetry.start(f"root {name}", SpanKind.INTERNAL, {"aikit.operation.kind": "cell"}, None).end()
            telemetry.flush()
        assert isinstance(first.store(), PostgresSpanStore)
        assert {t.root_name for t in second.traces(limit=10)} == {"root one", "root two"}
        assert not (tmp_path / "k1" / "traces.sqlite").exists() and not (tmp_path / "k2" / "traces.sqlite").exists()
    finally:
        first.close()
        second.close()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AIKIT_STORAGE__URL", pg_url)
    monkeypatch.setenv("AIKIT_DATA_DIR", str(tmp_path / "k3"))
    assert main(["trace", "list", "--json"]) == 0
    assert {t["root_name"] for t in json.loads(capsys.readouterr().out)} == {"root one", "root two"}


def test_a_tools_spans_share_their_attributes_until_one_changes(tmp_path: Path) -> None:
    """Spans of a tool called the same way start with the same (read-only) attributes; a span
    that fails or gets an attribute copies them first, so the others are stored as they were."""
    from aikit_components.components import Components
    from aikit_components.errors import AikitError
    from aikit_components.tools import Budget, tool

    @tool(name="halve", category="test")
    def halve(n: int) -> int:
        """Halve an even integer.

        Args:
            n: The integer.
        """
        if n % 2:
            raise ValueError("odd")
        return n // 2

    c = Components.open(config=Config.load(cwd=tmp_path, env={}, user_dir=tmp_path / "u"), data_dir=tmp_path / "data",
                        plugins=False)
    try:
        c.tools.register(halve)
        ctx = c.tool_context(caller="test", budget=Budget(None, None))
        with c.telemetry.span("loop") as root:
            for n in (2, 4, 3, 6, 8, 10):
                try:
                    c.tools.call("halve", {"n": n}, ctx)
                except AikitError:
                    pass
            with c.telemetry.span("extra"):
                pass
        spans = [s for s in c.telemetry.trace(format(root.trace_id, "032x")) if s.name == "execute_tool halve"]
    finally:
        c.close()
    expected = {"aikit.operation.kind": "tool", "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "halve",
                "gen_ai.tool.type": "function", "aikit.caller": "test"}
    assert len(spans) == 6 and all(s.parent_span_id == format(root.span_id, "016x") for s in spans)
    assert [s.status for s in spans] == ["UNSET", "UNSET", "ERROR", "UNSET", "UNSET", "UNSET"]
    assert spans[2].attributes == {**expected, "error.type": spans[2].attributes["error.type"]}
    assert all(s.attributes == expected for i, s in enumerate(spans) if i != 2)


def test_the_export_resource_is_an_ordinary_resource_hashed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The resource aikit exports spans with equals, and hashes as, the SDK's own resource of the
    same attributes (so exporters group spans by it as before); its hash is worked out once."""
    from opentelemetry.sdk.resources import Resource

    from aikit_components.telemetry.otlp_export import resource

    monkeypatch.setenv("OTEL_SERVICE_NAME", "svc")
    ours, theirs = resource(), Resource.create({"service.name": "svc"})
    assert ours == theirs and theirs == ours and hash(ours) == hash(theirs)
    assert ours.attributes["service.name"] == "svc" and ours.schema_url == theirs.schema_url
    assert {ours: 1}[theirs] == 1
    assert ours != Resource.create({"service.name": "other"})
