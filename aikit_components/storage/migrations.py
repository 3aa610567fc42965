"""Versioned schemas of the stores, for SQLite and PostgreSQL alike.

Each *component* (``state``, ``sessions`` -- sessions and the artifacts index --, ``history``,
``rag``, ``audit``, ``traces``) has an ordered list of :class:`Migration`\\ s, numbered from 1. A database records the
version of each component it holds:

- SQLite: one component per file, its version in ``PRAGMA user_version`` (a file written before
  versioning existed reads as 0, and migration 1 is written with ``IF NOT EXISTS`` so it adopts
  such a file unchanged);
- PostgreSQL: every component in one database (or one schema of it), versions in the table
  ``aikit_schema(component, version, updated_at)``.

Stores migrate automatically on first use (``aikit db migrate`` does it ahead of time, ``aikit db
status`` shows where a database stands). Migrations run in one transaction under a lock, so two
processes opening an old database at once apply them once. A database whose version is newer than
this code knows is refused with :class:`SchemaTooNew`: an older aikit must not write data it does
not understand.

Adding a migration: append ``Migration(n + 1, ...)`` to the component's tuple with both
dialects' statements (``None`` for a dialect the component does not use); never edit a released
one. Statements are separated by ``;`` at the end of a line.
"""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass

from ..errors import IOFailure


@dataclass(frozen=True)
class Migration:
    """One schema step of a component; ``sqlite``/``postgres`` are scripts (or None)."""

    version: int
    description: str
    sqlite: str | None
    postgres: str | None


class SchemaTooNew(IOFailure):
    """The database was written by a newer aikit (its schema version is above this code's)."""


STATE: tuple[Migration, ...] = (
    Migration(1, "state table (scope, key) -> encoded value with optional expiry", """
CREATE TABLE IF NOT EXISTS state (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    expires_at REAL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS state_expiry ON state(expires_at) WHERE expires_at IS NOT NULL;
""", """
CREATE TABLE IF NOT EXISTS aikit_state (
    scope TEXT COLLATE "C" NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    value TEXT NOT NULL,
    expires_at DOUBLE PRECISION,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX IF NOT EXISTS aikit_state_expiry ON aikit_state (expires_at) WHERE expires_at IS NOT NULL;
"""),
)

SESSIONS: tuple[Migration, ...] = (
    Migration(1, "sessions, artifacts index, artifact version counters", """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    name TEXT,
    status TEXT NOT NULL CHECK (status IN ('active', 'completed', 'failed')),
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    completed_at REAL,
    metadata TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS sessions_created ON sessions (created_at);
CREATE TABLE IF NOT EXISTS artifacts (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    mime TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    session_id TEXT,
    created_at REAL NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE INDEX IF NOT EXISTS artifacts_sha ON artifacts (sha256);
CREATE INDEX IF NOT EXISTS artifacts_session ON artifacts (session_id);
-- the last version ever given to a name: versions are never reused, even after a delete
CREATE TABLE IF NOT EXISTS artifact_names (
    name TEXT PRIMARY KEY,
    last_version INTEGER NOT NULL
);
""", """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    name TEXT,
    status TEXT NOT NULL CHECK (status IN ('active', 'completed', 'failed')),
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    completed_at DOUBLE PRECISION,
    metadata TEXT NOT NULL DEFAULT '{}',
    rowid BIGSERIAL
);
CREATE INDEX IF NOT EXISTS sessions_created ON sessions (created_at);
CREATE TABLE IF NOT EXISTS artifacts (
    name TEXT COLLATE "C" NOT NULL,
    version INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    size BIGINT NOT NULL,
    mime TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    session_id TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE INDEX IF NOT EXISTS artifacts_sha ON artifacts (sha256);
CREATE INDEX IF NOT EXISTS artifacts_session ON artifacts (session_id);
CREATE TABLE IF NOT EXISTS artifact_names (
    name TEXT COLLATE "C" PRIMARY KEY,
    last_version INTEGER NOT NULL
);
"""),
    Migration(2, "sessions.host: the host and process that created or last resumed a session "
                 "(several kernels share one database); artifact content table for blobs kept in PostgreSQL", """
ALTER TABLE sessions ADD COLUMN host TEXT;
""", """
ALTER TABLE sessions ADD COLUMN IF NOT EXISTS host TEXT;
CREATE TABLE IF NOT EXISTS artifact_blobs (
    sha256 TEXT PRIMARY KEY,
    data BYTEA NOT NULL
);
"""),
    # SQLite cannot change a CHECK constraint in place: the table is rebuilt (rowids kept, they
    # order sessions created in the same instant).
    Migration(3, "a session may end as 'interrupted' (Ctrl-C in aikit run, SIGTERM to aikit serve)", """
CREATE TABLE sessions_v3 (
    id TEXT PRIMARY KEY,
    name TEXT,
    status TEXT NOT NULL CHECK (status IN ('active', 'completed', 'failed', 'interrupted')),
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    completed_at REAL,
    metadata TEXT NOT NULL DEFAULT '{}',
    host TEXT
);
INSERT INTO sessions_v3 (rowid, id, name, status, created_at, updated_at, completed_at, metadata, host)
    SELECT rowid, id, name, status, created_at, updated_at, completed_at, metadata, host FROM sessions;
DROP TABLE sessions;
ALTER TABLE sessions_v3 RENAME TO sessions;
CREATE INDEX IF NOT EXISTS sessions_created ON sessions (created_at);
""", """
ALTER TABLE sessions DROP CONSTRAINT IF EXISTS sessions_status_check;
ALTER TABLE sessions ADD CONSTRAINT sessions_status_check
    CHECK (status IN ('active', 'completed', 'failed', 'interrupted'));
"""),
)

HISTORY: tuple[Migration, ...] = (
    Migration(1, "kernel input/output history", """
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
""", """
CREATE TABLE IF NOT EXISTS aikit_history_sessions (
    session BIGSERIAL PRIMARY KEY,
    kernel_session TEXT,
    started DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS aikit_history (
    session BIGINT NOT NULL,
    line INTEGER NOT NULL,
    source TEXT NOT NULL,
    output TEXT,
    PRIMARY KEY (session, line)
);
CREATE INDEX IF NOT EXISTS aikit_history_source ON aikit_history (source);
"""),
)

RAG: tuple[Migration, ...] = (
    # Chunk ids are global (BIGSERIAL) but only compared within a collection. The embedding
    # column has no fixed dimension: each collection gets a partial HNSW index on
    # ``embedding::vector(dim)`` (rag/pg_store.py creates it when the dimension is known).
    Migration(1, "RAG collections, documents and chunks with tsvector full text and pgvector embeddings", None, """
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE IF NOT EXISTS aikit_rag_collections (
    key TEXT COLLATE "C" PRIMARY KEY,
    meta JSONB NOT NULL DEFAULT '{}',
    generation BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS aikit_rag_documents (
    collection TEXT COLLATE "C" NOT NULL REFERENCES aikit_rag_collections (key) ON DELETE CASCADE,
    id TEXT COLLATE "C" NOT NULL,
    metadata TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    chunks INTEGER NOT NULL,
    chars BIGINT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (collection, id)
);
CREATE TABLE IF NOT EXISTS aikit_rag_chunks (
    id BIGSERIAL PRIMARY KEY,
    collection TEXT COLLATE "C" NOT NULL,
    document_id TEXT COLLATE "C" NOT NULL,
    idx INTEGER NOT NULL,
    text TEXT NOT NULL,
    start_char INTEGER NOT NULL,
    end_char INTEGER NOT NULL,
    metadata JSONB NOT NULL,
    tsv TSVECTOR GENERATED ALWAYS AS (to_tsvector('english', text)) STORED,
    embedding VECTOR NOT NULL,
    FOREIGN KEY (collection, document_id) REFERENCES aikit_rag_documents (collection, id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS aikit_rag_chunks_document ON aikit_rag_chunks (collection, document_id);
CREATE INDEX IF NOT EXISTS aikit_rag_chunks_tsv ON aikit_rag_chunks USING GIN (tsv);
CREATE INDEX IF NOT EXISTS aikit_rag_chunks_metadata ON aikit_rag_chunks USING GIN (metadata jsonb_path_ops);
"""),
)

AUDIT: tuple[Migration, ...] = (
    # The hash-chained audit ledger (control/audit.py, control/pg_audit.py); the SQLite ledger
    # (audit.sqlite) keeps its own schema version in its meta table.
    Migration(1, "the audit ledger: hash-chained entries and their head", None, """
CREATE TABLE IF NOT EXISTS aikit_audit_entries (
    seq BIGINT PRIMARY KEY,
    at DOUBLE PRECISION NOT NULL,
    type TEXT NOT NULL,
    session TEXT,
    data TEXT NOT NULL,
    prev TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS aikit_audit_entries_type ON aikit_audit_entries (type, seq);
CREATE TABLE IF NOT EXISTS aikit_audit_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""),
)

TRACES: tuple[Migration, ...] = (
    # The span store (telemetry/store.py, telemetry/pg_store.py); the SQLite store (traces.sqlite)
    # creates its own tables.
    Migration(1, "the span store: spans, trace summaries and a change counter", None, """
CREATE TABLE IF NOT EXISTS aikit_spans (
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    parent_span_id TEXT,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    start_ns BIGINT NOT NULL,
    end_ns BIGINT,
    status TEXT NOT NULL,
    status_message TEXT NOT NULL,
    attributes TEXT NOT NULL,
    events TEXT NOT NULL,
    op_kind TEXT,
    agent TEXT,
    input_tokens BIGINT,
    output_tokens BIGINT,
    cost_usd DOUBLE PRECISION,
    seq BIGINT NOT NULL,
    PRIMARY KEY (trace_id, span_id)
);
CREATE INDEX IF NOT EXISTS aikit_spans_seq ON aikit_spans (seq);
CREATE TABLE IF NOT EXISTS aikit_traces (
    trace_id TEXT PRIMARY KEY,
    root_name TEXT NOT NULL,
    root_kind TEXT NOT NULL,
    start_ns BIGINT NOT NULL,
    end_ns BIGINT,
    span_count BIGINT NOT NULL,
    error_count BIGINT NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cost_usd DOUBLE PRECISION,
    status TEXT NOT NULL,
    agents TEXT NOT NULL,
    root_span_id TEXT NOT NULL,
    root_parentless INTEGER NOT NULL,
    root_start_ns BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS aikit_traces_start ON aikit_traces (start_ns);
CREATE TABLE IF NOT EXISTS aikit_traces_meta (
    key TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO aikit_traces_meta (key, value) VALUES ('seq', 0) ON CONFLICT (key) DO NOTHING;
"""),
)

COMPONENTS: dict[str, tuple[Migration, ...]] = {
    "state": STATE, "sessions": SESSIONS, "history": HISTORY, "rag": RAG, "audit": AUDIT, "traces": TRACES}


def latest(component: str) -> int:
    """The schema version this code writes for ``component``."""
    return COMPONENTS[component][-1].version


def statements(script: str) -> list[str]:
    """The statements of a migration script (split at ``;`` ending a line)."""
    return [s.strip() for s in script.replace("\r\n", "\n").split(";\n") if s.strip().rstrip(";").strip()]


def pending(component: str, current: int, where: str) -> list[Migration]:
    """The migrations to apply on a database at ``current``; SchemaTooNew when it is ahead."""
    code = latest(component)
    if current > code:
        raise SchemaTooNew(
            f"{where} holds {component} schema version {current}, but this aikit only knows up to {code}: "
            "it was written by a newer aikit. Upgrade aikit (pip install -U aikit), or point it at another "
            "database or data directory; nothing was changed.",
            details={"component": component, "database_version": current, "code_version": code, "where": where})
    return [m for m in COMPONENTS[component] if m.version > current]


def migrate_sqlite(conn: sqlite3.Connection, component: str, where: str) -> int:
    """Bring the SQLite file behind ``conn`` (autocommit mode) to :func:`latest` for ``component``,
    in one ``BEGIN IMMEDIATE`` transaction; returns the version it was at."""
    found = conn.execute("PRAGMA user_version").fetchone()[0]
    if not pending(component, found, where):
        return found
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = conn.execute("PRAGMA user_version").fetchone()[0]  # another process may have done it
        for migration in pending(component, found, where):
            for statement in statements(migration.sqlite or ""):
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {latest(component)}")
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    return found


__all__ = ["migrate_sqlite", "COMPONENTS", "Migration", "SchemaTooNew", "latest", "pending", "statements"]
