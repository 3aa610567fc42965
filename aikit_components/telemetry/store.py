"""SQLite span store (minimal version for the dashboard branch; the ``tracing`` helper's version
replaces it at merge). Spans are upserted by (trace_id, span_id); every write takes the next value
of a change counter, which is what :meth:`SpanStore.changed_since` reads for live updates."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from .records import SpanRecord, TraceSummary

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spans (
    trace_id TEXT NOT NULL, span_id TEXT NOT NULL, parent_span_id TEXT, name TEXT NOT NULL,
    kind TEXT NOT NULL, start_ns INTEGER NOT NULL, end_ns INTEGER, status TEXT NOT NULL,
    status_message TEXT NOT NULL, attributes TEXT NOT NULL, events TEXT NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (trace_id, span_id));
CREATE INDEX IF NOT EXISTS spans_seq ON spans(seq);
CREATE INDEX IF NOT EXISTS spans_start ON spans(start_ns);
CREATE TABLE IF NOT EXISTS cursor (id INTEGER PRIMARY KEY CHECK (id = 0), value INTEGER NOT NULL);
INSERT OR IGNORE INTO cursor VALUES (0, 0);
"""


class SpanStore:
    """SQLite span store in the data directory (file traces.sqlite), bounded by age and size."""

    def __init__(self, path: Path | str, *, max_age_s: float = 7 * 86400, max_bytes: int = 200 * 2**20) -> None:
        self.path = Path(path)
        self.max_age_s = max_age_s
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=5, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def write(self, spans: Sequence[SpanRecord]) -> None:
        """Upsert ``spans`` by (trace_id, span_id)."""
        if not spans:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                seq = self._db.execute("UPDATE cursor SET value = value + 1 RETURNING value").fetchone()[0]
                self._db.executemany(
                    "INSERT OR REPLACE INTO spans VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    [(s.trace_id, s.span_id, s.parent_span_id, s.name, s.kind, s.start_ns, s.end_ns, s.status,
                      s.status_message, json.dumps(s.attributes), json.dumps(s.events), seq) for s in spans])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def traces(self, *, limit: int = 20, agent: str | None = None, errors_only: bool = False,
               since_ns: int | None = None) -> list[TraceSummary]:
        """Summaries of the newest traces first."""
        where, having, params = "", [], []
        if agent is not None:
            where = ("WHERE trace_id IN (SELECT trace_id FROM spans "
                     "WHERE json_extract(attributes, '$.\"gen_ai.agent.name\"') = ?)")
            params.append(agent)
        if errors_only:
            having.append("SUM(status = 'ERROR') > 0")
        if since_ns is not None:
            having.append("MIN(start_ns) >= ?")
            params.append(since_ns)
        sql = (f"SELECT trace_id FROM spans {where} GROUP BY trace_id "
               f"{'HAVING ' + ' AND '.join(having) if having else ''} ORDER BY MIN(start_ns) DESC LIMIT ?")
        with self._lock:
            ids = [row[0] for row in self._db.execute(sql, [*params, limit])]
        return [_summary(trace_id, self.trace(trace_id)) for trace_id in ids]

    def trace(self, trace_id: str) -> list[SpanRecord]:
        """The spans of one trace ordered by start; a unique prefix of 8+ hex digits is accepted."""
        with self._lock:
            ids = [r[0] for r in self._db.execute(
                "SELECT DISTINCT trace_id FROM spans WHERE trace_id = ? OR (length(?) >= 8 AND trace_id LIKE ? || '%')",
                (trace_id, trace_id, trace_id))]
            if len(ids) != 1:
                raise KeyError(trace_id)
            rows = self._db.execute("SELECT * FROM spans WHERE trace_id = ? ORDER BY start_ns", (ids[0],)).fetchall()
        return [SpanRecord(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], json.loads(r[9]), json.loads(r[10]))
                for r in rows]

    def change_cursor(self) -> int:
        """A number that grows with every write (any process)."""
        with self._lock:
            return int(self._db.execute("SELECT value FROM cursor").fetchone()[0])

    def changed_since(self, cursor: int) -> tuple[int, list[str]]:
        """(new cursor, ids of the traces written since ``cursor``)."""
        with self._lock:
            rows = self._db.execute("SELECT trace_id, MAX(seq) FROM spans WHERE seq > ? GROUP BY trace_id",
                                    (cursor,)).fetchall()
            now = int(self._db.execute("SELECT value FROM cursor").fetchone()[0])
        return max(now, cursor), [r[0] for r in rows]

    def prune(self) -> int:
        """Remove the traces older than ``max_age_s``; return the number of spans removed."""
        limit = time.time_ns() - int(self.max_age_s * 1e9)
        with self._lock:
            cur = self._db.execute("DELETE FROM spans WHERE trace_id IN (SELECT trace_id FROM spans "
                                   "GROUP BY trace_id HAVING MAX(COALESCE(end_ns, start_ns)) < ?)", (limit,))
            return cur.rowcount

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()


def _summary(trace_id: str, spans: list[SpanRecord]) -> TraceSummary:
    ids = {s.span_id for s in spans}
    roots = [s for s in spans if s.parent_span_id is None or s.parent_span_id not in ids]
    root = roots[0] if roots else spans[0]
    costs = [s.attributes["aikit.cost.usd"] for s in spans if isinstance(s.attributes.get("aikit.cost.usd"), int | float)]
    errors = sum(1 for s in spans if s.status == "ERROR")
    status = "running" if root.end_ns is None else ("error" if errors else "ok")
    return TraceSummary(trace_id, root.name, str(root.attributes.get("aikit.operation.kind", "")), root.start_ns,
                        root.end_ns, len(spans), errors,
                        sum(int(s.attributes.get("gen_ai.usage.input_tokens", 0) or 0) for s in spans),
                        sum(int(s.attributes.get("gen_ai.usage.output_tokens", 0) or 0) for s in spans),
                        sum(costs) if costs else None, status)
