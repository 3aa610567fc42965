"""RAG collections in PostgreSQL (``[storage] rag = "postgres"``): the same interface as the
SQLite :class:`~aikit_components.rag.store.Store` and the hnswlib
:class:`~aikit_components.rag.index.VectorIndex`, so :class:`~aikit_components.rag.collection.Collection`
(chunking, embedding, hybrid fusion, events) runs unchanged on either.

- Tables ``aikit_rag_collections``, ``aikit_rag_documents``, ``aikit_rag_chunks`` (migrations:
  component ``rag``); a collection is a key ``<tenant or _shared>/<name>``.
- Full text: a generated ``tsvector`` column (``english`` configuration: stemming like the
  SQLite store's porter tokenizer) with a GIN index; a query's words are OR-ed and ranked with
  ``ts_rank_cd``.
- Vectors: pgvector. Each collection gets a partial HNSW index on ``embedding::vector(dim)``
  (inner product on unit vectors = cosine), built with the collection's ``M`` and
  ``ef_construction``; searches set ``hnsw.ef_search`` and pgvector's iterative scan, so a
  metadata filter (SQL on the ``jsonb`` metadata, in the same statement) still returns ``k``
  hits when it matches few chunks.
- An upsert or delete is one transaction: a document is never half-replaced, and every kernel
  on the database sees the change at once (no index file to rebuild).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..storage.postgres import PostgresDatabase, advisory_key
from .index import IndexParams
from .store import ChunkRow, NewChunk, filter_terms

__all__ = ["DESCRIPTION", "PgFilter", "PgStore", "PgVectorIndex", "collection_key", "list_collections",
           "drop_collection", "hnsw_index_name", "stored_embedder"]

DESCRIPTION = "PostgreSQL full text (tsvector, english stemming, ts_rank_cd)"
_WORD = re.compile(r"\w+", re.UNICODE)
MAX_QUERY_TERMS = 64


def collection_key(folder: str, name: str) -> str:
    return f"{folder}/{name}"


def _vector_text(vector: np.ndarray) -> str:
    return "[" + ",".join(map(str, np.asarray(vector, dtype=np.float32).tolist())) + "]"


class PgFilter:
    """A metadata filter as SQL over ``aikit_rag_chunks.metadata`` (what :meth:`PgStore.matching_ids`
    hands the vector index instead of a list of ids: the filter runs inside the search)."""

    def __init__(self, filter: dict[str, Any]) -> None:
        clauses, params = [], []
        for key, values in filter_terms(filter):
            clauses.append(f"(metadata -> %s) IN ({','.join(['%s::jsonb'] * len(values))})")
            params += [key, *[json.dumps(v) for v in values]]
        self.sql = " AND ".join(clauses) or "TRUE"
        self.params = params


class PgStore:
    """The chunks, documents and settings of one collection in PostgreSQL."""

    lexical_description = DESCRIPTION
    remote = True  # the collection runs its calls off the I/O loop (Collection._off_loop)

    def __init__(self, db: PostgresDatabase, key: str) -> None:
        self.db = db  # shared by the collections of a RAG, which closes it
        self.key = key
        self.path = f"{db.where} collection {key}"
        self.indexes_ready: set[str] = set()
        db.ensure_schema("rag")
        db.execute("create the collection", "INSERT INTO aikit_rag_collections (key) VALUES (%s) "
                   "ON CONFLICT (key) DO NOTHING", (key,))

    # ------------------------------------------------------------------ meta
    def meta(self) -> dict[str, Any]:
        rows = self.db.query("read the collection settings", "SELECT meta FROM aikit_rag_collections WHERE key = %s",
                             (self.key,))
        return dict(rows[0][0]) if rows else {}

    def set_meta(self, **values: Any) -> None:
        self.db.execute("write the collection settings", "UPDATE aikit_rag_collections SET meta = meta || %s::jsonb "
                        "WHERE key = %s", (json.dumps(values), self.key))

    def generation(self) -> int:
        rows = self.db.query("read the collection", "SELECT generation FROM aikit_rag_collections WHERE key = %s",
                             (self.key,))
        return int(rows[0][0]) if rows else 0

    def _bump(self, conn: Any) -> int:
        return int(conn.execute("UPDATE aikit_rag_collections SET generation = generation + 1 WHERE key = %s "
                                "RETURNING generation", (self.key,)).fetchone()[0])

    # ------------------------------------------------------------------ writes
    def content_hash(self, document_id: str) -> str | None:
        rows = self.db.query("read the collection", "SELECT content_hash FROM aikit_rag_documents "
                             "WHERE collection = %s AND id = %s", (self.key, document_id))
        return rows[0][0] if rows else None

    def upsert(self, documents: list[tuple[str, dict[str, Any], str, int, list[NewChunk]]],
               ) -> tuple[list[int], list[int], int]:
        """Store documents (replacing earlier versions) in one transaction: ``(removed chunk ids,
        added chunk ids, generation)``."""
        now = time.time()
        removed: list[int] = []
        added: list[int] = []
        with self.db.transaction("store documents", lock=advisory_key("rag", self.key)) as conn:
            for doc_id, metadata, content_hash, chars, chunks in documents:
                removed += [r[0] for r in conn.execute(
                    "DELETE FROM aikit_rag_chunks WHERE collection = %s AND document_id = %s RETURNING id",
                    (self.key, doc_id)).fetchall()]
                conn.execute(
                    "INSERT INTO aikit_rag_documents VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (collection, id) DO UPDATE SET metadata = excluded.metadata, "
                    "content_hash = excluded.content_hash, chunks = excluded.chunks, chars = excluded.chars, "
                    "updated_at = excluded.updated_at",
                    (self.key, doc_id, json.dumps(metadata), content_hash, len(chunks), chars, now, now))
                if chunks:  # one statement per document; ids come from the sequence in row order
                    rows = conn.execute(
                        "INSERT INTO aikit_rag_chunks (collection, document_id, idx, text, start_char, end_char, "
                        "metadata, embedding) SELECT %s, %s, u.i, u.t, u.s, u.e, u.m::jsonb, u.v::vector "
                        "FROM unnest(%s::int[], %s::text[], %s::int[], %s::int[], %s::text[], %s::text[]) "
                        "WITH ORDINALITY AS u(i, t, s, e, m, v, n) ORDER BY u.n RETURNING id",
                        (self.key, doc_id, list(range(len(chunks))), [c.text for c in chunks],
                         [c.start for c in chunks], [c.end for c in chunks],
                         [json.dumps(c.metadata) for c in chunks], [_vector_text(c.vector) for c in chunks]),
                    ).fetchall()
                    added += sorted(int(r[0]) for r in rows)
            generation = self._bump(conn)
        return removed, added, generation

    def delete(self, document_id: str) -> tuple[list[int], int] | None:
        with self.db.transaction("delete a document", lock=advisory_key("rag", self.key)) as conn:
            if conn.execute("SELECT 1 FROM aikit_rag_documents WHERE collection = %s AND id = %s",
                            (self.key, document_id)).fetchone() is None:
                return None
            removed = [r[0] for r in conn.execute(
                "DELETE FROM aikit_rag_chunks WHERE collection = %s AND document_id = %s RETURNING id",
                (self.key, document_id)).fetchall()]
            conn.execute("DELETE FROM aikit_rag_documents WHERE collection = %s AND id = %s", (self.key, document_id))
            return removed, self._bump(conn)

    # ------------------------------------------------------------------ reads
    def vectors(self, batch: int = 10_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The vector index lives in the database: nothing to rebuild from."""
        return iter(())

    def chunks(self, ids: list[int]) -> dict[int, ChunkRow]:
        if not ids:
            return {}
        rows = self.db.query("read chunks", "SELECT id, document_id, idx, text, metadata FROM aikit_rag_chunks "
                             "WHERE collection = %s AND id = ANY(%s)", (self.key, list(ids)))
        return {int(r[0]): ChunkRow(int(r[0]), r[1], r[2], r[3], r[4]) for r in rows}

    def matching_ids(self, filter: dict[str, Any]) -> PgFilter:
        """The filter, compiled to SQL (the searches apply it in their own statements)."""
        return PgFilter(filter)

    def lexical(self, query: str, k: int, filter: dict[str, Any] | None = None) -> list[tuple[int, float]]:
        words = list(dict.fromkeys(w.lower() for w in _WORD.findall(query)))[:MAX_QUERY_TERMS]
        if not words:
            return []
        tsquery = " | ".join("'" + w.replace("'", "''").replace("\\", "\\\\") + "'" for w in words)
        where, params = ("", [])
        if filter:
            f = PgFilter(filter)
            where, params = f" AND {f.sql}", f.params
        sql = ("SELECT id, ts_rank_cd(tsv, q) AS score FROM aikit_rag_chunks, to_tsquery('english', %s) q "
               f"WHERE collection = %s AND tsv @@ q{where} ORDER BY score DESC, id LIMIT %s")
        rows = self.db.query("search the collection (full text)", sql, (tsquery, self.key, *params, k))
        return [(int(r[0]), float(r[1])) for r in rows]

    def documents(self) -> list[dict[str, Any]]:
        rows = self.db.query("list documents", "SELECT id, metadata, chunks, chars, updated_at FROM aikit_rag_documents "
                             "WHERE collection = %s ORDER BY id", (self.key,))
        return [{"id": r[0], "metadata": json.loads(r[1]), "chunks": r[2], "chars": r[3], "updated_at": r[4]}
                for r in rows]

    def counts(self) -> dict[str, int]:
        documents = self.db.query("count documents", "SELECT count(*) FROM aikit_rag_documents WHERE collection = %s",
                                  (self.key,))[0][0]
        chunks, chars = self.db.query("count chunks", "SELECT count(*), coalesce(sum(length(text)), 0) "
                                      "FROM aikit_rag_chunks WHERE collection = %s", (self.key,))[0]
        return {"documents": int(documents), "chunks": int(chunks), "chars": int(chars)}

    def close(self) -> None:
        pass


def hnsw_index_name(key: str, dim: int) -> str:
    """The name of a collection's HNSW index (one per collection and dimension)."""
    return "aikit_rag_hnsw_" + format(advisory_key("hnsw", key, str(int(dim))) & 0xFFFFFFFFFFFF, "x")


class PgVectorIndex:
    """Vector search of one collection by pgvector (see the module docstring). ``add`` and
    ``remove`` have nothing to do: the store wrote the embeddings in its transaction."""

    kind = "pgvector-hnsw"

    def __init__(self, store: PgStore, dim: int, params: IndexParams | None = None) -> None:
        self.store = store
        self.dim = int(dim)
        self.params = params or IndexParams()
        name = hnsw_index_name(store.key, self.dim)
        if name not in store.indexes_ready:
            self._ensure_hnsw(name)
            store.indexes_ready.add(name)

    def _ensure_hnsw(self, name: str) -> None:
        from psycopg import sql

        ddl = sql.SQL("CREATE INDEX IF NOT EXISTS {name} ON aikit_rag_chunks USING hnsw "
                      "((embedding::vector({dim})) vector_ip_ops) WITH (m = {m}, ef_construction = {ef}) "
                      "WHERE collection = {key}").format(
            name=sql.Identifier(name), dim=sql.Literal(self.dim), m=sql.Literal(self.params.M),
            ef=sql.Literal(self.params.ef_construction), key=sql.Literal(self.store.key))
        with self.store.db.transaction("create the vector index", lock=advisory_key("rag", self.store.key)) as conn:
            conn.execute(ddl)

    def __len__(self) -> int:
        return self.store.counts()["chunks"]

    def set_ef(self, ef_search: int) -> None:
        self.params.ef_search = ef_search

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        pass

    def remove(self, ids: list[int]) -> None:
        pass

    def save(self, path: Any, generation: int) -> None:
        pass

    def load(self, path: Any, generation: int) -> bool:
        return True  # always current: the index is the database's

    def search(self, vector: np.ndarray, k: int, allowed: PgFilter | list[int] | None = None) -> list[tuple[int, float]]:
        from psycopg import sql

        dim = sql.Literal(self.dim)
        where = sql.SQL("collection = {key}").format(key=sql.Literal(self.store.key))  # a literal: the
        params: list[Any] = []  # planner matches it to the collection's partial index
        if isinstance(allowed, PgFilter):
            where = sql.SQL("{} AND ").format(where) + sql.SQL(allowed.sql)  # type: ignore[arg-type]
            params += allowed.params
        elif allowed is not None:
            where = sql.SQL("{} AND id = ANY(%s)").format(where)
            params.append(list(allowed))
        query = sql.SQL("SELECT id, -((embedding::vector({dim})) <#> %s::vector({dim})) AS score "
                        "FROM aikit_rag_chunks WHERE {where} "
                        "ORDER BY (embedding::vector({dim})) <#> %s::vector({dim}) LIMIT %s").format(dim=dim, where=where)
        text = _vector_text(vector)
        with self.store.db.transaction("search the collection (vectors)") as conn:
            conn.execute(sql.SQL("SET LOCAL hnsw.ef_search = {}; SET LOCAL hnsw.iterative_scan = strict_order")
                         .format(sql.Literal(max(self.params.ef_search, k))))  # one round trip (no parameters)
            rows = conn.execute(query, (text, *params, text, k), prepare=False).fetchall()
        return [(int(r[0]), float(r[1])) for r in rows]

    def stats(self) -> dict[str, Any]:
        return {"kind": self.kind, "vectors": len(self), "dim": self.dim, **self.params.to_dict()}


# ---------------------------------------------------------------------- catalog
def list_collections(db: PostgresDatabase, folder: str) -> list[str]:
    """Names of the collections stored under ``folder`` (a tenant, or the shared folder)."""
    db.ensure_schema("rag")
    prefix = collection_key(folder, "")
    rows = db.query("list collections", "SELECT key FROM aikit_rag_collections WHERE left(key, %s) = %s ORDER BY key",
                    (len(prefix), prefix))
    return [r[0][len(prefix):] for r in rows]


def drop_collection(db: PostgresDatabase, folder: str, name: str) -> bool:
    """Delete a collection (its documents and chunks go with it); False if it did not exist."""
    db.ensure_schema("rag")
    from psycopg import sql

    key = collection_key(folder, name)
    with db.transaction("drop the collection", lock=advisory_key("rag", key)) as conn:
        row = conn.execute("DELETE FROM aikit_rag_collections WHERE key = %s RETURNING meta ->> 'dim'",
                           (key,)).fetchone()
        if row is not None and row[0]:
            conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(hnsw_index_name(key, int(row[0])))))
    return row is not None


def stored_embedder(db: PostgresDatabase, folder: str, name: str) -> str | None:
    db.ensure_schema("rag")
    rows = db.query("read the collection settings", "SELECT meta ->> 'embedder' FROM aikit_rag_collections "
                    "WHERE key = %s", (collection_key(folder, name),))
    return rows[0][0] if rows else None
