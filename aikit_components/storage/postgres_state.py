"""State in PostgreSQL (``[storage] url``): the same semantics as the SQLite store, shared by
every kernel and process that points at the database, on any machine.

- Table ``aikit_state`` (migrations: component ``state``); keys sort by code point (``COLLATE "C"``).
- ``update`` and ``compare_and_set`` run in one transaction holding an advisory lock on
  (scope, key): atomic across processes and machines, including for a key that does not exist
  yet. Nested writes from an update's function (same thread) become savepoints.
- Expiry times come from the writing process's clock (``clock``), as with SQLite: keep the
  machines' clocks in sync (NTP) when TTLs matter.
- A failure (server down, connection lost, pool exhausted) is an aikit error naming what to fix;
  the transaction is rolled back, so nothing is half-written.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .. import codec
from .base import DEFAULT_MAX_VALUE_BYTES, PURGE_EVERY, encode_value, expectation_met, normalize, prefix_upper_bound
from .postgres import PostgresDatabase, advisory_key

_GET = "SELECT value, expires_at FROM aikit_state WHERE scope = %s AND key = %s"
_UPSERT = ("INSERT INTO aikit_state (scope, key, value, expires_at, updated_at) VALUES (%s, %s, %s, %s, %s) "
           "ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value, "
           "expires_at = excluded.expires_at, updated_at = excluded.updated_at")
_PURGE = "DELETE FROM aikit_state WHERE expires_at IS NOT NULL AND expires_at <= %s"


class PostgresStateBackend:
    """A :class:`~aikit_components.storage.base.StateBackend` in PostgreSQL."""

    durable = True
    stores_encoded = True  # takes codec.Encoded values (encode_value stores their text)

    def __init__(self, db: PostgresDatabase, *, clock: Callable[[], float] = time.time,
                 max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES, own_db: bool = True) -> None:
        self.db = db
        self.clock = clock
        self.max_value_bytes = max_value_bytes
        self._own_db = own_db
        self._writes = 0
        db.ensure_schema("state")

    def __repr__(self) -> str:
        return f"PostgresStateBackend({self.db.where!r})"

    def _after_write(self) -> None:
        self._writes += 1
        if self._writes % PURGE_EVERY == 0:
            try:
                self.db.execute("purge expired state entries", _PURGE, (self.clock(),))
            except Exception:  # best effort: expired entries are invisible anyway
                pass

    def _read(self, conn: Any, scope: str, key: str) -> tuple[str, float | None] | None:
        row = conn.execute(_GET, (scope, key)).fetchone()
        if row is None or (row[1] is not None and row[1] <= self.clock()):
            return None
        return row

    # -- StateBackend ------------------------------------------------------------------------

    def get(self, scope: str, key: str) -> tuple[bool, Any]:
        rows = self.db.query(f"read {scope}/{key}", _GET, (scope, key))
        if not rows:
            return False, None
        text, expires_at = rows[0]
        if expires_at is not None and expires_at <= self.clock():
            return False, None
        return True, codec.loads(text)

    def set(self, scope: str, key: str, value: Any, expires_at: float | None = None) -> None:
        text = encode_value(value, self.max_value_bytes, scope, key)
        self.db.execute(f"write {scope}/{key}", _UPSERT, (scope, key, text, expires_at, time.time()))
        self._after_write()

    def set_rows(self, items: list[tuple[str, str, Any, float | None]]) -> None:
        """Store several ``(scope, key, value, expires_at)`` in one transaction, in order (a key
        given twice ends with its last value); all are written or none."""
        now = time.time()
        rows = [(scope, key, encode_value(value, self.max_value_bytes, scope, key), expires_at, now)
                for scope, key, value, expires_at in items]
        with self.db.transaction(f"write {len(rows)} state keys") as conn:
            for row in rows:
                conn.execute(_UPSERT, row)
        self._after_write()

    def delete(self, scope: str, key: str) -> bool:
        with self.db.transaction(f"delete {scope}/{key}") as conn:
            row = conn.execute("DELETE FROM aikit_state WHERE scope = %s AND key = %s RETURNING expires_at",
                               (scope, key)).fetchone()
        return row is not None and (row[0] is None or row[0] > self.clock())

    def keys(self, scope: str, prefix: str = "") -> list[str]:
        upper = prefix_upper_bound(prefix)
        now = self.clock()
        live = "(expires_at IS NULL OR expires_at > %s)"
        if upper is None:
            rows = self.db.query(f"list keys of {scope}", "SELECT key FROM aikit_state WHERE scope = %s AND key >= %s "
                                 f"AND {live} ORDER BY key", (scope, prefix, now))
        else:
            rows = self.db.query(f"list keys of {scope}", "SELECT key FROM aikit_state WHERE scope = %s AND key >= %s "
                                 f"AND key < %s AND {live} ORDER BY key", (scope, prefix, upper, now))
        return [r[0] for r in rows]

    def compare_and_set(self, scope: str, key: str, expected_found: bool, expected_value: Any,
                        new_value: Any, expires_at: float | None = None) -> bool:
        text = encode_value(new_value, self.max_value_bytes, scope, key)
        expected = normalize(expected_value) if expected_found else None
        with self.db.transaction(f"compare-and-set {scope}/{key}", lock=advisory_key("state", scope, key)) as conn:
            row = self._read(conn, scope, key)
            if not expectation_met(row, expected_found, expected):
                return False
            if expires_at is None and row is not None:
                expires_at = row[1]
            conn.execute(_UPSERT, (scope, key, text, expires_at, time.time()))
        self._after_write()
        return True

    def update(self, scope: str, key: str, fn: Callable[[Any], Any], expires_at: float | None = None) -> Any:
        with self.db.transaction(f"update {scope}/{key}", lock=advisory_key("state", scope, key)) as conn:
            row = self._read(conn, scope, key)
            new = fn(codec.loads(row[0]) if row is not None else None)
            text = encode_value(new, self.max_value_bytes, scope, key)
            if expires_at is None and row is not None:
                expires_at = row[1]
            conn.execute(_UPSERT, (scope, key, text, expires_at, time.time()))
        self._after_write()
        return new

    def purge_expired(self) -> int:
        """Delete every expired entry now; returns how many."""
        return self.db.execute("purge expired state entries", _PURGE, (self.clock(),))

    def close(self) -> None:
        if self._own_db:
            self.db.close()
