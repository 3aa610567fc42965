"""Attacks through sql_query on a real SQLite file: opening other files (ATTACH, VACUUM INTO),
loading native code (load_extension), raw pointers (fts3_tokenizer), process-wide or dangerous
pragmas. Each is refused with a clear error, nothing is written outside, and ordinary queries
(pragmas for reading the schema included) keep working on the same database."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from aikit_components.tools import ToolContext
from aikit_components.tools.database import TOOLS

from .conftest import contained, make_caller

call = make_caller(TOOLS)
HOW = ("query each database file with its own sql_query call", "copy_file", "the pragmas allowed are")


@pytest.fixture
def db(ctx: ToolContext, workdir: Path) -> str:
    path = str(workdir / "notes.db")
    call(ctx, "sql_query", {"database": path, "query": "CREATE TABLE notes(id INTEGER PRIMARY KEY, title TEXT)"})
    call(ctx, "sql_query", {"database": path, "query": "INSERT INTO notes(title) VALUES (?)", "params": ["milk"]})
    return path


def still_works(ctx: ToolContext, db: str) -> None:
    rows = call(ctx, "sql_query", {"database": db, "query": "SELECT title FROM notes"})["rows"]
    assert rows == [["milk"]]


@pytest.mark.parametrize("query, says", [
    ("ATTACH DATABASE '{outside}/stolen.db' AS x", "ATTACH"),
    ("ATTACH '{outside}/stolen.db' AS x", "ATTACH"),
    ("DETACH DATABASE main", "DETACH"),
    ("SELECT load_extension('/tmp/evil.so')", "load_extension"),
    ("SELECT fts3_tokenizer('simple')", "fts3_tokenizer"),
    ("SELECT fts3_tokenizer('simple', x'4141414141414141')", "fts3_tokenizer"),
    ("PRAGMA temp_store_directory = '{outside}'", "temp_store_directory"),
    ("PRAGMA writable_schema = ON", "writable_schema"),
    ("PRAGMA journal_mode = OFF", "journal_mode"),
    ("PRAGMA mmap_size = 1099511627776", "mmap_size"),
])
def test_statements_reaching_outside_the_database_are_refused(ctx: ToolContext, db: str, outside: Path, query: str,
                                                              says: str) -> None:
    error = contained("permission_denied", call, ctx, "sql_query",
                      {"database": db, "query": query.format(outside=outside)}, says=[says], how=HOW)
    assert error.details["rule"] in ("sql_attach", "sql_statement")
    assert not (outside / "stolen.db").exists()
    still_works(ctx, db)


@pytest.mark.parametrize("query", ["VACUUM INTO '{outside}/copy.db'", "VACUUM main INTO '{outside}/copy.db'",
                                   "/* c */ vacuum\ninto '{outside}/copy.db'"])
def test_vacuum_into_is_refused(ctx: ToolContext, db: str, outside: Path, query: str) -> None:
    contained("permission_denied", call, ctx, "sql_query", {"database": db, "query": query.format(outside=outside)},
              says=["VACUUM INTO"], how=HOW)
    assert not (outside / "copy.db").exists()
    assert call(ctx, "sql_query", {"database": db, "query": "VACUUM"})["changes"] == 0  # a plain VACUUM works
    still_works(ctx, db)


def test_vacuum_into_with_a_bound_parameter_is_refused(ctx: ToolContext, db: str, outside: Path) -> None:
    contained("permission_denied", call, ctx, "sql_query",
              {"database": db, "query": "VACUUM INTO ?", "params": [str(outside / "copy.db")]}, says=["VACUUM INTO"])
    assert not (outside / "copy.db").exists()


def test_reading_pragmas_still_work(ctx: ToolContext, db: str) -> None:
    info = call(ctx, "sql_query", {"database": db, "query": "PRAGMA table_info(notes)"})
    assert [row[1] for row in info["rows"]] == ["id", "title"]
    listed = call(ctx, "sql_query", {"database": db, "query": "SELECT name FROM pragma_table_info('notes')"})
    assert listed["rows"] == [["id"], ["title"]]
    assert call(ctx, "sql_query", {"database": db, "query": "PRAGMA user_version = 7"})["changes"] == 0
    assert call(ctx, "sql_query", {"database": db, "query": "PRAGMA user_version"})["rows"] == [[7]]
    assert call(ctx, "sql_query", {"database": db, "query": "PRAGMA foreign_keys = ON"})
    assert call(ctx, "sql_query", {"database": db, "query": "PRAGMA integrity_check"})["rows"] == [["ok"]]


def test_fts_without_raw_pointers_still_works(ctx: ToolContext, db: str) -> None:
    if "ENABLE_FTS5" not in {row[0] for row in sqlite3.connect(":memory:").execute("PRAGMA compile_options")}:
        pytest.skip("this SQLite has no FTS5")
    call(ctx, "sql_query", {"database": db, "query": "CREATE VIRTUAL TABLE docs USING fts5(body)"})
    call(ctx, "sql_query", {"database": db, "query": "INSERT INTO docs(body) VALUES ('hello world')"})
    found = call(ctx, "sql_query", {"database": db, "query": "SELECT body FROM docs WHERE docs MATCH 'hello'"})
    assert found["rows"] == [["hello world"]]
