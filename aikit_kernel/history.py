"""Execution history in SQLite (survives restarts): tail, range and search, IPython's semantics.

Sessions are numbered absolutely (1, 2, ...); in range requests 0 means the current session and
negative numbers count back from it. Use from one thread (the kernel uses the I/O loop's).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    session INTEGER PRIMARY KEY AUTOINCREMENT,
    kernel_session TEXT,
    started REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS history (
    session INTEGER NOT NULL,
    line INTEGER NOT NULL,
    source TEXT NOT NULL,
    output TEXT,
    PRIMARY KEY (session, line)
);
"""

Entry = tuple[int, int, Any]


class HistoryStore:
    """One kernel session's view of the shared history database."""

    def __init__(self, path: Path, kernel_session: str = "") -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), timeout=5.0, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        cur = self.db.execute("INSERT INTO sessions (kernel_session, started) VALUES (?, ?)", (kernel_session, time.time()))
        self.session = int(cur.lastrowid or 0)

    def store_input(self, line: int, source: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO history (session, line, source) VALUES (?, ?, ?)",
                        (self.session, line, source))

    def store_output(self, line: int, output: str) -> None:
        self.db.execute("UPDATE history SET output = ? WHERE session = ? AND line = ?", (output, self.session, line))

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
