"""In-process state store: a dict under a lock, the same semantics as the SQLite store but
nothing survives the process. Values are kept encoded, so callers never share mutable objects
with the store."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from .. import codec
from ..errors import IOFailure
from .base import DEFAULT_MAX_VALUE_BYTES, PURGE_EVERY, encode_value, expectation_met, normalize


class MemoryStateBackend:
    """A :class:`~aikit_components.storage.base.StateBackend` in memory."""

    durable = False
    stores_encoded = True  # takes codec.Encoded values (encode_value stores their text)

    def __init__(self, *, clock: Callable[[], float] = time.time,
                 max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES) -> None:
        self.clock = clock
        self.max_value_bytes = max_value_bytes
        # scope -> key -> (encoded value, expires_at or None)
        self._data: dict[str, dict[str, tuple[str, float | None]]] = {}
        self._lock = threading.RLock()  # re-entrant: an update's fn may read or write state
        self._writes = 0
        self._closed = False

    def __repr__(self) -> str:
        return "MemoryStateBackend()"

    # -- helpers (call with the lock held) ---------------------------------------------------

    def _live(self, scope: str, key: str, now: float) -> tuple[str, float | None] | None:
        entry = self._data.get(scope, {}).get(key)
        if entry is None:
            return None
        if entry[1] is not None and entry[1] <= now:
            del self._data[scope][key]
            return None
        return entry

    def _store(self, scope: str, key: str, text: str, expires_at: float | None) -> None:
        self._data.setdefault(scope, {})[key] = (text, expires_at)
        self._writes += 1
        if self._writes % PURGE_EVERY == 0:
            self.purge_expired()

    def _check_open(self) -> None:
        if self._closed:
            raise IOFailure("the in-memory state store has been closed")

    # -- StateBackend ------------------------------------------------------------------------

    def get(self, scope: str, key: str) -> tuple[bool, Any]:
        with self._lock:
            self._check_open()
            entry = self._live(scope, key, self.clock())
        if entry is None:
            return False, None
        return True, codec.loads(entry[0])

    def set(self, scope: str, key: str, value: Any, expires_at: float | None = None) -> None:
        text = encode_value(value, self.max_value_bytes, scope, key)
        with self._lock:
            self._check_open()
            self._store(scope, key, text, expires_at)

    def delete(self, scope: str, key: str) -> bool:
        with self._lock:
            self._check_open()
            entry = self._live(scope, key, self.clock())
            if entry is None:
                return False
            del self._data[scope][key]
            if not self._data[scope]:
                del self._data[scope]
            return True

    def keys(self, scope: str, prefix: str = "") -> list[str]:
        with self._lock:
            self._check_open()
            now = self.clock()
            items = self._data.get(scope, {}).items()
            found = [k for k, (_, exp) in items if k.startswith(prefix) and (exp is None or exp > now)]
        found.sort()
        return found

    def compare_and_set(self, scope: str, key: str, expected_found: bool, expected_value: Any,
                        new_value: Any, expires_at: float | None = None) -> bool:
        text = encode_value(new_value, self.max_value_bytes, scope, key)
        expected = normalize(expected_value) if expected_found else None
        with self._lock:
            self._check_open()
            entry = self._live(scope, key, self.clock())
            if not expectation_met(entry, expected_found, expected):
                return False
            if expires_at is None and entry is not None:
                expires_at = entry[1]
            self._store(scope, key, text, expires_at)
            return True

    def update(self, scope: str, key: str, fn: Callable[[Any], Any], expires_at: float | None = None) -> Any:
        with self._lock:
            self._check_open()
            entry = self._live(scope, key, self.clock())
            old = codec.loads(entry[0]) if entry is not None else None
            new = fn(old)
            text = encode_value(new, self.max_value_bytes, scope, key)
            if expires_at is None and entry is not None:
                expires_at = entry[1]
            self._store(scope, key, text, expires_at)
            return new

    def purge_expired(self) -> int:
        """Drop every expired entry now; returns how many."""
        with self._lock:
            now = self.clock()
            dropped = 0
            for scope in list(self._data):
                entries = self._data[scope]
                dead = [k for k, (_, exp) in entries.items() if exp is not None and exp <= now]
                for k in dead:
                    del entries[k]
                dropped += len(dead)
                if not entries:
                    del self._data[scope]
            return dropped

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._data.clear()
