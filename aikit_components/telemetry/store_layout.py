"""The local span store's layout in SQLite and the statements that write it (see
:mod:`.store`): the tables, the migration from the first layout, and the insert, rewrite and
summary statements, built once per number of rows."""

from __future__ import annotations

import functools
import operator
import sqlite3

__all__ = [
    "GROUP_FIELDS", "HAS_SPAN", "IN_TRACE", "LAST_ROW", "LAYOUT", "MAX_ROWS_PER_STATEMENT", "MIN_GROUP", "OLD_SPAN",
    "REWRITE", "SEQ", "SPAN_COLUMNS", "STORED", "SUMMARY_HEAD", "SUMMARY_ROW", "S_COLUMNS", "TRACES_BY_IDS", "TRACE_BY_ID",
    "TRACE_COLUMNS", "group_key", "group_member", "insert_group_statement", "insert_statement", "marks", "migrate",
    "stored",
]

#: The store's layout, in SQLite's ``user_version``: 0 is a new file or the first layout (spans
#: keyed by ``(trace_id, span_id)`` with an indexed ``seq`` per span), migrated by :func:`migrate`.
LAYOUT = 2
#: The columns of the spans table: a :class:`SpanRecord`'s fields.
SPAN_COLUMNS = "trace_id, span_id, parent_span_id, name, kind, start_ns, end_ns, status, status_message, attributes, events"
STORED = len(SPAN_COLUMNS.split(","))  # a row's first fields are stored, the others make the summaries
TRACE_COLUMNS = ("trace_id, root_name, root_kind, start_ns, end_ns, span_count, error_count, input_tokens, "
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
                  + f";\nINSERT INTO spans ({SPAN_COLUMNS}) SELECT {SPAN_COLUMNS} FROM spans_layout1 ORDER BY rowid;\n"
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
INSERT INTO spans ({SPAN_COLUMNS})
SELECT column1, column2, NULLIF(column3, ''), column4, column5, column6, NULLIF(column7, -1), column8, column9,
       column10, column11
FROM (VALUES """
_INSERT_ROW = "(" + ", ".join(["?"] * STORED) + ")"
# Many rows per INSERT statement, not executemany: each statement step releases the GIL, and the
# writer thread, to take it back from the thread making spans, waits for that thread's next
# release or forces a switch after the switch interval (5 ms); every switch stalls the other thread
# until the writer is scheduled. So the fewer statements per write the better: up to 512 rows each
# (SQLite's time per row grows slowly with the statement: +20% at 1024 rows, +80% at 2048).
# Statements have a power-of-two number of rows (a batch is split in those), so that few are
# ever prepared (the connection's statement cache keeps them: preparing one costs more than
# running it).
MAX_ROWS_PER_STATEMENT = 512


@functools.lru_cache(maxsize=16)
def insert_statement(rows: int) -> str:
    """The insert statement of ``rows`` spans."""
    return _INSERT_HEAD + ",\n".join([_INSERT_ROW] * rows) + ")"


# Spans that differ only in span_id, start_ns and end_ns (a loop calling one tool: same trace,
# parent, name, attributes, status) are inserted as a group: what they share is bound once (?1 to
# ?8) and each span adds three parameters. Binding a text parameter is the larger part of
# SQLite's time per row (a copy, a mutex), so a group's row costs ~40% fewer instructions than
# a row of the full statement.
GROUP_FIELDS = (0, 2, 3, 4, 7, 8, 9, 10)  # the stored fields but span_id, start_ns, end_ns
group_key = operator.itemgetter(*GROUP_FIELDS)
group_member = operator.itemgetter(1, 5, 6)  # what each span of a group adds
stored = operator.itemgetter(slice(0, STORED))
#: A group this large or larger is written with the group statement (smaller: the full one).
MIN_GROUP = 4
_GROUP_HEAD = f"""
INSERT INTO spans ({SPAN_COLUMNS})
SELECT ?1, column1, NULLIF(?2, ''), ?3, ?4, column2, NULLIF(column3, -1), ?5, ?6, ?7, ?8
FROM (VALUES """


@functools.lru_cache(maxsize=16)
def insert_group_statement(rows: int) -> str:
    """The insert statement of a group of ``rows`` spans (see ``GROUP_FIELDS``)."""
    # Plain "?" placeholders: each takes the number after the largest so far (?8, in the head), in
    # order. Numbered ones ("?9") are named parameters, and sqlite3 looks up the name of every
    # parameter it binds in a list as long as the statement: 5,000 instructions per span.
    return _GROUP_HEAD + ",".join(["(?,?,?)"] * rows) + ")"


# A span written again (it was written running) updates its row in place (so rows keep the order
# they were first written in), found by rowid and checked by id: another process may have pruned
# it and the rowid gone to another span (then the span is inserted as new).
REWRITE = """
UPDATE spans SET parent_span_id = NULLIF(?, ''), name = ?, kind = ?, start_ns = ?, end_ns = NULLIF(?, -1), status = ?,
    status_message = ?, attributes = ?, events = ?
WHERE rowid = ? AND trace_id = ? AND span_id = ?"""
SUMMARY_HEAD = f"INSERT OR REPLACE INTO traces ({TRACE_COLUMNS}, seq) VALUES "
# (the write's seq is a parameter: a subquery in each row of the VALUES list was evaluated once per
# row, a cursor opened on meta each time)
SUMMARY_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
SEQ = "SELECT value FROM meta WHERE key = 'seq'"


# A trace's summary row is kept up to date span by span (never by scanning the trace: a cell that
# makes 100,000 tool calls is one trace). Its root is the span without a parent; until that one is
# written (children end, and are written, before their parent) or when it has a remote parent
# (TRACEPARENT), the earliest span whose parent is not in the store stands in.
IN_TRACE = ("FROM trace_rows AS r JOIN spans AS s ON s.rowid BETWEEN r.first AND r.last "
             "WHERE r.trace_id = ?1 AND s.trace_id = ?1")
OLD_SPAN = f"SELECT s.rowid, s.status, s.attributes {IN_TRACE} AND s.span_id = ?2"
# Whether a span is among those of earlier writes. (The rows of the write under way are not in
# trace_rows yet: the store knows them itself. Asking SQLite for them scanned the write's whole
# range of rowids, thousands of rows in a burst of agent runs, at every question.)
HAS_SPAN = f"SELECT 1 {IN_TRACE} AND s.span_id = ?2 LIMIT 1"
LAST_ROW = "SELECT max(rowid) FROM spans"
S_COLUMNS = ", ".join("s." + c.strip() for c in SPAN_COLUMNS.split(","))
TRACE_BY_ID = f"SELECT {TRACE_COLUMNS} FROM traces WHERE trace_id = ?"
TRACES_BY_IDS = f"SELECT {TRACE_COLUMNS} FROM traces WHERE trace_id IN"


def marks(count: int) -> str:
    """``count`` SQL parameter marks, comma-separated."""
    return ", ".join(["?"] * count)
