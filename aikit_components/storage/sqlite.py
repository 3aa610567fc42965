"""The default state store: one SQLite file (``<data_dir>/state.sqlite``).

- WAL journal, ``synchronous=FULL``: a write is on disk (WAL fsynced) when the call returns, and
  readers never block writers.
- Several processes (two kernels on one data directory) may share the file: every
  read-modify-write (``update``, ``compare_and_set``) runs inside ``BEGIN IMMEDIATE``, which
  takes SQLite's write lock, so it is atomic across processes; a waiter retries for
  ``busy_timeout`` seconds (default 10) before giving up with a ``timeout`` error.
- One connection per thread (and per process: a forked child opens its own), so any thread may
  call any method.
- Errors from SQLite become aikit errors (``io_error``, ``permission_denied``, ``timeout``) with
  the file path in the message. A failed write is rolled back: stored data stays intact.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .. import codec
from ..errors import AikitError, IOFailure, PermissionDenied, Timeout
from .base import DEFAULT_MAX_VALUE_BYTES, PURGE_EVERY, encode_value, expectation_met, normalize, prefix_upper_bound
from .migrations import STATE, migrate_sqlite

SCHEMA = STATE[0].sqlite or ""  # version 1 of the state schema (see migrations.py)

_GET = "SELECT value, expires_at FROM state WHERE scope = ? AND key = ?"
_UPSERT_HEAD = "INSERT INTO state (scope, key, value, expires_at, updated_at) VALUES "
_UPSERT_ROW = "(?, ?, ?, ?, ?)"
_UPSERT_TAIL = (" ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value, "
                "expires_at = excluded.expires_at, updated_at = excluded.updated_at")
_UPSERT = _UPSERT_HEAD + _UPSERT_ROW + _UPSERT_TAIL
#: Rows per upsert statement in a batch (:meth:`SQLiteStateBackend.set_rows`). sqlite3 lets other
#: threads take the GIL while each statement runs: a row per statement (executemany) handed the
#: GIL over and back for every row of a group commit (agent run records, a few dozen at a time),
#: each time making the thread that had it (the I/O loop) wait for it again.
ROWS_PER_UPSERT = 100
_DELETE = "DELETE FROM state WHERE scope = ? AND key = ? AND (expires_at IS NULL OR expires_at > ?)"
_KEYS = ("SELECT key FROM state WHERE scope = ? AND key >= ? AND key < ? "
         "AND (expires_at IS NULL OR expires_at > ?) ORDER BY key")
_KEYS_OPEN = ("SELECT key FROM state WHERE scope = ? AND key >= ? "
              "AND (expires_at IS NULL OR expires_at > ?) ORDER BY key")
_PURGE = "DELETE FROM state WHERE expires_at IS NOT NULL AND expires_at <= ?"


class _Connection(sqlite3.Connection):
    """A connection that can be weakly referenced (the base class cannot) and knows its process."""

    aikit_pid: int = 0


def translate_error(exc: sqlite3.Error, path: Path | str, action: str, what: str = "state database") -> AikitError:
    """Turn a sqlite3 error into an aikit error a user can act on (``what`` names the database)."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    details = {"path": str(path), "sqlite_error": name or type(exc).__name__, "detail": str(exc)}
    where = f"{what} {path}"
    if primary in (5, 6):  # SQLITE_BUSY, SQLITE_LOCKED
        return Timeout(f"could not {action}: {where} stayed locked by another connection or process "
                       f"past the busy timeout ({exc})", details=details)
    if primary == 13:  # SQLITE_FULL
        return IOFailure(f"could not {action}: the disk holding {where} is full (or the database hit "
                         "its size limit); free space and retry. Stored data is unchanged.", details=details)
    if primary in (3, 8, 23):  # SQLITE_PERM, SQLITE_READONLY, SQLITE_AUTH
        return PermissionDenied(f"could not {action}: {where} is read-only or not accessible ({exc}); "
                                "check the file and directory permissions", details=details)
    if primary in (11, 26):  # SQLITE_CORRUPT, SQLITE_NOTADB
        return IOFailure(f"could not {action}: {where} is corrupt or is not a SQLite database ({exc}); "
                         "move it aside to start with an empty store", details=details)
    if primary == 14:  # SQLITE_CANTOPEN
        return IOFailure(f"could not {action}: cannot open {where} ({exc}); check that its directory "
                         "exists, is a directory and is writable", details=details)
    if primary == 10:  # SQLITE_IOERR
        return IOFailure(f"could not {action}: I/O error on {where} ({exc}). Stored data is unchanged.",
                         details=details)
    return IOFailure(f"could not {action}: {where}: {exc}", details=details)


class SQLiteStateBackend:
    """A :class:`~aikit_components.storage.base.StateBackend` in one SQLite file."""

    durable = True
    stores_encoded = True  # takes codec.Encoded values (encode_value stores their text)

    def __init__(self, path: str | os.PathLike[str], *, clock: Callable[[], float] = time.time,
                 max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES, busy_timeout: float = 10.0,
                 synchronous: str = "FULL") -> None:
        self.path = Path(path)
        self.clock = clock
        self.max_value_bytes = max_value_bytes
        self.busy_timeout = busy_timeout
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, got {synchronous!r}")
        self.synchronous = synchronous.upper()
        self._local = threading.local()
        self._conns: weakref.WeakSet[_Connection] = weakref.WeakSet()
        self._conns_lock = threading.Lock()
        self._writes = 0
        self._closed = False
        self._schema_ready = False
        self._check_location()
        conn = self._conn()  # create the schema now, so a bad path fails here and not later
        with contextlib.suppress(sqlite3.Error):  # best effort: a read-only store still opens
            conn.execute(_PURGE, (self.clock(),))

    def __repr__(self) -> str:
        return f"SQLiteStateBackend({str(self.path)!r})"

    # -- connections -------------------------------------------------------------------------

    def _check_location(self) -> None:
        parent = self.path.parent
        try:
            if parent.exists() and not parent.is_dir():
                raise IOFailure(f"cannot open state database {self.path}: {parent} is a file, not a directory",
                                details={"path": str(self.path)})
            parent.mkdir(parents=True, exist_ok=True)
        except AikitError:
            raise
        except PermissionError as exc:
            raise PermissionDenied(f"cannot create the data directory {parent}: {exc.strerror}",
                                   details={"path": str(self.path)}) from None
        except OSError as exc:
            raise IOFailure(f"cannot create the data directory {parent}: {exc.strerror or exc}",
                            details={"path": str(self.path)}) from None
        if self.path.exists() and self.path.is_dir():
            raise IOFailure(f"cannot open state database {self.path}: it is a directory",
                            details={"path": str(self.path)})

    def _conn(self) -> sqlite3.Connection:
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is not None and local.pid == os.getpid():
            return conn
        if self._closed:
            raise IOFailure(f"the state store {self.path} has been closed", details={"path": str(self.path)})
        # A connection inherited through fork must not be used (nor closed) in the child.
        conn = self._open()
        local.conn, local.pid = conn, os.getpid()
        return conn

    def _open(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(str(self.path), timeout=self.busy_timeout, isolation_level=None,
                                   check_same_thread=False, factory=_Connection, cached_statements=64)
        except sqlite3.Error as exc:
            raise translate_error(exc, self.path, "open the state store") from None
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            deadline = time.monotonic() + self.busy_timeout
            while True:  # first opens by several processes at once can race on the mode switch
                try:
                    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                    break
                except sqlite3.OperationalError as exc:
                    if getattr(exc, "sqlite_errorcode", 0) & 0xFF not in (5, 6) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
            if str(mode).lower() != "wal":
                raise IOFailure(f"state database {self.path} cannot use WAL journaling (got {mode!r}); "
                                "put the data directory on a local file system", details={"path": str(self.path)})
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            if not self._schema_ready:  # once per store: later connections find it migrated
                migrate_sqlite(conn, "state", f"state database {self.path}")
                self._schema_ready = True
        except sqlite3.Error as exc:
            conn.close()
            raise translate_error(exc, self.path, "open the state store") from None
        except BaseException:
            conn.close()
            raise
        conn.aikit_pid = os.getpid()
        with self._conns_lock:
            self._conns.add(conn)
        return conn

    def _run(self, action: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except sqlite3.Error as exc:
            raise translate_error(exc, self.path, action) from None

    @contextlib.contextmanager
    def _write_txn(self, conn: sqlite3.Connection, action: str) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT, or a savepoint when already inside a transaction on this
        thread (an update's function writing state). Rolls back on any exception."""
        nested = conn.in_transaction
        try:
            conn.execute("SAVEPOINT aikit_nested" if nested else "BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise translate_error(exc, self.path, action) from None
        try:
            yield
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                if nested:
                    conn.execute("ROLLBACK TO aikit_nested")
                    conn.execute("RELEASE aikit_nested")
                elif conn.in_transaction:
                    conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("RELEASE aikit_nested" if nested else "COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction and not nested:
                    conn.execute("ROLLBACK")
            raise translate_error(exc, self.path, action) from None

    def _after_write(self, conn: sqlite3.Connection) -> None:
        self._writes += 1
        if self._writes % PURGE_EVERY == 0 and not conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute(_PURGE, (self.clock(),))

    def _read(self, conn: sqlite3.Connection, scope: str, key: str, now: float) -> tuple[str, float | None] | None:
        row = conn.execute(_GET, (scope, key)).fetchone()
        if row is None or (row[1] is not None and row[1] <= now):
            return None
        return row

    # -- StateBackend ------------------------------------------------------------------------

    def get(self, scope: str, key: str) -> tuple[bool, Any]:
        conn = self._conn()
        try:
            row = conn.execute(_GET, (scope, key)).fetchone()
        except sqlite3.Error as exc:
            raise translate_error(exc, self.path, f"read {scope}/{key}") from None
        if row is None:
            return False, None
        expires_at = row[1]
        if expires_at is not None and expires_at <= self.clock():
            return False, None
        return True, codec.loads(row[0])

    def set(self, scope: str, key: str, value: Any, expires_at: float | None = None) -> None:
        text = encode_value(value, self.max_value_bytes, scope, key)
        conn = self._conn()
        try:
            conn.execute(_UPSERT, (scope, key, text, expires_at, time.time()))
        except sqlite3.Error as exc:
            raise translate_error(exc, self.path, f"write {scope}/{key}") from None
        self._after_write(conn)

    def set_many(self, scope: str, items: list[tuple[str, Any]]) -> None:
        """Store several ``(key, value)`` of ``scope`` (no expiry) in one transaction: one fsync
        for all, durable when this returns; all are written or none."""
        self.set_rows([(scope, key, value, None) for key, value in items])

    def set_rows(self, items: list[tuple[str, str, Any, float | None]]) -> None:
        """Store several ``(scope, key, value, expires_at)`` in one transaction, in order (a key
        given twice ends with its last value): one fsync for all, durable when this returns; all
        are written or none."""
        now = time.time()
        rows = [(scope, key, encode_value(value, self.max_value_bytes, scope, key), expires_at, now)
                for scope, key, value, expires_at in items]
        conn = self._conn()
        scopes = {row[0] for row in rows}
        action = f"write {len(rows)} keys of {', '.join(sorted(scopes))}"
        with self._write_txn(conn, action):
            self._run(action, lambda: _upsert_rows(conn, rows))
        self._after_write(conn)

    def delete(self, scope: str, key: str) -> bool:
        conn = self._conn()
        try:
            # An expired entry is removed too, but reported as absent.
            cur = conn.execute(_DELETE, (scope, key, self.clock()))
            existed = cur.rowcount > 0
            if not existed:
                conn.execute("DELETE FROM state WHERE scope = ? AND key = ?", (scope, key))
        except sqlite3.Error as exc:
            raise translate_error(exc, self.path, f"delete {scope}/{key}") from None
        return existed

    def keys(self, scope: str, prefix: str = "") -> list[str]:
        conn = self._conn()
        upper = prefix_upper_bound(prefix)
        now = self.clock()
        try:
            if upper is None:
                rows = conn.execute(_KEYS_OPEN, (scope, prefix, now)).fetchall()
            else:
                rows = conn.execute(_KEYS, (scope, prefix, upper, now)).fetchall()
        except sqlite3.Error as exc:
            raise translate_error(exc, self.path, f"list keys of {scope}") from None
        return [r[0] for r in rows]

    def compare_and_set(self, scope: str, key: str, expected_found: bool, expected_value: Any,
                        new_value: Any, expires_at: float | None = None) -> bool:
        text = encode_value(new_value, self.max_value_bytes, scope, key)
        expected = normalize(expected_value) if expected_found else None
        conn = self._conn()
        action = f"compare-and-set {scope}/{key}"
        with self._write_txn(conn, action):
            row = self._run(action, lambda: self._read(conn, scope, key, self.clock()))
            if not expectation_met(row, expected_found, expected):
                return False
            if expires_at is None and row is not None:
                expires_at = row[1]
            self._run(action, lambda: conn.execute(_UPSERT, (scope, key, text, expires_at, time.time())))
        self._after_write(conn)
        return True

    def update(self, scope: str, key: str, fn: Callable[[Any], Any], expires_at: float | None = None) -> Any:
        conn = self._conn()
        action = f"update {scope}/{key}"
        with self._write_txn(conn, action):
            row = self._run(action, lambda: self._read(conn, scope, key, self.clock()))
            new = fn(codec.loads(row[0]) if row is not None else None)
            text = encode_value(new, self.max_value_bytes, scope, key)
            if expires_at is None and row is not None:
                expires_at = row[1]
            self._run(action, lambda: conn.execute(_UPSERT, (scope, key, text, expires_at, time.time())))
        self._after_write(conn)
        return new

    def purge_expired(self) -> int:
        """Delete every expired entry now; returns how many."""
        conn = self._conn()
        return self._run("purge expired entries", lambda: conn.execute(_PURGE, (self.clock(),)).rowcount)

    def close(self) -> None:
        """Close every thread's connection (the last one to close checkpoints the WAL)."""
        self._closed = True
        with self._conns_lock:
            conns = list(self._conns)
            self._conns = weakref.WeakSet()
        pid = os.getpid()
        for conn in conns:
            if getattr(conn, "aikit_pid", None) != pid:
                continue  # inherited through fork: the parent still owns it
            with contextlib.suppress(Exception):
                conn.close()
        self._local = threading.local()


def _upsert_rows(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    """Upsert ``rows`` in order, :data:`ROWS_PER_UPSERT` per statement (a key twice in one
    statement ends with its last row, as it would one statement per row)."""
    for start in range(0, len(rows), ROWS_PER_UPSERT):
        chunk = rows[start:start + ROWS_PER_UPSERT]
        conn.execute(_UPSERT_HEAD + ", ".join([_UPSERT_ROW] * len(chunk)) + _UPSERT_TAIL,
                     [*itertools.chain.from_iterable(chunk)])
