"""How long a Lua engine lives: a closed engine (and one dropped without closing) is freed by
Python's collector, with its Lua state and what its globals refer to; one left open at exit is
closed by an ``atexit`` hook, so its Lua finalizers cannot call into a half-freed interpreter.

The engine is in a reference cycle by construction (its runtime holds the host functions Lua
calls, and they hold the engine); lupa shows that cycle to the collector. What kept engines alive
for the life of the process were module-level references: the supervision adapters and the table
makers (see docs/architecture.md, "Who owns an engine")."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import weakref
from pathlib import Path

import pytest

from aikit_components.components import Components
from aikit_kernel import runtime
from aikit_kernel.lua.engine import LuaEngine
from aikit_kernel.lua_runtime import build_lua_runtime
from tests.support.lua import Lua, RecordingOutput, open_lua

REPO = Path(__file__).resolve().parents[1]

# A cell that uses what an engine hands to Lua: print, tools (a Python one and a Lua one), State,
# an event subscription and a hook calling Lua back, an agent, a workflow with a Lua step, a
# supervisor with a Lua worker and an agent child, MCP.expose, a coroutine, a file left open and
# finalizers (one on garbage, one on a global).
USE_EVERYTHING = """
print('hi')
State.set('global', 'k', {a = 1})
local v = State.get('global', 'k')
Tool.call('hash', {text = 'x'})
Tool.define{name = 'mine', description = 'd', params = {}, fn = function(a) print('in tool') return 'ok' end}
Tool.call('mine', {})
sub = Event.subscribe('my.event', function(e) print('got', e) end)
Event.publish('my.event', {x = 1})
Event.dispatch()
hook = Hook.register('tool.before', function(c) return nil end)
Tool.call('hash', {text = 'y'})
local agent = Agent.new{name = 'a1', model = Agent.scripted{'hello', 'again'}}
print(agent:run('hi').text)
local wf = Workflow.new{name = 'totals', inputs = {a = 2, b = 3}, steps = {
  {id = 'sum', tool = 'calculate', params = {expression = '{{input.a}} + {{input.b}}'}},
  {id = 'double', fn = function(params, ctx) return ctx.steps.sum.output * 2 end, depends_on = {'sum'}},
}}
assert(wf:run().status == 'succeeded')
local function counter()
  return {init = function() return {n = 0} end, handle = function(s, msg) s.n = s.n + msg.add return s.n end}
end
local sup = Supervisor.new{children = {{name = 'counter', start = counter},
                                       {name = 'agent', start = function() return agent end}}}:start()
assert(sup:call('counter', {add = 2}) == 2)
assert(sup:call('agent', {input = 'hi'}).text == 'again')
sup:stop()
MCP.expose{tools = {'mine'}, agents = {agent}}
co = coroutine.wrap(function() coroutine.yield(1) end) co()
f = io.open('left-open.txt', 'w') f:write('x')
do local t = setmetatable({}, {__gc = function() print('garbage finalizer') end}) end
g = setmetatable({}, {__gc = function() print('bye') State.get('global', 'k') end})
"""


def _used(lua: Lua) -> tuple[weakref.ref[LuaEngine], weakref.ref[object]]:
    """Run USE_EVERYTHING on ``lua``; weak references to its engine and the engine's Host."""
    result = lua.engine.run_cell(USE_EVERYTHING, "[1]")
    assert result.error is None, result.error
    return weakref.ref(lua.engine), weakref.ref(lua.engine.host)


def test_a_closed_engine_and_its_host_are_freed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    lua = open_lua(tmp_path)
    engine, host = _used(lua)
    lua.close()
    lua.engine.close()  # closing again does nothing
    closed, out = lua.engine.closed, lua.out  # (an assert's rewritten temporaries would keep the engine)
    del lua
    assert closed
    gc.collect()
    assert engine() is None and host() is None
    assert "garbage finalizer" in "".join(text for _, text in out.streams)  # ran at close
    assert (tmp_path / "left-open.txt").read_text() == "x"


def test_an_engine_dropped_without_closing_is_closed_then_freed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    components = Components.open(data_dir=tmp_path / "data", plugins=False, loop_getter=runtime.get_loop)
    try:
        out = RecordingOutput()
        built = build_lua_runtime(out, components)
        result = built.engine.run_cell(
            "f = io.open('dropped.txt', 'w') f:write('kept')\n"
            "do local t = setmetatable({}, {__gc = function() print('garbage finalizer') end}) end\n"
            "g = setmetatable({}, {__gc = function() print('bye') end})", "[1]")
        assert result.error is None, result.error
        engine = weakref.ref(built.engine)
        del built, result
        gc.collect()
        assert engine() is None
        printed = "".join(text for _, text in out.streams)
        # Closed before its state was freed: the garbage's finalizer ran, the global's was switched off.
        assert "garbage finalizer" in printed and "bye" not in printed
        assert (tmp_path / "dropped.txt").read_text() == "kept"
    finally:
        components.close()


def test_engines_made_and_closed_in_a_loop_do_not_pile_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """200 engines over one set of components (as a worker runs shipped steps): none is kept, and
    the objects the collector tracks do not grow with their number (each engine is ~2,200)."""
    monkeypatch.chdir(tmp_path)
    components = Components.open(data_dir=tmp_path / "data", plugins=False, loop_getter=runtime.get_loop)
    code = ("print('hi') State.set('global', 'k', {n = 1}) local v = State.get('global', 'k')\n"
            "local h = Tool.call('hash', {text = 'x'})\n"
            "local t = setmetatable({}, {__gc = function() print('bye') end})\n"
            "return coroutine.wrap(function() coroutine.yield(v.n) end)()")

    def cycle() -> weakref.ref[LuaEngine]:
        engine = build_lua_runtime(RecordingOutput(), components).engine
        try:
            result = engine.run_cell(code, "[1]")
            assert result.error is None and result.values == [1], result.error
        finally:
            engine.close()
        return weakref.ref(engine)

    try:
        for _ in range(10):
            cycle()
        gc.collect()
        before = len(gc.get_objects())
        engines = [cycle() for _ in range(200)]
        gc.collect()
        assert sum(e() is not None for e in engines) == 0
        assert len(gc.get_objects()) - before < 1000  # was ~440,000 (2,200 an engine)
    finally:
        components.close()


def test_supervised_agents_of_two_engines_each_find_their_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An agent returned by a supervisor child's start() is recognised by its own engine's
    agent binding (kept per engine since the adapters are no longer a module-level list)."""
    monkeypatch.chdir(tmp_path)
    code = ("local agent = Agent.new{name = 'a', model = Agent.scripted{'%s'}}\n"
            "local sup = Supervisor.new{children = {{name = 'a', start = function() return agent end}}}:start()\n"
            "local text = sup:call('a', {input = 'hi'}).text sup:stop() return text")
    first, second = open_lua(tmp_path / "one"), open_lua(tmp_path / "two")
    try:
        assert first.run(code % "from one") == "from one"
        assert second.run(code % "from two") == "from two"
    finally:
        first.close()
        second.close()


_LEFT_OPEN = textwrap.dedent("""
    import sys, threading, time
    from pathlib import Path
    from aikit_components.components import Components
    from aikit_kernel import runtime
    from aikit_kernel.lua.engine import LuaEngine
    from aikit_kernel.lua_runtime import build_lua_runtime
    from aikit_kernel.output import TerminalOutput

    how = sys.argv[1]
    if how == "bare":
        engine = LuaEngine(TerminalOutput())
    else:
        components = Components.open(data_dir=Path("data"), plugins=False, loop_getter=runtime.get_loop)
        engine = build_lua_runtime(TerminalOutput(), components).engine
    result = engine.run_cell(
        "do local t = setmetatable({}, {__gc = function() print('garbage finalizer') end}) end "
        "g = setmetatable({}, {__gc = function() print('bye') %s end})" % sys.argv[2], "[1]")
    assert result.error is None, result.error
    if how == "running":  # still running a loop on a daemon thread when the process exits
        threading.Thread(target=engine.run_cell, args=("while true do end", "[2]"), daemon=True).start()
        while not engine.running():
            time.sleep(0.01)
    print("exiting", flush=True)
""")

# What the finalizer of a global calls besides print.
CALLS = ["", "State.get('global', 'k')", "Tool.call('hash', {text = 'x'})"]


@pytest.mark.parametrize(("how", "calls"), [("bare", ""), *[("components", c) for c in CALLS], ("running", "")])
def test_an_engine_nobody_closed_is_closed_at_exit(how: str, calls: str, tmp_path: Path) -> None:
    """Never closed (nor dropped: a module global), an engine is closed by the atexit hook: the
    process ends with status 0; its garbage's finalizers ran, those of reachable objects were
    switched off (they do not run). An engine still running on a daemon thread is interrupted
    first. Before the hook, these exited with SIGSEGV (139) (or, running, would wait forever)."""
    done = subprocess.run([sys.executable, "-c", _LEFT_OPEN, how, calls],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"
    assert done.stdout.startswith("exiting")
    assert "garbage finalizer" in done.stdout and "bye" not in done.stdout
