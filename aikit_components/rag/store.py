"""The collection store: one SQLite file per (tenant, collection) holding documents, chunks
(text, offsets, metadata, embedding) and the lexical index. It is the source of truth; the HNSW
file beside it is derived from it and rebuilt when it is missing or stale.

- WAL, ``synchronous=FULL``: an ingest or delete is on disk when the call returns.
- An upsert replaces all chunks of a document in one transaction; a failure rolls it back, so a
  document is never half-replaced.
- ``generation`` (in ``meta``) grows with every write, so the vector index file can tell whether
  it still matches.
- Metadata filters are equality tests on ``json_extract(metadata, '$."key"')`` (a list value
  means any of its items).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..codec import lua_type_name
from ..errors import InvalidArgument
from ..storage.sqlite import translate_error
from .lexical import FTS_SCHEMA, match_expression

__all__ = ["ChunkRow", "Store"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY,
    metadata TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    chunks INTEGER NOT NULL,
    chars INTEGER NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    document_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    text TEXT NOT NULL,
    start INTEGER NOT NULL,
    end INTEGER NOT NULL,
    metadata TEXT NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_document ON chunks(document_id);
""" + FTS_SCHEMA

_SCALARS = (str, int, float, bool)


@dataclass
class ChunkRow:
    """A stored chunk as search results need it."""

    id: int
    document_id: str
    index: int
    text: str
    metadata: dict[str, Any]


@dataclass
class NewChunk:
    """A chunk about to be stored."""

    text: str
    start: int
    end: int
    metadata: dict[str, Any]
    vector: np.ndarray


def filter_terms(filter: Any) -> list[tuple[str, list[Any]]]:
    """A search's metadata filter checked: (field, accepted values) per entry; a field matches
    any of its values. Raises InvalidArgument saying what is wrong."""
    if not isinstance(filter, dict):
        raise InvalidArgument(f"filter must be a table of metadata field = value, got {lua_type_name(filter)}")
    terms = []
    for key, value in filter.items():
        if not isinstance(key, str) or not key:
            raise InvalidArgument(f"filter keys must be metadata field names, got {key!r}")
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, _SCALARS) for v in values):
            raise InvalidArgument(f"filter {key}: a string, number or boolean (or a list of them), got {value!r}",
                                  details={"field": key})
        terms.append((key, values))
    return terms


class Store:
    """See the module docstring. Thread-safe (one connection behind a lock)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(str(self.path), timeout=10, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise translate_error(exc, self.path, "open the collection", "collection database") from None

    # ------------------------------------------------------------------ meta
    def meta(self) -> dict[str, Any]:
        with self._lock:
            return {k: json.loads(v) for k, v in self._db.execute("SELECT key, value FROM meta")}

    def set_meta(self, **values: Any) -> None:
        with self._lock, self._txn("write the collection settings"):
            self._db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                 [(k, json.dumps(v)) for k, v in values.items()])

    def generation(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
            return int(json.loads(row[0])) if row else 0

    def _bump(self) -> int:
        generation = self.generation() + 1
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('generation', ?)", (json.dumps(generation),))
        return generation

    # ------------------------------------------------------------------ writes
    def content_hash(self, document_id: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT content_hash FROM documents WHERE id = ?", (document_id,)).fetchone()
            return row[0] if row else None

    def upsert(
        self, documents: list[tuple[str, dict[str, Any], str, int, list[NewChunk]]],
    ) -> tuple[list[int], list[int], int]:
        """Store ``(id, metadata, content_hash, chars, chunks)`` documents, replacing earlier
        versions, in one transaction: ``(removed chunk ids, added chunk ids, generation)``."""
        now = time.time()
        removed: list[int] = []
        added: list[int] = []
        with self._lock, self._txn("store documents"):
            for doc_id, metadata, content_hash, chars, chunks in documents:
                removed += [r[0] for r in self._db.execute("SELECT id FROM chunks WHERE document_id = ?", (doc_id,))]
                self._db.execute("DELETE FROM chunks WHERE document_id = ?", (doc_id,))
                self._db.execute(
                    "INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                    "metadata = excluded.metadata, content_hash = excluded.content_hash, chunks = excluded.chunks, "
                    "chars = excluded.chars, updated_at = excluded.updated_at",
                    (doc_id, json.dumps(metadata), content_hash, len(chunks), chars, now, now))
                for i, chunk in enumerate(chunks):
                    cur = self._db.execute(
                        "INSERT INTO chunks (document_id, idx, text, start, end, metadata, vector) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (doc_id, i, chunk.text, chunk.start, chunk.end, json.dumps(chunk.metadata),
                         np.asarray(chunk.vector, dtype=np.float32).tobytes()))
                    added.append(int(cur.lastrowid))
            generation = self._bump()
        return removed, added, generation

    def delete(self, document_id: str) -> tuple[list[int], int] | None:
        """Remove a document and its chunks: (removed chunk ids, generation), None if absent."""
        with self._lock, self._txn("delete a document"):
            if self._db.execute("SELECT 1 FROM documents WHERE id = ?", (document_id,)).fetchone() is None:
                return None
            removed = [r[0] for r in self._db.execute("SELECT id FROM chunks WHERE document_id = ?", (document_id,))]
            self._db.execute("DELETE FROM chunks WHERE document_id = ?", (document_id,))
            self._db.execute("DELETE FROM documents WHERE id = ?", (document_id,))
            return removed, self._bump()

    # ------------------------------------------------------------------ reads
    def vectors(self, batch: int = 10_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """All (chunk ids, vectors) in batches: what the vector index is built from."""
        with self._lock:
            rows = self._db.execute("SELECT id, vector FROM chunks ORDER BY id").fetchall()
        for start in range(0, len(rows), batch):
            part = rows[start:start + batch]
            ids = np.fromiter((r[0] for r in part), dtype=np.int64, count=len(part))
            vectors = np.stack([np.frombuffer(r[1], dtype=np.float32) for r in part])
            yield ids, vectors

    def chunks(self, ids: list[int]) -> dict[int, ChunkRow]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT id, document_id, idx, text, metadata FROM chunks WHERE id IN ({','.join('?' * len(ids))})",
                ids).fetchall() if ids else []
        return {r[0]: ChunkRow(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows}

    def matching_ids(self, filter: dict[str, Any]) -> list[int]:
        """Chunk ids whose metadata matches ``filter`` (equality; a list value: any of it)."""
        where, params = self._where(filter)
        with self._lock:
            return [r[0] for r in self._db.execute(f"SELECT id FROM chunks WHERE {where}", params)]

    def lexical(self, query: str, k: int, filter: dict[str, Any] | None = None) -> list[tuple[int, float]]:
        """The best ``k`` chunks by BM25: (chunk id, score), higher is better."""
        expression = match_expression(query)
        if expression is None:
            return []
        sql = ("SELECT chunks_fts.rowid, -bm25(chunks_fts) AS score FROM chunks_fts "
               "JOIN chunks ON chunks.id = chunks_fts.rowid WHERE chunks_fts MATCH ?")
        params: list[Any] = [expression]
        if filter:
            where, extra = self._where(filter)
            sql += f" AND {where}"
            params += extra
        sql += " ORDER BY bm25(chunks_fts) LIMIT ?"
        with self._lock:
            return [(int(r[0]), float(r[1])) for r in self._db.execute(sql, (*params, k))]

    def documents(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT id, metadata, chunks, chars, updated_at FROM documents ORDER BY id").fetchall()
        return [{"id": r[0], "metadata": json.loads(r[1]), "chunks": r[2], "chars": r[3], "updated_at": r[4]}
                for r in rows]

    def counts(self) -> dict[str, int]:
        with self._lock:
            documents, = self._db.execute("SELECT count(*) FROM documents").fetchone()
            chunks, chars = self._db.execute("SELECT count(*), coalesce(sum(length(text)), 0) FROM chunks").fetchone()
        return {"documents": int(documents), "chunks": int(chunks), "chars": int(chars)}

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _where(filter: dict[str, Any]) -> tuple[str, list[Any]]:
        clauses, params = [], []
        for key, values in filter_terms(filter):
            path = '$."' + key.replace('"', '""') + '"'
            clauses.append(f"json_extract(chunks.metadata, ?) IN ({','.join('?' * len(values))})")
            params += [path, *[int(v) if isinstance(v, bool) else v for v in values]]
        return " AND ".join(clauses) or "1", params

    class _Txn:
        def __init__(self, store: Store, action: str) -> None:
            self.store, self.action = store, action

        def __enter__(self) -> None:
            try:
                self.store._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise translate_error(exc, self.store.path, self.action, "collection database") from None

        def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
            db = self.store._db
            if exc_type is None:
                try:
                    db.execute("COMMIT")
                    return
                except sqlite3.Error as err:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise translate_error(err, self.store.path, self.action, "collection database") from None
            if db.in_transaction:
                db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise translate_error(exc, self.store.path, self.action, "collection database") from None

    def _txn(self, action: str) -> Store._Txn:
        return Store._Txn(self, action)
