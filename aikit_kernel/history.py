"""Execution history in SQLite (survives restarts): tail, range and search, IPython's semantics.

Sessions are numbered absolutely (1, 2, ...); in range requests 0 means the current session and
negative numbers count back from it. Use from one thread (the kernel uses the I/O loop's).
:class:`HistoryRecorder` is the kernel's side: what cells record, written in batches.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aikit_components.storage.migrations import migrate_sqlite

from . import runtime
from .protocol import BadRequest, field

log = logging.getLogger(__name__)


Entry = tuple[int, int, Any]


class HistoryStore:
    """One kernel session's view of the shared history database."""

    def __init__(self, path: Path, kernel_session: str = "") -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), timeout=5.0, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        migrate_sqlite(self.db, "history", f"history database {path}")
        cur = self.db.execute("INSERT INTO sessions (kernel_session, started) VALUES (?, ?)", (kernel_session, time.time()))
        self.session = int(cur.lastrowid or 0)

    def store_input(self, line: int, source: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO history (session, line, source) VALUES (?, ?, ?)",
                        (self.session, line, source))

    def store_output(self, line: int, output: str) -> None:
        self.db.execute("UPDATE history SET output = ? WHERE session = ? AND line = ?", (output, self.session, line))

    def store_many(self, inputs: Sequence[tuple[int, str]], outputs: Sequence[tuple[int, str]]) -> None:
        """:meth:`store_input` for each of ``inputs``, then :meth:`store_output` for each of
        ``outputs``, in one transaction (a quick cell's two writes cost one commit)."""
        db = self.db
        db.execute("BEGIN")
        try:
            db.executemany("INSERT OR REPLACE INTO history (session, line, source) VALUES (?, ?, ?)",
                           [(self.session, line, source) for line, source in inputs])
            db.executemany("UPDATE history SET output = ? WHERE session = ? AND line = ?",
                           [(output, self.session, line) for line, output in outputs])
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # SQLite may have rolled back already (a full disk does)
                db.execute("ROLLBACK")
            raise

    def _rows(self, sql: str, params: tuple[Any, ...], output: bool) -> list[Entry]:
        rows = self.db.execute(sql, params).fetchall()
        return [(s, ln, (src, out) if output else src) for s, ln, src, out in rows]

    def tail(self, n: int, output: bool = False) -> list[Entry]:
        """The last ``n`` entries across sessions, oldest first."""
        rows = self._rows(
            "SELECT session, line, source, output FROM history ORDER BY session DESC, line DESC LIMIT ?",
            (max(0, n),), output,
        )
        return rows[::-1]

    def range(self, session: int, start: int, stop: int | None, output: bool = False) -> list[Entry]:
        """Entries ``start <= line < stop`` of one session (0 = current, negative = earlier)."""
        absolute = self.session + session if session <= 0 else session
        if stop is None or stop <= 0:
            stop = 2**62
        return self._rows(
            "SELECT session, line, source, output FROM history WHERE session = ? AND line >= ? AND line < ? ORDER BY line",
            (absolute, start, stop), output,
        )

    def search(self, pattern: str, n: int | None, unique: bool, output: bool = False) -> list[Entry]:
        """Entries whose source matches the glob ``pattern`` (``*`` and ``?``), the last ``n``."""
        if unique:
            sql = (
                "SELECT session, line, source, output FROM history WHERE rowid IN "
                "(SELECT MAX(rowid) FROM history WHERE source GLOB ? GROUP BY source) "
                "ORDER BY session DESC, line DESC"
            )
        else:
            sql = "SELECT session, line, source, output FROM history WHERE source GLOB ? ORDER BY session DESC, line DESC"
        params: tuple[Any, ...] = (pattern,)
        if n:
            sql += " LIMIT ?"
            params += (n,)
        return self._rows(sql, params, output)[::-1]

    def close(self) -> None:
        self.db.close()


class PostgresHistoryStore:
    """The same history in PostgreSQL (``[storage] url``): every kernel on the database shares it,
    each numbered as its own history session. Tables ``aikit_history_sessions``/``aikit_history``."""

    def __init__(self, db: Any, kernel_session: str = "") -> None:
        self.pg = db
        db.ensure_schema("history")
        rows = db.query("start a history session", "INSERT INTO aikit_history_sessions (kernel_session, started) "
                        "VALUES (%s, %s) RETURNING session", (kernel_session, time.time()))
        self.session = int(rows[0][0])

    def store_input(self, line: int, source: str) -> None:
        self.pg.execute("store history", "INSERT INTO aikit_history (session, line, source) VALUES (%s, %s, %s) "
                        "ON CONFLICT (session, line) DO UPDATE SET source = excluded.source, output = NULL",
                        (self.session, line, source))

    def store_output(self, line: int, output: str) -> None:
        self.pg.execute("store history", "UPDATE aikit_history SET output = %s WHERE session = %s AND line = %s",
                        (output, self.session, line))

    def store_many(self, inputs: Sequence[tuple[int, str]], outputs: Sequence[tuple[int, str]]) -> None:
        """:meth:`store_input` for each of ``inputs``, then :meth:`store_output` for each of ``outputs``."""
        for line, source in inputs:
            self.store_input(line, source)
        for line, output in outputs:
            self.store_output(line, output)

    def _rows(self, sql: str, params: tuple[Any, ...], output: bool) -> list[Entry]:
        rows = self.pg.query("read history", sql, params)
        return [(s, ln, (src, out) if output else src) for s, ln, src, out in rows]

    def tail(self, n: int, output: bool = False) -> list[Entry]:
        return self._rows("SELECT session, line, source, output FROM aikit_history "
                          "ORDER BY session DESC, line DESC LIMIT %s", (max(0, n),), output)[::-1]

    def range(self, session: int, start: int, stop: int | None, output: bool = False) -> list[Entry]:
        absolute = self.session + session if session <= 0 else session
        if stop is None or stop <= 0:
            stop = 2**31 - 1
        return self._rows("SELECT session, line, source, output FROM aikit_history WHERE session = %s "
                          "AND line >= %s AND line < %s ORDER BY line", (absolute, start, stop), output)

    def search(self, pattern: str, n: int | None, unique: bool, output: bool = False) -> list[Entry]:
        like = glob_to_like(pattern)
        if unique:
            sql = ("SELECT DISTINCT ON (source) session, line, source, output FROM aikit_history "
                   "WHERE source LIKE %s ESCAPE '\\' ORDER BY source, session DESC, line DESC")
            sql = f"SELECT * FROM ({sql}) u ORDER BY session DESC, line DESC"
        else:
            sql = ("SELECT session, line, source, output FROM aikit_history WHERE source LIKE %s ESCAPE '\\' "
                   "ORDER BY session DESC, line DESC")
        params: tuple[Any, ...] = (like,)
        if n:
            sql += " LIMIT %s"
            params += (n,)
        return self._rows(sql, params, output)[::-1]

    def close(self) -> None:
        self.pg.close()


def glob_to_like(pattern: str) -> str:
    """A GLOB pattern (``*``, ``?``) as a LIKE pattern with ``\\`` as the escape character."""
    out = []
    for ch in pattern:
        if ch in "%_\\":
            out.append("\\" + ch)
        elif ch == "*":
            out.append("%")
        elif ch == "?":
            out.append("_")
        else:
            out.append(ch)
    return "".join(out)


def open_history(data_dir: Path, kernel_session: str, config: Any = None) -> HistoryStore | PostgresHistoryStore:
    """The history store: PostgreSQL when ``[storage] url`` is set in ``config``, else
    ``<data_dir>/history.sqlite``."""
    from aikit_components.storage.settings import StorageSettings

    storage = StorageSettings.from_config(config)
    if storage.postgres:
        return PostgresHistoryStore(storage.database(), kernel_session)
    return HistoryStore(Path(data_dir) / "history.sqlite", kernel_session)


class HistoryRecorder:
    """A kernel's cell history on its way to ``store``: inputs and outputs are handed to
    ``later`` (the Messenger's, which runs them on the I/O loop once the cell's messages are
    out), queued there, and written in one transaction per pass of the loop. ``run_now`` runs
    what ``later`` still holds: before a history request reads the store, and at shutdown.
    Answers ``history_request`` too (:meth:`reply`)."""

    def __init__(self, store: HistoryStore | PostgresHistoryStore, later: Callable[..., None],
                 run_now: Callable[[], None]) -> None:
        self.store = store
        self._later = later
        self._run_now = run_now
        self._inputs: list[tuple[int, str]] = []  # I/O thread only, as the two below
        self._outputs: list[tuple[int, str]] = []
        self._write_pending = False

    def record_input(self, line: int, code: str) -> None:
        self._later(self._queue, self._inputs, line, code)

    def record_output(self, line: int, text: str) -> None:
        self._later(self._queue, self._outputs, line, text)

    def _queue(self, into: list[tuple[int, str]], line: int, text: str) -> None:
        into.append((line, text))
        if not self._write_pending:
            self._write_pending = True
            asyncio.get_running_loop().call_soon(self._write)

    async def flush(self) -> None:
        """Write everything recorded so far (I/O loop)."""
        self._run_now()
        self._write()

    def _write(self) -> None:
        self._write_pending = False
        if not (self._inputs or self._outputs):
            return
        inputs, outputs = self._inputs[:], self._outputs[:]
        self._inputs.clear()
        self._outputs.clear()
        try:
            self.store.store_many(inputs, outputs)
        except sqlite3.Error as exc:  # a full disk, a locked file: say so in one line, not a traceback
            hint = "; free some disk space" if "full" in str(exc) else ""
            lines = sorted({line for line, _ in inputs + outputs})
            log.warning("could not write the history of cell %s (the cell still ran): %s%s",
                        ", ".join(map(str, lines)) or "?", exc, hint)
        except Exception:
            log.exception("could not write history (the cell still ran)")

    def reply(self, content: dict[str, Any]) -> dict[str, Any]:
        """The content of the ``history_reply`` to a request's ``content`` (after what is
        recorded is written)."""
        store, output = self.store, field(content, "output", bool, False)
        kind = field(content, "hist_access_type", str, "tail")
        n = field(content, "n", int, None)
        if kind not in ("tail", "range", "search"):
            raise BadRequest(f"'hist_access_type' must be 'tail', 'range' or 'search', got {kind!r}")
        session, start, stop = (field(content, "session", int, 0), field(content, "start", int, 1),
                                field(content, "stop", int, None))
        pattern, unique = field(content, "pattern", str, "*"), field(content, "unique", bool, False)

        async def query() -> list[Any]:
            await self.flush()  # the history of the cells before this request
            if kind == "tail":
                return store.tail(n or 10, output)
            if kind == "range":
                return store.range(session, start, stop, output)
            return store.search(pattern, n, unique, output)

        return {"status": "ok", "history": runtime.run_sync(query(), timeout=30)}
