"""sql_query against real SQLite files: create, parameterised writes and reads, injection attempts
that stay literals, one statement only, bad SQL, ATTACH refused, locks, timeouts that interrupt."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from aikit_components.tools import ToolContext
from tests.support.tools import ToolCaller, ToolEnv, expect_error


@pytest.fixture
def db(call: ToolCaller, ctx: ToolContext) -> str:
    call(ctx, "sql_query", {"database": "app.db",
                            "query": "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, age INTEGER)"})
    return "app.db"


def test_create_insert_select(call: ToolCaller, ctx: ToolContext, db: str, workdir: Path) -> None:
    assert (workdir / "app.db").exists()
    first = call(ctx, "sql_query", {"database": db, "query": "INSERT INTO users(name, age) VALUES (?, ?)",
                                    "params": ["ada", 36]})
    assert first == {"changes": 1, "last_row_id": 1}
    second = call(ctx, "sql_query", {"database": db, "query": "INSERT INTO users(name, age) VALUES (:name, :age)",
                                     "params": {"name": "bob", "age": 41.0}})  # a Lua number computed as a float
    assert second == {"changes": 1, "last_row_id": 2}
    rows = call(ctx, "sql_query", {"database": db, "query": "SELECT id, name, age FROM users WHERE age > ? ORDER BY id",
                                   "params": [30]})
    assert rows == {"columns": ["id", "name", "age"], "rows": [[1, "ada", 36], [2, "bob", 41]], "row_count": 2,
                    "truncated": False}
    updated = call(ctx, "sql_query", {"database": db, "query": "UPDATE users SET age = age + 1"})
    assert updated["changes"] == 2
    # the write is durable: another connection sees it
    with sqlite3.connect(workdir / "app.db") as conn:
        assert conn.execute("SELECT sum(age) FROM users").fetchone()[0] == 79


def test_returning_and_blobs(call: ToolCaller, ctx: ToolContext, db: str) -> None:
    result = call(ctx, "sql_query", {"database": db, "query": "INSERT INTO users(name) VALUES (?) RETURNING id, name",
                                     "params": ["cy"]})
    assert result["rows"] == [[1, "cy"]]
    blob = call(ctx, "sql_query", {"database": db, "query": "SELECT x'00ff'"})
    assert blob["rows"] == [[{"base64": "AP8="}]]


def test_max_rows_truncates(call: ToolCaller, ctx: ToolContext, db: str) -> None:
    for i in range(5):
        call(ctx, "sql_query", {"database": db, "query": "INSERT INTO users(name) VALUES (?)", "params": [f"u{i}"]})
    result = call(ctx, "sql_query", {"database": db, "query": "SELECT name FROM users ORDER BY id", "max_rows": 3})
    assert result["row_count"] == 3 and result["truncated"] is True
    assert [r[0] for r in result["rows"]] == ["u0", "u1", "u2"]


def test_injection_attempts_stay_literals(call: ToolCaller, ctx: ToolContext, db: str) -> None:
    evil = "x'); DROP TABLE users; --"
    call(ctx, "sql_query", {"database": db, "query": "INSERT INTO users(name) VALUES (?)", "params": [evil]})
    stored = call(ctx, "sql_query", {"database": db, "query": "SELECT name FROM users"})
    assert stored["rows"] == [[evil]]
    none = call(ctx, "sql_query", {"database": db, "query": "SELECT * FROM users WHERE name = ?",
                                   "params": ["' OR '1'='1"]})
    assert none["row_count"] == 0


def test_multiple_statements_refused(call: ToolCaller, ctx: ToolContext, db: str) -> None:
    error = expect_error("invalid_argument", call, ctx, "sql_query",
                         {"database": db, "query": "SELECT 1; DROP TABLE users"})
    assert "one statement" in error.message
    assert call(ctx, "sql_query", {"database": db, "query": "SELECT count(*) FROM users"})["rows"] == [[0]]


def test_bad_sql_and_bad_params(call: ToolCaller, ctx: ToolContext, db: str) -> None:
    error = expect_error("invalid_argument", call, ctx, "sql_query", {"database": db, "query": "SELEC * FROM users"})
    assert "syntax error" in error.message
    error = expect_error("invalid_argument", call, ctx, "sql_query", {"database": db, "query": "SELECT * FROM nope"})
    assert "no such table: nope" in error.message
    expect_error("invalid_argument", call, ctx, "sql_query",
                 {"database": db, "query": "SELECT * FROM users WHERE id = ?", "params": [1, 2]})
    expect_error("invalid_argument", call, ctx, "sql_query",
                 {"database": db, "query": "SELECT ?", "params": [{"nested": "table"}]})
    error = expect_error("invalid_argument", call, ctx, "sql_query",
                         {"database": db, "query": "INSERT INTO users(name) VALUES (NULL)"})
    assert "NOT NULL" in error.message
    expect_error("invalid_argument", call, ctx, "sql_query", {"database": db})  # query missing
    expect_error("invalid_argument", call, ctx, "sql_query", {"database": db, "query": "  "})
    expect_error("invalid_argument", call, ctx, "sql_query", {"database": db, "query": "SELECT 1", "max_rows": 0})


def test_paths_are_checked(call: ToolCaller, ctx: ToolContext, workdir: Path) -> None:
    error = expect_error("permission_denied", call, ctx, "sql_query",
                         {"database": "/tmp/aikit-elsewhere.db", "query": "CREATE TABLE t(x)"})
    assert error.details["rule"] == "allowed_paths"
    expect_error("not_found", call, ctx, "sql_query", {"database": "missing.db", "query": "SELECT 1"})
    assert not (workdir / "missing.db").exists(), "a read must not create the database file"
    (workdir / "notadb.db").write_text("hello, this is not sqlite" * 100)
    error = expect_error("invalid_argument", call, ctx, "sql_query", {"database": "notadb.db", "query": "SELECT * FROM t"})
    assert "not a SQLite database" in error.message


def test_attach_and_vacuum_into_refused(call: ToolCaller, ctx: ToolContext, db: str) -> None:
    error = expect_error("permission_denied", call, ctx, "sql_query",
                         {"database": db, "query": "ATTACH DATABASE '/tmp/aikit-attack.db' AS other"})
    assert error.details["rule"] == "sql_attach"
    expect_error("permission_denied", call, ctx, "sql_query", {"database": db, "query": "VACUUM INTO '/tmp/aikit-copy.db'"})
    assert not Path("/tmp/aikit-copy.db").exists()


def test_timeout_interrupts_the_statement(call: ToolCaller, ctx: ToolContext, db: str) -> None:
    endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
    started = time.monotonic()
    error = expect_error("timeout", call, ctx, "sql_query", {"database": db, "query": endless, "timeout_s": 0.3})
    assert time.monotonic() - started < 20  # the endless statement was interrupted
    assert "interrupted" in error.message


def test_locked_database_waits_then_fails(call: ToolCaller, env: ToolEnv, workdir: Path) -> None:
    ctx = ToolContext(env.policy(), config={"tools.sql_busy_timeout_s": 0.2})
    call(ctx, "sql_query", {"database": "busy.db", "query": "CREATE TABLE t(x)"})
    holder = sqlite3.connect(workdir / "busy.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        error = expect_error("timeout", call, ctx, "sql_query", {"database": "busy.db", "query": "INSERT INTO t VALUES (1)"})
        assert "locked" in error.message
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert call(ctx, "sql_query", {"database": "busy.db", "query": "INSERT INTO t VALUES (1)"})["changes"] == 1
