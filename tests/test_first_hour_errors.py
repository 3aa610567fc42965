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


def test_invalid_argument_is_not_retried(lua: Lua) -> None:
    attempts, code = lua.run("""
        local r = Workflow.new{name = 'w', steps = {{id = 'x', retries = 3,
          fn = function() return Tool.call('read_file', {}) end}}}:run()
        return r.steps.x.attempts, r.steps.x.error.code""")
    assert (attempts, code) == (1, "invalid_argument")
    calls = lua.run("""
        local calls = 0
        Tool.define{name = 'bad', description = 'd', params = {type = 'object', properties = {}},
          fn = function() calls = calls + 1 error({code = 'invalid_argument', message = 'nope'}) end}
        Hook.register('tool.error', function(p) return {action = 'retry'} end)
        pcall(Tool.call, 'bad', {})
        return calls""")
    assert calls == 1


def test_misspelled_options_get_a_suggestion(lua: Lua) -> None:
    failure = lua.fail("Workflow.new{name = 'w', steps = {{id = 'x', tol = 'read_file'}}}")
    assert "'tol': did you mean 'tool'?" in failure.evalue
    failure = lua.fail("Agent.new{modle = 'test'}")
    assert "'modle': did you mean 'model'?" in failure.evalue


def test_kindless_step_and_nameless_workflow_are_reported(lua: Lua) -> None:
    lua.run("Workflow.new{steps = {{id = 'x'}}}")
    warnings = "".join(t for name, t in lua.out.streams if name == "stderr")
    assert "step 'x' has no kind, so it is a noop" in warnings
    assert "Workflow.new without a name" in warnings


def test_failed_run_raises_when_asked(lua: Lua) -> None:
    failure = lua.fail("Workflow.new{name = 'w', steps = {{id = 'a', fn = function() error('boom') end}}}"
                       ":run{raise = true}")
    assert failure.ename == "workflow_failed"
    assert "workflow 'w' failed" in failure.evalue and "step 'a' failed" in failure.evalue and "boom" in failure.evalue
    assert lua.run("return Workflow.new{name = 'w', steps = {{id = 'a', noop = true}}}:run{raise = true}.status") == \
        "succeeded"


def test_tool_argument_errors_speak_lua(lua: Lua) -> None:
    message = lua.run("local ok, e = pcall(Tool.call, 'read_file', {path = 'x', encoding = {}, max_bytes = {1}}) "
                      "return e.message")
    assert "encoding: expected string, got table (with named fields)" in message or \
        "encoding: expected string, got table (a list)" in message
    assert "max_bytes: expected integer, got table (a list)" in message
    assert "object" not in message and "array" not in message


def test_tools_info_defaults_are_lua_literals() -> None:
    import subprocess
    import sys
    from pathlib import Path

    aikit = str(Path(sys.executable).with_name("aikit"))
    out = subprocess.run([aikit, "tools", "info", "read_file"], capture_output=True, text=True, timeout=60).stdout
    assert '(default "utf-8")' in out and "'utf-8'" not in out


def test_misspelled_parameter_suggests_the_right_one(lua: Lua) -> None:
    message = lua.run("""
        Tool.define{name = 'shout', description = 'd', params = {type = 'object', properties = {text = {type = 'string'}},
          additionalProperties = false}, fn = function(a) return a.text end}
        local ok, e = pcall(Tool.call, 'shout', {txt = 'hi'})
        return e.message""")
    assert "txt: unknown parameter; did you mean 'text'? (known: text)" in message


def test_an_interrupt_says_which_line_was_running(lua: Lua) -> None:
    from tests.support.lua import LateInterrupt

    LateInterrupt(lua.engine, 0.5)
    failure = lua.fail("local x = 0\nwhile true do\n  x = x + 1\nend")
    assert failure.interrupted
    assert failure.traceback[-1].endswith(f"execution interrupted at [{lua.cells}]:3") or \
        failure.traceback[-1].endswith(f"execution interrupted at [{lua.cells}]:2")


@pytest.mark.parametrize(("call", "expected"), [
    ("State.set('k', 1)", "State.set(scope, key, value [, opts]) takes 3 to 4 arguments, got 2"),
    ("State.keys()", "State.keys(scope [, prefix]) takes 1 to 2 arguments, got 0"),
])
def test_a_missing_argument_shows_the_parameters_not_a_python_error(lua: Lua, call: str, expected: str) -> None:
    """A forgotten argument (the State scope, most often) was `internal_error: TypeError:
    install.<locals>.set_() missing 1 required positional argument`."""
    failure = lua.fail(call)
    assert failure.ename == "invalid_argument", failure.evalue
    assert expected in failure.evalue and "?" + call.split("(")[0] in failure.evalue
    assert "TypeError" not in failure.evalue and "positional" not in failure.evalue
    assert any(f"[{lua.cells}]:1:" in line for line in failure.traceback)  # the user's line


def test_a_wrong_type_is_named_in_luas_words(lua: Lua) -> None:
    assert lua.fail("Tool.call()").evalue == "Tool.call: the tool name must be a non-empty string, got nil"
    assert lua.fail("State.update('global', 'k', 5)").evalue.endswith("must be a function, got number")
