"""aikit's NumPy encoder of the local embedding model computes the vectors sentence-transformers
computes for the same model (which it replaces at run time: importing it with torch took seconds
and hundreds of MB): short, long (cut at 256 tokens), empty, accented, CJK and emoji texts, in
batches of several lengths, one text alone, and on several threads at once."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from aikit_components.rag.embedders import LocalEmbedder, local_model, local_model_dir
from aikit_components.rag.minilm import MiniLMEncoder

TEXTS = [
    "hello world",
    "The capital of France is Paris.",
    "",
    "   ",
    "naïve café — Ünïcödé, 東京タワー and 🙂 emoji",
    "word " * 400,  # far beyond 256 tokens: cut, as sentence-transformers cuts it
    "a" * 3000,
    "Lua 5.4 is a lightweight, embeddable scripting language.",
    *(f"sentence {i} about cats, dogs and the weather " * (1 + i % 9) for i in range(40)),
]


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    sentence_transformers = pytest.importorskip("sentence_transformers")  # the test extra installs it
    model = sentence_transformers.SentenceTransformer(str(local_model_dir()), device="cpu")
    return model.encode(TEXTS, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)


def test_vectors_match_sentence_transformers(reference: np.ndarray) -> None:
    ours = LocalEmbedder().embed_sync(TEXTS)
    assert ours.shape == reference.shape == (len(TEXTS), 384) and ours.dtype == np.float32
    assert np.abs(ours - reference).max() < 1e-5
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-6)


def test_batch_size_and_order_do_not_change_a_vector(reference: np.ndarray) -> None:
    encoder: MiniLMEncoder = local_model()
    one_by_one = np.stack([encoder.encode([t])[0] for t in TEXTS[:8]])
    assert np.abs(one_by_one - reference[:8]).max() < 1e-5
    reversed_small_batches = encoder.encode(TEXTS[::-1], batch_size=3)[::-1]
    assert np.abs(reversed_small_batches - reference).max() < 1e-5


def test_threads_encoding_at_once_get_their_own_vectors(reference: np.ndarray) -> None:
    encoder: MiniLMEncoder = local_model()
    results: dict[int, np.ndarray] = {}

    def encode(i: int) -> None:
        results[i] = encoder.encode(TEXTS[i::4])

    threads = [threading.Thread(target=encode, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(4):
        assert np.abs(results[i] - reference[i::4]).max() < 1e-5


def test_no_texts_give_no_vectors() -> None:
    assert LocalEmbedder().embed_sync([]).shape == (0, 384)
