"""Errors that say what, where and how to fix (issue 17): '.' instead of ':' on every handle
kind, misspelled globals, pcall-caught errors naming the cell."""

from __future__ import annotations

import pytest

from tests.support.lua import Lua


@pytest.mark.parametrize(("setup", "call", "expected"), [
    ("local a = Agent.new{model = 'test'}", "a.run('hi')", "use a:run(...), not a.run(...)"),
    ("local wf = Workflow.new{name = 'w', steps = {{id = 'x', noop = true}}}", "wf.run()",
     "use wf:run(...), not wf.run(...)"),
    ("local col = RAG.collection('c')", "col.search('q')", "use col:search(...), not col.search(...)"),
    ("local sub = Event.subscribe('x.*')", "sub.receive()", "use sub:receive(...), not sub.receive(...)"),
])
def test_dot_instead_of_colon_names_the_method_and_line(lua: Lua, setup: str, call: str, expected: str) -> None:
    failure = lua.fail(f"{setup}\n{call}\n")
    assert failure.ename == "invalid_argument"
    assert expected in failure.evalue
    assert failure.evalue.startswith(f"[{lua.cells}]:2: ")


def test_colon_calls_still_work(lua: Lua) -> None:
    assert lua.run("local a = Agent.new{model = 'test'} local r = a:run('hi') return r.text") == "test answer: hi"


def test_misspelled_global_suggests_the_closest(lua: Lua) -> None:
    failure = lua.fail("local a = Agnet.new{}")
    assert "global 'Agnet'); did you mean 'Agent'?" in failure.evalue
    caught = lua.run("local ok, e = pcall(function() Tol.list() end) return e")
    assert "did you mean 'Tool'?" in caught


def test_pcall_caught_errors_name_the_cell(lua: Lua) -> None:
    message = lua.run("local ok, e = pcall(function()\n  error('boom')\nend)\nreturn e")
    assert message == f"[{lua.cells}]:2: boom"
    message = lua.run("local ok, e = xpcall(function() error('x') end, function(m) return m end) return e")
    assert message == f"[{lua.cells}]:1: x"
