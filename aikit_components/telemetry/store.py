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
opened (:func:`~.store_layout.migrate`; the tables and statements are :mod:`.store_layout`'s)."""

from __future__ import annotations

import json
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
from .store_layout import (
    GROUP_FIELDS,
    HAS_SPAN,
    IN_TRACE,
    LAST_ROW,
    LAYOUT,
    MAX_ROWS_PER_STATEMENT,
    MIN_GROUP,
    OLD_SPAN,
    REWRITE,
    S_COLUMNS,
    SEQ,
    STORED,
    SUMMARY_HEAD,
    SUMMARY_ROW,
    TRACE_BY_ID,
    TRACE_COLUMNS,
    TRACES_BY_IDS,
    group_key,
    group_member,
    insert_group_statement,
    insert_statement,
    marks,
    migrate,
    stored,
)
from .written import WrittenTraces, span_ids

__all__ = ["LAYOUT", "SpanStore", "migrate"]

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
        self._rows_per_statement = 1 << (max(1, min(MAX_ROWS_PER_STATEMENT, variables // len(ROW_FIELDS))
                                             ).bit_length() - 1)
        self._rows_per_group = 1 << (max(1, min(MAX_ROWS_PER_STATEMENT, (variables - len(GROUP_FIELDS)) // 3)
                                         ).bit_length() - 1)
        self._next_prune = 0.0
        # (trace_id, span_id) -> (rowid, status, tokens in, tokens out, cost) of the spans this
        # store wrote running (what their row holds, to replace it and correct the summary)
        self._running: dict[tuple[str, str], tuple[Any, ...]] = {}
        # write() is given spans of other writers too (tests, imports): then it looks them up
        self._shared = bool(shared)
        self._range = (1, 0)  # the rowids of the rows the write under way has appended
        self._fresh: Sequence[Any] = ()  # the rows (and groups) the write under way has appended
        self._fresh_ids: set[tuple[str, str]] | None = None  # their (trace id, span id), once asked
        self._written = WrittenTraces()  # the summaries and span ids of the traces this store wrote

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
                        elif db.execute(REWRITE, (*row[2:STORED], old[0], row[0], row[1])).rowcount:
                            rewritten.append((row, old[0]))
                        else:  # pruned meanwhile by another process: a new row
                            fresh.append(row)
                            rewritten.append((row, None))
                first = (db.execute(LAST_ROW).fetchone()[0] or 0) + 1  # (the rows appended now follow it)
                started, count = self._insert(db, fresh)
                self._range = (first, (db.execute(LAST_ROW).fetchone()[0] or 0))
                if started:
                    started = self._rowids(db, started, first, count)
                self._fresh, self._fresh_ids = fresh, None
                summaries: dict[str, list[Any]] = {}
                # the stored summaries of the write's traces, asked for together (a statement per
                # trace handed the GIL over and back once per trace, several times per agent run)
                trace_ids = {row.row[0] if row.__class__ is SpanGroup else row[0] for row in rows}
                stored = self._fetch_traces(trace_ids, self._written.summaries(db))
                fetch_trace = stored.get
                has_span = self._has_span
                get = summaries.get
                for row, old in zip(rows, olds, strict=True) if olds is not None else zip(rows, repeat(None)):
                    if row.__class__ is SpanGroup:
                        self._summarize_group(row, summaries, fetch_trace)
                        continue
                    t = get(row[0])
                    # as summarize, inline for the most common row: a new span, not failed, without
                    # tokens, cost or agent, in a trace whose root is not this span and is known, or
                    # is a stand-in this child started after (it cannot stand in for the root then)
                    if (t is not None and old is None and (t[13] or (row[2] and row[5] > t[14])) and row[13] < 0
                            and row[14] < 0 and row[15] < 0 and not row[12] and row[7] != "ERROR" and row[5] >= t[3]
                            and t[12] != row[1]):
                        t[5] += 1
                    else:
                        summarize(row, None if old is None else old[1:], summaries, fetch_trace, has_span)
                self._fresh, self._fresh_ids = (), None
                self._upsert_summaries(db, list(summaries.values()), db.execute(SEQ).fetchone()[0])
                if self._range[1] >= first:
                    self._add_ranges(db, {row.row[0] if row.__class__ is SpanGroup else row[0] for row in fresh})
                db.execute("COMMIT")
            except BaseException:
                self._fresh, self._fresh_ids = (), None  # not kept alive until the next write
                if db.in_transaction:  # SQLite may have rolled back already (a full disk does)
                    db.execute("ROLLBACK")
                raise  # nothing was written: what this store remembers still holds
            self._written.remember(summaries, fresh, trace_ids.difference(stored))
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
                    f"SELECT trace_id, rowid, max(last) FROM trace_rows WHERE trace_id IN ({marks(len(chunk))}) "
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
            db.execute(f"UPDATE trace_rows SET last = ? WHERE rowid IN ({marks(len(chunk))})", [last, *chunk])
        for chunk in self._chunks(new, 3):
            db.execute("INSERT INTO trace_rows (trace_id, first, last) VALUES " + ", ".join(["(?, ?, ?)"] * len(chunk)),
                       [*chain.from_iterable((trace_id, first, last) for trace_id in chunk)])

    def _fetch_traces(self, trace_ids: set[str], known: dict[str, tuple[Any, ...]]) -> dict[str, Any]:
        """The stored summary rows of ``trace_ids`` (those that have one), by trace id: those in
        ``known`` from there (see :class:`.written.WrittenTraces`), the others from the file."""
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
            for row in self._db.execute(f"{TRACES_BY_IDS} ({marks(len(chunk))})", chunk):
                found[row[0]] = row
        return found

    def _upsert_summaries(self, db: sqlite3.Connection, summaries: list[list[Any]], seq: int) -> None:
        """Write the traces' summary rows (each of ``TRACE_COLUMNS``) with the write's ``seq``,
        many per statement."""
        for chunk in self._chunks(summaries, len(summaries[0]) + 1 if summaries else 1):
            args: list[Any] = []
            for summary in chunk:
                args += summary
                args.append(seq)
            db.execute(SUMMARY_HEAD + ", ".join([SUMMARY_ROW] * len(chunk)), args)

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

    def _insert(self, db: sqlite3.Connection, rows: Sequence[Any]) -> tuple[list[tuple[tuple[Any, ...], int]], int]:
        """Insert ``rows`` (and groups) in order: groups and runs of spans that share all but
        their id and times (see ``GROUP_FIELDS``) with the group statement, the others with the
        full one; statements of a power-of-two number of rows. Returns the running spans among
        them (few: the root, the spans open at the time), each with its place among the rows
        inserted (0 for the first; see :meth:`_rowids`), and how many rows were inserted."""
        key = group_key
        single: list[tuple[Any, ...]] = []
        run: list[tuple[Any, ...]] = []
        run_key: Any = None
        started: list[tuple[tuple[Any, ...], int]] = []
        place = 0  # of the row in the rows inserted
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
                place += len(row)
                continue
            if row[6] < 0:  # (with the rows around it: a statement of its own for each cost more)
                self._flush_run(db, run, run_key, single)
                run, run_key = [], None
                single.append(row)
                started.append((row, place))
                place += 1
                continue
            place += 1
            k = key(row)
            if k == run_key:
                run.append(row)
                continue
            self._flush_run(db, run, run_key, single)
            run, run_key = [row], k
        self._flush_run(db, run, run_key, single)
        self._insert_single(db, single)
        return started, place

    def _rowids(self, db: sqlite3.Connection, started: list[tuple[tuple[Any, ...], int]], first: int,
                count: int) -> list[tuple[tuple[Any, ...], int]]:
        """The running spans :meth:`_insert` returned, each with its rowid. The ``count`` rows were
        appended in order, each with the largest rowid plus one (no other connection writes during
        the transaction), so from ``first`` on and a span's rowid is ``first`` plus its place. (When
        the largest rowid possible is taken, SQLite picks free ones at random: then the write's
        range shows fewer rows than that, and the spans are looked up.)"""
        if self._range[1] - first + 1 == count:
            return [(row, first + place) for row, place in started]
        return [(row, db.execute("SELECT max(rowid) FROM spans WHERE trace_id = ? AND span_id = ?",
                                 (row[0], row[1])).fetchone()[0]) for row, _ in started]

    def _flush_run(self, db: sqlite3.Connection, run: list[tuple[Any, ...]], shared: Any,
                   single: list[tuple[Any, ...]]) -> None:
        """Write a run of rows that share ``shared`` as groups, or keep a short one in ``single``
        (written before, so the rows' order is kept)."""
        if len(run) < MIN_GROUP:
            single.extend(run)
            return
        self._insert_single(db, single)
        single.clear()
        self._insert_members(db, shared, list(chain.from_iterable(map(group_member, run))))

    def _insert_members(self, db: sqlite3.Connection, shared: Sequence[Any], members: list[Any]) -> None:
        """Insert a group: what its spans share (``GROUP_FIELDS``), then span_id, start_ns and
        end_ns of each in ``members``."""
        common = list(shared)
        at, left, per = 0, len(members) // 3, self._rows_per_group
        while left:
            while per > left:
                per //= 2
            db.execute(insert_group_statement(per), common + members[3 * at:3 * (at + per)])
            at += per
            left -= per

    def _insert_single(self, db: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
        at, left, per = 0, len(rows), self._rows_per_statement
        while left:
            while per > left:
                per //= 2
            db.execute(insert_statement(per), list(chain.from_iterable(map(stored, rows[at:at + per]))))
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
        found = self._db.execute(OLD_SPAN, key).fetchone()
        if found is None:
            return None
        rowid, status, attributes = found
        tokens_in, tokens_out, cost = usage(json.loads(attributes))
        return rowid, status, max(tokens_in, 0), max(tokens_out, 0), None if cost < 0 else cost

    def _has_span(self, trace_id: str, span_id: str) -> bool:
        """Whether the span is stored: appended by the write under way, or by an earlier one."""
        fresh_ids = self._fresh_ids
        if fresh_ids is None:  # (asked for a few traces per write: the set is made once, when first asked)
            fresh_ids = self._fresh_ids = span_ids(self._fresh)
        if (trace_id, span_id) in fresh_ids:
            return True
        stored = self._written.span_ids(trace_id)
        if stored is not None:  # (a trace this store wrote all of)
            return span_id in stored
        return self._db.execute(HAS_SPAN, (trace_id, span_id)).fetchone() is not None

    # -- reading ----------------------------------------------------------------------------------
    def traces(self, *, limit: int = 20, agent: str | None = None, errors_only: bool = False,
               since_ns: int | None = None) -> list[TraceSummary]:
        """The newest traces first; ``agent`` keeps those where an agent of that name ran
        (``gen_ai.agent.name`` anywhere in the trace), ``errors_only`` those with a failed span,
        ``since_ns`` those started at or after that time."""
        where, args = trace_filter(agent, errors_only, since_ns)
        sql = f"SELECT {TRACE_COLUMNS} FROM traces" + where + " ORDER BY start_ns DESC LIMIT ?"
        args.append(max(0, int(limit)))
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [trace_summary(r) for r in rows]

    def summary(self, trace_id: str) -> TraceSummary:
        """The summary of one trace (a unique prefix of 8 or more hex digits is accepted)."""
        full = self._resolve(trace_id)
        with self._lock:
            row = self._db.execute(TRACE_BY_ID, (full,)).fetchone()
        if row is None:
            raise KeyError(trace_id)
        return trace_summary(row)

    def trace(self, trace_id: str) -> list[SpanRecord]:
        """The spans of a trace ordered by start; a unique prefix (>= 8 hex digits) is accepted;
        KeyError when unknown (or ambiguous)."""
        full = self._resolve(trace_id)
        with self._lock:
            rows = self._db.execute(f"SELECT {S_COLUMNS} {IN_TRACE} ORDER BY s.start_ns, s.rowid",
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
        db.execute("BEGIN IMMEDIATE")
        try:
            ids = [r[0] for r in db.execute(select, args).fetchall()]
            if ids:  # what it remembers of the traces it removes goes (a prune that removes nothing keeps it)
                self._written.forget()
            removed = 0
            for trace_id in ids:
                removed += db.execute(f"DELETE FROM spans WHERE rowid IN (SELECT s.rowid {IN_TRACE})", (trace_id,)).rowcount
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
