"""``aikit db status|migrate``: where each store's schema stands, and bringing it up to date.

With ``[storage] url`` every component lives in the one PostgreSQL database; without it each
has its own SQLite file under the data directory (``state.sqlite``, ``sessions.sqlite``,
``history.sqlite``; RAG collections keep one file per collection and are not listed).
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

from .migrations import COMPONENTS, SchemaTooNew, latest, migrate_sqlite
from .settings import StorageSettings

SQLITE_FILES = {"state": "state.sqlite", "sessions": "sessions.sqlite", "history": "history.sqlite"}


def _verdict(found: int, code: int) -> str:
    if found > code:
        return "newer than this aikit: upgrade aikit"
    if found == code:
        return "up to date"
    return "missing: created on first use" if found == 0 else "needs migration (aikit db migrate)"


def status(storage: StorageSettings, data_dir: Path) -> dict[str, Any]:
    """``{"backend", "where", "components": [{component, version, code_version, state}]}``."""
    rows = []
    if storage.postgres:
        db = storage.database()
        try:
            for component in COMPONENTS:
                found = db.schema_version(component)
                rows.append({"component": component, "version": found, "code_version": latest(component),
                             "state": _verdict(found, latest(component))})
        finally:
            db.close()
        return {"backend": "postgresql", "where": db.where, "components": rows}
    for component, filename in SQLITE_FILES.items():
        path = Path(data_dir) / filename
        found = 0
        if path.exists():
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
                found = conn.execute("PRAGMA user_version").fetchone()[0]
        rows.append({"component": component, "version": found, "code_version": latest(component),
                     "state": _verdict(found, latest(component)), "path": str(path)})
    return {"backend": "sqlite", "where": str(data_dir), "components": rows}


def migrate(storage: StorageSettings, data_dir: Path) -> list[dict[str, Any]]:
    """Apply every pending migration; ``[{component, from, to}]``. SchemaTooNew (nothing
    changed for that component) when a database is ahead of this code."""
    done = []
    if storage.postgres:
        db = storage.database()
        try:
            for component in COMPONENTS:
                before, after = db.migrate(component)
                done.append({"component": component, "from": before, "to": after})
        finally:
            db.close()
        return done
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    for component, filename in SQLITE_FILES.items():
        path = Path(data_dir) / filename
        with contextlib.closing(sqlite3.connect(str(path), isolation_level=None, timeout=10)) as conn:
            conn.execute("PRAGMA journal_mode = WAL")
            before = migrate_sqlite(conn, component, str(path))
        done.append({"component": component, "from": before, "to": latest(component)})
    return done


__all__ = ["SQLITE_FILES", "SchemaTooNew", "migrate", "status"]
