"""``RAG``: retrieval over your own documents, from Lua.

``RAG.collection(name, opts)`` returns a collection object whose methods (``col:ingest``,
``col:search``, ...) are pre-bound functions. Work that may embed text (ingest, a text query in
vector or hybrid mode) runs on the I/O loop and the Lua thread waits for it interruptibly (the
local model itself runs in a worker thread); everything else (lexical search, search by vector,
delete, stats) is local SQLite/numpy work done directly on the Lua thread, as ``State`` does.
"""

from __future__ import annotations

import itertools
from typing import Any

from aikit_components.components import Components
from aikit_components.errors import InvalidArgument, NotFound
from aikit_components.rag import COLLECTION_OPTIONS, embedder_description

from ..convert import lua_type
from ..engine import LuaEngine
from . import expose
from ._util import lua, name_arg, options, py


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
                      "Methods: col:ingest(docs), col:ingest_file(path), col:search(query [, {k, filter, mode}]), "
                      "col:delete(id), col:stats(), col:documents().\n"
                      "Example: local col = RAG.collection('notes', {tenant = 'acme'})",
        "list": "RAG.list([{tenant = ...}]) -> {{name, tenant, documents, chunks, bytes}, ...}\n\nThe collections of a "
                "tenant (or the shared ones).",
        "drop": "RAG.drop(name [, {tenant = ...}]) -> existed\n\nDeletes a collection and all its files.",
    }


_LUA_COLLECTION = r"""
local ingest, ingest_file, search, delete, stats, documents = ...
local mt = {}
mt.__index = {
  ingest = function(self, docs) return ingest(self.id, docs) end,
  ingest_file = function(self, path) return ingest_file(self.id, path) end,
  search = function(self, query, opts)
    if type(query) == "table" then  -- a vector: packed as float32 in C, far cheaper than converting 384 numbers
      local ok, packed = pcall(string.pack, string.rep("f", #query), table.unpack(query))
      if ok and #query > 0 then return search(self.id, nil, opts, packed) end
    end
    return search(self.id, query, opts)
  end,
  delete = function(self, id) return delete(self.id, id) end,
  stats = function(self) return stats(self.id) end,
  documents = function(self) return documents(self.id) end,
}
mt.__name = "aikit.Collection"
mt.__tostring = function(self)
  return "collection " .. self.name .. (self.tenant and (" (tenant " .. self.tenant .. ")") or "")
end
return function(id, name, tenant) return setmetatable({ id = id, name = name, tenant = tenant, kind = "collection" }, mt) end
"""

SEARCH_OPTIONS = ("k", "filter", "mode")


class CollectionTable:
    """Collections opened from Lua, by the id their Lua object carries."""

    def __init__(self) -> None:
        self.collections: dict[int, Any] = {}
        self.ids: dict[int, int] = {}  # id(Collection) -> Lua id, so reopening gives the same id
        self.counter = itertools.count(1)

    def get(self, collection_id: Any) -> Any:
        collection = self.collections.get(collection_id)
        if collection is None:
            raise NotFound(f"no collection {collection_id!r} (was it dropped?)")
        return collection

    def add(self, collection: Any) -> int:
        cid = self.ids.get(id(collection))
        if cid is None:
            cid = self.ids[id(collection)] = next(self.counter)
            self.collections[cid] = collection
        return cid

    def forget(self, collection: Any) -> None:
        cid = self.ids.pop(id(collection), None)
        if cid is not None:
            self.collections.pop(cid, None)

    def from_lua(self, value: Any) -> Any:
        """The collection behind a Lua collection object (None if ``value`` is not one)."""
        if lua_type(value) != "table" or value[b"kind"] != b"collection":
            return None
        return self.get(value[b"id"])


def install(engine: LuaEngine, components: Components, scope: Any) -> CollectionTable:
    table = CollectionTable()

    def tenant_of(opts: dict[str, Any]) -> str | None:
        tenant = opts.get("tenant")
        if tenant is not None and not isinstance(tenant, str):
            raise InvalidArgument(f"tenant must be a string, got {type(tenant).__name__}")
        return tenant

    def collection(name: Any, opts: Any = None) -> Any:
        o = options(engine, opts, COLLECTION_OPTIONS, "RAG.collection")
        col = components.rag.collection(name_arg(name, "RAG.collection: the name"), tenant_of(o),
                                        **{k: v for k, v in o.items() if k != "tenant"})
        tenant = col.tenant.encode() if col.tenant else None
        return make_collection(table.add(col), col.name.encode(), tenant)

    def list_(opts: Any = None) -> Any:
        return lua(engine, components.rag.list(tenant_of(options(engine, opts, ("tenant",), "RAG.list"))))

    def drop(name: Any, opts: Any = None) -> bool:
        tenant = tenant_of(options(engine, opts, ("tenant",), "RAG.drop"))
        collection_name = name_arg(name, "RAG.drop: the name")
        for col in list(table.collections.values()):
            if col.name == collection_name and col.tenant == tenant:
                table.forget(col)
        return components.rag.drop(collection_name, tenant)

    def ingest(cid: Any, docs: Any) -> Any:
        col = table.get(cid)
        if docs is None:
            raise InvalidArgument("col:ingest takes a string, a list of strings, or a list of {id, text, metadata} tables")
        return lua(engine, engine.wait(col.aingest(py(engine, docs))))

    def ingest_file(cid: Any, path: Any) -> Any:
        from aikit_components.tools._fsutil import checked

        col = table.get(cid)
        ctx = scope.context
        resolved = checked(ctx, name_arg(path, "col:ingest_file: the path"))
        return lua(engine, engine.wait(col.aingest_path(resolved, check=lambda p: checked(ctx, p))))

    def search(cid: Any, query: Any, opts: Any = None, packed: Any = None) -> Any:
        col = table.get(cid)
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
                                  f"{lua_type(query) or type(query).__name__}")
        k, mode = col.check_query(q, k, mode)
        if col.needs_embedding(q, mode):
            hits = engine.wait(col.asearch(q, k, filter_ or None, mode))
        else:
            hits = col.search_now(q, k, filter_ or None, mode)
        return lua(engine, hits)

    def delete(cid: Any, doc_id: Any) -> bool:
        return table.get(cid).delete(name_arg(doc_id, "col:delete: the document id"))

    def stats(cid: Any) -> Any:
        return lua(engine, table.get(cid).stats())

    def documents(cid: Any) -> Any:
        return lua(engine, table.get(cid).documents())

    wrap, bind = engine.host.wrap, engine.internal[b"bind"]
    make_collection = engine.compile_trusted(_LUA_COLLECTION, "collection")(
        *(bind(wrap(f)) for f in (ingest, ingest_file, search, delete, stats, documents)))
    embedder = str(components.config.get("rag.embedder", "local") or "local")
    expose(engine, "RAG", {"collection": collection, "list": list_, "drop": drop}, docs(embedder), convert=False)
    return table
