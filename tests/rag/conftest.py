"""RAG test fixtures: a RAG root in tmp_path (the real local model is loaded once per worker)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from aikit_components.rag import RAG


@pytest.fixture
def rag(tmp_path: Path) -> Iterator[RAG]:
    r = RAG(tmp_path / "rag")
    yield r
    r.close()
