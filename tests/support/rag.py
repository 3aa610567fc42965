"""RAG test data: the example corpus and questions, a few facts with metadata, random unit vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "examples" / "rag" / "corpus"
QUESTIONS = ROOT / "examples" / "rag" / "questions.json"

FACTS = [
    {"id": "paris", "text": "Paris is the capital of France and lies on the Seine.",
     "metadata": {"source": "geo.md", "lang": "en"}},
    {"id": "berlin", "text": "Berlin is the capital of Germany.", "metadata": {"source": "geo.md", "lang": "de"}},
    {"id": "banana", "text": "Bananas are yellow fruit rich in potassium.", "metadata": {"source": "food.md", "lang": "en"}},
    {"id": "moon", "text": "The Moon orbits the Earth every 27 days.",
     "metadata": {"source": "space.md", "lang": "en", "year": 1969}},
]


def unit_vectors(n: int, dim: int = 384, seed: int = 3) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)
