"""``Supervisor`` from Lua: Lua workers (handlers run on the Lua thread through the dispatcher),
send/call, a crash and its restart seen from Lua, one_for_all, intensity, nesting, errors, docs.

Engines are built as in test_lua_components.py; the Supervisor global is installed by calling the
binding's ``install`` directly.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from aikit_components.components import Components
from aikit_components.config import Config
from aikit_kernel import runtime
from aikit_kernel.lua.api import supervision
from aikit_kernel.lua_runtime import build_lua_runtime
from tests.support.lua import Lua, RecordingOutput


@pytest.fixture
def lua(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lua]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AIKIT_DATA_DIR", str(tmp_path / "data"))
    config = Config.load(cwd=tmp_path, env={}, user_dir=tmp_path / "user-config")
    components = Components.open(config=config, data_dir=tmp_path / "data", plugins=False,
                                 loop_getter=runtime.get_loop)
    out = RecordingOutput()
    built = build_lua_runtime(out, components)
    engine = built.engine
    made = Lua(engine, components, built.scope, out)
    made.registry = supervision.install(engine, components)  # type: ignore[attr-defined]
    made.run("""
        log = {}
        function counter(name)
          return function()
            return {
              init = function() log[#log + 1] = 'start ' .. name return {n = 0} end,
              handle = function(s, msg)
                if msg.op == 'crash' then error('injected fault in ' .. name) end
                if msg.op == 'add' then s.n = s.n + msg.by end
                if msg.op == 'quit' then return Supervisor.exit('bye') end
                if msg.op == 'sleep' then sleep(msg.s) end
                return s.n
              end,
              terminate = function(s, reason) log[#log + 1] = 'stop ' .. name end,
            }
          end
        end
        -- wait (serving the loop's calls into Lua) until child `name` was restarted `n` times and runs
        function wait_restart(sup, name, n)
          for _ = 1, 400 do
            for _, c in ipairs(sup:children()) do
              if c.name == name and c.restarts >= n and c.state == 'running' then return c end
            end
            sleep(0.005)
          end
          error('no restart of ' .. name)
        end""")
    yield made
    for sup in made.registry.handles.objects():
        if sup.state == "running":
            runtime.run_sync(sup.stop(), timeout=5, service=engine.dispatcher.service, wake=engine.dispatcher.wake)


def test_counter_worker_send_and_call(lua: Lua) -> None:
    assert lua.run("""
        sup = Supervisor.new{strategy = 'one_for_one', children = {{name = 'counter', start = counter('counter')}}}
        sup:start()
        sup:send('counter', {op = 'add', by = 2})
        sup:send('counter', {op = 'add', by = 3})
        return sup:call('counter', {op = 'get'}, 2)""") == 5
    assert lua.run("return sup:call('counter', {op = 'add', by = 1})") == 6  # handler state persists across cells
    rows = lua.run("return sup:children()")
    assert rows == [{"name": "counter", "state": "running", "restart": "permanent", "restarts": 0, "kind": "worker"}]
    status = lua.run("return sup:status()")
    assert status["state"] == "running" and status["strategy"] == "one_for_one" and status["counts"]["active"] == 1
    assert lua.run("return tostring(sup):match('^supervisor')") == "supervisor"


def test_crash_and_restart_visible_from_lua(lua: Lua) -> None:
    lua.run("""
        sup = Supervisor.new{children = {{name = 'a', start = counter('a')}, {name = 'b', start = counter('b')}}}
        sup:start()
        sup:call('a', {op = 'add', by = 10}) sup:call('b', {op = 'add', by = 20})""")
    code, message = lua.run("local ok, e = pcall(sup.call, sup, 'b', {op = 'crash'}) return e.code, e.message")
    assert code == "actor_crashed" and "injected fault in b" in message
    row = lua.run("return wait_restart(sup, 'b', 1)")
    assert row["restarts"] == 1
    assert lua.run("return sup:call('b', {op = 'get'}), sup:call('a', {op = 'get'})") == (0, 10)  # only b was reset
    # a crash by send, seen through the events too
    lua.run("events = {} Event.subscribe('supervisor.*', function(e) events[#events + 1] = e end)")
    lua.run("sup:send('a', {op = 'crash'}) wait_restart(sup, 'a', 1) Event.dispatch()")
    topics = lua.run("local t = {} for _, e in ipairs(events) do t[#t + 1] = e.topic .. ' ' .. e.payload.child end return t")
    assert topics == ["supervisor.child_exited a", "supervisor.child_restarted a"]
    assert "injected fault in a" in lua.run("return events[1].payload.reason")
    assert lua.run("return log") == ["start a", "start b", "stop b", "start b", "stop a", "start a"]


def test_one_for_all_from_lua(lua: Lua) -> None:
    lua.run("""
        sup = Supervisor.new{strategy = 'one_for_all', intensity = 5, period_s = 10, name = 'all', children = {
          {name = 'a', start = counter('a')}, {name = 'b', start = counter('b')}, {name = 'c', start = counter('c')}}}
        sup:start()
        for _, n in ipairs{'a', 'b', 'c'} do sup:call(n, {op = 'add', by = 1}) end
        log = {}
        sup:send('b', {op = 'crash'})
        wait_restart(sup, 'c', 1)""")
    assert lua.run("return log") == ["stop b", "stop c", "stop a", "start a", "start b", "start c"]
    assert lua.run("return sup:call('a', {op = 'get'}), sup:call('b', {op = 'get'}), sup:call('c', {op = 'get'})") \
        == (0, 0, 0)
    assert [r["restarts"] for r in lua.run("return sup:children()")] == [1, 1, 1]


def test_intensity_transient_and_nested_from_lua(lua: Lua) -> None:
    lua.run("""
        inner_made = 0
        sup = Supervisor.new{strategy = 'one_for_one', name = 'outer', children = {
          {name = 'inner', start = function()
             inner_made = inner_made + 1
             inner = Supervisor.new{name = 'inner', intensity = 0, children = {{name = 'w', start = counter('w')}}}
             return inner
           end},
          {name = 't', start = counter('t'), restart = 'transient'}}}
        sup:start()""")
    assert lua.run("return sup:call('t', {op = 'quit'})") == "bye"
    lua.run("sleep(0.05)")
    assert [(r["name"], r["kind"], r["state"], r["restarts"]) for r in lua.run("return sup:children()")] == \
        [("inner", "supervisor", "running", 0), ("t", "worker", "stopped", 0)]  # transient, normal exit: no restart
    assert lua.run("local ok, e = pcall(sup.send, sup, 't', {}) return e.code") == "actor_stopped"
    assert lua.run("local ok, e = pcall(sup.call, sup, 'inner', {}) return e.code") == "invalid_argument"
    # the inner supervisor allows no restart: its worker's crash shuts it down and escalates to outer
    lua.run("Event.subscribe('supervisor.shutdown', function(e) shutdown = e.payload end)")
    lua.run("first = inner inner:send('w', {op = 'crash'}) wait_restart(sup, 'inner', 1)")
    assert lua.run("Event.dispatch() return shutdown.supervisor, shutdown.reason") == \
        ("inner", "shutdown: restart intensity exceeded")
    assert lua.run("return first:status().state, inner:status().state, first ~= inner, inner_made") == \
        ("crashed", "running", True, 2)
    assert lua.run("return inner:call('w', {op = 'get'})") == 0


def test_errors_timeouts_and_docs(lua: Lua) -> None:
    assert lua.run("local ok, e = pcall(Supervisor.new, {strategy = 'bogus'}) return e.code") == "invalid_argument"
    assert "unknown option" in lua.run("local ok, e = pcall(Supervisor.new, {stratgy = 'x'}) return e.message")
    assert lua.run("""local ok, e = pcall(Supervisor.new, {children = {{name = 'a', start = 1}}})
                      return e.code""") == "invalid_argument"
    assert lua.run("""local ok, e = pcall(Supervisor.new, {children = {{name = 'a', start = function() end,
                      restart = 'sometimes'}}}) return e.code""") == "invalid_argument"
    # a child whose start fails: the supervisor does not start; the started children are stopped again
    code, message = lua.run("""
        log = {}
        local bad = Supervisor.new{children = {{name = 'a', start = counter('a')},
                                               {name = 'b', start = function() return 42 end}}}
        local ok, e = pcall(bad.start, bad)
        return e.code, e.message""")
    assert code == "supervisor_start_failed" and "'b'" in message
    assert lua.run("return log") == ["start a", "stop a"]
    # positional {name, start}, call timeout, unknown child
    lua.run("""sup = Supervisor.new{children = {{'slow', counter('slow')}}} sup:start()""")
    assert lua.run("local ok, e = pcall(sup.call, sup, 'slow', {op = 'sleep', s = 0.2}, 0.05) return e.code") == "timeout"
    assert lua.run("return sup:call('slow', {op = 'get'})") == 0
    assert lua.run("local ok, e = pcall(sup.send, sup, 'nope', {}) return e.code") == "not_found"
    lua.run("sup:stop()")
    assert lua.run("return sup:status().state") == "stopped"
    assert lua.engine.introspection.inspect("Supervisor.new", 14).startswith("Supervisor.new{")
    assert "sup:call" in lua.engine.introspection.inspect("sup:call", 8)
    assert lua.engine.introspection.inspect("Supervisor", 5).startswith("Supervisor")
