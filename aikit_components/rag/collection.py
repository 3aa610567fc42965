"""A collection: documents chunked, embedded, stored and searchable three ways.

``vector``   cosine similarity of the query's embedding (HNSW or exact, see ``index.py``).
``lexical``  BM25 over the chunk text (SQLite FTS5, see ``lexical.py``).
``hybrid``   both lists fused by reciprocal rank fusion: score = sum of 1 / (60 + rank) over the
             lists a chunk appears in (Cormack et al. 2009), each list ``max(4k, 50)`` long.

Writes (``aingest``, ``delete``) commit to the store first (durable), then update the vector
index and save it. Reads check the store's generation first, so a collection written by another
process (a second kernel) is reloaded before it is searched.

Async methods (``aingest``, ``aingest_path``, ``asearch``) may await an embedding model; the rest
is local SQLite/numpy work that runs on the calling thread. Plain Python can use the sync twins
(``ingest``, ``ingest_path``, ``search``) outside an event loop.

An ingest and a search are operations of the pipeline (kinds :data:`RAG_INGEST` and
:data:`RAG_SEARCH`): their finished events are ``rag.ingested`` and ``rag.searched``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..codec import lua_type_name
from ..errors import AikitError, InvalidArgument, NotFound
from ..operations import Operation, OperationKind, Pipeline
from ..operations.standard import standard_pipeline
from .chunking import ChunkOptions, chunk_text
from .index import IndexParams, VectorIndex
from .lexical import DESCRIPTION as LEXICAL_DESCRIPTION
from .loaders import load_file, walk
from .store import NewChunk, Store

__all__ = ["MODES", "RAG_INGEST", "RAG_SEARCH", "Collection", "Document"]

MODES = ("hybrid", "vector", "lexical")
RRF_K = 60
MAX_K = 1000
INDEX_FILE = "vectors.hnsw"


def _collection_fields(op: Operation) -> dict[str, Any]:
    return {"collection": op.payload["collection"], "tenant": op.payload["tenant"]}


def _rag_kind(name: str, finished: str, what: str, finished_fields: Callable[[Operation, Any], dict[str, Any]]
              ) -> OperationKind:
    """A RAG operation on one collection: no hook points, and of the events only the finished one
    (``finished``), which docs/lua-api.md lists; ``what`` describes it ("... collection 'name'")."""
    return OperationKind(name, topics=(None, finished, None), source="rag",
                         describe=lambda op: f"{what} collection {op.name!r}", event_fields=_collection_fields,
                         finished_fields=finished_fields, converts_errors=False)


# Payloads: ingest {collection, tenant, ids}; search {collection, tenant, query, k, mode, filter}.
RAG_INGEST = _rag_kind("rag.ingest", "rag.ingested", "ingest into",
                       lambda op, result: {"documents": result["documents"], "chunks": result["chunks"],
                                           "unchanged": result["unchanged"]})
RAG_SEARCH = _rag_kind("rag.search", "rag.searched", "search of",
                       lambda op, hits: {"mode": op.payload["mode"], "k": op.payload["k"], "hits": len(hits),
                                         "filtered": bool(op.payload["filter"])})


@dataclass
class Document:
    """One document to ingest. ``vector`` (optional) is a precomputed embedding: the document is
    then stored as one chunk with that vector, without calling the embedder."""

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    vector: Any = None
    sections: list[tuple[str, dict[str, Any]]] | None = None  # files: text per page/section
    kind_hint: str | None = None  # file name for the auto chunker


def as_documents(docs: Any) -> list[Document]:
    """A string, a list of strings, or a list of ``{id, text, metadata, vector}`` tables."""
    if isinstance(docs, (str, Document, dict)):
        docs = [docs]
    if not isinstance(docs, list) or not docs:
        got = "an empty list" if docs == [] else lua_type_name(docs)
        raise InvalidArgument("ingest takes a string, a list of strings, or a list of {id = ..., text = ..., "
                              f"metadata = {{...}}}} tables; got {got}")
    out: list[Document] = []
    for n, item in enumerate(docs, 1):
        if isinstance(item, Document):
            out.append(item)
            continue
        if isinstance(item, str):
            item = {"text": item}
        if not isinstance(item, dict):
            raise InvalidArgument(f"document {n}: a string or a {{id, text, metadata}} table, got {lua_type_name(item)}")
        unknown = sorted(str(k) for k in item if k not in ("id", "text", "metadata", "vector"))
        if unknown:
            raise InvalidArgument(f"document {n}: unknown field(s) {', '.join(unknown)} (known: id, text, metadata, vector)")
        text = item.get("text")
        if not isinstance(text, str) or not text.strip():
            raise InvalidArgument(f"document {n}: text must be a non-empty string", details={"document": n})
        doc_id = item.get("id")
        if doc_id is None:
            doc_id = "doc-" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        elif isinstance(doc_id, (int, float)) and not isinstance(doc_id, bool):
            doc_id = str(int(doc_id)) if float(doc_id).is_integer() else str(doc_id)
        if not isinstance(doc_id, str) or not doc_id:
            raise InvalidArgument(f"document {n}: id must be a non-empty string", details={"document": n})
        metadata = item.get("metadata") or {}
        if not isinstance(metadata, dict) or not all(isinstance(k, str) for k in metadata):
            raise InvalidArgument(f"document {n} ({doc_id}): metadata must be a table of name = value")
        out.append(Document(doc_id, text, dict(metadata), item.get("vector")))
    return list({d.id: d for d in out}.values())  # the last of the same id wins


class Collection:
    """See the module docstring."""

    def __init__(self, name: str, tenant: str | None, directory: Path, embedder: Any, *,
                 chunking: ChunkOptions, params: IndexParams, events: Any = None,
                 pipeline: Pipeline | None = None, store: Any = None,
                 index_factory: Callable[[int, IndexParams], Any] | None = None) -> None:
        self.name = name
        self.tenant = tenant
        self.directory = directory
        self.embedder = embedder
        self.chunking = chunking
        self.events = events
        self.pipeline = pipeline if pipeline is not None else standard_pipeline(events)
        # The SQLite file + hnswlib graph by default; PostgreSQL passes its own (rag/pg_store.py).
        self.store = store if store is not None else Store(directory / "store.sqlite")
        self._new_index = index_factory or VectorIndex
        self._lock = threading.RLock()
        self._pending_params = params
        meta = self.store.meta()
        dim = meta.get("dim") or embedder.dim
        self.index = self._new_index(int(dim), params) if dim else None
        self._generation = -1
        if not meta:
            self.store.set_meta(name=name, tenant=tenant, embedder=embedder.name, dim=dim, created_at=time.time())
        self._sync_index()

    def __repr__(self) -> str:
        return f"Collection({self.name!r}, tenant={self.tenant!r}, embedder={self.embedder.name!r})"

    # ------------------------------------------------------------------ ingest
    async def aingest(self, docs: Any, *, embedder: Any = None) -> dict[str, Any]:
        """Add or replace documents (by id); returns ``{documents, chunks, unchanged, ids}``.
        ``embedder`` (default: the collection's) embeds the chunks: one with the same name and
        size that does the work elsewhere (``distributed.embedding.fanned_out``)."""
        documents = as_documents(docs)
        op = Operation(RAG_INGEST, self.name, {"collection": self.name, "tenant": self.tenant,
                                               "ids": [doc.id for doc in documents]},
                       meta={"embedder": (embedder or self.embedder).name})  # traces name the model that embeds
        return await self.pipeline.arun(op, lambda op: self._ingest(documents, embedder or self.embedder))

    async def _off_loop(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a store call on a worker thread when the store is across the network (PostgreSQL),
        so the I/O loop keeps serving the kernel meanwhile; inline for the local SQLite file."""
        if getattr(self.store, "remote", False):
            return await asyncio.to_thread(fn, *args)
        return fn(*args)

    def _plan(self, documents: list[Document]) -> tuple[list[tuple[Document, str, list[Any]]], list[str]]:
        """(documents to store with their hash and chunks, ids of unchanged documents)."""
        planned: list[tuple[Document, str, list[Any]]] = []
        unchanged: list[str] = []
        for doc in documents:
            digest = self._content_hash(doc)
            if self.store.content_hash(doc.id) == digest:
                unchanged.append(doc.id)
                continue
            planned.append((doc, digest, self._chunk(doc)))
        return planned, unchanged

    async def _ingest(self, documents: list[Document], embedder: Any) -> dict[str, Any]:
        planned, unchanged = await self._off_loop(self._plan, documents)
        texts = [embed_text for doc, _, chunks in planned if doc.vector is None for _, _, embed_text in chunks]
        vectors = iter(await embedder.embed(texts) if texts else [])
        rows = []
        for doc, digest, chunks in planned:
            if doc.vector is not None:
                vector = self._vector(doc.vector, f"document {doc.id}")
                new = [NewChunk(doc.text, 0, len(doc.text), dict(doc.metadata), vector)]
            else:
                new = [NewChunk(c.text, c.start, c.end, meta, next(vectors)) for c, meta, _ in chunks]
            rows.append((doc.id, doc.metadata, digest, sum(len(t) for t, _ in doc.sections or [(doc.text, {})]), new))
        added_chunks = await self._off_loop(self._store_rows, rows) if rows else 0
        return {"documents": len(rows), "chunks": added_chunks, "unchanged": len(unchanged),
                "ids": [r[0] for r in rows] + unchanged}

    def _store_rows(self, rows: list[Any]) -> int:
        """Store prepared documents and update the vector index; how many chunks were added."""
        with self._lock:
            self._sync_index()
            dim = len(rows[0][4][0].vector) if rows[0][4] else None
            self._ensure_index(dim)
            for _, _, _, _, new in rows:
                for chunk in new:
                    if len(chunk.vector) != self.index.dim:
                        raise InvalidArgument(f"vector of {len(chunk.vector)} dimensions for a collection of "
                                              f"{self.index.dim}", details={"expected": self.index.dim})
            removed, added, generation = self.store.upsert(rows)
            self.index.remove(removed)
            all_vectors = [chunk.vector for *_, new in rows for chunk in new]
            if added:
                self.index.add(np.asarray(added, dtype=np.int64), np.stack(all_vectors))
            self._saved(generation)
            return len(added)

    async def aingest_path(self, path: Path, *, check: Callable[[Path], Any] | None = None,
                           embedder: Any = None) -> dict[str, Any]:
        """Ingest a file, or every supported file below a directory. A document's id is its
        resolved path; metadata ``source`` is the path relative to ``path`` (a file: its name),
        plus ``path``, ``type`` and what the loader found (``title``, ``page``). ``check`` (the
        security policy) vets every file before it is read. All files are read before anything
        is stored: one unreadable file fails the whole call and stores nothing."""
        path = Path(path).resolve()
        if not path.exists():
            raise NotFound(f"cannot ingest {path}: no such file or directory", details={"path": str(path)})
        base = path if path.is_dir() else path.parent
        documents = []
        for file in walk(path):
            if check is not None:
                check(file)
            loaded = load_file(file)
            meta = {"source": file.relative_to(base).as_posix(), "path": str(file), "type": file.suffix.lower().lstrip("."),
                    **loaded.metadata}
            text = "\n\n".join(s for s, _ in loaded.sections)
            if not text.strip():
                continue
            documents.append(Document(str(file), text, meta, sections=loaded.sections, kind_hint=file.name))
        if not documents:
            return {"documents": 0, "chunks": 0, "unchanged": 0, "ids": []}
        return await self.aingest(documents, embedder=embedder)

    def ingest(self, docs: Any) -> dict[str, Any]:
        return _run(self.aingest(docs))

    def ingest_path(self, path: Path) -> dict[str, Any]:
        return _run(self.aingest_path(path))

    def _chunk(self, doc: Document) -> list[tuple[Any, dict[str, Any], str]]:
        """(chunk, its metadata, the text to embed) for each chunk of ``doc``."""
        out = []
        for text, section_meta in doc.sections or [(doc.text, {})]:
            for chunk in chunk_text(text, self.chunking, kind_hint=doc.kind_hint):
                meta = {**doc.metadata, **section_meta, **chunk.metadata}
                heading = chunk.metadata.get("section")
                out.append((chunk, meta, f"{heading}\n{chunk.text}" if heading else chunk.text))
        return out

    def _content_hash(self, doc: Document) -> str:
        data = json.dumps([doc.text, doc.metadata, self.chunking.to_dict(), self.embedder.name], sort_keys=True,
                          default=str)
        digest = hashlib.sha256(data.encode("utf-8", "surrogatepass"))
        if doc.vector is not None:
            digest.update(np.asarray(doc.vector, dtype=np.float32).tobytes())
        return digest.hexdigest()

    # ------------------------------------------------------------------ delete
    def delete(self, document_id: str) -> bool:
        """Remove a document from the store, the lexical index and the vector index."""
        if not isinstance(document_id, str) or not document_id:
            raise InvalidArgument("delete takes a document id (a non-empty string)")
        with self._lock:
            self._sync_index()
            outcome = self.store.delete(document_id)
            if outcome is None:
                return False
            removed, generation = outcome
            if self.index is not None:
                self.index.remove(removed)
            self._saved(generation)
        self._publish("rag.deleted", {"document_id": document_id, "chunks": len(removed)})
        return True

    # ------------------------------------------------------------------ search
    @staticmethod
    def check_query(query: Any, k: Any, mode: Any) -> tuple[int, str]:
        if mode not in MODES:
            raise InvalidArgument(f"unknown search mode {mode!r}; use one of {', '.join(MODES)}", details={"mode": mode})
        if isinstance(k, float) and k.is_integer():
            k = int(k)
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
            raise InvalidArgument(f"k must be an integer from 1 to {MAX_K}, got {k!r}", details={"k": k})
        if isinstance(query, str):
            if not query.strip():
                raise InvalidArgument("the search query is empty; pass the text to search for")
        elif isinstance(query, (list, np.ndarray)):
            if mode != "vector":
                raise InvalidArgument("a query vector needs mode = 'vector' (lexical search needs text)")
        else:
            raise InvalidArgument(f"the search query must be text (or a vector with mode = 'vector'), "
                                  f"got {lua_type_name(query)}")
        return k, mode

    def needs_embedding(self, query: Any, mode: str) -> bool:
        return isinstance(query, str) and mode != "lexical"

    async def asearch(self, query: Any, k: int = 5, filter: dict[str, Any] | None = None,
                      mode: str = "hybrid") -> list[dict[str, Any]]:
        """The ``k`` best chunks: ``{text, score, document_id, chunk_id, chunk_index, metadata}``."""
        k, mode = self._checked(query, k, filter, mode)
        return await self.pipeline.arun(self._search_operation(query, k, filter, mode),
                                        lambda op: self._embed_and_search(query, k, filter, mode))

    async def _embed_and_search(self, query: Any, k: int, filter: dict[str, Any] | None,
                                mode: str) -> list[dict[str, Any]]:
        vector = None
        if self.needs_embedding(query, mode):
            if self.index is None:  # nothing ingested yet: no dimension, nothing to find
                return []
            vector = (await self.embedder.embed([query]))[0]
        return await self._off_loop(self._search, query, k, filter, mode, vector)

    def search(self, query: Any, k: int = 5, filter: dict[str, Any] | None = None,
               mode: str = "hybrid") -> list[dict[str, Any]]:
        return _run(self.asearch(query, k, filter, mode))

    def search_now(self, query: Any, k: int = 5, filter: dict[str, Any] | None = None, mode: str = "hybrid",
                   vector: Any = None) -> list[dict[str, Any]]:
        """Search without awaiting anything: ``vector`` is the query's embedding (or ``query``
        is a vector), or mode is lexical."""
        k, mode = self._checked(query, k, filter, mode)
        return self.pipeline.run(self._search_operation(query, k, filter, mode),
                                 lambda op: self._search(query, k, filter, mode, vector))

    def _checked(self, query: Any, k: Any, filter: Any, mode: Any) -> tuple[int, str]:
        k, mode = self.check_query(query, k, mode)
        if filter is not None and not isinstance(filter, dict):
            raise InvalidArgument("filter must be a table of metadata field = value")
        return k, mode

    def _search_operation(self, query: Any, k: int, filter: dict[str, Any] | None, mode: str) -> Operation:
        return Operation(RAG_SEARCH, self.name, {"collection": self.name, "tenant": self.tenant, "query": query,
                                                 "k": k, "mode": mode, "filter": filter})

    def _search(self, query: Any, k: int, filter: dict[str, Any] | None, mode: str,
                vector: Any) -> list[dict[str, Any]]:
        if vector is None and not isinstance(query, str):
            vector = query
        with self._lock:
            self._sync_index()
            allowed = self.store.matching_ids(filter) if filter else None
            if mode == "lexical":
                ranked = self.store.lexical(query, k, filter)
                hits = self._hits(ranked, "lexical_score")
            elif mode == "vector":
                ranked = self._vector_search(vector, k, allowed)
                hits = self._hits(ranked, "vector_score")
            else:
                depth = max(4 * k, 50)
                dense = self._vector_search(vector, depth, allowed)
                sparse = self.store.lexical(query, depth, filter)
                hits = self._fuse(dense, sparse, k)
        return hits

    def _vector_search(self, vector: Any, k: int, allowed: list[int] | None) -> list[tuple[int, float]]:
        if self.index is None:
            return []
        query = self._vector(vector, "the query vector")
        if len(query) != self.index.dim:
            raise InvalidArgument(f"the query vector has {len(query)} dimensions, the collection {self.index.dim}",
                                  details={"expected": self.index.dim, "got": len(query)})
        return self.index.search(query, k, allowed)

    def _hits(self, ranked: list[tuple[int, float]], score_name: str) -> list[dict[str, Any]]:
        rows = self.store.chunks([cid for cid, _ in ranked])
        hits = []
        for cid, score in ranked:
            row = rows.get(cid)
            if row is not None:
                hits.append({"text": row.text, "score": score, "document_id": row.document_id, "chunk_id": cid,
                             "chunk_index": row.index, "metadata": row.metadata, score_name: score})
        return hits

    def _fuse(self, dense: list[tuple[int, float]], sparse: list[tuple[int, float]], k: int) -> list[dict[str, Any]]:
        fused: dict[int, float] = {}
        for ranking in (dense, sparse):
            for rank, (cid, _) in enumerate(ranking, 1):
                fused[cid] = fused.get(cid, 0.0) + 1.0 / (RRF_K + rank)
        best = sorted(fused.items(), key=lambda item: (-item[1], item[0]))[:k]
        hits = self._hits(best, "rrf_score")
        vec, lex = dict(dense), dict(sparse)
        for hit in hits:
            cid = hit["chunk_id"]
            if cid in vec:
                hit["vector_score"] = vec[cid]
            if cid in lex:
                hit["lexical_score"] = lex[cid]
            del hit["rrf_score"]
        return hits

    # ------------------------------------------------------------------ index upkeep
    def _vector(self, value: Any, what: str) -> np.ndarray:
        try:
            array = np.asarray(value, dtype=np.float32).reshape(-1)
        except (TypeError, ValueError):
            raise InvalidArgument(f"{what} must be a list of numbers") from None
        if array.size == 0 or not np.all(np.isfinite(array)):
            raise InvalidArgument(f"{what} must be a non-empty list of finite numbers")
        norm = float(np.linalg.norm(array))
        return array / norm if norm > 0 else array

    def _ensure_index(self, dim: int | None) -> None:
        if self.index is None:
            if dim is None:
                raise AikitError("no embedding dimension known", code="internal_error")
            self.index = self._new_index(dim, self._params())
            self.store.set_meta(dim=dim)

    def _params(self) -> IndexParams:
        return self.index.params if self.index is not None else self._pending_params

    def _sync_index(self) -> None:
        """Bring the vector index in step with the store (after another process wrote to it,
        or at open): load the saved graph if it matches, else rebuild from the stored vectors."""
        generation = self.store.generation()
        if generation == self._generation:
            return
        with self._lock:
            if self.index is None:
                dim = self.store.meta().get("dim")
                if not dim:
                    self._generation = generation
                    return
                self.index = self._new_index(int(dim), self._params())
            fresh = self._new_index(self.index.dim, self.index.params)
            if not fresh.load(self.directory / INDEX_FILE, generation):
                for ids, vectors in self.store.vectors():
                    fresh.add(ids, vectors)
                if fresh.kind == "hnsw":
                    fresh.save(self.directory / INDEX_FILE, generation)
            self.index = fresh
            self._generation = generation

    def _saved(self, generation: int) -> None:
        if self.index is not None:
            self.index.save(self.directory / INDEX_FILE, generation)
        self._generation = generation

    # ------------------------------------------------------------------ info
    def stats(self) -> dict[str, Any]:
        with self._lock:
            self._sync_index()
            counts = self.store.counts()
            sizes = {p.name: p.stat().st_size for p in self.directory.iterdir() if p.is_file()}
            index = self.index.stats() if self.index is not None else {"kind": "exact", "vectors": 0,
                                                                        **self._params().to_dict()}
        return {
            "name": self.name, "tenant": self.tenant, **counts,
            "embedder": {"name": self.embedder.name, "dim": self.index.dim if self.index else self.embedder.dim,
                         "description": self.embedder.description},
            "index": index,
            "lexical": getattr(self.store, "lexical_description", LEXICAL_DESCRIPTION), "chunking": self.chunking.to_dict(),
            "bytes": sum(sizes.values()), "files": sizes, "path": str(self.directory),
        }

    def documents(self) -> list[dict[str, Any]]:
        return self.store.documents()

    def as_tool(self, name: str | None = None, description: str | None = None) -> Any:
        """A tool an agent can call to search this collection (``search_<name>``)."""
        from ..tools import Tool

        collection = self

        async def search(query: str, k: int = 5) -> list[dict[str, Any]]:
            hits = await collection.asearch(query, k=k)
            return [{"text": h["text"], "document_id": h["document_id"], "chunk_id": h["chunk_id"],
                     "score": round(h["score"], 4), "metadata": h["metadata"]} for h in hits]

        tool_name = name or tool_name_for(self.name, self.tenant)
        return Tool(
            name=tool_name,
            description=description or (f"Search the document collection {self.name!r} (hybrid: meaning and keywords) "
                                        "and return the most relevant passages with their document id and chunk id. "
                                        "Use it to answer questions from these documents; quote what you use and cite "
                                        "its chunk id."),
            fn=search, category="rag", security="read", source="rag", is_async=True,
            parameters={"type": "object", "additionalProperties": False, "required": ["query"],
                        "properties": {"query": {"type": "string", "description": "What to look for."},
                                       "k": {"type": "integer", "minimum": 1, "maximum": 20, "default": 5,
                                             "description": "How many passages to return."}}},
        )

    def close(self) -> None:
        with self._lock:
            self.store.close()

    def _publish(self, topic: str, payload: dict[str, Any]) -> None:
        if self.events is not None:
            self.events.publish(topic, {"collection": self.name, "tenant": self.tenant, **payload}, source="rag")


def tool_name_for(name: str, tenant: str | None) -> str:
    raw = f"search_{tenant}_{name}" if tenant else f"search_{name}"
    return "".join(c if c.isalnum() or c == "_" else "_" for c in raw)


def _run(coro: Any) -> Any:
    """Run ``coro`` to completion from synchronous code (not from inside an event loop)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    coro.close()
    raise AikitError("called a synchronous RAG method inside an event loop; await the a-prefixed twin "
                     "(aingest, asearch, aingest_path) instead", code="internal_error")

