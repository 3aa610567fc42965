"""The ``[storage]`` settings: where the stores live (SQLite files under the data directory, or
one PostgreSQL database), and the factories that open each store accordingly.

```toml
[storage]
url = "postgresql://aikit@db.internal:5432/aikit"   # or AIKIT_STORAGE__URL
password_env = "AIKIT_PG_PASSWORD"   # or password = "..." (masked by `aikit config show`)
schema = ""              # a schema of that database for aikit's tables ("" = search_path)
pool_max = 10            # connections per store and process
artifact_blobs = "database"    # or "directory" with blobs_dir a directory every kernel sees
blobs_dir = ""                 # ("" = <data_dir>/blobs: per kernel, so only for one kernel)
rag = "files"            # or "postgres" (tsvector + pgvector)
```
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .postgres import PostgresDatabase, check_url

BLOB_MODES = ("", "directory", "database")
RAG_MODES = ("files", "postgres")


@dataclass(frozen=True)
class StorageSettings:
    """The parsed ``[storage]`` section."""

    url: str = ""
    password: str = field(default="", repr=False)
    schema: str = ""
    pool_min: int = 1
    pool_max: int = 10
    pool_timeout: float = 10.0
    connect_timeout: float = 10.0
    artifact_blobs: str = ""  # "": "database" with a url, else "directory"
    blobs_dir: str = ""
    rag: str = "files"

    @classmethod
    def from_config(cls, config: Any) -> StorageSettings:
        """Read ``[storage]`` from an :class:`aikit_components.config.Config` (None: defaults)."""
        if config is None:
            return cls()
        get = config.get
        password = get("storage.password", "") or ""
        password = password.reveal() if hasattr(password, "reveal") else str(password)
        settings = cls(
            url=str(get("storage.url", "") or "").strip(), password=password,
            schema=str(get("storage.schema", "") or ""),
            pool_min=int(get("storage.pool_min", 1)), pool_max=int(get("storage.pool_max", 10)),
            pool_timeout=float(get("storage.pool_timeout_s", 10)),
            connect_timeout=float(get("storage.connect_timeout_s", 10)),
            artifact_blobs=str(get("storage.artifact_blobs", "") or ""),
            blobs_dir=str(get("storage.blobs_dir", "") or ""), rag=str(get("storage.rag", "files")))
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.url:
            check_url(self.url)
        if self.artifact_blobs not in BLOB_MODES:
            raise ConfigError("[storage] artifact_blobs must be 'database' or 'directory' (or '' for the default), "
                              f"got {self.artifact_blobs!r}")
        if self.rag not in RAG_MODES:
            raise ConfigError(f"[storage] rag must be one of {', '.join(RAG_MODES)}, got {self.rag!r}")
        if self.rag == "postgres" and not self.url:
            raise ConfigError("[storage] rag = 'postgres' needs [storage] url (a postgresql:// URL)")
        if self.artifact_blobs == "database" and not self.url:
            raise ConfigError("[storage] artifact_blobs = 'database' needs [storage] url (a postgresql:// URL)")
        if self.pool_max < 1 or self.pool_min < 0 or self.pool_timeout <= 0:
            raise ConfigError("[storage] pool_max must be >= 1, pool_min >= 0 and pool_timeout_s > 0")

    @property
    def blobs_in_database(self) -> bool:
        """Whether artifact content goes to PostgreSQL (the default with a url)."""
        return self.postgres and self.artifact_blobs in ("", "database")

    @property
    def postgres(self) -> bool:
        """Whether the stores live in PostgreSQL."""
        return bool(self.url)

    def database(self) -> PostgresDatabase:
        """A new connection pool to the configured database (one per store)."""
        if not self.url:
            raise ConfigError("no PostgreSQL configured: set [storage] url (or AIKIT_STORAGE__URL)")
        return PostgresDatabase(self.url, password=self.password, schema=self.schema, pool_min=self.pool_min,
                                pool_max=self.pool_max, pool_timeout=self.pool_timeout,
                                connect_timeout=self.connect_timeout)

    def state_backend(self, data_dir: Path) -> Any:
        """The State backend: PostgreSQL when configured, else ``<data_dir>/state.sqlite``."""
        if self.postgres:
            from .postgres_state import PostgresStateBackend

            return PostgresStateBackend(self.database())
        from .sqlite import SQLiteStateBackend

        return SQLiteStateBackend(Path(data_dir) / "state.sqlite")

    def blobs_path(self, data_dir: Path) -> Path:
        """Where artifact content files go in ``directory`` mode."""
        return Path(self.blobs_dir).expanduser() if self.blobs_dir else Path(data_dir) / "blobs"


__all__ = ["BLOB_MODES", "RAG_MODES", "StorageSettings"]
