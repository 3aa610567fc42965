"""``RAG``: retrieval over your own documents, from Lua.

``RAG.collection(name, opts)`` returns a collection object whose methods (``col:ingest``,
``col:search``, ...) are pre-bound functions. Work that may embed text (ingest, a text query in
vector or hybrid mode) runs on the I/O loop and the Lua thread waits for it interruptibly (the
local model itself runs in a worker thread); everything else (lexical search, search by vector,
delete, stats) is local SQLite/numpy work done directly on the Lua thread, as ``State`` does.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from aikit_components.components import Components
from aikit_components.errors import InvalidArgument
from aikit_components.rag import COLLECTION_OPTIONS, embedder_description

from ...output import TerminalOutput
from ..convert import lua_type
from ..engine import LuaEngine
from . import expose
from ._util import lua, lua_kind, name_arg, options, py
from .handles import HandleKind

if TYPE_CHECKING:
    from aikit_components.rag.collection import Collection


def docs(embedder: str) -> dict[str, str]:
    """The inspect texts; they name the embedder in use."""
    using = embedder_description(embedder)
    return {
        "": "RAG\n\nRetrieval over your own documents: collections (optionally per tenant), chunking, embeddings, "
            f"HNSW and BM25, hybrid search.\nEmbedder in use: {using}.\nLexical retriever: BM25 (SQLite FTS5). "
            "Hybrid = reciprocal rank fusion of both.",
        "collection": "RAG.collection(name [, {tenant, embedder, chunker, chunk_size, chunk_overlap, chunk_unit, M, "
                      "ef_construction, ef_search, exact_threshold}]) -> col\n\nOpens (or creates) a collection. "
                      f"Default embedder: {using}. chunker: auto | fixed | sentence | markdown | code.\n"
                      "Methods: col:ingest(docs), col:ingest_file(path [, {executor = 'ray'}]), "
                      "col:search(query [, {k, filter, mode}]), "
                      "col:delete(id), col:stats(), col:documents().\n"
                      "Example: local col = RAG.collection('notes', {tenant = 'acme'})",
        "list": "RAG.list([{tenant = ...}]) -> {{name, tenant, documents, chunks, bytes}, ...}\n\nThe collections of a "
                "tenant (or the shared ones).",
        "drop": "RAG.drop(name [, {tenant = ...}]) -> existed\n\nDeletes a collection and all its files.",
    }


TOSTRING = r"""function(self)
  return "collection " .. self.name .. (self.tenant and (" (tenant " .. self.tenant .. ")") or "")
end"""
# A vector query is packed as float32 in C, far cheaper than converting 384 numbers.
SEARCH_METHOD = r"""function(self, query, opts)
    if type(query) == "table" then
      local ok, packed = pcall(string.pack, string.rep("f", #query), table.unpack(query))
      if ok and #query > 0 then return f.search(self.id, nil, opts, packed) end
    end
    return f.search(self.id, query, opts)
  end"""

SEARCH_OPTIONS = ("k", "filter", "mode")


def ingest_summary(result: dict[str, Any], elapsed_s: float) -> str:
    """One line on a finished ingestion: documents, chunks, time and chunks per second."""
    chunks = int(result.get("chunks", 0) or 0)
    rate = f", {chunks / elapsed_s:,.0f} chunks/s" if elapsed_s > 0 and chunks else ""
    unchanged = f", {result.get('unchanged')} unchanged" if result.get("unchanged") else ""
    return (f"aikit: ingested {result.get('documents', 0)} document(s), {chunks} chunk(s){unchanged} "
            f"in {elapsed_s:.1f} s{rate}")


def install(engine: LuaEngine, components: Components, scope: Any) -> HandleKind[Collection]:

    def tenant_of(opts: dict[str, Any]) -> str | None:
        tenant = opts.get("tenant")
        if tenant is not None and not isinstance(tenant, str):
            raise InvalidArgument(f"tenant must be a string, got {lua_kind(tenant)}")
        return tenant

    def collection(name: Any, opts: Any = None) -> Any:
        o = options(engine, opts, COLLECTION_OPTIONS, "RAG.collection")
        col = components.rag.collection(name_arg(name, "RAG.collection: the name"), tenant_of(o),
                                        **{k: v for k, v in o.items() if k != "tenant"})
        tenant = col.tenant.encode() if col.tenant else None
        return handles.new(col, name=col.name.encode(), tenant=tenant, kind=b"collection")

    def list_(opts: Any = None) -> Any:
        return lua(engine, components.rag.list(tenant_of(options(engine, opts, ("tenant",), "RAG.list"))))

    def drop(name: Any, opts: Any = None) -> bool:
        tenant = tenant_of(options(engine, opts, ("tenant",), "RAG.drop"))
        collection_name = name_arg(name, "RAG.drop: the name")
        handles.release_where(lambda col: col.name == collection_name and col.tenant == tenant)
        return components.rag.drop(collection_name, tenant)

    def ingest(col: Collection, docs: Any) -> Any:
        if docs is None:
            raise InvalidArgument("col:ingest takes a string, a list of strings, or a list of {id, text, metadata} tables")
        return lua(engine, engine.wait(col.aingest(py(engine, docs))))

    def ingest_file(col: Collection, path: Any, opts: Any = None) -> Any:
        from aikit_components.tools import checked_path as checked

        o = options(engine, opts, ("executor",), "col:ingest_file")
        ctx = scope.context
        resolved = checked(ctx, name_arg(path, "col:ingest_file: the path"))
        embedder = None
        executor = o.get("executor", "local")
        if executor == "ray":
            from aikit_components.distributed.embedding import fanned_out

            embedder = fanned_out(col.embedder, components)
        elif executor != "local":
            raise InvalidArgument(f"col:ingest_file: executor must be 'local' or 'ray', got {executor!r}")
        terminal = isinstance(engine.host.output, TerminalOutput)
        if terminal:  # a long ingestion shows that it runs, then how fast it went
            engine.host.output.write("stderr", f"aikit: ingesting {resolved} (reading, chunking, embedding) ...\n")
        started = time.monotonic()
        result = engine.wait(col.aingest_path(resolved, check=lambda p: checked(ctx, p), embedder=embedder))
        if terminal:
            engine.host.output.write("stderr", ingest_summary(result, time.monotonic() - started) + "\n")
        return lua(engine, result)

    def search(col: Collection, query: Any, opts: Any = None, packed: Any = None) -> Any:
        o = options(engine, opts, SEARCH_OPTIONS, "col:search")
        k, mode, filter_ = o.get("k", 5), o.get("mode", "hybrid"), o.get("filter")
        if filter_ is not None and not isinstance(filter_, dict):
            raise InvalidArgument("col:search: filter must be a table of metadata field = value")
        if packed is not None:  # a vector table, packed by the Lua method as native float32
            import numpy as np  # not at module level: the kernel starts without numpy

            q: Any = np.frombuffer(packed, dtype=np.float32)
            mode = o.get("mode", "vector")
        elif isinstance(query, bytes):
            q = query.decode("utf-8", "surrogateescape")
        elif lua_type(query) == "table":
            q = list(query.values())
            if "mode" not in o:
                mode = "vector"
        else:
            raise InvalidArgument(f"col:search: the query must be a string (or a vector table), got "
                                  f"{lua_kind(query)}")
        k, mode = col.check_query(q, k, mode)
        if col.needs_embedding(q, mode):
            hits = engine.wait(col.asearch(q, k, filter_ or None, mode))
        else:
            hits = col.search_now(q, k, filter_ or None, mode)
        return lua(engine, hits)

    def delete(col: Collection, doc_id: Any) -> bool:
        return col.delete(name_arg(doc_id, "col:delete: the document id"))

    def stats(col: Collection) -> Any:
        return lua(engine, col.stats())

    def documents(col: Collection) -> Any:
        return lua(engine, col.documents())

    handles: HandleKind[Collection] = HandleKind(
        engine, "aikit.Collection", tostring=TOSTRING,
        missing=lambda cid: f"no collection {cid!r} (was it dropped?)",
        functions={"ingest": ingest, "ingest_file": ingest_file, "search": search, "delete": delete, "stats": stats,
                   "documents": documents},
        lua_methods={"search": SEARCH_METHOD})
    embedder = str(components.config.get("rag.embedder", "local") or "local")
    expose(engine, "RAG", {"collection": collection, "list": list_, "drop": drop}, docs(embedder), convert=False)
    return handles
