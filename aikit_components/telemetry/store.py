"""The local span store: one SQLite file (``traces.sqlite`` in the data directory), WAL mode, so a
kernel writes while ``aikit trace`` and the dashboard read. Bounded by age and size: old traces
are pruned automatically as spans are written (:meth:`SpanStore.prune`).

A span may be written twice: running (``end_ns`` None; live views show it) and again once it has
ended, which replaces the running row. Spans are a plain rowid table indexed by trace (what every
query asks for), not keyed by ``(trace_id, span_id)``: a span is appended, and the store that wrote a
span running remembers its row to replace it (see :class:`SpanStore`). Each write also refreshes
the summary row of the traces it touched (which carries the write's number), so listing traces
never scans spans, and bumps a change counter that other processes can poll
(:meth:`SpanStore.change_cursor`, :meth:`SpanStore.changed_since`). Stores of the first layout
(spans keyed by ``(trace_id, span_id)``, a ``seq`` column indexed per span) are migrated when
opened (:func:`migrate`)."""

from __future__ import annotations

import functools
import json
import operator
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from itertools import chain, repeat
from pathlib import Path
from typing import Any

from .records import SpanRecord, TraceSummary
from .rows import (
    PRUNE_EVERY_S,
    ROW_FIELDS,
    SpanGroup,
    expand_groups,
    record_row,
    resolve_trace_id,
    span_record,
    summarize,
    trace_filter,
    trace_summary,
    usage,
)

__all__ = ["LAYOUT", "SpanStore", "migrate"]

#: The store's layout, in SQLite's ``user_version``: 0 is a new file or the first layout (spans
#: keyed by ``(trace_id, span_id)`` with an indexed ``seq`` per span), migrated by :func:`migrate`.
LAYOUT = 2
#: Summary rows a store remembers writing (see ``SpanStore._known_summaries``); past this many,
#: it starts again.
_SUMMARIES_KEPT = 8192
#: The columns of the spans table: a :class:`SpanRecord`'s fields.
_SPAN_COLUMNS = "trace_id, span_id, parent_span_id, name, kind, start_ns, end_ns, status, status_message, attributes, events"
_STORED = len(_SPAN_COLUMNS.split(","))  # a row's first fields are stored, the others make the summaries
_TRACE_COLUMNS = ("trace_id, root_name, root_kind, start_ns, end_ns, span_count, error_count, input_tokens, "
                  "output_tokens, cost_usd, status, agents, root_span_id, root_parentless, root_start_ns")
# Spans are appended to a rowid table without an index: a composite text key on (trace_id,
# span_id) cost more per span than the rest of the write (span ids are random: each insert landed
# anywhere in the trace's part of the key), and even an index by trace cost 40% of SQLite's work
# per span. A trace's spans are found through ``trace_rows`` instead: the ranges of rowids its
# spans were appended in (one per write, or one per run of writes: a range that continues the
# trace's last one extends it), which may hold other traces' spans too (written by the same write).
# What changed since a cursor is asked of the traces (``seq``: the last write that touched the
# trace), not per span.
# A span's columns are its record's fields: the agent, tokens and cost of a span are summed into
# its trace's summary as it is written, and no query asks for them per span.
_SPANS_TABLE = """
CREATE TABLE IF NOT EXISTS spans (
    trace_id TEXT NOT NULL, span_id TEXT NOT NULL, parent_span_id TEXT, name TEXT NOT NULL,
    kind TEXT NOT NULL, start_ns INTEGER NOT NULL, end_ns INTEGER, status TEXT NOT NULL,
    status_message TEXT NOT NULL, attributes TEXT NOT NULL, events TEXT NOT NULL
)"""
_SCHEMA = _SPANS_TABLE + """;
CREATE TABLE IF NOT EXISTS trace_rows (trace_id TEXT NOT NULL, first INTEGER NOT NULL, last INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS trace_rows_trace ON trace_rows (trace_id, last);
CREATE TABLE IF NOT EXISTS traces (
    trace_id TEXT PRIMARY KEY, root_name TEXT NOT NULL, root_kind TEXT NOT NULL, start_ns INTEGER NOT NULL,
    end_ns INTEGER, span_count INTEGER NOT NULL, error_count INTEGER NOT NULL, input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL, cost_usd REAL, status TEXT NOT NULL, agents TEXT NOT NULL,
    root_span_id TEXT NOT NULL, root_parentless INTEGER NOT NULL, root_start_ns INTEGER NOT NULL,
    seq INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS traces_start ON traces (start_ns);
CREATE INDEX IF NOT EXISTS traces_seq ON traces (seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('seq', 0);
"""
# The first layout's spans are copied in their order (rowid) to a table of the new shape, which
# takes the old one's name; the traces keep their rows and get the seq column (0: written before).
# The ranges of a migrated trace are its runs of consecutive rows (a row's rowid less its number in
# its trace is the same along a run).
_MIGRATE_SPANS = ("ALTER TABLE spans RENAME TO spans_layout1;\n" + _SPANS_TABLE.replace("IF NOT EXISTS ", "")
                  + f";\nINSERT INTO spans ({_SPAN_COLUMNS}) SELECT {_SPAN_COLUMNS} FROM spans_layout1 ORDER BY rowid;\n"
                  "DROP TABLE spans_layout1;\n"
                  "CREATE TABLE trace_rows (trace_id TEXT NOT NULL, first INTEGER NOT NULL, last INTEGER NOT NULL);\n"
                  "INSERT INTO trace_rows (trace_id, first, last) SELECT trace_id, min(rowid), max(rowid) FROM "
                  "(SELECT trace_id, rowid, rowid - row_number() OVER (PARTITION BY trace_id ORDER BY rowid) AS run "
                  "FROM spans) GROUP BY trace_id, run ORDER BY 2;\n"
                  "ALTER TABLE traces ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;\n")


def migrate(db: sqlite3.Connection) -> None:
    """Bring the span store open on ``db`` (autocommit) to :data:`LAYOUT`: create a new one, or
    migrate one of the first layout in one transaction (its spans and summaries kept). A store of
    a later layout (a newer aikit) is left as it is."""
    if db.execute("PRAGMA user_version").fetchone()[0] >= LAYOUT:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        if db.execute("PRAGMA user_version").fetchone()[0] < LAYOUT:  # (another process may have just done it)
            columns = {r[1] for r in db.execute("PRAGMA table_info(spans)")}
            if "seq" in columns:  # the first layout
                for statement in _MIGRATE_SPANS.split(";\n"):
                    if statement.strip():
                        db.execute(statement)
            for statement in _SCHEMA.split(";\n"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {LAYOUT}")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


# The rows are plain parameters in a VALUES list, and the absent-value sentinels become NULL
# once, in the SELECT over it: a NULLIF per row in the VALUES list made SQLite's time per row grow
# with the statement (1.6x at 1024 rows).
_INSERT_HEAD = f"""
INSERT INTO spans ({_SPAN_COLUMNS})
SELECT column1, column2, NULLIF(column3, ''), column4, column5, column6, NULLIF(column7, -1), column8, column9,
       column10, column11
FROM (VALUES """
_INSERT_ROW = "(" + ", ".join(["?"] * _STORED) + ")"
# Many rows per INSERT statement, not executemany: each statement step releases the GIL, and the
# writer thread, to take it back from the thread making spans, waits for that thread's next
# release or forces a switch after the switch interval (5 ms); every switch stalls the other thread
# until the writer is scheduled. So the fewer statements per write the better: up to 512 rows each
# (SQLite's time per row grows slowly with the statement: +20% at 1024 rows, +80% at 2048).
# Statements have a power-of-two number of rows (a batch is split in those), so that few are
# ever prepared (the connection's statement cache keeps them: preparing one costs more than
# running it).
_MAX_ROWS_PER_STATEMENT = 512


@functools.lru_cache(maxsize=16)
def _insert(rows: int) -> str:
    """The insert statement of ``rows`` spans."""
    return _INSERT_HEAD + ",\n".join([_INSERT_ROW] * rows) + ")"


# Spans that differ only in span_id, start_ns and end_ns (a loop calling one tool: same trace,
# parent, name, attributes, status) are inserted as a group: what they share is bound once (?1 to
# ?8) and each span adds three parameters. Binding a text parameter is the larger part of
# SQLite's time per row (a copy, a mutex), so a group's row costs ~40% fewer instructions than
# a row of the full statement.
_GROUP_FIELDS = (0, 2, 3, 4, 7, 8, 9, 10)  # the stored fields but span_id, start_ns, end_ns
_group_key = operator.itemgetter(*_GROUP_FIELDS)
_group_member = operator.itemgetter(1, 5, 6)  # what each span of a group adds
_stored = operator.itemgetter(slice(0, _STORED))
#: A group this large or larger is written with the group statement (smaller: the full one).
MIN_GROUP = 4
_GROUP_HEAD = f"""
INSERT INTO spans ({_SPAN_COLUMNS})
SELECT ?1, column1, NULLIF(?2, ''), ?3, ?4, column2, NULLIF(column3, -1), ?5, ?6, ?7, ?8
FROM (VALUES """


@functools.lru_cache(maxsize=16)
def _insert_group(rows: int) -> str:
    """The insert statement of a group of ``rows`` spans (see ``_GROUP_FIELDS``)."""
    # Plain "?" placeholders: each takes the number after the largest so far (?8, in the head), in
    # order. Numbered ones ("?9") are named parameters, and sqlite3 looks up the name of every
    # parameter it binds in a list as long as the statement: 5,000 instructions per span.
    return _GROUP_HEAD + ",".join(["(?,?,?)"] * rows) + ")"


# A span written again (it was written running) updates its row in place (so rows keep the order
# they were first written in), found by rowid and checked by id: another process may have pruned
# it and the rowid gone to another span (then the span is inserted as new).
_REWRITE = """
UPDATE spans SET parent_span_id = NULLIF(?, ''), name = ?, kind = ?, start_ns = ?, end_ns = NULLIF(?, -1), status = ?,
    status_message = ?, attributes = ?, events = ?
WHERE rowid = ? AND trace_id = ? AND span_id = ?"""
_SUMMARY_HEAD = f"INSERT OR REPLACE INTO traces ({_TRACE_COLUMNS}, seq) VALUES "
_SUMMARY_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, (SELECT value FROM meta WHERE key = 'seq'))"


# A trace's summary row is kept up to date span by span (never by scanning the trace: a cell that
# makes 100,000 tool calls is one trace). Its root is the span without a parent; until that one is
# written (children end, and are written, before their parent) or when it has a remote parent
# (TRACEPARENT), the earliest span whose parent is not in the store stands in.
_IN_TRACE = ("FROM trace_rows AS r JOIN spans AS s ON s.rowid BETWEEN r.first AND r.last "
             "WHERE r.trace_id = ?1 AND s.trace_id = ?1")
_OLD = f"SELECT s.rowid, s.status, s.attributes {_IN_TRACE} AND s.span_id = ?2"
# (the rows of this write, ?3 to ?4, are not in trace_rows yet)
_HAS = (f"SELECT 1 {_IN_TRACE} AND s.span_id = ?2 UNION ALL "
        "SELECT 1 FROM spans WHERE rowid BETWEEN ?3 AND ?4 AND trace_id = ?1 AND span_id = ?2 LIMIT 1")
_LAST_ROW = "SELECT max(rowid) FROM spans"
_S_COLUMNS = ", ".join("s." + c.strip() for c in _SPAN_COLUMNS.split(","))
_TRACE = f"SELECT {_TRACE_COLUMNS} FROM traces WHERE trace_id = ?"
_TRACES = f"SELECT {_TRACE_COLUMNS} FROM traces WHERE trace_id IN"


def _marks(count: int) -> str:
    return ", ".join(["?"] * count)


class SpanStore:
    """SQLite span store in the data directory (file traces.sqlite), bounded by age and size.

    Safe to use from several threads (one connection behind a lock) and several processes (WAL).
    ``max_age_s`` and ``max_bytes`` bound what :meth:`prune` keeps; writes prune automatically
    about once a minute. ``shared=False`` promises that only this object writes the spans it is
    given (tracing's own writer: span ids are random), which spares a look-up per span: a span
    written again is one this object wrote running, and it remembers where."""

    def __init__(self, path: Path | str, *, max_age_s: float = 7 * 86400, max_bytes: int = 200 * 2**20,
                 shared: bool = True) -> None:
        self.path = Path(path)
        self.max_age_s = float(max_age_s)
        self.max_bytes = int(max_bytes)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), timeout=5.0, check_same_thread=False, isolation_level=None)
        try:
            self._db.execute("PRAGMA busy_timeout = 5000")
            if self._db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                self._db.execute("PRAGMA auto_vacuum = INCREMENTAL")  # before the first table: pruning gives space back
                self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")  # spans are diagnostics: no fsync per write
            migrate(self._db)
        except BaseException:
            self._db.close()
            raise
        variables = self._db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) if hasattr(self._db, "getlimit") else 999
        self._variables = variables
        self._rows_per_statement = 1 << (max(1, min(_MAX_ROWS_PER_STATEMENT, variables // len(ROW_FIELDS))
                                             ).bit_length() - 1)
        self._rows_per_group = 1 << (max(1, min(_MAX_ROWS_PER_STATEMENT, (variables - len(_GROUP_FIELDS)) // 3)
                                         ).bit_length() - 1)
        self._next_prune = 0.0
        # (trace_id, span_id) -> (rowid, status, tokens in, tokens out, cost) of the spans this
        # store wrote running (what their row holds, to replace it and correct the summary)
        self._running: dict[tuple[str, str], tuple[Any, ...]] = {}
        # write() is given spans of other writers too (tests, imports): then it looks them up
        self._shared = bool(shared)
        self._range = (1, 0)  # the rowids of the rows the write under way has appended
        # The summary rows this store wrote, by trace id, kept while no other connection writes
        # the file (``PRAGMA data_version`` tells): a write takes the summaries of its traces from
        # here rather than reading them back (a burst of agent runs: every trace in every write).
        self._summaries: dict[str, tuple[Any, ...]] = {}
        self._data_version: int | None = None

    # -- writing ----------------------------------------------------------------------------------
    def write(self, spans: Sequence[SpanRecord]) -> None:
        """Write ``spans`` in one transaction (a span already stored is replaced) and update the
        summaries of their traces. Raises ``sqlite3.Error`` when the file cannot be written (locked, full)."""
        self.write_rows([record_row(span) for span in spans])

    def write_rows(self, rows: Sequence[Any]) -> None:
        """:meth:`write` for spans given as rows (:data:`ROW_FIELDS`) and groups (:class:`SpanGroup`),
        what tracing's writer thread makes from its spans without a :class:`SpanRecord` in between."""
        if not rows:
            return
        with self._lock:
            db = self._db
            running = self._running
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("UPDATE meta SET value = value + 1 WHERE key = 'seq'")
                if self._shared:
                    rows = expand_groups(rows)
                    if len({(row[0], row[1]) for row in rows}) < len(rows):  # a span twice: its last row
                        rows = list({(row[0], row[1]): row for row in rows}.values())
                    olds = [self._previous(row) for row in rows]
                elif running:  # as _previous, inline: only what this store wrote while running
                    get = running.get
                    olds = [None if row.__class__ is SpanGroup else get((row[0], row[1])) for row in rows]
                else:
                    olds = None
                fresh = rows
                rewritten: list[tuple[tuple[Any, ...], int | None]] = []
                if olds is not None and any(olds):  # spans written before: their rows are updated
                    fresh = []
                    for row, old in zip(rows, olds, strict=True):
                        if old is None:
                            fresh.append(row)
                        elif db.execute(_REWRITE, (*row[2:_STORED], old[0], row[0], row[1])).rowcount:
                            rewritten.append((row, old[0]))
                        else:  # pruned meanwhile by another process: a new row
                            fresh.append(row)
                            rewritten.append((row, None))
                first = (db.execute(_LAST_ROW).fetchone()[0] or 0) + 1  # (the rows appended now follow it)
                started = self._insert(db, fresh)
                self._range = (first, (db.execute(_LAST_ROW).fetchone()[0] or 0))
                summaries: dict[str, list[Any]] = {}
                # the stored summaries of the write's traces, asked for together (a statement per
                # trace handed the GIL over and back once per trace, several times per agent run)
                fetch_trace = self._fetch_traces({row.row[0] if row.__class__ is SpanGroup else row[0]
                                                  for row in rows}, self._known_summaries(db)).get
                has_span = self._has_span
                get = summaries.get
                for row, old in zip(rows, olds, strict=True) if olds is not None else zip(rows, repeat(None)):
                    if row.__class__ is SpanGroup:
                        self._summarize_group(row, summaries, fetch_trace)
                        continue
                    t = get(row[0])
                    # as summarize, inline for the most common row: a new span, not failed, without
                    # tokens, cost or agent, in a trace whose root is known and is not this span
                    if (t is not None and old is None and t[13] and row[13] < 0 and row[14] < 0 and row[15] < 0
                            and not row[12] and row[7] != "ERROR" and row[5] >= t[3] and t[12] != row[1]):
                        t[5] += 1
                    else:
                        summarize(row, None if old is None else old[1:], summaries, fetch_trace, has_span)
                self._upsert_summaries(db, list(summaries.values()))
                if self._range[1] >= first:
                    self._add_ranges(db, {row.row[0] if row.__class__ is SpanGroup else row[0] for row in fresh})
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:  # SQLite may have rolled back already (a full disk does)
                    db.execute("ROLLBACK")
                raise  # nothing was written: what this store remembers still holds
            self._remember_summaries(summaries)
            # remember the spans written running and where (forget them once they have ended)
            for row, rowid in rewritten:
                if row[6] < 0 and rowid is not None:  # (written again, still running)
                    started.append((row, rowid))
                elif row[6] >= 0:
                    running.pop((row[0], row[1]), None)
            for row, rowid in started:
                running[(row[0], row[1])] = (rowid, row[7], max(row[13], 0), max(row[14], 0),
                                             row[15] if row[15] >= 0 else None)
        if time.monotonic() >= self._next_prune:
            self.prune()

    def _add_ranges(self, db: sqlite3.Connection, trace_ids: set[str]) -> None:
        """Record that the spans of ``trace_ids`` written now are among the rows of this write's
        range: the range continues a trace's last one (it was the last to write), or is its own.
        A few statements for all the traces, not a few per trace (see :meth:`_fetch_traces`)."""
        first, last = self._range
        previous: dict[str, tuple[int, int]] = {}  # trace id -> rowid and last of its last range
        for chunk in self._chunks(sorted(trace_ids)):
            for trace_id, rowid, end in db.execute(
                    f"SELECT trace_id, rowid, max(last) FROM trace_rows WHERE trace_id IN ({_marks(len(chunk))}) "
                    "GROUP BY trace_id", chunk):
                previous[trace_id] = (rowid, end)
        extended: list[int] = []
        new: list[str] = []
        for trace_id in trace_ids:
            found = previous.get(trace_id)
            if found is not None and found[1] == first - 1:
                extended.append(found[0])
                continue
            if found is not None and found[1] >= first:  # rowids used again (the last rows were pruned)
                db.execute("DELETE FROM trace_rows WHERE trace_id = ? AND first >= ?", (trace_id, first))
                db.execute("UPDATE trace_rows SET last = ? WHERE trace_id = ? AND last >= ?", (first - 1, trace_id, first))
            new.append(trace_id)
        for chunk in self._chunks(extended):
            db.execute(f"UPDATE trace_rows SET last = ? WHERE rowid IN ({_marks(len(chunk))})", [last, *chunk])
        for chunk in self._chunks(new, 3):
            db.execute("INSERT INTO trace_rows (trace_id, first, last) VALUES " + ", ".join(["(?, ?, ?)"] * len(chunk)),
                       [*chain.from_iterable((trace_id, first, last) for trace_id in chunk)])

    def _known_summaries(self, db: sqlite3.Connection) -> dict[str, tuple[Any, ...]]:
        """The summary rows this store remembers writing, while they are what the file holds: they
        are forgotten once another connection (another process, another store) has written to it
        (asked inside the write's transaction, which no other connection can then change)."""
        version = db.execute("PRAGMA data_version").fetchone()[0]  # (this connection's writes leave it)
        if version != self._data_version:
            self._summaries.clear()
            self._data_version = version
        return self._summaries

    def _remember_summaries(self, summaries: dict[str, list[Any]]) -> None:
        """Remember the summary rows a write has committed (see :meth:`_known_summaries`)."""
        known = self._summaries
        if len(known) + len(summaries) > _SUMMARIES_KEPT:
            known.clear()
        for trace_id, summary in summaries.items():
            known[trace_id] = tuple(summary)

    def _fetch_traces(self, trace_ids: set[str], known: dict[str, tuple[Any, ...]]) -> dict[str, Any]:
        """The stored summary rows of ``trace_ids`` (those that have one), by trace id: those in
        ``known`` from there (see :meth:`_known_summaries`), the others from the file."""
        found: dict[str, Any] = {}
        if known:
            missing = []
            for trace_id in trace_ids:
                summary = known.get(trace_id)
                if summary is None:
                    missing.append(trace_id)
                else:
                    found[trace_id] = summary
        else:
            missing = list(trace_ids)
        for chunk in self._chunks(missing):
            for row in self._db.execute(f"{_TRACES} ({_marks(len(chunk))})", chunk):
                found[row[0]] = row
        return found

    def _upsert_summaries(self, db: sqlite3.Connection, summaries: list[list[Any]]) -> None:
        """Write the traces' summary rows (each of ``_TRACE_COLUMNS``), many per statement."""
        for chunk in self._chunks(summaries, len(summaries[0]) if summaries else 1):
            db.execute(_SUMMARY_HEAD + ", ".join([_SUMMARY_ROW] * len(chunk)), list(chain.from_iterable(chunk)))

    def _chunks(self, items: list[Any], parameters_each: int = 1) -> Iterator[list[Any]]:
        """``items`` in pieces whose statements stay within SQLite's limit on parameters (with one
        to spare), of power-of-two sizes (the statements are few and cached)."""
        per = self._rows_per_statement
        while per > 1 and per * parameters_each >= self._variables:
            per //= 2
        at, left = 0, len(items)
        while left:
            while per > left:
                per //= 2
            yield items[at:at + per]
            at += per
            left -= per

    def _summarize_group(self, group: SpanGroup, summaries: dict[str, list[Any]],
                         fetch_trace: Callable[[str], Any]) -> None:
        """Count the spans of ``group`` in their trace's summary (as :func:`summarize` would, span
        by span). A group is often the whole of a write (a loop calling one tool): its first span
        fetches the trace's summary, and the others are counted at once."""
        row, members = group.row, group.members
        done = 0
        if row[0] not in summaries:
            summarize(row, None, summaries, fetch_trace, self._has_span)  # (row: the first span's)
            done = 3
            if len(members) == done:
                return
        t = summaries[row[0]]
        if (t[13] and row[13] < 0 and row[14] < 0 and row[15] < 0 and not row[12] and row[7] != "ERROR"
                and min(members[done + 1::3]) >= t[3]):
            t[5] += (len(members) - done) // 3
            return
        for member in group.rows()[done // 3:]:
            summarize(member, None, summaries, fetch_trace, self._has_span)

    def _insert(self, db: sqlite3.Connection, rows: Sequence[Any]) -> list[tuple[tuple[Any, ...], int]]:
        """Insert ``rows`` (and groups) in order: groups and runs of spans that share all but
        their id and times (see ``_GROUP_FIELDS``) with the group statement, the others with the
        full one; statements of a power-of-two number of rows. A running span (few: the root,
        the spans open at the time) is inserted alone, to learn its rowid: returns those rows
        with their rowids."""
        key = _group_key
        single: list[tuple[Any, ...]] = []
        run: list[tuple[Any, ...]] = []
        run_key: Any = None
        started: list[tuple[tuple[Any, ...], int]] = []
        for row in rows:
            if row.__class__ is SpanGroup:
                self._flush_run(db, run, run_key, single)
                run, run_key = [], None
                if len(row) < MIN_GROUP:
                    single += row.rows()
                else:
                    self._insert_single(db, single)
                    single.clear()
                    self._insert_members(db, key(row.row), row.members)
                continue
            if row[6] < 0:
                self._flush_run(db, run, run_key, single)
                self._insert_single(db, single)
                run, run_key = [], None
                single.clear()
                started.append((row, db.execute(_insert(1), row[:_STORED]).lastrowid))  # type: ignore[arg-type]
                continue
            k = key(row)
            if k == run_key:
                run.append(row)
                continue
            self._flush_run(db, run, run_key, single)
            run, run_key = [row], k
        self._flush_run(db, run, run_key, single)
        self._insert_single(db, single)
        return started

    def _flush_run(self, db: sqlite3.Connection, run: list[tuple[Any, ...]], shared: Any,
                   single: list[tuple[Any, ...]]) -> None:
        """Write a run of rows that share ``shared`` as groups, or keep a short one in ``single``
        (written before, so the rows' order is kept)."""
        if len(run) < MIN_GROUP:
            single.extend(run)
            return
        self._insert_single(db, single)
        single.clear()
        self._insert_members(db, shared, list(chain.from_iterable(map(_group_member, run))))

    def _insert_members(self, db: sqlite3.Connection, shared: Sequence[Any], members: list[Any]) -> None:
        """Insert a group: what its spans share (``_GROUP_FIELDS``), then span_id, start_ns and
        end_ns of each in ``members``."""
        common = list(shared)
        at, left, per = 0, len(members) // 3, self._rows_per_group
        while left:
            while per > left:
                per //= 2
            db.execute(_insert_group(per), common + members[3 * at:3 * (at + per)])
            at += per
            left -= per

    def _insert_single(self, db: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
        at, left, per = 0, len(rows), self._rows_per_statement
        while left:
            while per > left:
                per //= 2
            db.execute(_insert(per), list(chain.from_iterable(map(_stored, rows[at:at + per]))))
            at += per
            left -= per

    def _previous(self, row: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """Where and what the store holds of the span of ``row`` already (rowid, status, tokens
        in and out, cost or None), None when it is new. A span this store wrote while it ran is
        remembered; one it never wrote, it need not look up unless it may have been written by
        another writer (the ids are random: it was not)."""
        key = (row[0], row[1])
        known = self._running.get(key)
        if known is not None or not self._shared:
            return known
        found = self._db.execute(_OLD, key).fetchone()
        if found is None:
            return None
        rowid, status, attributes = found
        tokens_in, tokens_out, cost = usage(json.loads(attributes))
        return rowid, status, max(tokens_in, 0), max(tokens_out, 0), None if cost < 0 else cost

    def _has_span(self, trace_id: str, span_id: str) -> bool:
        return self._db.execute(_HAS, (trace_id, span_id, *self._range)).fetchone() is not None

    # -- reading ----------------------------------------------------------------------------------
    def traces(self, *, limit: int = 20, agent: str | None = None, errors_only: bool = False,
               since_ns: int | None = None) -> list[TraceSummary]:
        """The newest traces first; ``agent`` keeps those where an agent of that name ran
        (``gen_ai.agent.name`` anywhere in the trace), ``errors_only`` those with a failed span,
        ``since_ns`` those started at or after that time."""
        where, args = trace_filter(agent, errors_only, since_ns)
        sql = f"SELECT {_TRACE_COLUMNS} FROM traces" + where + " ORDER BY start_ns DESC LIMIT ?"
        args.append(max(0, int(limit)))
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [trace_summary(r) for r in rows]

    def summary(self, trace_id: str) -> TraceSummary:
        """The summary of one trace (a unique prefix of 8 or more hex digits is accepted)."""
        full = self._resolve(trace_id)
        with self._lock:
            row = self._db.execute(_TRACE, (full,)).fetchone()
        if row is None:
            raise KeyError(trace_id)
        return trace_summary(row)

    def trace(self, trace_id: str) -> list[SpanRecord]:
        """The spans of a trace ordered by start; a unique prefix (>= 8 hex digits) is accepted;
        KeyError when unknown (or ambiguous)."""
        full = self._resolve(trace_id)
        with self._lock:
            rows = self._db.execute(f"SELECT {_S_COLUMNS} {_IN_TRACE} ORDER BY s.start_ns, s.rowid",
                                    (full,)).fetchall()
        if not rows:
            raise KeyError(trace_id)
        return [span_record(r) for r in rows]

    def _resolve(self, trace_id: str) -> str:
        def matching(prefix: str) -> list[Any]:
            with self._lock:
                return self._db.execute("SELECT trace_id FROM traces WHERE trace_id GLOB ? LIMIT 2",
                                        (prefix + "*",)).fetchall()
        return resolve_trace_id(trace_id, matching)

    def change_cursor(self) -> int:
        """A number that grows with every write (by any process)."""
        with self._lock:
            return int(self._db.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()[0])

    def changed_since(self, cursor: int) -> tuple[int, list[str]]:
        """(the new cursor, the ids of the traces written since ``cursor``)."""
        with self._lock:
            db = self._db
            db.execute("BEGIN")
            try:
                now = int(db.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()[0])
                rows = db.execute("SELECT trace_id FROM traces WHERE seq > ? AND seq <= ?",
                                  (int(cursor), now)).fetchall()
            finally:
                db.execute("COMMIT")
        return now, [r[0] for r in rows]

    # -- bounds -----------------------------------------------------------------------------------
    def prune(self) -> int:
        """Remove traces older than ``max_age_s``, then the oldest until the file's used pages fit
        ``max_bytes``; returns how many spans were removed."""
        self._next_prune = time.monotonic() + PRUNE_EVERY_S
        removed = 0
        with self._lock:
            db = self._db
            cutoff = time.time_ns() - int(self.max_age_s * 1e9)
            removed += self._drop("SELECT trace_id FROM traces WHERE start_ns < ?", (cutoff,))
            while self._used_bytes() > self.max_bytes:
                count = db.execute("SELECT COUNT(*) FROM traces").fetchone()[0]
                if count <= 1:
                    break
                dropped = self._drop("SELECT trace_id FROM traces ORDER BY start_ns LIMIT ?", (max(1, count // 10),))
                removed += dropped
                if not dropped:
                    break
            if removed:
                db.execute("PRAGMA incremental_vacuum")
        return removed

    def _drop(self, select: str, args: tuple[Any, ...]) -> int:
        db = self._db
        self._summaries.clear()  # (the summaries of the traces it removes are gone)
        db.execute("BEGIN IMMEDIATE")
        try:
            ids = [r[0] for r in db.execute(select, args).fetchall()]
            removed = 0
            for trace_id in ids:
                removed += db.execute(f"DELETE FROM spans WHERE rowid IN (SELECT s.rowid {_IN_TRACE})", (trace_id,)).rowcount
                db.execute("DELETE FROM trace_rows WHERE trace_id = ?", (trace_id,))
                db.execute("DELETE FROM traces WHERE trace_id = ?", (trace_id,))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return removed

    def _used_bytes(self) -> int:
        db = self._db
        pages = db.execute("PRAGMA page_count").fetchone()[0] - db.execute("PRAGMA freelist_count").fetchone()[0]
        return int(pages) * int(db.execute("PRAGMA page_size").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
