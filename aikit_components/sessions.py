"""Sessions: the run a kernel (or ``aikit run``) belongs to, persisted in SQLite.

One file, ``<data_dir>/sessions.sqlite``, holds the sessions and the artifacts index (see
:mod:`aikit_components.artifacts`). It is opened in WAL mode with ``synchronous=FULL`` (a commit
is on disk before it is acknowledged) and a 10 s busy timeout, with one connection per thread, so
several threads and several processes can share it.

A session is ``active`` (created or resumed), ``completed``, ``failed`` or ``interrupted`` (ended from
outside before it finished: Ctrl-C in ``aikit run``, SIGTERM to ``aikit serve``).

Events (when an :class:`~aikit_components.events.EventBus` is given): ``session.created``,
``session.resumed``, ``session.completed``; the payload is :meth:`SessionInfo.to_dict`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from . import codec
from .errors import AikitError, InvalidArgument, IOFailure, NotFound, Timeout
from .events import EventBus
from .storage.migrations import migrate_sqlite
from .storage.settings import StorageSettings

DB_FILENAME = "sessions.sqlite"
BUSY_TIMEOUT_S = 10.0
STATUSES = ("active", "completed", "failed", "interrupted")
#: How a session may end (:meth:`SessionStore.complete`).
END_STATUSES = ("completed", "failed", "interrupted")
MAX_NAME_CHARS = 255


# SQLite primary result codes (sqlite3.Error.sqlite_errorcode & 0xFF)
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_IOERR, _SQLITE_FULL = 5, 6, 10, 13


class Database:
    """The shared ``sessions.sqlite``: one connection per thread (and per process), explicit
    transactions, SQLite failures turned into aikit errors. Used by both stores."""

    def __init__(self, data_dir: Path | str) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / DB_FILENAME
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._generation = 0
        self._schema_ready = False
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise os_error(exc, f"cannot create the data directory {self.data_dir}") from exc

    # ------------------------------------------------------------------ connections
    def connection(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use, and again after a fork or close)."""
        key = (os.getpid(), self._generation)
        conn = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "key", None) == key:
            return conn
        conn = self._open()
        self._local.conn, self._local.key = conn, key
        return conn

    def _open(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                   check_same_thread=False)
        except sqlite3.Error as exc:
            raise sqlite_error(exc, f"cannot open {self.path}", self.path) from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            deadline = time.monotonic() + BUSY_TIMEOUT_S
            while True:  # first opens by several threads or processes race on the mode switch
                try:
                    conn.execute("PRAGMA journal_mode = WAL")
                    break
                except sqlite3.OperationalError as exc:
                    if getattr(exc, "sqlite_errorcode", 0) & 0xFF not in (5, 6) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
            conn.execute("PRAGMA synchronous = FULL")
            if not self._schema_ready:
                self._ensure_schema(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise sqlite_error(exc, f"cannot open {self.path}", self.path) from exc
        except BaseException:
            conn.close()
            raise
        with self._lock:
            self._connections.append(conn)
        return conn

    def _ensure_schema(self, conn: sqlite3.Connection) -> None:
        migrate_sqlite(conn, "sessions", str(self.path))  # SchemaTooNew when written by a newer aikit
        self._schema_ready = True

    def close(self) -> None:
        """Close every connection this object opened (threads reconnect on next use)."""
        with self._lock:
            conns, self._connections = self._connections, []
            self._generation += 1
        for conn in conns:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    # ------------------------------------------------------------------ statements
    @contextlib.contextmanager
    def transaction(self, action: str) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` (the write lock, across processes) ... ``COMMIT``; rolled back on
        any error. SQLite errors become :class:`IOFailure` / :class:`Timeout` naming ``action``."""
        conn = self.connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise sqlite_error(exc, action, self.path) from exc
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise sqlite_error(exc, action, self.path) from exc
            raise

    def query(self, action: str, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row | tuple[Any, ...]]:
        """Run one read statement (its own snapshot) and fetch every row."""
        try:
            return self.connection().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise sqlite_error(exc, action, self.path) from exc


def open_database(data_dir: Path | str, storage: StorageSettings | None = None) -> Any:
    """The sessions/artifacts database: ``<data_dir>/sessions.sqlite``, or PostgreSQL when
    ``storage`` (the ``[storage]`` settings) names a URL."""
    if storage is not None and storage.postgres:
        from .storage.pg_sessions import PostgresSessionDatabase

        return PostgresSessionDatabase(storage.database(), data_dir)
    return Database(data_dir)


class DatabaseStore:
    """What the stores of the sessions/artifacts database share: ``db`` (from
    :func:`open_database`), its ``data_dir``, ``close`` and ``with``."""

    db: Any

    @property
    def data_dir(self) -> Path:
        return self.db.data_dir

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# ---------------------------------------------------------------------- error mapping
def sqlite_error(exc: sqlite3.Error, action: str, path: Path) -> AikitError:
    """An aikit error for a failed SQLite call."""
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    details = {"path": str(path), "sqlite_error": getattr(exc, "sqlite_errorname", None) or type(exc).__name__}
    if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return Timeout(f"{action}: the database {path} stayed locked for more than {BUSY_TIMEOUT_S:g} s "
                       "(another thread or process is writing); try again", details=details)
    if code == _SQLITE_FULL:
        return IOFailure(f"{action}: the disk (or database) is full writing {path}; free some space and try again "
                         "(nothing was changed)", details=details)
    return IOFailure(f"{action}: {exc} ({path})", details=details)


def os_error(exc: OSError, action: str, path: Path | str | None = None) -> IOFailure:
    """An :class:`IOFailure` for a failed OS call, naming the errno (``ENOSPC`` ...) and the path."""
    import errno as _errno

    name = _errno.errorcode.get(exc.errno or 0, "") if exc.errno else ""
    where = path if path is not None else exc.filename
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno in (_errno.ENOSPC, _errno.EDQUOT):
        full = "the disk is full" if exc.errno == _errno.ENOSPC else "the disk quota is used up"
        reason = f"{full} ({name}: {reason})"
    message = f"{action}: {reason}" + (f" ({name})" if name and name not in reason else "") + \
        (f" at {where}" if where else "")
    if exc.errno in (_errno.ENOSPC, _errno.EDQUOT):
        message += "; free some disk space and try again"
    return IOFailure(message, details={"errno": name or None, "path": str(where) if where else None})


# ---------------------------------------------------------------------- validation helpers
def check_name(value: Any, what: str) -> str:
    """A non-empty string of at most 255 characters without NUL."""
    if not isinstance(value, str):
        raise InvalidArgument(f"{what} must be a string, got {codec.lua_type_name(value)}", details={"argument": what})
    if not value:
        raise InvalidArgument(f"{what} must not be empty", details={"argument": what})
    if len(value) > MAX_NAME_CHARS:
        raise InvalidArgument(f"{what} is {len(value)} characters long; at most {MAX_NAME_CHARS} are allowed",
                              details={"argument": what, "length": len(value)})
    if "\x00" in value:
        raise InvalidArgument(f"{what} must not contain a NUL character", details={"argument": what})
    return value


def check_metadata(value: Any) -> str:
    """Metadata (a dict or None) as JSON text."""
    if value is None:
        return "{}"
    if not isinstance(value, dict):
        raise InvalidArgument(f"metadata must be a table of named values, got {codec.lua_type_name(value)}",
                              details={"argument": "metadata"})
    return codec.dumps(value)


def load_metadata(text: str | None) -> dict[Any, Any]:
    value = codec.loads(text) if text else {}
    return value if isinstance(value, dict) else {}


def publish(events: EventBus | None, topic: str, payload: Any, source: str) -> None:
    if events is not None:
        events.publish(topic, payload, source=source)


# ---------------------------------------------------------------------- sessions
def new_session_id(now: float | None = None) -> str:
    """A short id that sorts by creation time: ``s-YYYYMMDD-HHMMSSmmm-rrrrrr`` (UTC, ms, random)."""
    now = time.time() if now is None else now
    seconds, millis = divmod(int(round(now * 1000)), 1000)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(seconds))
    return f"s-{stamp}{millis:03d}-{secrets.token_hex(3)}"


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """One session. Times are seconds since the epoch (UTC)."""

    id: str
    name: str | None
    status: str
    created_at: float
    updated_at: float
    completed_at: float | None = None
    metadata: dict[Any, Any] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.status == "active"

    def to_dict(self) -> dict[str, Any]:
        return record_dict(self)


def record_dict(record: Any) -> dict[str, Any]:
    """A stored record (a dataclass with ``metadata``) as a dict of its fields, in their order, the
    metadata copied."""
    values = {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}
    values["metadata"] = dict(values["metadata"])
    return values


_SESSION_COLUMNS = "id, name, status, created_at, updated_at, completed_at, metadata"


def _host() -> str:
    """``host:pid`` of this process, stored with a session it creates or resumes (column
    ``host``, schema 2): with several kernels on one database, whose session is active."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _session_from_row(row: tuple[Any, ...]) -> SessionInfo:
    sid, name, status, created, updated, completed, metadata = row
    return SessionInfo(sid, name, status, created, updated, completed, load_metadata(metadata))


class SessionStore(DatabaseStore):
    """Create, resume, list and complete sessions in ``<data_dir>/sessions.sqlite``."""

    def __init__(self, data_dir: Path | str, events: EventBus | None = None, *,
                 storage: StorageSettings | None = None) -> None:
        self.db = open_database(data_dir, storage)
        self.events = events

    # ------------------------------------------------------------------ sync
    def create(self, name: str | None = None, metadata: dict[Any, Any] | None = None) -> SessionInfo:
        """Start a new ``active`` session."""
        if name is not None:
            check_name(name, "session name")
        meta = check_metadata(metadata)
        for _ in range(8):
            now = time.time()
            sid = new_session_id(now)
            with self.db.transaction("cannot create a session") as conn:
                inserted = conn.execute(
                    f"INSERT OR IGNORE INTO sessions ({_SESSION_COLUMNS}, host) "
                    "VALUES (?, ?, 'active', ?, ?, NULL, ?, ?)",
                    (sid, name, now, now, meta, _host()),
                ).rowcount
            if not inserted:  # id collision (same millisecond and random part): draw another
                continue
            info = SessionInfo(sid, name, "active", now, now, None, load_metadata(meta))
            publish(self.events, "session.created", info.to_dict(), "sessions")
            return info
        raise IOFailure("cannot create a session: could not find a free session id")

    def get(self, session_id: str) -> SessionInfo:
        """The session with this id (NotFound when there is none)."""
        check_name(session_id, "session id")
        rows = self.db.query("cannot read sessions", f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE id = ?",
                             (session_id,))
        if not rows:
            raise self._not_found(session_id)
        return _session_from_row(rows[0])

    def resume(self, session_id: str) -> SessionInfo:
        """Mark a session ``active`` again (a completed or failed one too) and return it."""
        check_name(session_id, "session id")
        return self._update(session_id, "resume", "session.resumed",
                            "status = 'active', updated_at = ?, completed_at = NULL, host = ?", (time.time(), _host()))

    def list(self, status: str | None = None, limit: int = 100) -> list[SessionInfo]:
        """Sessions, newest first, optionally only those with ``status``; at most ``limit``."""
        if status is not None and status not in STATUSES:
            raise InvalidArgument(f"status must be one of {', '.join(STATUSES)}, got {status!r}",
                                  details={"argument": "status"})
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidArgument(f"limit must be a positive integer, got {limit!r}", details={"argument": "limit"})
        where, params = ("WHERE status = ?", (status,)) if status else ("", ())
        rows = self.db.query(
            "cannot list sessions",
            f"SELECT {_SESSION_COLUMNS} FROM sessions {where} ORDER BY created_at DESC, rowid DESC LIMIT ?",
            (*params, limit),
        )
        return [_session_from_row(r) for r in rows]

    def complete(self, session_id: str, status: str = "completed") -> SessionInfo:
        """End a session as ``completed``, ``failed`` or ``interrupted``."""
        check_name(session_id, "session id")
        if status not in END_STATUSES:
            raise InvalidArgument(f"a session ends as 'completed', 'failed' or 'interrupted', not {status!r}",
                                  details={"argument": "status"})
        now = time.time()
        return self._update(session_id, "complete", "session.completed",
                            "status = ?, updated_at = ?, completed_at = ?", (status, now, now))

    def _update(self, session_id: str, verb: str, topic: str, assignments: str, values: tuple[Any, ...]) -> SessionInfo:
        """``UPDATE sessions SET <assignments>`` of one session (NotFound when there is none), then
        publish ``topic`` with the session as it is now and return it."""
        with self.db.transaction(f"cannot {verb} session {session_id!r}") as conn:
            cur = conn.execute(f"UPDATE sessions SET {assignments} WHERE id = ?", (*values, session_id))
            if cur.rowcount == 0:
                raise self._not_found(session_id)
            row = conn.execute(f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE id = ?", (session_id,)).fetchone()
        info = _session_from_row(row)
        publish(self.events, topic, info.to_dict(), "sessions")
        return info

    def _not_found(self, session_id: str) -> NotFound:
        return NotFound(f"no session with id {session_id!r} (list() shows the known sessions)",
                        details={"session_id": session_id})


__all__ = ["Database", "END_STATUSES", "SessionInfo", "SessionStore", "new_session_id", "STATUSES"]
