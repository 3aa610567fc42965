"""Sessions and the artifacts index in PostgreSQL: the same interface as
:class:`aikit_components.sessions.Database` (``transaction``, ``query``, ``close``), so
:class:`~aikit_components.sessions.SessionStore` and :class:`~aikit_components.artifacts.ArtifactStore`
run unchanged on either backend.

The stores write SQLite-flavoured SQL (``?`` placeholders, ``INSERT OR IGNORE``); this adapter
rewrites those two forms and nothing else. Every write transaction holds one advisory lock, the
counterpart of SQLite's ``BEGIN IMMEDIATE`` write lock: the artifact store relies on it to
decide, across processes, when a content blob is no longer referenced.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .postgres import PostgresDatabase, advisory_key, from_qmark

_INSERT_OR_IGNORE = re.compile(r"^\s*INSERT\s+OR\s+IGNORE\s+INTO\s", re.IGNORECASE)
_WRITE_LOCK = advisory_key("aikit", "sessions")


def translate(sql: str) -> str:
    """SQLite-flavoured SQL of the session stores as PostgreSQL SQL."""
    if _INSERT_OR_IGNORE.match(sql):
        sql = _INSERT_OR_IGNORE.sub("INSERT INTO ", sql, count=1) + " ON CONFLICT DO NOTHING"
    return from_qmark(sql)


class _Connection:
    """A psycopg connection that accepts the stores' SQLite-flavoured statements."""

    def __init__(self, conn: Any) -> None:
        self.raw = conn

    def execute(self, sql: str, params: Any = ()) -> Any:
        return self.raw.execute(translate(sql), params)


class PostgresSessionDatabase:
    """The sessions/artifacts database in PostgreSQL (component ``sessions`` of the migrations)."""

    def __init__(self, db: PostgresDatabase, data_dir: Path | str) -> None:
        self.pg = db
        self.data_dir = Path(data_dir)
        self.path = db.where  # named in messages where the SQLite store names its file
        db.ensure_schema("sessions")

    @contextlib.contextmanager
    def transaction(self, action: str) -> Iterator[_Connection]:
        """A write transaction holding the stores' write lock; rolled back on any error."""
        with self.pg.transaction(action, lock=_WRITE_LOCK) as conn:
            yield _Connection(conn)

    def query(self, action: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self.pg.query(action, translate(sql), params)

    def close(self) -> None:
        self.pg.close()


__all__ = ["PostgresSessionDatabase", "translate"]
