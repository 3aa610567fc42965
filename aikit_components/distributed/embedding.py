"""RAG ingestion with its embedding fanned out to Ray workers (``col:ingest_file(dir, {executor =
"ray"})``).

Only the embedding moves: the caller reads and chunks the files, looks the chunks up in the
collection's embedding cache, sends the misses to the workers in batches of
:data:`BATCH_SIZE` texts (one Ray task each, all at once), and writes the vectors to the
collection's own store, as a local ingest does. Each worker builds the collection's embedder
from its spec (``local``: the model on the worker's CPU; ``provider/model``: the endpoint from
the shipped config) once per process.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np

from .cluster import connect
from .worker import ShippedConfig, worker_components

BATCH_SIZE = 256
_embedders: dict[tuple[str, str], Any] = {}
_embedders_lock = threading.Lock()
_remote: dict[int, Any] = {}


class RayEmbedder:
    """An embedder with the name and size of ``inner`` whose work is done by Ray workers."""

    def __init__(self, inner: Any, components: Any, batch_size: int = BATCH_SIZE) -> None:
        self.name: str = inner.name
        self.dim: int | None = inner.dim
        self.description = f"{inner.description}, fanned out to Ray workers"
        self.spec = "local" if self.name.startswith("local/") else self.name
        self.batch_size = batch_size
        self._ray = connect(components.config.get("ray.address", "") or None)
        self._shipped_ref = self._ray.put(ShippedConfig.of(components))

    async def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim or 0), dtype=np.float32)
        task = _remote_embed(self._ray)
        refs = [task.remote(self.spec, texts[i:i + self.batch_size], self._shipped_ref)
                for i in range(0, len(texts), self.batch_size)]
        try:
            parts = await asyncio.gather(*refs)
        except asyncio.CancelledError:
            for ref in refs:
                self._ray.cancel(ref, force=False)
            raise
        except self._ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            raise cause if isinstance(cause, Exception) else exc from None
        vectors = np.concatenate(parts).astype(np.float32, copy=False)
        self.dim = vectors.shape[1]
        return vectors


def fanned_out(embedder: Any, components: Any) -> Any:
    """A collection's embedder (a ``CachedEmbedder``: the cache stays here) whose misses are
    embedded by Ray workers, which open components like the caller's ``components``."""
    from ..rag.embedders import CachedEmbedder

    inner = embedder.inner if isinstance(embedder, CachedEmbedder) else embedder
    return CachedEmbedder(RayEmbedder(inner, components), getattr(embedder, "cache", None))


def _remote_embed(ray: Any) -> Any:
    remote = _remote.get(id(ray))
    if remote is None:
        remote = _remote[id(ray)] = ray.remote(max_retries=1)(embed_batch)
    return remote


def embed_batch(spec: str, texts: list[str], shipped: ShippedConfig) -> np.ndarray:
    """Inside a worker: ``texts`` embedded by the embedder ``spec`` (the local model is loaded
    once per process; an endpoint's client lives for the batch, on the batch's loop)."""
    if spec == "local":
        with _embedders_lock:
            local = _embedders.get((spec, ""))
            if local is None:
                from ..rag.embedders import LocalEmbedder

                local = _embedders[(spec, "")] = LocalEmbedder()
        return local.embed_sync(list(texts))
    return asyncio.run(_embed_with_endpoint(spec, list(texts), shipped))


async def _embed_with_endpoint(spec: str, texts: list[str], shipped: ShippedConfig) -> np.ndarray:
    from ..rag.embedders import HTTPEmbedder

    provider, _, model = spec.partition("/")
    registry = worker_components(shipped).models
    client = registry.embeddings(provider, model)
    async with client:
        return await HTTPEmbedder(client, spec, registry.provider_type(provider)).embed(texts)
