"""Storage backends. State stores implement :class:`StateBackend`: ``SQLiteStateBackend`` (the
default, one file under the data directory) and ``MemoryStateBackend`` (tests, scratch)."""

from .base import DEFAULT_MAX_VALUE_BYTES, StateBackend
from .memory import MemoryStateBackend
from .sqlite import SQLiteStateBackend

__all__ = ["DEFAULT_MAX_VALUE_BYTES", "MemoryStateBackend", "SQLiteStateBackend", "StateBackend"]
