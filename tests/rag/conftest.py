"""RAG test fixtures: a RAG root in tmp_path (the real local model is loaded once per worker),
on each backend: SQLite files + hnswlib, and PostgreSQL (tsvector + pgvector, this test's own
schema of the session's embedded server)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aikit_components.rag import RAG
from aikit_components.storage.settings import StorageSettings
from tests.support.postgres import storage_env


@pytest.fixture(params=["files", "postgres"])
def rag_storage(request: pytest.FixtureRequest) -> StorageSettings:
    if request.param == "postgres":
        return StorageSettings(url=request.getfixturevalue("pg_url"), rag="postgres", pool_max=4)
    return StorageSettings()


@pytest.fixture
def rag(tmp_path: Path, rag_storage: StorageSettings) -> Iterator[RAG]:
    r = RAG(tmp_path / "rag", storage=rag_storage)
    yield r
    r.close()


@pytest.fixture
def lua(make_lua: Callable[..., Any], rag_storage: StorageSettings) -> Any:
    """The Lua engine of tests/support/lua.py, with RAG on the backend under test."""
    return make_lua(env=storage_env(rag_storage))
