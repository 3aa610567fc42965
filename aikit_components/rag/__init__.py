"""Retrieval over your own documents: collections (optionally per tenant), chunking, a real local
embedding model, HNSW and BM25, hybrid search. Offline by default.

```python
from aikit_components.rag import RAG
rag = RAG(Path("data/rag"))
docs = rag.collection("docs", tenant="acme")
docs.ingest([{"id": "a", "text": "Paris is the capital of France.", "metadata": {"lang": "en"}}])
docs.search("French capital", k=3, filter={"lang": "en"}, mode="hybrid")
```

Layout: ``<root>/<tenant>/<collection>/`` (``store.sqlite``, ``vectors.hnsw``) and
``<root>/<tenant>/embeddings.sqlite`` (the embedding cache); collections without a tenant live
under ``<root>/_shared/``. The tenant is part of the path, so two tenants' collections of the
same name share no file and a search can only see its own tenant's chunks.

Ingests and searches run through an operation pipeline (``pipeline``: the process's, from
:class:`~aikit_components.components.Components`; by default one that publishes the events).
"""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import Conflict, InvalidArgument, NotFound

if TYPE_CHECKING:
    from ..operations import Pipeline

__all__ = ["LOCAL_DESCRIPTION", "RAG", "embedder_description"]

LOCAL_MODEL = "all-MiniLM-L6-v2"
LOCAL_DESCRIPTION = "local all-MiniLM-L6-v2 (CPU, offline)"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SHARED = "_shared"
COLLECTION_OPTIONS = ("tenant", "embedder", "chunker", "chunk_size", "chunk_overlap", "chunk_unit", "M",
                      "ef_construction", "ef_search", "exact_threshold", "create")


def once(loader: Callable[[], Any]) -> Callable[[], Any]:
    """``loader()`` run on the first call only (thread-safe); later calls return its result.
    For what is loaded once per process: the embedding model, its tokenizer."""
    lock = threading.Lock()
    box: list[Any] = []

    def get() -> Any:
        if not box:
            with lock:
                if not box:
                    box.append(loader())
        return box[0]

    return get


def _checked_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value) or value in (".", ".."):
        raise InvalidArgument(f"{what} must be 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit; "
                              f"got {value!r}", details={"name": value})
    return value


def embedder_description(spec: str) -> str:
    """What an embedder setting means, for docs and ``inspect``."""
    if spec == "local":
        return LOCAL_DESCRIPTION
    return f"embedding endpoint {spec} (from aikit.toml [providers])"


class RAG:
    """The collections under one root directory (see the module docstring). Thread-safe."""

    def __init__(self, root: Path, *, config: Any = None, events: Any = None,
                 models: Callable[[], Any] | None = None, pipeline: Pipeline | None = None,
                 storage: Any = None) -> None:
        from ..operations.standard import standard_pipeline
        from ..storage.settings import StorageSettings

        self.root = Path(root)
        self.config = config
        self.events = events
        self.models = models
        self.pipeline = pipeline if pipeline is not None else standard_pipeline(events)
        self._open: dict[tuple[str, str], Any] = {}
        self._caches: dict[str, Any] = {}
        self._clients: list[Any] = []
        self._lock = threading.RLock()
        #: ``[storage]``: with ``rag = "postgres"`` collections live in PostgreSQL (rag/pg_store.py)
        self.storage = storage if storage is not None else StorageSettings.from_config(config)
        self._pg: Any = None

    @property
    def in_postgres(self) -> bool:
        return self.storage.rag == "postgres"

    def _database(self) -> Any:
        """The PostgreSQL pool every collection of this RAG shares (opened on first use)."""
        if self._pg is None:
            self._pg = self.storage.database()
        return self._pg

    def setting(self, key: str) -> Any:
        from ..config import DEFAULTS

        default = DEFAULTS["rag"][key]
        if self.config is None:
            return default
        value = self.config.get(f"rag.{key}", default)
        return default if value is None else value

    # ------------------------------------------------------------------ collections
    def collection(self, name: str, tenant: str | None = None, **opts: Any) -> Any:
        """Open (creating it unless ``create=False``) the collection ``name`` of ``tenant``.
        Options: ``embedder`` ("local" or "<provider>/<model>"; fixed once the collection has
        chunks), ``chunker``, ``chunk_size``, ``chunk_overlap``, ``chunk_unit`` (apply to later
        ingests), ``M``, ``ef_construction`` (apply when the graph is built), ``ef_search``,
        ``exact_threshold``."""
        from .chunking import ChunkOptions
        from .collection import Collection
        from .index import IndexParams

        unknown = sorted(k for k in opts if k not in COLLECTION_OPTIONS)
        if unknown:
            raise InvalidArgument(f"unknown collection option(s) {', '.join(unknown)} "
                                  f"(known: {', '.join(COLLECTION_OPTIONS)})")
        name = _checked_name(name, "a collection name")
        folder = SHARED if tenant is None else _checked_name(tenant, "a tenant name")
        create = opts.pop("create", True)
        key = (folder, name)
        directory = self.root / folder / name
        with self._lock:
            existing = self._open.get(key)
            if existing is None and not create and not self._exists(folder, name, directory):
                raise NotFound(f"no collection {name!r}" + (f" for tenant {tenant!r}" if tenant else ""),
                               details={"collection": name, "tenant": tenant})
            chunking = ChunkOptions(str(opts.get("chunker", self.setting("chunker"))),
                                    _int(opts.get("chunk_size", self.setting("chunk_size"))),
                                    _int(opts.get("chunk_overlap", self.setting("chunk_overlap"))),
                                    str(opts.get("chunk_unit", self.setting("chunk_unit"))))
            params = IndexParams(*(_int(opts.get(f, self.setting(f))) for f in IndexParams.FIELDS))
            if existing is not None:
                if "embedder" in opts and opts["embedder"] != self._spec_of(existing.embedder.name):
                    raise Conflict(f"collection {name!r} is open with embedder {existing.embedder.name}",
                                   details={"embedder": existing.embedder.name})
                if any(f in opts for f in ("chunker", "chunk_size", "chunk_overlap", "chunk_unit")):
                    existing.chunking = chunking
                if "ef_search" in opts and existing.index is not None:
                    existing.index.set_ef(params.ef_search)
                return existing
            directory.mkdir(parents=True, exist_ok=True)
            stored = self._stored_embedder(folder, name, directory)
            spec = opts.get("embedder") or (self._spec_of(stored) if stored else self.setting("embedder"))
            requested = f"local/{LOCAL_MODEL}" if spec == "local" else str(spec)
            if stored and stored != requested:
                self._replace_embedder(directory, name, stored, requested, self._open_store(folder, name))
            embedder = self._embedder(str(spec), folder)
            store, index_factory = None, None
            if self.in_postgres:
                from .pg_store import PgVectorIndex

                store = self._open_store(folder, name)
                index_factory = lambda dim, p, store=store: PgVectorIndex(store, dim, p)  # noqa: E731
            collection = Collection(name, tenant, directory, embedder, chunking=chunking, params=params,
                                    events=self.events, pipeline=self.pipeline, store=store,
                                    index_factory=index_factory)
            self._open[key] = collection
            return collection

    def list(self, tenant: str | None = None) -> list[dict[str, Any]]:
        """The collections of ``tenant`` (or the shared ones), with their sizes."""
        folder = SHARED if tenant is None else _checked_name(tenant, "a tenant name")
        base = self.root / folder
        out = []
        if self.in_postgres:
            from .pg_store import list_collections

            for name in list_collections(self._database(), folder):
                stats = self.collection(name, tenant).stats()
                out.append({k: stats[k] for k in ("name", "tenant", "documents", "chunks", "bytes")})
        elif base.is_dir():
            for entry in sorted(base.iterdir()):
                if entry.is_dir() and (entry / "store.sqlite").exists():
                    stats = self.collection(entry.name, tenant).stats()
                    out.append({k: stats[k] for k in ("name", "tenant", "documents", "chunks", "bytes")})
        return out

    def drop(self, name: str, tenant: str | None = None) -> bool:
        """Delete a collection and its files; False if it did not exist."""
        name = _checked_name(name, "a collection name")
        folder = SHARED if tenant is None else _checked_name(tenant, "a tenant name")
        with self._lock:
            collection = self._open.pop((folder, name), None)
            if collection is not None:
                collection.close()
            directory = self.root / folder / name
            if self.in_postgres:
                from .pg_store import drop_collection

                existed = drop_collection(self._database(), folder, name)
                shutil.rmtree(directory, ignore_errors=True)
                if not existed:
                    return False
            elif not directory.exists():
                return False
            else:
                shutil.rmtree(directory)
        if self.events is not None:
            self.events.publish("rag.dropped", {"collection": name, "tenant": tenant}, source="rag")
        return True

    def _exists(self, folder: str, name: str, directory: Path) -> bool:
        if self.in_postgres:
            from .pg_store import list_collections

            return name in list_collections(self._database(), folder)
        return directory.exists()

    def _stored_embedder(self, folder: str, name: str, directory: Path) -> str | None:
        if self.in_postgres:
            from .pg_store import stored_embedder

            return stored_embedder(self._database(), folder, name)
        return _stored_embedder(directory)

    def _open_store(self, folder: str, name: str) -> Any:
        """The PostgreSQL store of a collection (None with the SQLite files)."""
        if not self.in_postgres:
            return None
        from .pg_store import PgStore, collection_key

        return PgStore(self._database(), collection_key(folder, name))

    @staticmethod
    def _replace_embedder(directory: Path, name: str, stored: str, requested: str, pg_store: Any = None) -> None:
        """Switch an empty collection to another embedder; a filled one cannot switch."""
        from .store import Store

        store = pg_store if pg_store is not None else Store(directory / "store.sqlite")
        try:
            if store.counts()["chunks"]:
                raise Conflict(f"collection {name!r} was embedded with {stored}, not {requested}; its vectors cannot "
                               "be compared. Use another collection, or RAG.drop it first",
                               details={"stored": stored, "requested": requested})
            store.set_meta(embedder=requested, dim=None)
        finally:
            store.close()

    # ------------------------------------------------------------------ embedders
    @staticmethod
    def _spec_of(embedder_name: str) -> str:
        return "local" if embedder_name.startswith("local/") else embedder_name

    def _embedder(self, spec: str, folder: str) -> Any:
        from .embedders import CachedEmbedder, EmbeddingCache, HTTPEmbedder, LocalEmbedder

        if spec == "local":
            inner: Any = LocalEmbedder()
        else:
            provider, _, model = spec.partition("/")
            if not provider or not model:
                raise InvalidArgument(f"embedder must be 'local' or '<provider>/<model>', got {spec!r}")
            if self.models is None:
                raise InvalidArgument(f"embedder {spec!r} needs the model registry (providers from aikit.toml)")
            registry = self.models()
            client = registry.embeddings(provider, model)
            self._clients.append(client)
            inner = HTTPEmbedder(client, spec, registry.provider_type(provider))
        cache = None
        if self.setting("embedding_cache"):
            cache = self._caches.get(folder)
            if cache is None:
                cache = self._caches[folder] = EmbeddingCache(self.root / folder / "embeddings.sqlite")
        return CachedEmbedder(inner, cache)

    def close(self) -> None:
        with self._lock:
            for collection in self._open.values():
                collection.close()
            for cache in self._caches.values():
                cache.close()
            self._open.clear()
            self._caches.clear()
            if self._pg is not None:
                self._pg.close()
                self._pg = None

    async def aclose(self) -> None:
        clients, self._clients = self._clients, []
        for client in clients:
            await client.aclose()
        self.close()


def _int(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _stored_embedder(directory: Path) -> str | None:
    import json
    import sqlite3

    path = directory / "store.sqlite"
    if not path.exists():
        return None
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'embedder'").fetchone()
        finally:
            db.close()
    except sqlite3.Error:
        return None
    return json.loads(row[0]) if row else None

