"""The span store in PostgreSQL (``[storage] url``): the spans of every kernel and server on the
database in one place (tables ``aikit_spans``, ``aikit_traces``, ``aikit_traces_meta``; component
``traces`` of the storage migrations), so ``aikit trace`` and the dashboard on any machine see them.

Same rows, summaries, change counter and bounds as the SQLite store (:mod:`.store`). A write is one
transaction that first bumps the change counter, whose row lock serializes writers (the summaries
are read, updated and written back), as SQLite's ``BEGIN IMMEDIATE`` does. Pruning by size uses
the tables' size on disk, which PostgreSQL gives back only after a vacuum: each pass drops at most a
tenth of the traces, so the store converges instead of emptying itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from ..storage.postgres import PostgresDatabase, from_qmark
from .records import SpanRecord, TraceSummary
from .rows import (
    PRUNE_EVERY_S,
    expand_groups,
    record_row,
    resolve_trace_id,
    span_record,
    summarize,
    trace_filter,
    trace_summary,
)

_UPSERT = """
INSERT INTO aikit_spans (trace_id, span_id, parent_span_id, name, kind, start_ns, end_ns, status, status_message,
                         attributes, events, op_kind, agent, input_tokens, output_tokens, cost_usd, seq)
VALUES (%s, %s, NULLIF(%s, ''), %s, %s, %s, NULLIF(%s, -1), %s, %s, %s, %s, %s, NULLIF(%s, ''), NULLIF(%s, -1),
        NULLIF(%s, -1), NULLIF(%s::double precision, -1.0), %s)
ON CONFLICT (trace_id, span_id) DO UPDATE SET
    parent_span_id = EXCLUDED.parent_span_id, name = EXCLUDED.name, kind = EXCLUDED.kind,
    start_ns = EXCLUDED.start_ns, end_ns = EXCLUDED.end_ns, status = EXCLUDED.status,
    status_message = EXCLUDED.status_message, attributes = EXCLUDED.attributes, events = EXCLUDED.events,
    op_kind = EXCLUDED.op_kind, agent = EXCLUDED.agent, input_tokens = EXCLUDED.input_tokens,
    output_tokens = EXCLUDED.output_tokens, cost_usd = EXCLUDED.cost_usd, seq = EXCLUDED.seq
"""
_TRACE_COLUMNS = ("trace_id, root_name, root_kind, start_ns, end_ns, span_count, error_count, input_tokens, "
                  "output_tokens, cost_usd, status, agents, root_span_id, root_parentless, root_start_ns")
_SUMMARY_UPSERT = (f"INSERT INTO aikit_traces ({_TRACE_COLUMNS}) VALUES ({', '.join(['%s'] * 15)}) "
                   "ON CONFLICT (trace_id) DO UPDATE SET "
                   + ", ".join(f"{c} = EXCLUDED.{c}" for c in _TRACE_COLUMNS.split(", ")[1:]))
_SPAN_COLUMNS = ("trace_id, span_id, parent_span_id, name, kind, start_ns, end_ns, status, status_message, "
                 "attributes, events")
_OLD = "SELECT status, input_tokens, output_tokens, cost_usd FROM aikit_spans WHERE trace_id = %s AND span_id = %s"


class PostgresSpanStore:
    """The span store in the database ``db`` (migrated on first use); the methods of
    :class:`~aikit_components.telemetry.store.SpanStore`."""

    def __init__(self, db: PostgresDatabase, *, max_age_s: float = 7 * 86400, max_bytes: int = 200 * 2**20,
                 shared: bool = True) -> None:
        self.db = db
        self.path = db.where  # named where the SQLite store names its file
        self.max_age_s = float(max_age_s)
        self.max_bytes = int(max_bytes)
        self._next_prune = 0.0
        self._lock = threading.Lock()
        db.ensure_schema("traces")  # a database newer than this code is refused here

    # -- writing ----------------------------------------------------------------------------------
    def write(self, spans: Sequence[SpanRecord]) -> None:
        """Upsert ``spans`` by (trace_id, span_id) in one transaction and update their traces'
        summaries. Raises ``AikitError`` when the database cannot be written."""
        self.write_rows([record_row(span) for span in spans])

    def write_rows(self, rows: Sequence[Any]) -> None:
        """:meth:`write` for spans given as rows (``ROW_FIELDS``) and groups (``SpanGroup``)."""
        if not rows:
            return
        rows = expand_groups(rows)
        latest = list({(row[0], row[1]): row for row in rows}.values())  # a span once, as last given
        with self._lock, self.db.transaction("write spans") as conn:
            seq = conn.execute("UPDATE aikit_traces_meta SET value = value + 1 WHERE key = 'seq' "
                               "RETURNING value").fetchone()[0]
            olds = [conn.execute(_OLD, (row[0], row[1])).fetchone() for row in latest]
            with conn.cursor() as cursor:
                cursor.executemany(_UPSERT, [(*row, seq) for row in latest])
            summaries: dict[str, list[Any]] = {}

            def fetch_trace(trace_id: str) -> Any:
                return conn.execute(f"SELECT {_TRACE_COLUMNS} FROM aikit_traces WHERE trace_id = %s",
                                    (trace_id,)).fetchone()

            def has_span(trace_id: str, span_id: str) -> bool:
                return conn.execute("SELECT 1 FROM aikit_spans WHERE trace_id = %s AND span_id = %s",
                                    (trace_id, span_id)).fetchone() is not None

            for row, old in zip(latest, olds, strict=True):
                summarize(row, old, summaries, fetch_trace, has_span)
            with conn.cursor() as cursor:
                cursor.executemany(_SUMMARY_UPSERT, [tuple(t) for t in summaries.values()])
        if time.monotonic() >= self._next_prune:
            self.prune()

    # -- reading ----------------------------------------------------------------------------------
    def traces(self, *, limit: int = 20, agent: str | None = None, errors_only: bool = False,
               since_ns: int | None = None) -> list[TraceSummary]:
        """The newest traces first (filters as :meth:`SpanStore.traces`)."""
        where, args = trace_filter(agent, errors_only, since_ns, contains="strpos(agents, ?) > 0")
        args.append(max(0, int(limit)))
        rows = self.db.query("list traces", from_qmark(f"SELECT {_TRACE_COLUMNS} FROM aikit_traces{where} "
                                                      "ORDER BY start_ns DESC LIMIT ?"), args)
        return [trace_summary(r) for r in rows]

    def summary(self, trace_id: str) -> TraceSummary:
        """The summary of one trace (a unique prefix of 8 or more hex digits is accepted)."""
        rows = self.db.query("read a trace", f"SELECT {_TRACE_COLUMNS} FROM aikit_traces WHERE trace_id = %s",
                             (self._resolve(trace_id),))
        if not rows:
            raise KeyError(trace_id)
        return trace_summary(rows[0])

    def trace(self, trace_id: str) -> list[SpanRecord]:
        """The spans of a trace ordered by start; KeyError when unknown (or ambiguous)."""
        rows = self.db.query("read a trace", f"SELECT {_SPAN_COLUMNS} FROM aikit_spans WHERE trace_id = %s "
                             "ORDER BY start_ns, seq, span_id", (self._resolve(trace_id),))
        if not rows:
            raise KeyError(trace_id)
        return [span_record(r) for r in rows]

    def _resolve(self, trace_id: str) -> str:
        return resolve_trace_id(trace_id, lambda prefix: self.db.query(
            "find a trace", "SELECT trace_id FROM aikit_traces WHERE trace_id LIKE %s LIMIT 2", (prefix + "%",)))

    def change_cursor(self) -> int:
        """A number that grows with every write (by any process on the database)."""
        return int(self.db.query("read the change counter",
                                 "SELECT value FROM aikit_traces_meta WHERE key = 'seq'")[0][0])

    def changed_since(self, cursor: int) -> tuple[int, list[str]]:
        """(the new cursor, the ids of the traces written since ``cursor``)."""
        with self.db.transaction("read changed traces") as conn:
            now = int(conn.execute("SELECT value FROM aikit_traces_meta WHERE key = 'seq'").fetchone()[0])
            rows = conn.execute("SELECT DISTINCT trace_id FROM aikit_spans WHERE seq > %s AND seq <= %s",
                                (int(cursor), now)).fetchall()
        return now, [r[0] for r in rows]

    # -- bounds -----------------------------------------------------------------------------------
    def prune(self) -> int:
        """Remove traces older than ``max_age_s``, then, while the tables take more than
        ``max_bytes`` on disk, the oldest tenth of the traces (once per call); returns how many
        spans were removed."""
        self._next_prune = time.monotonic() + PRUNE_EVERY_S
        cutoff = time.time_ns() - int(self.max_age_s * 1e9)
        removed = self._drop("SELECT trace_id FROM aikit_traces WHERE start_ns < %s", (cutoff,))
        used = self.db.query("measure the span store", "SELECT pg_total_relation_size('aikit_spans') + "
                             "pg_total_relation_size('aikit_traces')")[0][0]
        if int(used) > self.max_bytes:
            count = int(self.db.query("count traces", "SELECT COUNT(*) FROM aikit_traces")[0][0])
            if count > 1:
                removed += self._drop("SELECT trace_id FROM aikit_traces ORDER BY start_ns LIMIT %s",
                                      (max(1, count // 10),))
        return removed

    def _drop(self, select: str, args: tuple[Any, ...]) -> int:
        with self.db.transaction("prune the span store") as conn:
            ids = [r[0] for r in conn.execute(select, args).fetchall()]
            if not ids:
                return 0
            removed = conn.execute("DELETE FROM aikit_spans WHERE trace_id = ANY(%s)", (ids,)).rowcount
            conn.execute("DELETE FROM aikit_traces WHERE trace_id = ANY(%s)", (ids,))
        return int(removed)

    def close(self) -> None:
        self.db.close()
