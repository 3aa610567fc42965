"""Storage backends.

- State stores implement :class:`StateBackend`: ``SQLiteStateBackend`` (the default, one file
  under the data directory), ``MemoryStateBackend`` (tests, scratch) and
  ``postgres_state.PostgresStateBackend`` (``[storage] url``: shared by many kernels).
- ``settings.StorageSettings`` reads ``[storage]`` and opens each store on the configured backend.
- ``postgres.PostgresDatabase`` is the interface every PostgreSQL-backed store uses (a pool,
  transactions with advisory locks, errors naming what to fix, ``ensure_schema``); to move
  another store (the span store, the audit ledger) onto PostgreSQL, add its component's
  migrations to ``migrations.py`` and write its statements against that interface, as
  ``postgres_state.py`` and ``pg_sessions.py`` do.
- ``migrations`` holds the versioned schemas of both backends; ``schema_admin`` backs
  ``aikit db status|migrate``; ``embedded_pg`` starts a throwaway PostgreSQL (tests, benchmarks).
"""

from .base import DEFAULT_MAX_VALUE_BYTES, StateBackend
from .memory import MemoryStateBackend
from .sqlite import SQLiteStateBackend

__all__ = ["DEFAULT_MAX_VALUE_BYTES", "MemoryStateBackend", "SQLiteStateBackend", "StateBackend"]
