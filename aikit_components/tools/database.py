"""Database tools: one parameterised SQL statement against a SQLite file.

The statement runs in a worker thread (``asyncio.to_thread``) so the I/O loop never blocks on the
disk; a timeout or a cancelled call interrupts it for real (``sqlite3.Connection.interrupt``).
Values only ever reach SQLite as bound parameters. An authorizer refuses what would reach
outside the one database file or outside SQL: ``ATTACH``/``DETACH`` (open other files), the
functions ``load_extension`` (native code; extension loading is also disabled on the connection)
and ``fts3_tokenizer`` (hands out and accepts raw C pointers), and every ``PRAGMA`` except a
read-only allowlist plus a few per-connection switches (``temp_store_directory`` would change a
process-wide setting, ``writable_schema`` can corrupt the file). ``VACUUM INTO`` (writes a copy
anywhere; the authorizer sees it as an ATTACH) is recognized in the compiled program first, so
the refusal names it.
The authorizer also tells whether the statement writes.
"""

from __future__ import annotations

import asyncio
import base64
import sqlite3
import threading
from pathlib import Path
from typing import Any

from ..errors import AikitError, InvalidArgument, IOFailure, NotFound, PermissionDenied, Timeout
from .base import ToolContext, tool

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_BUSY_TIMEOUT_S = 5.0
MAX_ROWS_LIMIT = 100_000

_WRITE_ACTIONS = frozenset({
    sqlite3.SQLITE_CREATE_INDEX, sqlite3.SQLITE_CREATE_TABLE, sqlite3.SQLITE_CREATE_TEMP_INDEX,
    sqlite3.SQLITE_CREATE_TEMP_TABLE, sqlite3.SQLITE_CREATE_TEMP_TRIGGER, sqlite3.SQLITE_CREATE_TEMP_VIEW,
    sqlite3.SQLITE_CREATE_TRIGGER, sqlite3.SQLITE_CREATE_VIEW, sqlite3.SQLITE_DELETE, sqlite3.SQLITE_DROP_INDEX,
    sqlite3.SQLITE_DROP_TABLE, sqlite3.SQLITE_DROP_TEMP_INDEX, sqlite3.SQLITE_DROP_TEMP_TABLE,
    sqlite3.SQLITE_DROP_TEMP_TRIGGER, sqlite3.SQLITE_DROP_TEMP_VIEW, sqlite3.SQLITE_DROP_TRIGGER,
    sqlite3.SQLITE_DROP_VIEW, sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_ALTER_TABLE,
    sqlite3.SQLITE_REINDEX, sqlite3.SQLITE_ANALYZE, sqlite3.SQLITE_CREATE_VTABLE, sqlite3.SQLITE_DROP_VTABLE,
})
_DENIED_ACTIONS = {sqlite3.SQLITE_ATTACH: "ATTACH", sqlite3.SQLITE_DETACH: "DETACH"}
_DENIED_FUNCTIONS = frozenset({"load_extension", "fts3_tokenizer"})
# Pragmas that only read (queried without a value), and the per-connection switches that may be set.
READ_PRAGMAS = frozenset({
    "application_id", "auto_vacuum", "cache_size", "collation_list", "compile_options", "data_version",
    "database_list", "encoding", "foreign_key_check", "foreign_key_list", "foreign_keys", "freelist_count",
    "function_list", "index_info", "index_list", "index_xinfo", "integrity_check", "journal_mode", "module_list",
    "page_count", "page_size", "pragma_list", "quick_check", "schema_version", "table_info", "table_list",
    "table_xinfo", "user_version", "max_page_count", "busy_timeout", "synchronous", "recursive_triggers",
    "defer_foreign_keys", "case_sensitive_like", "legacy_alter_table",
})
SETTABLE_PRAGMAS = frozenset({"foreign_keys", "user_version", "application_id", "recursive_triggers",
                              "defer_foreign_keys", "cache_size", "busy_timeout", "optimize"})
# Pragmas whose argument names a table or index (an argument that is a query, not a setting).
_ARGUMENT_PRAGMAS = frozenset({"table_info", "table_xinfo", "index_info", "index_list", "index_xinfo",
                               "foreign_key_list", "foreign_key_check", "integrity_check", "quick_check"})


class _Guard:
    """The authorizer: records whether the statement writes, refuses what reaches outside the
    database (see the module docstring)."""

    def __init__(self) -> None:
        self.writes = False
        self.denied: str | None = None

    def __call__(self, action: int, arg1: Any, arg2: Any, dbname: Any, source: Any) -> int:
        if action == sqlite3.SQLITE_ATTACH and arg1 == "":
            return sqlite3.SQLITE_OK  # a private temporary database: what a plain VACUUM attaches internally
        if action in _DENIED_ACTIONS:
            return self._deny(_DENIED_ACTIONS[action])
        if action == sqlite3.SQLITE_FUNCTION and str(arg2).lower() in _DENIED_FUNCTIONS:
            return self._deny(f"the function {str(arg2).lower()}()")
        if action == sqlite3.SQLITE_PRAGMA:
            name = str(arg1).lower()
            allowed = (name in SETTABLE_PRAGMAS if arg2 is not None and name not in _ARGUMENT_PRAGMAS
                       else name in READ_PRAGMAS or name in SETTABLE_PRAGMAS)
            if not allowed:
                return self._deny(f"PRAGMA {name}" + (" with a value" if arg2 is not None else ""))
        if action in _WRITE_ACTIONS:
            self.writes = True
        return sqlite3.SQLITE_OK

    def _deny(self, what: str) -> int:
        if self.denied is None:
            self.denied = what
        return sqlite3.SQLITE_DENY


class _Job:
    """Shares the worker thread's connection with the loop so a timeout can interrupt it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.conn: sqlite3.Connection | None = None
        self.interrupted = False

    def attach(self, conn: sqlite3.Connection) -> None:
        with self.lock:
            self.conn = conn
            if self.interrupted:
                conn.interrupt()

    def interrupt(self) -> None:
        with self.lock:
            self.interrupted = True
            if self.conn is not None:
                self.conn.interrupt()


def _json_value(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"base64": base64.b64encode(bytes(value)).decode("ascii")}
    return value


def _bindable(params: list[Any] | dict[str, Any] | None) -> list[Any] | dict[str, Any]:
    """Parameters as sqlite3 binds them (Lua numbers computed as floats become integers when integral)."""
    def fix(value: Any, where: str) -> Any:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if value is None or isinstance(value, (str, int, float, bytes)):
            return value
        raise InvalidArgument(f"parameter {where} has type {type(value).__name__}; bind only strings, numbers, "
                              "booleans or nil (encode tables as JSON text first)")
    if params is None:
        return []
    if isinstance(params, dict):
        return {key: fix(value, repr(key)) for key, value in params.items()}
    return [fix(value, f"#{i + 1}") for i, value in enumerate(params)]


def _looks_like_write(query: str) -> bool:
    """Classify a statement against an empty in-memory database (no file is created for reads)."""
    guard = _Guard()
    conn = sqlite3.connect(":memory:")
    try:
        conn.set_authorizer(guard)
        conn.execute("EXPLAIN " + query).close()
    except sqlite3.Error:
        return guard.writes
    finally:
        conn.close()
    return guard.writes


def _run(job: _Job, path: Path, query: str, params: list[Any] | dict[str, Any], max_rows: int,
         busy_timeout_s: float) -> dict[str, Any]:
    if not path.exists():
        if not _looks_like_write(query):
            raise NotFound(f"database file {path} does not exist; create it with a writing statement "
                           "(e.g. CREATE TABLE) or check the path", details={"database": str(path)})
        path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
    job.attach(conn)
    guard = _Guard()
    try:
        if hasattr(conn, "enable_load_extension"):
            conn.enable_load_extension(False)
        _refuse_vacuum_into(conn, query, params)  # compiled only (EXPLAIN), before the authorizer would refuse it as ATTACH
        conn.set_authorizer(guard)
        cursor = conn.execute(query, params)
        if cursor.description is None:
            return {"changes": max(cursor.rowcount, 0), "last_row_id": cursor.lastrowid}
        columns = [d[0] for d in cursor.description]
        # INSERT ... RETURNING: step to the end so the statement completes and commits
        fetched = cursor.fetchall() if guard.writes else cursor.fetchmany(max_rows + 1)
        truncated = len(fetched) > max_rows
        rows = [[_json_value(v) for v in row] for row in fetched[:max_rows]]
        cursor.close()
        return {"columns": columns, "rows": rows, "row_count": len(rows), "truncated": truncated}
    except sqlite3.Error as exc:
        raise _sql_error(exc, guard, job, path) from None
    finally:
        conn.close()


def _refuse_vacuum_into(conn: sqlite3.Connection, query: str, params: list[Any] | dict[str, Any]) -> None:
    """``VACUUM INTO file`` compiles to a Vacuum opcode whose P2 holds the target file (0 for a plain VACUUM)."""
    try:
        program = conn.execute("EXPLAIN " + query, params).fetchall()
    except sqlite3.Error:
        return  # the statement itself will report the problem (or the authorizer's refusal)
    if any(row[1] == "Vacuum" and row[3] for row in program):
        raise PermissionDenied(
            "VACUUM INTO is not allowed in sql_query (it writes a copy of the database to any file, inside the "
            "allowed paths or not); copy the database file with copy_file instead, or run a plain VACUUM",
            details={"rule": "sql_statement", "statement": "VACUUM INTO"})


def _sql_error(exc: sqlite3.Error, guard: _Guard, job: _Job, path: Path) -> AikitError:
    message = str(exc)
    if guard.denied:
        return PermissionDenied(
            f"{guard.denied} is not allowed in sql_query: it could open files outside the allowed paths, load "
            "native code or change settings of the whole process. Query each database file with its own sql_query "
            f"call; the pragmas allowed are {', '.join(sorted(READ_PRAGMAS | SETTABLE_PRAGMAS))} (set: "
            f"{', '.join(sorted(SETTABLE_PRAGMAS))})",
            details={"rule": "sql_attach" if guard.denied in ("ATTACH", "DETACH") else "sql_statement",
                     "statement": guard.denied},
        )
    if job.interrupted or message == "interrupted":
        return Timeout("the SQL statement was interrupted")  # replaced by the caller with the real reason
    if isinstance(exc, sqlite3.ProgrammingError) and "one statement at a time" in message:
        return InvalidArgument("sql_query runs exactly one statement; send the statements in separate calls",
                               details={"sqlite": message})
    if "database is locked" in message or "database is busy" in message:
        return Timeout(f"{path} is locked by another connection (waited the busy timeout); retry later or raise "
                       "tools.sql_busy_timeout_s", details={"sqlite": message, "database": str(path)})
    if isinstance(exc, sqlite3.OperationalError) and any(
            s in message for s in ("disk I/O error", "database or disk is full", "unable to open database")):
        return IOFailure(f"SQLite could not use {path}: {message}", details={"sqlite": message, "database": str(path)})
    if "file is not a database" in message:
        return InvalidArgument(f"{path} is not a SQLite database: {message}", details={"sqlite": message})
    if isinstance(exc, (sqlite3.InterfaceError, sqlite3.ProgrammingError)) and "bind" in message.lower():
        return InvalidArgument(f"SQL parameters do not fit the statement: {message}; use ? placeholders with a "
                               "list, or :name placeholders with a table of names", details={"sqlite": message})
    return InvalidArgument(f"SQLite rejected the statement: {message}", details={"sqlite": message})


@tool(category="database", security="write", examples=[
    {"args": {"database": "notes.db", "query": "SELECT id, title FROM notes WHERE tag = ?", "params": ["todo"]},
     "result": {"columns": ["id", "title"], "rows": [[1, "buy milk"]], "row_count": 1, "truncated": False}},
    {"args": {"database": "notes.db", "query": "INSERT INTO notes(title, tag) VALUES (:t, :g)",
              "params": {"t": "call Bob", "g": "todo"}},
     "result": {"changes": 1, "last_row_id": 2}},
])
async def sql_query(ctx: ToolContext, database: str, query: str, params: list[Any] | dict[str, Any] | None = None,
                    max_rows: int = 1000, timeout_s: float | None = None) -> dict[str, Any]:
    """Run one SQL statement on a SQLite database file, with values bound as parameters.

    Args:
        database: Path of the SQLite file (inside the allowed paths); created by a writing statement if missing.
        query: Exactly one SQL statement, with ? or :name placeholders for values (never paste values in).
        params: The values: a list for ? placeholders or a table of names for :name placeholders.
        max_rows: Rows returned at most by a query; truncated says when there were more.
        timeout_s: Seconds before the statement is interrupted (default tools.sql_timeout_s, 30).

    Returns:
        {columns, rows, row_count, truncated} for a statement returning rows (rows are lists in column
        order, BLOBs as {base64}); {changes, last_row_id} otherwise.
    """
    if not query.strip():
        raise InvalidArgument("query is empty: pass one SQL statement")
    if max_rows < 1 or max_rows > MAX_ROWS_LIMIT:
        raise InvalidArgument(f"max_rows must be between 1 and {MAX_ROWS_LIMIT}, got {max_rows}")
    timeout = float(timeout_s if timeout_s is not None else ctx.setting("tools.sql_timeout_s", DEFAULT_TIMEOUT_S))
    if timeout <= 0:
        raise InvalidArgument(f"timeout_s must be greater than 0, got {timeout}")
    busy = float(ctx.setting("tools.sql_busy_timeout_s", DEFAULT_BUSY_TIMEOUT_S))
    path = ctx.policy.check_path(database, write=True)
    if path.is_dir():
        raise InvalidArgument(f"database {path} is a directory; pass the path of a SQLite file")
    bound = _bindable(params)
    job = _Job()
    work = asyncio.ensure_future(asyncio.to_thread(_run, job, path, query, bound, max_rows, busy))
    try:
        return await asyncio.wait_for(asyncio.shield(work), timeout)
    except TimeoutError:
        job.interrupt()
        await asyncio.gather(work, return_exceptions=True)  # the interrupt ends the statement promptly
        if not work.cancelled() and work.exception() is None:  # it finished just before the interrupt
            return work.result()
        raise Timeout(f"the SQL statement ran longer than {timeout:g} s and was interrupted; raise timeout_s "
                      "or make the query cheaper (an index, a LIMIT)", details={"timeout_s": timeout}) from None
    except asyncio.CancelledError:
        job.interrupt()
        raise


TOOLS = [sql_query]

__all__ = ["TOOLS", "sql_query"]
