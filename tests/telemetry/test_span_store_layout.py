"""The SQLite span store's layout: spans in a rowid table indexed by trace (no key on
``(trace_id, span_id)``), a span written running replaced in place once it ends, stores of the
first layout migrated when opened, and the queries of ``aikit trace``, ``Trace`` and the dashboard
answered through an index. Real SQLite files."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.trace import SpanKind, Status, StatusCode

from aikit_components.telemetry import SpanRecord, SpanStore, Telemetry, TelemetrySettings, TraceSummary
from aikit_components.telemetry.rows import record_row
from aikit_components.telemetry.spans import SharedAttributes
from aikit_components.telemetry.store import LAYOUT

NOW = time.time_ns()

# The first layout, as aikit wrote it before LAYOUT 2 (user_version 0).
_FIRST_LAYOUT = """
CREATE TABLE spans (
    trace_id TEXT NOT NULL, span_id TEXT NOT NULL, parent_span_id TEXT, name TEXT NOT NULL,
    kind TEXT NOT NULL, start_ns INTEGER NOT NULL, end_ns INTEGER, status TEXT NOT NULL,
    status_message TEXT NOT NULL, attributes TEXT NOT NULL, events TEXT NOT NULL,
    op_kind TEXT, agent TEXT, input_tokens INTEGER, output_tokens INTEGER, cost_usd REAL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (trace_id, span_id)
);
CREATE INDEX spans_seq ON spans (seq);
CREATE TABLE traces (
    trace_id TEXT PRIMARY KEY, root_name TEXT NOT NULL, root_kind TEXT NOT NULL, start_ns INTEGER NOT NULL,
    end_ns INTEGER, span_count INTEGER NOT NULL, error_count INTEGER NOT NULL, input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL, cost_usd REAL, status TEXT NOT NULL, agents TEXT NOT NULL,
    root_span_id TEXT NOT NULL, root_parentless INTEGER NOT NULL, root_start_ns INTEGER NOT NULL
);
CREATE INDEX traces_start ON traces (start_ns);
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO meta (key, value) VALUES ('seq', 7);
"""


def record(trace: str, span: str, parent: str | None = None, *, start: int = 1, end: int | None = 2,
           status: str = "UNSET", **attrs: Any) -> SpanRecord:
    return SpanRecord(trace.ljust(32, "0"), span.ljust(16, "0"), parent.ljust(16, "0") if parent else None,
                      f"span {span}", "INTERNAL", NOW + start, None if end is None else NOW + end, status,
                      "boom" if status == "ERROR" else "", attrs, [])


def first_layout_store(path: Path) -> None:
    """A store as the first layout left it: trace "aa" (a cell, its tool call, its failed model
    call) and trace "bb" (still running), written in seq 5 to 7."""
    spans = [(record("aa", "1", start=1, end=9, **{"aikit.operation.kind": "cell"}), 5),
             (record("aa", "2", "1", start=2, end=3, **{"aikit.operation.kind": "tool"}), 5),
             (record("aa", "3", "1", start=4, end=5, status="ERROR", **{"gen_ai.usage.input_tokens": 4}), 6),
             (record("bb", "1", start=20, end=None, **{"aikit.operation.kind": "script"}), 7)]
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript("PRAGMA journal_mode = WAL;" + _FIRST_LAYOUT)
        for span, seq in spans:
            row = list(record_row(span))
            row[2] = row[2] or None
            row[6] = None if row[6] < 0 else row[6]
            row[12:16] = [None if v in ("", -1, -1.0) else v for v in row[12:16]]
            db.execute("INSERT INTO spans VALUES (" + ", ".join(["?"] * 17) + ")", (*row, seq))
        db.execute("INSERT INTO traces VALUES (?, 'span 1', 'cell', ?, ?, 3, 1, 4, 0, NULL, 'error', '', ?, 1, ?)",
                   ("aa".ljust(32, "0"), NOW + 1, NOW + 9, "1".ljust(16, "0"), NOW + 1))
        db.execute("INSERT INTO traces VALUES (?, 'span 1', 'script', ?, NULL, 1, 0, 0, 0, NULL, 'running', '', ?, 1, ?)",
                   ("bb".ljust(32, "0"), NOW + 20, "1".ljust(16, "0"), NOW + 20))
        db.commit()


def rows(path: Path, sql: str, *args: Any) -> list[Any]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute(sql, args).fetchall()


def test_a_store_of_the_first_layout_is_migrated_with_its_spans(tmp_path: Path) -> None:
    path = tmp_path / "traces.sqlite"
    first_layout_store(path)
    store = SpanStore(path)
    try:
        assert rows(path, "PRAGMA user_version") == [(LAYOUT,)]
        assert "seq" not in {r[1] for r in rows(path, "PRAGMA table_info(spans)")}
        assert {r[0] for r in rows(path, "SELECT name FROM sqlite_master WHERE type = 'index'")} >= {
            "trace_rows_trace", "traces_start", "traces_seq"}
        aa = store.trace("aa".ljust(32, "0"))
        assert [(s.span_id[:1], s.parent_span_id, s.status, s.end_ns) for s in aa] == [
            ("1", None, "UNSET", NOW + 9), ("2", "1".ljust(16, "0"), "UNSET", NOW + 3),
            ("3", "1".ljust(16, "0"), "ERROR", NOW + 5)]
        assert aa[2].attributes == {"gen_ai.usage.input_tokens": 4} and aa[0].attributes["aikit.operation.kind"] == "cell"
        summaries = {t.trace_id[:2]: t for t in store.traces()}
        assert (summaries["aa"].span_count, summaries["aa"].error_count, summaries["aa"].status) == (3, 1, "error")
        assert summaries["bb"].status == "running"
        cursor = store.change_cursor()
        assert cursor == 7 and store.changed_since(0)[1] == []  # written before the migration: no seq of their own

        # the migrated store takes new spans, and spans of its old traces: the running root ends
        store.write_rows([record_row(record("bb", "2", "1", start=21, end=22)),
                          record_row(record("bb", "1", start=20, end=30, **{"aikit.operation.kind": "script"}))])
        now, changed = store.changed_since(cursor)
        assert now == cursor + 1 and changed == ["bb".ljust(32, "0")]
        bb = store.trace("bb".ljust(32, "0"))
        assert [(s.span_id[:1], s.end_ns) for s in bb] == [("1", NOW + 30), ("2", NOW + 22)]
        s = store.summary("bb".ljust(32, "0"))
        assert (s.status, s.span_count, s.end_ns) == ("ok", 2, NOW + 30)
    finally:
        store.close()
    reopened = SpanStore(path)  # opening again leaves the migrated store as it is
    try:
        assert len(reopened.trace("aa".ljust(32, "0"))) == 3 and reopened.change_cursor() == cursor + 1
    finally:
        reopened.close()


def test_a_span_written_running_is_replaced_in_place_once_it_ends(tmp_path: Path) -> None:
    """The writer's store (``shared=False``) remembers the rows of the spans it wrote running and
    updates them when they end: one row per span, in the order first written, the summary right."""
    path = tmp_path / "traces.sqlite"
    store = SpanStore(path, shared=False)
    try:
        store.write_rows([record_row(record("cc", "1", start=1, end=None, **{"aikit.operation.kind": "cell"})),
                          record_row(record("cc", "2", "1", start=1, end=None))]
                         + [record_row(record("cc", f"{i:x}", "1", start=1, end=2, tool="t")) for i in range(3, 9)])
        assert store.summary("cc".ljust(32, "0")).status == "running"
        store.write_rows([record_row(record("cc", "2", "1", start=1, end=5, status="ERROR")),
                          record_row(record("cc", "9", "1", start=6, end=7, **{"gen_ai.usage.output_tokens": 2}))])
        store.write_rows([record_row(record("cc", "1", start=1, end=8, **{"aikit.operation.kind": "cell"}))])
        spans = store.trace("cc".ljust(32, "0"))
        assert [s.span_id[:1] for s in spans] == ["1", "2", "3", "4", "5", "6", "7", "8", "9"]
        assert (spans[0].end_ns, spans[1].status, spans[1].end_ns) == (NOW + 8, "ERROR", NOW + 5)
        assert rows(path, "SELECT COUNT(*) FROM spans") == [(9,)]
        s = store.summary("cc".ljust(32, "0"))
        assert (s.status, s.span_count, s.error_count, s.output_tokens, s.end_ns) == ("ok", 9, 1, 2, NOW + 8)
    finally:
        store.close()


def test_a_running_span_pruned_by_another_process_is_written_anew(tmp_path: Path) -> None:
    """Another process removed the running span's row and a new span took its rowid: the ended
    span does not overwrite that one, it is written as a row of its own."""
    path = tmp_path / "traces.sqlite"
    store = SpanStore(path, shared=False)
    try:
        store.write_rows([record_row(record("dd", "1", end=None))])
        with contextlib.closing(sqlite3.connect(path)) as other:
            other.execute("DELETE FROM spans")
            row = list(record_row(record("ee", "1", end=3)))[:11]
            other.execute("INSERT INTO spans VALUES (" + ", ".join(["?"] * 11) + ")", row)
            other.commit()
        store.write_rows([record_row(record("dd", "1", end=4))])
        assert sorted(rows(path, "SELECT substr(trace_id, 1, 2), end_ns FROM spans")) == [("dd", NOW + 4),
                                                                                          ("ee", NOW + 3)]
    finally:
        store.close()


def test_running_spans_are_found_again_when_the_largest_rowid_is_taken(tmp_path: Path) -> None:
    """A running span's rowid is worked out from its place among the rows of its write (they are
    appended one after the other); once the largest rowid possible is taken, SQLite gives new rows
    free rowids at random, and the store looks the running spans up instead."""
    path = tmp_path / "traces.sqlite"
    store = SpanStore(path, shared=False)
    try:
        store.write_rows([record_row(record("ef", "1", end=2))])
        with contextlib.closing(sqlite3.connect(path)) as other:  # (the largest rowid, as a span)
            other.execute("UPDATE spans SET rowid = 9223372036854775807")
            other.commit()
        store.write_rows([record_row(record("ab", "1", end=None)), record_row(record("ab", "2", "1", end=3)),
                          record_row(record("ab", "3", "1", end=None))])
        store.write_rows([record_row(record("ab", "3", "1", end=5)), record_row(record("ab", "1", end=9))])
        assert sorted(rows(path, "SELECT substr(trace_id, 1, 2), substr(span_id, 1, 1), end_ns FROM spans")) == [
            ("ab", "1", NOW + 9), ("ab", "2", NOW + 3), ("ab", "3", NOW + 5), ("ef", "1", NOW + 2)]
    finally:
        store.close()


def test_the_root_of_a_trace_another_writer_added_to_is_asked_of_the_file(tmp_path: Path) -> None:
    """The writer's store remembers the span ids of the traces it wrote all of, to tell whether a
    span's parent is stored; once another connection has written a span of such a trace, it asks
    the file again: a span whose parent the other wrote does not stand in for the root."""
    path = tmp_path / "traces.sqlite"
    trace = "ac".ljust(32, "0")
    store, other = SpanStore(path, shared=False), SpanStore(path)
    try:
        store.write_rows([record_row(record("ac", "3", "2", start=5, end=6))])
        store.write_rows([record_row(record("ac", "4", "1", start=4, end=7))])  # (its parent: not stored)
        assert store.summary(trace).root_name == "span 4"
        other.write([record("ac", "2", "1", start=3, end=8)])
        store.write_rows([record_row(record("ac", "5", "2", start=2, end=3))])  # (its parent: the other's)
        assert store.summary(trace).root_name == "span 2"
        assert store.summary(trace).span_count == 4
    finally:
        store.close()
        other.close()


def test_a_trace_summary_written_meanwhile_by_another_writer_or_pruned_is_read_again(tmp_path: Path) -> None:
    """The writer's store remembers the summaries it wrote, and reads a trace's summary back from
    the file once another connection has written to it, or once it has pruned the trace itself."""
    path = tmp_path / "traces.sqlite"
    trace = "ab".ljust(32, "0")
    store, other = SpanStore(path, shared=False), SpanStore(path)
    try:
        store.write_rows([record_row(record("ab", "1", "9", start=1, end=2))])
        store.write_rows([record_row(record("ab", "2", "9", start=3, end=4))])  # (its own summary, remembered)
        other.write([record("ab", "3", "9", start=5, end=6, **{"gen_ai.usage.input_tokens": 4})])
        store.write_rows([record_row(record("ab", "4", "9", start=7, end=8))])
        s = store.summary(trace)
        assert (s.span_count, s.input_tokens) == (4, 4)
        store.max_age_s = 0.0
        assert store.prune() == 4
        store.write_rows([record_row(record("ab", "5", "9", start=9, end=10))])
        s = store.summary(trace)
        assert (s.span_count, s.input_tokens, s.start_ns) == (1, 0, NOW + 9)
    finally:
        store.close()
        other.close()


def test_a_span_written_twice_by_other_writers_is_one_row(tmp_path: Path) -> None:
    """A shared store (tests, imports: spans from anywhere) finds a span already stored by its ids."""
    path = tmp_path / "traces.sqlite"
    first, second = SpanStore(path), SpanStore(path)
    try:
        usage = {"gen_ai.usage.input_tokens": 5, "aikit.cost.usd": 0.25}
        first.write([record("ff", "1", end=None), record("ff", "2", "1", end=None, **usage)])
        second.write([record("ff", "1", end=9), record("ff", "2", "1", end=3, **usage),
                      record("ff", "2", "1", end=4, **{**usage, "gen_ai.usage.input_tokens": 7})])
        spans = second.trace("ff".ljust(32, "0"))
        assert [(s.span_id[:1], s.end_ns) for s in spans] == [("1", NOW + 9), ("2", NOW + 4)]
        s = second.summary("ff".ljust(32, "0"))
        assert (s.span_count, s.status, s.input_tokens, s.cost_usd) == (2, "ok", 7, 0.25)
    finally:
        first.close()
        second.close()


def test_the_readers_queries_use_an_index(tmp_path: Path) -> None:
    """What ``aikit trace``, ``Trace``, the dashboard and pruning ask is answered through an index,
    not by scanning every span (a store holds up to hundreds of megabytes of them)."""
    path = tmp_path / "traces.sqlite"
    SpanStore(path).close()
    in_trace = ("FROM trace_rows AS r JOIN spans AS s ON s.rowid BETWEEN r.first AND r.last "
                "WHERE r.trace_id = ?1 AND s.trace_id = ?1")
    queries = {"a trace's spans": (f"SELECT s.* {in_trace} ORDER BY s.start_ns, s.rowid", "x"),
               "pruning a trace": (f"DELETE FROM spans WHERE rowid IN (SELECT s.rowid {in_trace})", "x"),
               "a span by its ids": (f"SELECT s.rowid {in_trace} AND s.span_id = ?2", "x", "y"),
               "a trace's last range": ("SELECT rowid, last FROM trace_rows WHERE trace_id = ? ORDER BY last DESC "
                                        "LIMIT 1", "x"),
               "changes since a cursor": ("SELECT trace_id FROM traces WHERE seq > ? AND seq <= ?", 1, 2),
               "the newest traces": ("SELECT * FROM traces ORDER BY start_ns DESC LIMIT ?", 20),
               "pruning by age": ("SELECT trace_id FROM traces WHERE start_ns < ?", 5),
               "a trace id prefix": ("SELECT trace_id FROM traces WHERE trace_id GLOB ? LIMIT 2", "ab*")}
    for what, (sql, *args) in queries.items():
        plan = [str(r[-1]) for r in rows(path, "EXPLAIN QUERY PLAN " + sql, *args)]
        assert any("INDEX" in step for step in plan), (what, plan)
        assert not any(step.startswith("SCAN") and "INDEX" not in step for step in plan), (what, plan)


def test_the_writer_stores_runs_of_a_tools_spans_span_by_span(tmp_path: Path) -> None:
    """Ended spans alike but for ids and times (shared attributes: a loop calling one tool) go
    from the writer to the store as groups; a failed span, one with events, one with a status set,
    one still running interrupt a run. Every span is stored whole, in order, and counted."""
    telemetry = Telemetry(TelemetrySettings(store_path=tmp_path / "traces.sqlite"))
    shared = SharedAttributes({"aikit.operation.kind": "tool", "gen_ai.tool.name": "t"})
    spans: list[Any] = []
    with telemetry.span("root", attributes={"aikit.operation.kind": "cell"}) as root:
        for i in range(1300):
            span = telemetry.start("execute_tool t", SpanKind.INTERNAL, shared, root)
            if i == 5:
                span.fail("boom", "it failed")
            elif i == 7:
                span.add_event("retry")
            elif i == 9:
                span.set_status(Status(StatusCode.ERROR, "set"))  # (the attributes stay shared)
            if i != 10:
                span.end()
            spans.append(span)
        telemetry.flush()
        spans[10].end()
    stored = telemetry.trace(root.trace_id_hex)
    summary = telemetry.traces(limit=1)[0]
    telemetry.close()
    assert [s.span_id for s in stored] == [format(root.span_id, "016x")] + [format(s.span_id, "016x") for s in spans]
    children = stored[1:]
    assert all((c.start_ns, c.end_ns) == (s.start_time, s.end_time) for c, s in zip(children, spans, strict=True))
    assert all(c.parent_span_id == format(root.span_id, "016x") and c.name == "execute_tool t" for c in children)
    assert [i for i, c in enumerate(children) if c.status != "UNSET"] == [5, 9]
    assert children[5].attributes == {**shared, "error.type": "boom"} and children[9].status_message == "set"
    assert [c.events for c in children[6:9]] == [[], [{"name": "retry", "time_ns": spans[7].events[0][1],
                                                        "attributes": {}}], []]
    assert all(c.attributes == shared for i, c in enumerate(children) if i != 5)
    assert isinstance(summary, TraceSummary)
    assert (summary.span_count, summary.error_count, summary.status) == (1301, 2, "ok")


def test_groups_written_alone_are_counted_in_their_traces_summary(tmp_path: Path) -> None:
    """A write that holds nothing but a group (a loop calling one tool, flushed again and again)
    fetches its trace's summary with the group's first span and counts the others at once; a group
    whose trace has only a stand-in root (its parent is remote) is counted span by span: either way
    the summary is the one the spans make."""
    telemetry = Telemetry(TelemetrySettings(store_path=tmp_path / "traces.sqlite"))
    shared = SharedAttributes({"aikit.operation.kind": "tool", "gen_ai.tool.name": "t"})
    with telemetry.span("root", attributes={"aikit.operation.kind": "cell"}) as root:
        telemetry.flush()  # the root, written running
        for _ in range(3):
            for _ in range(10):
                telemetry.start("execute_tool t", SpanKind.INTERNAL, shared, root).end()
            telemetry.flush()
        running = telemetry.traces(limit=1)[0]
    remote = telemetry.start("remote child", SpanKind.INTERNAL, {"aikit.operation.kind": "cell"}, None)
    remote.trace_id, remote.parent_id = 0xABC, 0xDEF  # (as a TRACEPARENT would make it)
    remote.end()
    for _ in range(2):
        for _ in range(5):
            telemetry.start("execute_tool t", SpanKind.INTERNAL, shared, remote).end()
        telemetry.flush()
    summaries = {s.trace_id: s for s in telemetry.traces(limit=5)}
    telemetry.close()
    assert (running.span_count, running.status, running.root_name) == (31, "running", "root")
    done = summaries[root.trace_id_hex]
    assert (done.span_count, done.error_count, done.status, done.root_name) == (31, 0, "ok", "root")
    stood_in = summaries[format(0xABC, "032x")]
    assert (stood_in.span_count, stood_in.root_name) == (11, "remote child")


def test_interleaved_traces_are_read_and_pruned_apart(tmp_path: Path) -> None:
    """A write's rows may mix traces (the ranges of rows a trace was written in hold others' rows
    too): each trace reads as its own spans, pruning one leaves the other whole, and rows the
    pruning freed at the end of the table, used again, are not read twice."""
    path = tmp_path / "traces.sqlite"
    store = SpanStore(path, shared=False, max_age_s=3600)
    old = time.time_ns() - 7200 * 10**9  # trace "0b" is older than the store keeps
    try:
        mixed = []
        for i in range(1, 7):
            mixed.append(record_row(record("0a", f"{i:x}", None if i == 1 else "1", start=i, end=i + 1)))
            mixed.append(record_row(SpanRecord("0b".ljust(32, "0"), f"{i:x}".ljust(16, "0"),
                                               None if i == 1 else "1".ljust(16, "0"), "old", "INTERNAL", old + i,
                                               old + i + 1, "UNSET", "", {}, [])))
        store.write_rows(mixed)  # (a first write prunes: trace 0b goes, and its rows were the last ones)
        assert [s.span_id[:1] for s in store.trace("0a".ljust(32, "0"))] == ["1", "2", "3", "4", "5", "6"]
        with pytest.raises(KeyError):
            store.trace("0b".ljust(32, "0"))
        assert rows(path, "SELECT COUNT(*), max(rowid) FROM spans") == [(6, 11)]
        store.write_rows([record_row(record("0a", f"{i:x}", "1", start=i, end=i + 1)) for i in range(7, 12)])
        spans = store.trace("0a".ljust(32, "0"))
        assert [s.span_id[:1] for s in spans] == [f"{i:x}" for i in range(1, 12)]
        assert store.summary("0a".ljust(32, "0")).span_count == 11
        assert rows(path, "SELECT COUNT(*) FROM spans") == [(11,)]
    finally:
        store.close()
