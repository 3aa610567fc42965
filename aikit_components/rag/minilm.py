"""A sentence encoder for BERT-style models (all-MiniLM-L6-v2) in NumPy: tokenizer, encoder, mean
pooling, normalization, as sentence-transformers computes them.

Why not sentence-transformers itself: importing it (with torch, transformers and scikit-learn)
took 5 to 10 s of a kernel's first RAG search and 400 MB of memory on these machines; this module
imports NumPy, ``tokenizers`` and ``safetensors`` (well under a second together) and computes the
same vectors (tests/rag/test_minilm.py checks them against sentence-transformers). The model is a
plain BERT encoder: embeddings, then per layer self-attention and a GELU feed-forward, each with
a residual connection and LayerNorm.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import json
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: Threads encoding batches at once, each with a single-threaded BLAS (see :func:`_one_blas_thread`).
WORKERS = max(1, min(8, os.cpu_count() or 1))
#: The most attention scores computed at once, in bytes (per thread).
ATTENTION_BYTES = 16 << 20
#: sentence-transformers' default for this model (``sentence_bert_config.json`` may say otherwise).
DEFAULT_MAX_SEQ_LENGTH = 256


@dataclass(frozen=True)
class _Layer:
    qkv: np.ndarray  # (hidden, 3 * hidden): query, key and value projections side by side
    qkv_bias: np.ndarray
    attention_out: np.ndarray
    attention_out_bias: np.ndarray
    attention_norm: tuple[np.ndarray, np.ndarray]
    intermediate: np.ndarray
    intermediate_bias: np.ndarray
    output: np.ndarray
    output_bias: np.ndarray
    output_norm: tuple[np.ndarray, np.ndarray]


class MiniLMEncoder:
    """Encodes texts into unit vectors with the sentence-transformers model stored in ``path``
    (``config.json``, ``model.safetensors``, ``tokenizer.json``, mean pooling)."""

    def __init__(self, path: str | Path) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        path = Path(path)
        config = json.loads((path / "config.json").read_text())
        if config.get("hidden_act", "gelu") != "gelu" or config.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"{path}: only BERT encoders with GELU and absolute positions are supported")
        self.hidden = int(config["hidden_size"])
        self.heads = int(config["num_attention_heads"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.max_length = _max_seq_length(path, int(config.get("max_position_embeddings", 512)))
        self.dim = self.hidden

        _one_blas_thread()
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.enable_truncation(self.max_length)
        self.tokenizer.enable_padding(pad_id=int(config.get("pad_token_id", 0)))

        w = load_file(str(path / "model.safetensors"))
        prefix = "bert." if "bert.embeddings.word_embeddings.weight" in w else ""

        def get(name: str) -> np.ndarray:
            return w[prefix + name]

        self.word_embeddings = get("embeddings.word_embeddings.weight")
        self.position_embeddings = get("embeddings.position_embeddings.weight")
        self.token_type_embedding = get("embeddings.token_type_embeddings.weight")[0]
        self.embedding_norm = (get("embeddings.LayerNorm.weight"), get("embeddings.LayerNorm.bias"))
        self.layers = []
        for i in range(int(config["num_hidden_layers"])):
            p = f"encoder.layer.{i}."
            q, k, v = (get(p + f"attention.self.{n}.weight") for n in ("query", "key", "value"))
            self.layers.append(_Layer(
                qkv=np.ascontiguousarray(np.concatenate([q, k, v]).T),
                qkv_bias=np.concatenate([get(p + f"attention.self.{n}.bias") for n in ("query", "key", "value")]),
                attention_out=np.ascontiguousarray(get(p + "attention.output.dense.weight").T),
                attention_out_bias=get(p + "attention.output.dense.bias"),
                attention_norm=(get(p + "attention.output.LayerNorm.weight"), get(p + "attention.output.LayerNorm.bias")),
                intermediate=np.ascontiguousarray(get(p + "intermediate.dense.weight").T),
                intermediate_bias=get(p + "intermediate.dense.bias"),
                output=np.ascontiguousarray(get(p + "output.dense.weight").T),
                output_bias=get(p + "output.dense.bias"),
                output_norm=(get(p + "output.LayerNorm.weight"), get(p + "output.LayerNorm.bias")),
            ))

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """Unit vectors (float32, one row per text, in order). Texts are batched by length, so a
        batch pads little; each is cut at ``max_length`` tokens, as sentence-transformers does.
        Batches are encoded on up to :data:`WORKERS` threads at once: NumPy runs elementwise
        work (GELU, softmax, LayerNorm) on one core and releases the GIL while it does."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        batches = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
        if len(batches) == 1:
            out[batches[0]] = self._encode_batch([texts[i] for i in batches[0]])
            return out
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="aikit-embed")
        vectors = self._pool.map(lambda chosen: self._encode_batch([texts[i] for i in chosen]), batches)
        for chosen, batch_vectors in zip(batches, vectors):
            out[chosen] = batch_vectors
        _release_freed_memory()
        return out

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.float32)
        hidden = self._forward(ids, mask)
        summed = np.einsum("bld,bl->bd", hidden, mask)
        pooled = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        batch, length = ids.shape
        heads, head_dim = self.heads, self.hidden // self.heads
        x = self.word_embeddings[ids] + self.position_embeddings[:length] + self.token_type_embedding
        # Token rows stay one 2-D matrix: NumPy multiplies a stack of matrices (3-D @ 2-D) without
        # BLAS, tens of times slower.
        x = _layer_norm(x.reshape(batch * length, self.hidden), *self.embedding_norm, self.eps)
        # Padding gets the most negative float added to its scores, as transformers does: its
        # softmax weight is 0.
        bias = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]
        scale = np.float32(1.0 / math.sqrt(head_dim))
        for layer in self.layers:
            qkv = _linear(x, layer.qkv, layer.qkv_bias).reshape(batch, length, 3, heads, head_dim)
            q, k, v = qkv[:, :, 0] * scale, qkv[:, :, 1], qkv[:, :, 2]  # (batch, length, heads, head_dim)
            context = np.empty((batch, length, heads, head_dim), dtype=np.float32)
            # The attention of a few texts at a time: all at once, the scores of 32 texts of 256
            # tokens are 100 MB per thread.
            step = max(1, ATTENTION_BYTES // (heads * length * length * 4))
            for first in range(0, batch, step):
                part = slice(first, first + step)
                # einsum (BLAS per head) rather than a stacked matmul, for the same reason
                scores = np.einsum("blhd,bmhd->bhlm", q[part], k[part], optimize=True)
                scores += bias[part]
                scores -= scores.max(axis=-1, keepdims=True)
                np.exp(scores, out=scores)
                scores /= scores.sum(axis=-1, keepdims=True)
                context[part] = np.einsum("bhlm,bmhd->blhd", scores, v[part], optimize=True)
            context = context.reshape(batch * length, self.hidden)
            attended = _linear(context, layer.attention_out, layer.attention_out_bias)
            attended += x
            x = _layer_norm(attended, *layer.attention_norm, self.eps)
            inner = _gelu(_linear(x, layer.intermediate, layer.intermediate_bias))
            out = _linear(inner, layer.output, layer.output_bias)
            del inner
            out += x
            x = _layer_norm(out, *layer.output_norm, self.eps)
        return x.reshape(batch, length, self.hidden)


def _release_freed_memory() -> None:
    """Give the memory of the batches' arrays back to the system (glibc's ``malloc_trim``): freed,
    it stayed in the process's heap, ~70 MB after 256 chunks. Elsewhere, nothing to do."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Any:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


def _one_blas_thread() -> None:
    """Make BLAS single-threaded in this process: the encoder runs batches on :data:`WORKERS`
    threads, and BLAS threads on top of those outnumber the cores and spin (on 2 cores: 40 -> 46
    chunks/s, 12.2 -> 10.4 s of CPU for 256 chunks). Nothing else in aikit multiplies matrices
    big enough to miss them."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # only slower
        return
    threadpool_limits(limits=1, user_api="blas")


def _max_seq_length(path: Path, limit: int) -> int:
    try:
        configured = int(json.loads((path / "sentence_bert_config.json").read_text())["max_seq_length"])
    except (OSError, ValueError, KeyError, TypeError):
        configured = DEFAULT_MAX_SEQ_LENGTH
    return min(configured, limit)


def _linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """``x @ weight + bias``, with one array made instead of two (the batch's largest arrays are
    these: every temporary counts)."""
    out = x @ weight
    out += bias
    return out


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    """LayerNorm of the rows of ``x`` (``x`` is reused for the result)."""
    x -= x.mean(axis=-1, keepdims=True)
    variance = np.mean(np.square(x), axis=-1, keepdims=True)
    variance += np.float32(eps)
    x /= np.sqrt(variance)
    x *= weight
    x += bias
    return x


def _gelu(x: np.ndarray) -> np.ndarray:
    """GELU as BERT defines it, ``x * Phi(x) = x / 2 * (1 + erf(x / sqrt(2)))``, in place. NumPy
    has no ``erf``: Abramowitz and Stegun's 7.1.26 (absolute error below 1.5e-7, float32's own
    resolution near 1) is computed a few rows at a time, so each of its dozen passes runs in the
    CPU's cache: five times faster than SciPy's ``erf`` over the whole array."""
    rows = max(1, _GELU_CHUNK // x.shape[1])
    z, a, t, poly = (np.empty((rows, x.shape[1]), dtype=np.float32) for _ in range(4))
    for first in range(0, len(x), rows):
        xs = x[first:first + rows]
        n = len(xs)
        zz, aa, tt, pp = z[:n], a[:n], t[:n], poly[:n]
        np.multiply(xs, _SQRT_HALF, out=zz)
        np.abs(zz, out=aa)
        np.multiply(aa, _P, out=tt)
        tt += _ONE
        np.reciprocal(tt, out=tt)
        np.multiply(tt, _A[4], out=pp)
        for coefficient in (_A[3], _A[2], _A[1], _A[0]):
            pp += coefficient
            pp *= tt
        np.square(aa, out=aa)
        np.negative(aa, out=aa)
        np.exp(aa, out=aa)
        pp *= aa  # 1 - erf(|z|)
        np.subtract(_ONE, pp, out=tt)
        np.copysign(tt, zz, out=tt)  # erf(z)
        tt += _ONE
        tt *= _HALF
        xs *= tt
    return x


_GELU_CHUNK = 1 << 15  # elements per pass: 128 KB per array, four arrays
_SQRT_HALF, _HALF, _ONE = np.float32(1.0 / math.sqrt(2.0)), np.float32(0.5), np.float32(1.0)
_P = np.float32(0.3275911)
_A = tuple(np.float32(c) for c in (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429))
