"""The PostgreSQL connection layer every PostgreSQL-backed store shares.

This is the backend interface for stores that move to PostgreSQL (State, sessions, artifacts,
RAG, kernel history -- and later the span store and the audit ledger): a store holds one
:class:`PostgresDatabase` and uses only

- :meth:`PostgresDatabase.transaction` -- a connection inside ``BEGIN ... COMMIT`` (rolled back
  on any exception, so a failure leaves nothing half-written; nested calls on the same thread
  become savepoints, like the SQLite stores' nested writes), optionally holding an advisory lock
  that serializes writers across processes and machines;
- :meth:`PostgresDatabase.query` / :meth:`PostgresDatabase.execute` -- one statement;
- :meth:`PostgresDatabase.ensure_schema` -- the component's migrations
  (:mod:`aikit_components.storage.migrations`), applied once on first use.

Every psycopg failure becomes an aikit error naming what to fix (:func:`pg_error`): a wrong
password, a database that does not exist or a server that does not answer name the ``[storage]
url`` setting; a pool whose connections all stay busy names ``pool_max``/``pool_timeout_s``; a
connection lost mid-transaction says the transaction was rolled back. Connections come from a
``psycopg_pool.ConnectionPool`` that checks a connection before lending it, so a restarted server
is reconnected to transparently.

Placeholders are psycopg's (``%s``); :func:`from_qmark` converts the SQLite stores' ``?``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Iterator
from typing import Any

from ..errors import AikitError, ConfigError, Conflict, IOFailure, NotFound, PermissionDenied, ResourceExhausted, Timeout
from .migrations import latest, pending, statements

URL_SETTING = "[storage] url (or AIKIT_STORAGE__URL)"
_SCHEMA_LOCK = 0x61696B6974  # "aikit": serializes migrations of one database

# SQLSTATE classes and codes (https://www.postgresql.org/docs/current/errcodes-appendix.html)
_AUTH = ("28P01", "28000")
_NO_DATABASE = "3D000"
_SHUTDOWN = ("57P01", "57P02", "57P03")
_CANCELED = "57014"
_RETRYABLE = ("40001", "40P01")
_DISK_FULL = ("53100", "53200")
_PRIVILEGE = "42501"


def check_url(url: Any) -> str:
    """``url`` when it is a PostgreSQL URL or conninfo string psycopg can parse, else ConfigError."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"{URL_SETTING} must be a postgresql:// URL, got {url!r}")
    from psycopg.conninfo import conninfo_to_dict

    if "://" in url and not url.startswith(("postgresql://", "postgres://")):
        scheme = url.split("://", 1)[0]
        raise ConfigError(f"{URL_SETTING}: {scheme}:// is not a PostgreSQL URL; write "
                          "postgresql://USER:PASSWORD@HOST:PORT/DATABASE")
    try:
        conninfo_to_dict(url)
    except Exception as exc:
        raise ConfigError(f"{URL_SETTING} is not a valid PostgreSQL URL ({exc}); write "
                          "postgresql://USER:PASSWORD@HOST:PORT/DATABASE") from None
    return url


def describe_url(url: str) -> str:
    """``user@host:port/dbname`` of a URL, without its password (for messages and logs)."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(url)
    except Exception:
        return "<unparsable url>"
    host = str(parts.get("host") or "localhost")
    port = f":{parts['port']}" if parts.get("port") else ""
    user = f"{parts['user']}@" if parts.get("user") else ""
    return f"{user}{host}{port}/{parts.get('dbname') or parts.get('user') or ''}"


def pg_error(exc: BaseException, action: str, where: str, *, pool_max: int = 0, pool_timeout: float = 0.0) -> AikitError:
    """An aikit error for a psycopg (or pool) failure while doing ``action`` on ``where``."""
    import psycopg
    from psycopg_pool import PoolTimeout

    if isinstance(exc, AikitError):
        return exc
    if isinstance(exc, PoolTimeout):
        return ResourceExhausted(
            f"{action}: no PostgreSQL connection free at {where}: all {pool_max} connections of the pool "
            f"stayed busy for {pool_timeout:g} s (pool exhausted). Raise [storage] pool_max or pool_timeout_s, "
            "or find what holds connections (long transactions, many concurrent tasks). Nothing was written.",
            details={"where": where, "pool_max": pool_max, "pool_timeout_s": pool_timeout})
    state = getattr(getattr(exc, "diag", None), "sqlstate", None) or getattr(exc, "sqlstate", None)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    details = {"where": where, "sqlstate": state, "detail": str(exc).strip()}
    if state in _AUTH or "password authentication failed" in str(exc):
        return PermissionDenied(f"{action}: PostgreSQL at {where} refused the login ({text}); fix the user or "
                                f"password in {URL_SETTING} or [storage] password / password_env", details=details)
    if state == _NO_DATABASE or ("database" in str(exc) and "does not exist" in str(exc)):
        return NotFound(f"{action}: {text} at {where}; create it (createdb) or fix the database name in "
                        f"{URL_SETTING}", details=details)
    if state in _SHUTDOWN or (isinstance(exc, psycopg.OperationalError) and state is None):
        return IOFailure(f"{action}: cannot reach PostgreSQL at {where} ({text}); check that the server is "
                         f"running and that {URL_SETTING} names the right host and port. The transaction was "
                         "rolled back: nothing was written.", details=details)
    if "extension" in str(exc) and "vector" in str(exc):
        return IOFailure(f"{action}: {text} at {where}. RAG on PostgreSQL needs the pgvector extension: install it "
                         "on the server and run CREATE EXTENSION vector as a superuser, or keep RAG in files "
                         "([storage] rag = 'files')", details=details)
    if state == _CANCELED:
        return Timeout(f"{action}: PostgreSQL at {where} cancelled the statement ({text}); "
                       "nothing was written", details=details)
    if state in _RETRYABLE:
        return Conflict(f"{action}: conflicting concurrent transaction at {where} ({text}); "
                        "nothing was written, retry", details=details)
    if state in _DISK_FULL:
        return IOFailure(f"{action}: the PostgreSQL server at {where} is out of disk or memory ({text}); "
                         "nothing was written", details=details)
    if state == _PRIVILEGE:
        return PermissionDenied(f"{action}: {text} at {where}; grant the user of {URL_SETTING} the rights "
                                "it needs (CREATE on its schema to migrate, SELECT/INSERT/UPDATE/DELETE to use it)",
                                details=details)
    return IOFailure(f"{action}: PostgreSQL error at {where}: {text}", details=details)


def advisory_key(*parts: str) -> int:
    """A signed 64-bit key for ``pg_advisory_xact_lock`` derived from ``parts``."""
    digest = hashlib.blake2b("\x00".join(parts).encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def from_qmark(sql: str) -> str:
    """SQLite-style ``?`` placeholders as psycopg's ``%s`` (``%`` escaped; no ``?`` in literals)."""
    return sql.replace("%", "%%").replace("?", "%s")


class PostgresDatabase:
    """A connection pool to one PostgreSQL database (optionally one schema of it).

    ``schema`` (``[storage] schema``) puts aikit's tables in that schema (created when missing),
    so several deployments or test runs can share a database. ``pool_min``/``pool_max`` bound the
    pool; a caller waits at most ``pool_timeout`` seconds for a free connection. ``connect_timeout``
    bounds each connection attempt.
    """

    def __init__(self, url: str, *, password: str = "", schema: str = "", pool_min: int = 1, pool_max: int = 10,
                 pool_timeout: float = 10.0, connect_timeout: float = 10.0) -> None:
        self.url = check_url(url)
        self._password = password  # kept apart from the URL so it never shows in messages
        self.where = describe_url(url) + (f" (schema {schema})" if schema else "")
        self.schema = schema
        if schema and not schema.replace("_", "").isalnum():
            raise ConfigError(f"[storage] schema must be letters, digits and _, got {schema!r}")
        self.pool_min, self.pool_max = max(0, pool_min), max(1, pool_max)
        self.pool_timeout, self.connect_timeout = pool_timeout, connect_timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._pool: Any = None
        self._pool_pid = 0
        self._ready: set[str] = set()
        self._closed = False

    def __repr__(self) -> str:
        return f"PostgresDatabase({self.where!r})"

    # -- connections ------------------------------------------------------------------------

    def _configure(self, conn: Any) -> None:
        if self.schema:
            conn.execute(f'SET search_path TO "{self.schema}", public')

    def _connect_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"autocommit": True, "connect_timeout": max(1, int(self.connect_timeout))}
        if self._password:
            kwargs["password"] = self._password
        return kwargs

    def connect(self, action: str = "connect to PostgreSQL") -> Any:
        """A new connection outside the pool (autocommit); the caller closes it."""
        import psycopg

        try:
            conn = psycopg.connect(self.url, **self._connect_kwargs())
        except Exception as exc:
            raise pg_error(exc, action, self.where) from None
        try:
            if self.schema:
                conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            self._configure(conn)
        except Exception as exc:
            conn.close()
            raise pg_error(exc, action, self.where) from None
        return conn

    def _get_pool(self) -> Any:
        pid = os.getpid()
        if self._pool is not None and self._pool_pid == pid:
            return self._pool
        with self._lock:
            if self._closed:
                raise IOFailure(f"the PostgreSQL store at {self.where} has been closed", details={"where": self.where})
            if self._pool is None or self._pool_pid != pid:  # a forked child opens its own pool
                from psycopg_pool import ConnectionPool

                self.connect().close()  # fail now with a clear error (bad URL, password, server down)
                self._pool = ConnectionPool(
                    self.url, min_size=min(self.pool_min, self.pool_max), max_size=self.pool_max,
                    timeout=self.pool_timeout, open=False, configure=self._configure,
                    check=ConnectionPool.check_connection, name=f"aikit {self.where}",
                    kwargs=self._connect_kwargs(),
                    reconnect_timeout=max(5.0, self.pool_timeout))
                self._pool.open(wait=False)
                self._pool_pid = pid
            return self._pool

    @contextlib.contextmanager
    def connection(self, action: str) -> Iterator[Any]:
        """A pooled connection (autocommit) for this thread; the one of an enclosing
        :meth:`transaction` on this thread when there is one."""
        current = getattr(self._local, "conn", None)
        if current is not None and getattr(self._local, "pid", 0) == os.getpid():
            yield current
            return
        pool = self._get_pool()
        try:
            ctx = pool.connection()
            conn = ctx.__enter__()
        except Exception as exc:
            raise pg_error(exc, action, self.where, pool_max=self.pool_max, pool_timeout=self.pool_timeout) from None
        self._local.conn, self._local.pid = conn, os.getpid()
        try:
            yield conn
        except BaseException as exc:
            self._local.conn = None
            with contextlib.suppress(Exception):
                ctx.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self._local.conn = None
        with contextlib.suppress(Exception):
            ctx.__exit__(None, None, None)

    @contextlib.contextmanager
    def transaction(self, action: str, lock: int | None = None) -> Iterator[Any]:
        """A connection inside a transaction (a savepoint when nested on this thread), committed
        when the block ends, rolled back on any exception. ``lock``: an advisory key (see
        :func:`advisory_key`) held until the end of the outermost transaction."""
        with self.connection(action) as conn:
            try:
                with conn.transaction():
                    if lock is not None:
                        conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
                    yield conn
            except AikitError:
                raise
            except Exception as exc:
                if _is_pg_error(exc):
                    raise pg_error(exc, action, self.where) from None
                raise

    def query(self, action: str, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        """Run one statement and fetch every row."""
        with self.connection(action) as conn:
            try:
                cur = conn.execute(sql, params)
                return cur.fetchall() if cur.description is not None else []
            except Exception as exc:
                raise pg_error(exc, action, self.where) from None

    def execute(self, action: str, sql: str, params: Any = ()) -> int:
        """Run one statement; returns its row count."""
        with self.connection(action) as conn:
            try:
                return conn.execute(sql, params).rowcount
            except Exception as exc:
                raise pg_error(exc, action, self.where) from None

    # -- schema -----------------------------------------------------------------------------

    def schema_version(self, component: str) -> int:
        """The version of ``component`` this database holds (0: none yet)."""
        with self.connection(f"read the {component} schema version") as conn:
            return _read_version(conn, component, self.where)

    def ensure_schema(self, component: str) -> None:
        """Apply ``component``'s pending migrations (once per process); SchemaTooNew when the
        database is ahead of this code."""
        if component in self._ready:
            return
        self.migrate(component)
        self._ready.add(component)

    def migrate(self, component: str) -> tuple[int, int]:
        """Apply pending migrations in one transaction under a database-wide lock; returns
        ``(version before, version after)``."""
        action = f"migrate the {component} schema"
        conn = self.connect(action)
        try:
            try:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                    found = _read_version(conn, component, self.where)
                    for migration in pending(component, found, self.where):
                        for statement in statements(migration.postgres or ""):
                            conn.execute(statement)
                    if found < latest(component):
                        conn.execute(
                            "INSERT INTO aikit_schema (component, version, updated_at) VALUES (%s, %s, now()) "
                            "ON CONFLICT (component) DO UPDATE SET version = excluded.version, "
                            "updated_at = excluded.updated_at", (component, latest(component)))
            except AikitError:
                raise
            except Exception as exc:
                raise pg_error(exc, action, self.where) from None
        finally:
            conn.close()
        return found, latest(component)

    def close(self) -> None:
        """Close the pool (this process's); further use raises IOFailure."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None and self._pool_pid == os.getpid():
            with contextlib.suppress(Exception):
                pool.close(timeout=5.0)


def _is_pg_error(exc: BaseException) -> bool:
    import psycopg
    from psycopg_pool import PoolTimeout

    return isinstance(exc, (psycopg.Error, PoolTimeout))


def _read_version(conn: Any, component: str, where: str) -> int:
    conn.execute("CREATE TABLE IF NOT EXISTS aikit_schema (component TEXT PRIMARY KEY, version INTEGER NOT NULL, "
                 "updated_at TIMESTAMPTZ NOT NULL DEFAULT now())")
    row = conn.execute("SELECT version FROM aikit_schema WHERE component = %s", (component,)).fetchone()
    return int(row[0]) if row else 0


__all__ = ["PostgresDatabase", "URL_SETTING", "advisory_key", "check_url", "describe_url", "from_qmark", "pg_error"]
