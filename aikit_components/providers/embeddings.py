"""Embedding endpoints: OpenAI-compatible ``POST {base_url}/embeddings`` and Ollama's
``POST {base_url}/api/embed`` (with a fallback to the older one-text ``/api/embeddings``).

Both give ``await embed(texts) -> list[list[float]]`` in input order and add the tokens used to
``usage`` (cumulative; Ollama reports ``prompt_eval_count`` on ``/api/embed`` only).
"""

from __future__ import annotations

from typing import Any

import httpx

from ..config import Secret
from ..operations import Pipeline
from .base import ProviderError
from .http import DEFAULT_BACKOFF_S, DEFAULT_MAX_RETRY_AFTER_S, HTTPClient, HTTPEndpoint
from .messages import Usage

__all__ = ["OllamaEmbeddings", "OpenAIEmbeddings"]


def _vectors_ok(name: str, vectors: list[Any], count: int) -> list[list[float]]:
    if len(vectors) != count or not all(isinstance(v, list) and v for v in vectors):
        raise ProviderError(f"{name} returned {len(vectors)} embeddings for {count} inputs; check the model "
                            "is an embedding model", kind="bad_response", provider=name)
    dims = {len(v) for v in vectors}
    if len(dims) > 1:
        raise ProviderError(f"{name} returned embeddings of different sizes {sorted(dims)}", kind="bad_response",
                            provider=name)
    return [[float(x) for x in v] for v in vectors]


def _check_texts(texts: list[str]) -> list[str]:
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise ProviderError("embed() takes a list of strings", kind="bad_request")
    return list(texts)


class OpenAIEmbeddings(HTTPClient):
    """``/embeddings`` of OpenAI or a compatible server (vLLM, llama.cpp, LM Studio, Ollama /v1),
    ``batch_size`` texts per request; ``dimensions`` is sent when given (text-embedding-3-*)."""

    def __init__(self, base_url: str = "https://api.openai.com/v1", api_key: str | Secret | None = None,
                 model: str = "text-embedding-3-small", *, name: str = "openai", batch_size: int = 256,
                 dimensions: int | None = None, timeout_s: float = 60.0, retries: int = 2,
                 transport: httpx.AsyncBaseTransport | None = None, headers: dict[str, str] | None = None,
                 pipeline: Pipeline | None = None,
                 backoff_s: float = DEFAULT_BACKOFF_S, max_retry_after_s: float = DEFAULT_MAX_RETRY_AFTER_S) -> None:
        if batch_size < 1:
            raise ProviderError(f"batch_size must be at least 1, got {batch_size}", kind="bad_request", provider=name)
        self.name = name
        self.model = model
        self.batch_size = batch_size
        self.dimensions = dimensions
        self.usage = Usage()
        self.http = HTTPEndpoint(base_url, api_key, name=name, headers=headers, auth="bearer", timeout_s=timeout_s,
                                 retries=retries, transport=transport, pipeline=pipeline, backoff_s=backoff_s,
                                 max_retry_after_s=max_retry_after_s)

    def __repr__(self) -> str:
        return f"OpenAIEmbeddings(name={self.name!r}, model={self.model!r}, base_url={self.http.base_url!r})"

    async def embed(self, texts: list[str]) -> list[list[float]]:
        texts = _check_texts(texts)
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            batch = texts[start:start + self.batch_size]
            body: dict[str, Any] = {"model": self.model, "input": batch, "encoding_format": "float"}
            if self.dimensions is not None:
                body["dimensions"] = self.dimensions
            _, _, data = await self.http.post_json("/embeddings", body)
            items = data.get("data") if isinstance(data, dict) else None
            if not isinstance(items, list):
                raise ProviderError(f"{self.name} answered /embeddings without data: {str(data)[:300]}",
                                    kind="bad_response", provider=self.name)
            ordered = sorted(items, key=lambda item: item.get("index", 0))
            vectors += _vectors_ok(self.name, [item.get("embedding") for item in ordered], len(batch))
            usage = data.get("usage") or {}
            self.usage.add(Usage(int(usage.get("prompt_tokens") or usage.get("total_tokens") or 0), 0))
        return vectors



class OllamaEmbeddings(HTTPClient):
    """Ollama's ``/api/embed`` (many texts per request). A server too old to have it (404 that is
    not "model not found") is asked through ``/api/embeddings``, one text per request, from then on."""

    def __init__(self, base_url: str = "http://127.0.0.1:11434", model: str = "nomic-embed-text", *,
                 name: str = "ollama", api_key: str | Secret | None = None, batch_size: int = 256,
                 truncate: bool | None = None, timeout_s: float = 120.0, retries: int = 2,
                 transport: httpx.AsyncBaseTransport | None = None, headers: dict[str, str] | None = None,
                 pipeline: Pipeline | None = None,
                 backoff_s: float = DEFAULT_BACKOFF_S, max_retry_after_s: float = DEFAULT_MAX_RETRY_AFTER_S) -> None:
        if batch_size < 1:
            raise ProviderError(f"batch_size must be at least 1, got {batch_size}", kind="bad_request", provider=name)
        self.name = name
        self.model = model
        self.batch_size = batch_size
        self.truncate = truncate
        self.usage = Usage()
        self.legacy = False  # True once /api/embed turned out to be missing
        self.http = HTTPEndpoint(base_url, api_key, name=name, headers=headers, auth="bearer", timeout_s=timeout_s,
                                 retries=retries, transport=transport, pipeline=pipeline, backoff_s=backoff_s,
                                 max_retry_after_s=max_retry_after_s)

    def __repr__(self) -> str:
        return f"OllamaEmbeddings(name={self.name!r}, model={self.model!r}, base_url={self.http.base_url!r})"

    @staticmethod
    def _missing_route(exc: ProviderError) -> bool:
        return exc.status == 404 and "model" not in str(exc.details.get("provider_message", "")).lower()

    async def embed(self, texts: list[str]) -> list[list[float]]:
        texts = _check_texts(texts)
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            batch = texts[start:start + self.batch_size]
            if not self.legacy:
                try:
                    vectors += await self._embed_batch(batch)
                    continue
                except ProviderError as exc:
                    if not self._missing_route(exc):
                        raise
                    self.legacy = True
            vectors += [await self._embed_one(text) for text in batch]
        return vectors

    async def _embed_batch(self, batch: list[str]) -> list[list[float]]:
        body: dict[str, Any] = {"model": self.model, "input": batch}
        if self.truncate is not None:
            body["truncate"] = self.truncate
        _, _, data = await self.http.post_json("/api/embed", body)
        if isinstance(data, dict) and data.get("error"):
            raise ProviderError(f"{self.name} failed: \"{data['error']}\"", kind="server", provider=self.name)
        vectors = data.get("embeddings") if isinstance(data, dict) else None
        if not isinstance(vectors, list):
            raise ProviderError(f"{self.name} answered /api/embed without embeddings: {str(data)[:300]}",
                                kind="bad_response", provider=self.name)
        self.usage.add(Usage(int(data.get("prompt_eval_count") or 0), 0))
        return _vectors_ok(self.name, vectors, len(batch))

    async def _embed_one(self, text: str) -> list[float]:
        _, _, data = await self.http.post_json("/api/embeddings", {"model": self.model, "prompt": text})
        vector = data.get("embedding") if isinstance(data, dict) else None
        return _vectors_ok(self.name, [vector], 1)[0]

