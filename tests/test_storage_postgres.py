"""The PostgreSQL backend beyond the shared suites (test_state, test_sessions_artifacts, rag/):
schema migrations on both backends, ``aikit db``, the whole component set behind one setting,
kernel history, and failures -- a wrong URL or password, a server that does not answer, a
database that goes away mid-run, an exhausted pool -- each a clear error, nothing half-written."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import psycopg
import pytest

from aikit_components.errors import ConfigError, IOFailure, NotFound, PermissionDenied, ResourceExhausted
from aikit_components.sessions import SessionStore
from aikit_components.state import State
from aikit_components.storage import migrations
from aikit_components.storage.embedded_pg import EmbeddedPostgres
from aikit_components.storage.migrations import SchemaTooNew, latest, statements
from aikit_components.storage.postgres import PostgresDatabase, describe_url
from aikit_components.storage.postgres_state import PostgresStateBackend
from aikit_components.storage.settings import StorageSettings
from aikit_components.storage.sqlite import SQLiteStateBackend
from aikit_components.workflows.engine.records import load_run
from aikit_kernel.cli.main import main
from aikit_kernel.history import PostgresHistoryStore
from tests.support.kernels import start_kernel
from tests.support.lua import Lua
from tests.support.postgres import components_on, schema_url


# ====================================================================== migrations
def test_sqlite_sessions_file_of_schema_1_is_migrated_with_its_data(tmp_path: Path) -> None:
    """A sessions.sqlite written by the previous schema (version 1, the v1 DDL) opens, gains
    schema 2 (sessions.host) and 3 (the status 'interrupted', a rebuilt table) and keeps every row."""
    path = tmp_path / "sessions.sqlite"
    with sqlite3.connect(path) as conn:
        conn.executescript(migrations.SESSIONS[0].sqlite or "")
        conn.execute("INSERT INTO sessions VALUES ('s-old', 'kept', 'completed', 1.0, 2.0, 2.0, '{}')")
        conn.execute("PRAGMA user_version = 1")
    store = SessionStore(tmp_path)
    assert store.get("s-old").name == "kept"
    fresh = store.create("new")
    assert store.complete(fresh.id, "interrupted").status == "interrupted"
    assert [s.id for s in store.list()] == [fresh.id, "s-old"]
    store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == latest("sessions") == 3
        hosts = dict(conn.execute("SELECT id, host FROM sessions").fetchall())
    assert hosts["s-old"] is None and hosts[fresh.id]  # the new column, filled from now on


def test_unversioned_state_file_is_adopted(tmp_path: Path) -> None:
    """state.sqlite from before versioning (user_version 0, same table) is taken over as is."""
    path = tmp_path / "state.sqlite"
    with sqlite3.connect(path) as conn:
        conn.executescript(migrations.STATE[0].sqlite or "")
        conn.execute("INSERT INTO state VALUES ('global', 'k', '1', NULL, 0)")
    backend = SQLiteStateBackend(path)
    assert backend.get("global", "k") == (True, 1)
    backend.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == latest("state")


def test_sqlite_database_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    SessionStore(tmp_path).close()
    with sqlite3.connect(tmp_path / "sessions.sqlite") as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(SchemaTooNew, match="schema version 99, but this aikit only knows up to 3.*Upgrade aikit"):
        SessionStore(tmp_path).create()


def test_postgres_schema_1_is_migrated_with_its_data(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:  # what the previous aikit created
        conn.execute("CREATE TABLE aikit_schema (component TEXT PRIMARY KEY, version INTEGER NOT NULL, "
                     "updated_at TIMESTAMPTZ NOT NULL DEFAULT now())")
        for statement in statements(migrations.SESSIONS[0].postgres or ""):
            conn.execute(statement)
        conn.execute("INSERT INTO aikit_schema (component, version) VALUES ('sessions', 1)")
        conn.execute("INSERT INTO sessions (id, name, status, created_at, updated_at) "
                     "VALUES ('s-old', 'kept', 'active', 1, 1)")
    storage = StorageSettings(url=pg_url)
    store = SessionStore(Path("/nonexistent-unused"), storage=storage)
    assert store.get("s-old").name == "kept"
    fresh = store.create("new")
    assert store.complete(fresh.id, "interrupted").status == "interrupted"
    store.close()
    db = PostgresDatabase(pg_url)
    assert db.schema_version("sessions") == 3
    assert db.query("t", "SELECT count(*) FROM sessions WHERE host IS NOT NULL") == [(1,)]
    db.close()


def test_postgres_database_newer_than_the_code_is_refused(pg_url: str) -> None:
    db = PostgresDatabase(pg_url)
    db.ensure_schema("state")
    db.execute("t", "UPDATE aikit_schema SET version = 7 WHERE component = 'state'")
    db.close()
    with pytest.raises(SchemaTooNew, match="state schema version 7, but this aikit only knows up to 1"):
        PostgresStateBackend(PostgresDatabase(pg_url))


def test_aikit_db_status_and_migrate(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "none.toml").write_text("")
    monkeypatch.setenv("AIKIT_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("AIKIT_DATA_DIR", str(tmp_path / "data"))
    assert main(["db", "status"]) == 0
    out = capsys.readouterr().out
    assert "storage: sqlite" in out and "state     schema 0 (this aikit: 1)  missing: created on first use" in out
    assert main(["db", "migrate"]) == 0
    assert "sessions  schema 3: migrated 0 -> 3" in capsys.readouterr().out
    monkeypatch.setenv("AIKIT_STORAGE__URL", pg_url)
    assert main(["db", "migrate"]) == 0
    assert "rag       schema 1: migrated 0 -> 1" in capsys.readouterr().out
    assert main(["db", "status"]) == 0
    out = capsys.readouterr().out
    assert "storage: postgresql (postgres@" in out and out.count("up to date") == len(migrations.COMPONENTS)
    monkeypatch.setenv("AIKIT_STORAGE__URL", "mysql://x@y/z")
    assert main(["db", "status"]) == 1
    assert "mysql:// is not a PostgreSQL URL" in capsys.readouterr().err


# ====================================================================== one setting moves everything
def test_components_share_state_sessions_and_artifacts_through_postgres(pg_url: str, tmp_path: Path) -> None:
    """Two processes' components (two kernels, different data directories) on one database."""
    first, second = components_on(pg_url, tmp_path, "k1"), components_on(pg_url, tmp_path, "k2")
    try:
        first.state.set("global", "greeting", {"hi": [1, 2.0]})
        assert second.state.get("global", "greeting") == {"hi": [1, 2.0]}
        assert second.state.update("global", "n", lambda v: (v or 0) + 1) == 1
        assert first.state.update("global", "n", lambda v: (v or 0) + 1) == 2
        first.state.set("session", "mine", 1)  # the session scope stays per kernel
        assert second.state.get("session", "mine") is None
        assert second.sessions.get(first.session.id).active
        first.artifacts.put("report.txt", "shared", session_id=first.session.id)
        assert second.artifacts.get("report.txt")[1] == b"shared"
        assert not (tmp_path / "k1" / "state.sqlite").exists() and not (tmp_path / "k1" / "sessions.sqlite").exists()
    finally:
        first.close()
        second.close()
    assert SessionStore(tmp_path, storage=StorageSettings(url=pg_url)).get(first.session.id).status == "completed"


def test_workflow_run_record_lands_in_postgres_and_another_kernel_reads_it(make_lua, pg_url: str) -> None:
    first: Lua = make_lua(env={"AIKIT_STORAGE__URL": pg_url})
    record = first.run("""
        return Workflow.new{name = 'shared', steps = {
          {id = 'sum', tool = 'calculate', params = {expression = '2 + 3'}},
        }}:run({}, {run_id = 'pg-run-1'})""")
    assert record["status"] == "succeeded"
    second: Lua = make_lua(env={"AIKIT_STORAGE__URL": pg_url})  # another process's components
    stored = load_run(second.components, "pg-run-1")
    assert stored is not None and stored.status == "succeeded" and stored.steps["sum"].output == 5
    rows = PostgresDatabase(pg_url).query("t", "SELECT count(*) FROM aikit_state WHERE scope LIKE 'workflow:%%'")
    assert rows[0][0] >= 1


def test_history_in_postgres(pg_database: PostgresDatabase) -> None:
    one = PostgresHistoryStore(pg_database, "kernel-a")
    one.store_input(1, "x = 1")
    one.store_output(1, "1")
    one.store_input(2, "print(x)")
    two = PostgresHistoryStore(pg_database, "kernel-b")
    two.store_input(1, "x = 1")
    assert two.session == one.session + 1
    assert two.tail(2) == [(one.session, 2, "print(x)"), (two.session, 1, "x = 1")]
    assert one.range(0, 1, None, output=True) == [(one.session, 1, ("x = 1", "1")), (one.session, 2, ("print(x)", None))]
    assert [e[2] for e in two.search("x*", None, unique=True)] == ["x = 1"]
    assert [e[2] for e in two.search("*x*", None, unique=True)] == ["print(x)", "x = 1"]
    assert [e[1] for e in two.search("x = ?", 1, unique=False)] == [1]
    assert two.search("50%_", None, unique=False) == []  # LIKE characters are literal, as in GLOB


# ====================================================================== failures
def test_bad_urls_are_config_errors() -> None:
    for url, fragment in (("mysql://u@h/db", "mysql:// is not a PostgreSQL URL"),
                          ("postgresql://u@h/db?nonsense=1", "not a valid PostgreSQL URL"), ("", "must be")):
        with pytest.raises(ConfigError, match=fragment):
            StorageSettings(url=url, rag="postgres").validate() if url else PostgresDatabase(url)
    with pytest.raises(ConfigError, match="rag = 'postgres' needs \\[storage\\] url"):
        StorageSettings(rag="postgres").validate()


def test_wrong_password_names_the_setting(pg_server: EmbeddedPostgres, pg_schema: str) -> None:
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        conn.execute("DO $$ BEGIN CREATE ROLE aikit_pw LOGIN PASSWORD 'right'; EXCEPTION WHEN duplicate_object "
                     "THEN NULL; END $$")
    hba = pg_server.data / "pg_hba.conf"
    if "aikit_pw" not in hba.read_text():
        hba.write_text("local all aikit_pw scram-sha-256\n" + hba.read_text())
        with psycopg.connect(pg_server.url, autocommit=True) as conn:
            conn.execute("SELECT pg_reload_conf()")
    url = schema_url(pg_server, pg_schema).replace("postgres@", "aikit_pw@", 1)
    with pytest.raises(PermissionDenied) as caught:
        PostgresStateBackend(PostgresDatabase(url, password="wrong"))
    assert "refused the login" in caught.value.message and "[storage] url" in caught.value.message
    assert "wrong" not in caught.value.message
    db = PostgresDatabase(url, password="right")  # the right one works (and stays out of messages)
    assert "right" not in repr(db) and db.query("t", "SELECT current_user") == [("aikit_pw",)]
    db.close()


def test_server_that_does_not_answer_and_missing_database(tmp_path: Path, pg_server: EmbeddedPostgres) -> None:
    with pytest.raises(IOFailure) as caught:
        State(PostgresStateBackend(PostgresDatabase(f"postgresql://u@/db?host={tmp_path}", connect_timeout=2)))
    message = caught.value.message
    assert "cannot reach PostgreSQL at u@" in message and "check that the server is running" in message
    with pytest.raises(NotFound, match='database "nope" does not exist.*create it'):
        PostgresDatabase(pg_server.url_for("nope")).ensure_schema("state")


def test_pool_exhausted_is_a_clear_error_and_writes_nothing(pg_url: str) -> None:
    db = PostgresDatabase(pg_url, pool_max=1, pool_timeout=0.3)
    state = State(PostgresStateBackend(db))
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        def slow(value: object) -> int:
            holding.set()
            release.wait(30)
            return 1
        state.update("global", "held", slow)

    worker = threading.Thread(target=hold)
    worker.start()
    assert holding.wait(30)
    try:
        with pytest.raises(ResourceExhausted) as caught:
            state.set("global", "other", 1)
        assert "pool exhausted" in caught.value.message and "pool_max" in caught.value.message
    finally:
        release.set()
        worker.join()
    assert state.get("global", "other") is None and state.get("global", "held") == 1
    state.close()


def test_connection_lost_mid_update_rolls_back_and_the_next_call_reconnects(pg_url: str,
                                                                            pg_server: EmbeddedPostgres) -> None:
    state = State(PostgresStateBackend(PostgresDatabase(pg_url, pool_max=2)))
    state.set("global", "balance", 100)
    state.set("global", "audit", 0)

    def transfer(value: int) -> int:
        # another write in the same transaction, then the server drops this connection
        state.update("global", "audit", lambda n: n + 1)
        with psycopg.connect(pg_server.url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
                          "AND state LIKE 'idle in transaction%'")
        return value - 30

    with pytest.raises(IOFailure) as caught:
        state.update("global", "balance", transfer)
    assert "rolled back: nothing was written" in caught.value.message
    assert state.get("global", "balance") == 100 and state.get("global", "audit") == 0  # neither write
    assert state.update("global", "balance", lambda v: v - 30) == 70  # a fresh connection from the pool
    state.close()


def test_database_down_then_back(tmp_path: Path) -> None:
    """A server that stops mid-run: every call fails with a clear error, and works again once
    the server is back, without reopening anything."""
    with EmbeddedPostgres() as server:
        state = State(PostgresStateBackend(PostgresDatabase(server.url, connect_timeout=2, pool_timeout=2)))
        state.set("global", "k", 1)
        server.stop(remove=False)
        with pytest.raises((IOFailure, ResourceExhausted)) as caught:
            state.set("global", "k", 2)
        assert "PostgreSQL" in caught.value.message and "written" in caught.value.message
        server.start()
        assert state.get("global", "k") == 1
        state.set("global", "k", 3)
        assert state.get("global", "k") == 3
        state.close()


def test_lua_cell_sees_a_clear_error_and_the_kernel_lives_on(make_lua, pg_url: str) -> None:
    lua: Lua = make_lua(env={"AIKIT_STORAGE__URL": pg_url})
    lua.run('State.set("global", "n", 1)')
    failure = lua.fail('return State.update("global", "n", function(v) error("no") end)')
    assert "no" in failure.evalue
    db = lua.components.state.backend.db
    db.close()  # as if the store were gone: the cell fails, the engine answers the next cell
    failure = lua.fail('return State.get("global", "n")')
    assert "has been closed" in failure.evalue
    assert lua.run("return 1 + 1") == 2


def test_url_description_hides_the_password() -> None:
    assert describe_url("postgresql://bob:s3cret@db.example:5433/app") == "bob@db.example:5433/app"


# ====================================================================== real kernels
def test_two_kernels_share_state_through_one_postgres(tmp_path: Path, pg_url: str) -> None:
    one = start_kernel(tmp_path / "k1", cwd=tmp_path, AIKIT_STORAGE__URL=pg_url)
    two = start_kernel(tmp_path / "k2", cwd=tmp_path, AIKIT_STORAGE__URL=pg_url)
    try:
        one.ok('State.set("global", "from", "kernel one")')
        assert two.value('return State.get("global", "from")') == '"kernel one"'
        for kernel in (one, two, one):
            kernel.ok('State.update("global", "hits", function(n) return (n or 0) + 1 end)')
        assert two.value('return State.get("global", "hits")') == "3"
    finally:
        one.shutdown()
        two.shutdown()


def test_kernel_with_an_unreachable_database_starts_and_says_why(tmp_path: Path) -> None:
    kernel = start_kernel(tmp_path / "data", cwd=tmp_path, AIKIT_STORAGE__URL=f"postgresql://nobody@/db?host={tmp_path}",
                          AIKIT_STORAGE__CONNECT_TIMEOUT_S="2")
    try:
        result = kernel.execute("return 1 + 1")
        assert "cannot reach PostgreSQL" in "".join(
            m["content"]["text"] for m in result.of_type("stream") if m["content"]["name"] == "stderr")
        assert kernel.value("return 2 + 2") == "4"
    finally:
        kernel.shutdown()


def test_rag_from_lua_on_postgres(make_lua, pg_url: str) -> None:
    lua: Lua = make_lua(env={"AIKIT_STORAGE__URL": pg_url, "AIKIT_STORAGE__RAG": "postgres"})
    facts = ("{{id = 'paris', text = 'Paris is the capital of France.', metadata = {lang = 'en'}},"
             " {id = 'berlin', text = 'Berlin is the capital of Germany.', metadata = {lang = 'de'}}}")
    assert lua.run(f"col = RAG.collection('facts', {{tenant = 'acme'}}) return col:ingest({facts}).documents") == 2
    assert lua.run("return col:search('capital of France', {k = 1})[1].document_id") == "paris"
    assert lua.run("return col:search('capital', {mode = 'lexical', filter = {lang = 'de'}})[1].document_id") == "berlin"
    stats = lua.run("return col:stats()")
    assert stats["index"]["kind"] == "pgvector-hnsw" and "tsvector" in stats["lexical"] and stats["documents"] == 2
    other: Lua = make_lua(env={"AIKIT_STORAGE__URL": pg_url, "AIKIT_STORAGE__RAG": "postgres"})
    assert [c["name"] for c in other.run("return RAG.list{tenant = 'acme'}")] == ["facts"]
    assert other.run("return RAG.drop('facts', {tenant = 'acme'})") is True
    assert lua.run("return #RAG.list{tenant = 'acme'}") == 0


def test_missing_pgvector_says_how_to_get_it(pg_server: EmbeddedPostgres) -> None:
    """A user who may not create extensions, on a database without pgvector: RAG says what to do."""
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        conn.execute("DO $$ BEGIN CREATE ROLE aikit_plain LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        conn.execute("DROP DATABASE IF EXISTS novector")
        conn.execute("CREATE DATABASE novector OWNER aikit_plain")
    db = PostgresDatabase(pg_server.url_for("novector").replace("postgres@", "aikit_plain@", 1))
    with pytest.raises(IOFailure, match="needs the pgvector extension.*rag = 'files'"):
        db.ensure_schema("rag")
    assert db.schema_version("rag") == 0  # nothing half-created
    db.close()
