"""The component globals seen from Lua, in process: Tool, State, Session, Artifact, Event, Hook,
Config, and interrupts while Lua code runs inside a component (a Lua tool, hook or updater).

Each test gets its own ``Components`` (data under ``tmp_path``) and a fresh ``LuaEngine`` with the
globals installed, exactly as the kernel wires them (minus ZMQ): the ``lua`` and ``make_lua``
fixtures of ``tests/support/lua.py``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aikit_components.errors import AikitError
from aikit_kernel import runtime
from aikit_kernel.lua.api import expose
from tests.support.lua import LateInterrupt, Lua, later
from tests.support.processes import wait_until

ECHO = """
Tool.define{
  name = 'echo', description = 'Echo text and a count',
  params = {type = 'object', properties = {text = {type = 'string'}, n = {type = 'integer'}},
            required = {'text'}, additionalProperties = false},
  fn = function(a) return a.text .. ':' .. tostring(a.n) end,
}
"""


# ====================================================================================== Tool
class TestTool:
    def test_call_builtin_tools_with_args(self, lua: Lua, tmp_path: Path) -> None:
        written = lua.run("return Tool.call('write_file', {path = 'notes.txt', content = 'hello'})")
        assert isinstance(written, dict)
        assert (tmp_path / "notes.txt").read_text() == "hello"
        content, size = lua.run("local r = Tool.call('read_file', {path = 'notes.txt'}) return r.content, r.size")
        assert (content, size) == ("hello", 5)

    def test_validation_error_lists_every_problem(self, lua: Lua) -> None:
        code, message = lua.run("""
            local ok, err = pcall(Tool.call, 'read_file', {path = 5, bogus = 1, max_bytes = 'x'})
            assert(not ok)
            return err.code, err.message
        """)
        assert code == "invalid_argument"
        assert "path: expected string, got integer" in message
        assert "max_bytes: expected integer, got string" in message
        assert "bogus: unknown parameter" in message
        failure = lua.fail("Tool.call('read_file', {})")
        assert failure.ename == "invalid_argument" and "path: required" in failure.evalue

    def test_error_details_reach_lua(self, lua: Lua) -> None:
        # (at commit 34cdaef host_function dropped AikitError.details: err.details was always nil)
        problems, suggestions = lua.run("""
            local _, err = pcall(Tool.call, 'read_file', {path = 5, bogus = 1, max_bytes = 'x'})
            local _, nf = pcall(Tool.call, 'read_fil', {})
            return err.details and err.details.problems, nf.details and nf.details.suggestions
        """)
        assert isinstance(problems, list) and len(problems) == 3
        assert suggestions and "read_file" in suggestions
        assert lua.run("local ok, e = pcall(Config.get, 'providers.x.api_key') return e.details") == \
            {"rule": "secrets", "key": "providers.x.api_key"}
        failure = lua.fail("Tool.call('read_file', {path = 5})")
        assert failure.details is not None

    def test_unknown_tool_suggests_names(self, lua: Lua) -> None:
        code, message = lua.run("local ok, err = pcall(Tool.call, 'read_fil', {}) return err.code, err.message")
        assert code == "not_found"
        assert "did you mean" in message and "read_file" in message
        _, message = lua.run("local ok, err = pcall(Tool.info, 'zzzzqqqq') return err.code, err.message")
        assert "Tool.list()" in message
        assert lua.run("local ok, e = pcall(Tool.call, 42) return e.code") == "invalid_argument"
        message = lua.run("local ok, e = pcall(Tool.call, 'read_file', 'notatable') return e.message")
        assert "must be a table of named parameters" in message

    def test_list_info_categories(self, lua: Lua) -> None:
        lua.run(ECHO.replace("Echo text", "Echo text\\n\\nMore docs") + """
            Tool.define{name = 'zeta', description = 'z', category = 'zz_custom', fn = function() return 1 end}""")
        everything = lua.run("return Tool.list()")
        keys = [(t["category"], t["name"]) for t in everything]
        assert keys == sorted(keys)
        assert {"name": "echo", "category": "custom", "description": "Echo text", "security": "safe"} in everything
        assert ("filesystem", "read_file") in keys
        assert lua.run("return Tool.list{category = 'zz_custom'}") == [
            {"name": "zeta", "category": "zz_custom", "description": "z", "security": "safe"}]
        assert lua.run("return #Tool.list{category = 'no-such-category'}") == 0
        names = [t["name"] for t in lua.run("return Tool.list{category = 'filesystem'}")]
        assert {"read_file", "write_file"} <= set(names)
        categories = lua.run("return Tool.categories()")
        assert categories == sorted(categories) and {"custom", "filesystem", "zz_custom"} <= set(categories)
        info = lua.run("return Tool.info('read_file')")
        assert info["name"] == "read_file" and info["security"] == "read" and info["source"] == "python"
        assert info["parameters"]["required"] == ["path"]
        assert "path" in info["parameters"]["properties"] and info["doc"].startswith("Tool read_file")
        echo = lua.run("return Tool.info('echo')")
        assert echo["source"] == "lua" and echo["category"] == "custom"
        assert echo["parameters"]["properties"]["n"] == {"type": "integer"}
        code, message = lua.run("local ok, e = pcall(Tool.list, {categ = 'x'}) return e.code, e.message")
        assert code == "invalid_argument" and "categ" in message and "category" in message

    def test_define_validates_arguments_of_lua_tools(self, lua: Lua) -> None:
        lua.run(ECHO)
        assert lua.run("return Tool.call('echo', {text = 'hi', n = 2})") == "hi:2"
        code, message = lua.run("local ok, e = pcall(Tool.call, 'echo', {n = 1.5, extra = true}) return e.code, e.message")
        assert code == "invalid_argument"
        assert "text: required" in message and "n: expected integer" in message and "extra: unknown parameter" in message
        assert lua.run("return Tool.call('echo', {text = 'x'})") == "x:nil"

    def test_define_results_and_bad_specs(self, lua: Lua) -> None:
        lua.run("""
            Tool.define{name = 'shape', description = 's',
                        fn = function(a) return {list = {1, 2}, map = {k = 'v'}, f = 1.5} end}
            Tool.define{name = 'nothing', description = 'n', fn = function(a) end}""")
        assert lua.run("return Tool.call('shape')") == {"list": [1, 2], "map": {"k": "v"}, "f": 1.5}
        assert lua.run("return Tool.call('nothing', {})") is None
        for spec, fragment in [
            ("{description = 'x', fn = function() end}", "`name` must be a non-empty string"),
            ("{name = 'x', fn = 5}", "`fn` must be a function"),
            ("{name = 'x', fn = function() end, security = 'root'}", "`security` must be one of"),
            ("{name = 'x', fn = function() end, params = 'str'}", "`params` must be a JSON Schema table"),
            ("{name = 'x', fn = function() end, colour = 'red'}", "unknown option(s) colour"),
        ]:
            code, message = lua.run(f"local ok, e = pcall(Tool.define, {spec}) assert(not ok) return e.code, e.message")
            assert code == "invalid_argument" and fragment in message, (spec, message)
        assert lua.run("local ok = pcall(Tool.info, 'x') return ok") is False

    def test_define_rejects_an_unknown_schema_type(self, lua: Lua) -> None:
        code = lua.run("""
            local ok, e = pcall(Tool.define, {name = 'typo', description = 't', fn = function(a) return a.n end,
                                              params = {type = 'object', properties = {n = {type = 'interger'}}}})
            return ok or e.code""")
        assert code == "invalid_argument"

    def test_errors_inside_a_lua_tool_are_structured(self, lua: Lua) -> None:
        lua.run("""
            Tool.define{name = 'boom', description = 'b', fn = function(a) error('kaboom here') end}
            Tool.define{name = 'boom2', description = 'b',
                        fn = function(a) error({code = 'mine', message = 'custom'}) end}""")
        code, message, text = lua.run("local ok, e = pcall(Tool.call, 'boom', {}) return e.code, e.message, tostring(e)")
        assert code == "lua_error"
        assert "kaboom here" in message and text == f"lua_error: {message}"
        assert lua.run("local ok, e = pcall(Tool.call, 'boom2', {}) return e.code, e.message") == ("mine", "custom")
        failure = lua.fail("Tool.call('boom')")
        assert failure.ename == "lua_error" and "kaboom here" in failure.evalue

    def test_redefining_replaces(self, lua: Lua) -> None:
        lua.run("Tool.define{name = 'calc', description = 'Double', fn = function(a) return a.n * 2 end}")
        assert lua.run("return Tool.call('calc', {n = 2})") == 4
        lua.run("""Tool.define{name = 'calc', description = 'Triple', category = 'math2',
                               params = {type = 'object', properties = {n = {type = 'number'}}, required = {'n'}},
                               fn = function(a) return a.n * 3 end}""")
        assert lua.run("return Tool.call('calc', {n = 2}), Tool.info('calc').description") == (6, "Triple")
        assert [t["name"] for t in lua.run("return Tool.list()")].count("calc") == 1
        assert lua.run("local ok, e = pcall(Tool.call, 'calc', {}) return e.code") == "invalid_argument"
        assert lua.engine.introspection.inspect("Tool", 2) is not None

    def test_lua_tool_called_from_the_io_loop_runs_on_the_lua_thread(self, lua: Lua) -> None:
        lua_thread = threading.current_thread()
        expose(lua.engine, "Probe", {"on_test_thread": lambda: threading.current_thread() is lua_thread})
        lua.run("""
            calls = 0
            Tool.define{name = 'square', description = 'sq',
                        params = {type = 'object', properties = {n = {type = 'integer'}}},
                        fn = function(a) calls = calls + 1 return {v = a.n * a.n, lua_thread = Probe.on_test_thread()} end}
            Tool.define{name = 'bad', description = 'b', fn = function() error('from the loop') end}""")
        ctx = lua.components.tool_context()
        futures: list[Any] = []

        def from_loop() -> None:
            loop = runtime.get_loop()
            futures.append(asyncio.run_coroutine_threadsafe(lua.components.tools.acall("square", {"n": 7}, ctx), loop))
            futures.append(asyncio.run_coroutine_threadsafe(lua.components.tools.acall("bad", {}, ctx), loop))

        timer = later(0.05, from_loop)
        calls = lua.run("for i = 1, 1200 do sleep(0.05) if calls > 0 then break end end return calls")
        timer.join()
        assert calls == 1
        deadline = time.monotonic() + 60
        while not all(f.done() for f in futures) and time.monotonic() < deadline:
            lua.engine.dispatcher.service()  # this thread is the Lua thread: keep serving the loop's calls
            time.sleep(0.01)
        assert futures[0].result(timeout=5) == {"v": 49, "lua_thread": True}
        with pytest.raises(AikitError) as info:
            futures[1].result(timeout=5)
        assert info.value.code == "lua_error" and "from the loop" in info.value.message
        assert lua.run("return calls") == 1

    def test_tool_call_budget(self, make_lua: Callable[..., Lua]) -> None:
        lua = make_lua(max_tool_calls=3)
        lua.run(ECHO)
        assert lua.run("return Tool.call('echo', {text = 'a'}), Tool.call('echo', {text = 'b'})") == ("a:nil", "b:nil")
        assert lua.run("return Tool.call('echo', {text = 'c'})") == "c:nil"  # budget spans cells of one run
        code, message = lua.run("local ok, e = pcall(Tool.call, 'echo', {text = 'd'}) return e.code, e.message")
        assert code == "budget_exceeded" and "3 calls" in message and "max_tool_calls" in message
        assert lua.run("local ok, e = pcall(Tool.call, 'echo', {text = 'd'}) return e.details") == \
            {"rule": "max_tool_calls", "limit": 3}
        assert lua.fail("Tool.call('read_file', {path = 'x'})").ename == "budget_exceeded"
        lua.scope.renew()  # what the kernel does before every cell
        assert lua.run("return Tool.call('echo', {text = 'e'})") == "e:nil"

    def test_argument_tables_of_every_shape_reach_the_tool_alike(self, lua: Lua) -> None:
        """Flat tables (string keys, scalar values) cross into Python as a list of values, others as
        a table: a tool sees the same arguments either way, and what Lua passed is not kept."""
        from aikit_components.tools import Tool

        seen: list[dict[str, Any]] = []

        def keep(**kwargs: Any) -> int:
            seen.append(kwargs)
            return len(seen)

        keep_args = Tool(name="keep_args", description="Keep the arguments", fn=keep, parameters={"type": "object"})
        lua.components.tools.register(keep_args)
        lua.run("Tool.call('keep_args', {s = 'text', i = 3, f = 1.5, t = true, no = false, raw = '\\xff'})")
        lua.run("Tool.call('keep_args', {nested = {1, 2}, s = 'x'})")
        lua.run("Tool.call('keep_args', {})")
        lua.run("Tool.call('keep_args')")
        lua.run("local many = {} for i = 1, 30 do many['k' .. i] = i end Tool.call('keep_args', many)")
        lua.run("Tool.call('keep_args', setmetatable({s = 'raw'}, {__index = {hidden = 1}}))")
        assert seen[0] == {"s": "text", "i": 3, "f": 1.5, "t": True, "no": False, "raw": b"\xff"}
        assert type(seen[0]["i"]) is int and type(seen[0]["f"]) is float
        assert seen[1] == {"nested": [1, 2], "s": "x"}
        assert seen[2] == {} and seen[3] == {}
        assert seen[4] == {f"k{i}": i for i in range(1, 31)}
        assert seen[5] == {"s": "raw"}
        problem = lua.fail("Tool.call('keep_args', {1, 2})")
        assert problem.ename == "invalid_argument" and "table of named parameters" in problem.evalue
        assert lua.fail("Tool.call(5, {a = 1})").evalue.startswith("Tool.call: the tool name must be a non-empty string")
        # a call that failed keeps nothing alive either: the megabyte it was given is freed
        grown = lua.run("""
            collectgarbage() collectgarbage()
            local before = collectgarbage('count')
            local function attempt() pcall(Tool.call, 'no_such_tool', {text = string.rep('x', 1000000)}) end
            attempt()
            Tool.call('keep_args', {})
            collectgarbage() collectgarbage()
            return collectgarbage('count') - before
        """)
        assert grown < 500  # KB

    def test_budget_from_config(self, make_lua: Callable[..., Lua]) -> None:
        lua = make_lua(env={"AIKIT_SECURITY__MAX_TOOL_CALLS": "1"})
        lua.run(ECHO)
        assert lua.run("return Tool.call('echo', {text = 'a'})") == "a:nil"
        assert lua.fail("Tool.call('echo', {text = 'b'})").ename == "budget_exceeded"


# ====================================================================================== State
class TestState:
    def test_scopes(self, lua: Lua) -> None:
        lua.run("""
            State.set('global', 'k', 'g') State.set('session', 'k', 's') State.set('user:ada', 'k', 'ada')
            State.set('agent:bot', 'k', 'bot') State.set('workflow:w1', 'k', 'w') State.set('tenant:acme', 'k', 't')""")
        assert lua.run("""return State.get('global', 'k'), State.get('session', 'k'), State.get('user:ada', 'k'),
                                 State.get('user:bob', 'k'), State.get('agent:bot', 'k'), State.get('workflow:w1', 'k'),
                                 State.get('tenant:acme', 'k')""") == ("g", "s", "ada", None, "bot", "w", "t")
        sid = lua.components.session.id
        assert lua.run(f"return State.get('session:{sid}', 'k')") == "s"
        state = lua.components.state
        assert (state.get("global", "k"), state.get("session", "k"), state.get("user:ada", "k")) == ("g", "s", "ada")
        assert state.get(f"session:{sid}", "k") == "s"

    def test_bad_scopes_and_keys(self, lua: Lua) -> None:
        code, message = lua.run("local ok, e = pcall(State.get, 'bogus', 'k') return e.code, e.message")
        assert code == "invalid_argument"
        assert "unknown state scope 'bogus'" in message and "user:<id>" in message and "global" in message
        message = lua.run("local ok, e = pcall(State.set, 'user:', 'k', 1) return e.message")
        assert "needs a non-empty id" in message
        message = lua.run("local ok, e = pcall(State.get, 'session:s-other', 'k') return e.message")
        assert "another session" in message
        assert lua.run("local ok, e = pcall(State.get, 'global', '') return e.code") == "invalid_argument"
        assert lua.run("local ok, e = pcall(State.get, 'global', 5) return e.code") == "invalid_argument"
        message = lua.run("local ok, e = pcall(State.set, 'global', 'k', 1, {ttl_s = -1}) return e.message")
        assert "State.set: ttl_s must be a positive number of seconds, got -1" in message
        message = lua.run("local ok, e = pcall(State.set, 'global', 'k', 1, {tll = 1}) return e.message")
        assert "unknown option(s) tll" in message
        assert lua.run("return State.get('global', 'k')") is None

    def test_exact_round_trip_of_lua_values(self, lua: Lua) -> None:
        checks = lua.run(r"""
            local v = {
              arr = {1, 2.0, 'x'}, map = {a = 1, b = {c = true, d = false}},
              sparse = {[1] = 'a', [3] = 'c', [10] = 'j'}, neg_keys = {[-1] = 'm', [0] = 'z'},
              empty = {}, nested_empty = {{}, {x = {}}, {{{}}}},
              bin = "a\0b\255", f = 3.0, i = 3, half = -0.5, big = math.maxinteger, small = math.mininteger,
              inf = math.huge, mixed = {1, 2, k = 'v'}, fkey = {[1.5] = 'half'}, bkey = {[true] = 'yes'},
              strnum = {['1'] = 's', [1] = 'i'}, tagged = {['$bytes'] = 'abc'}, utf8 = 'héllo ✓',
              binkey = {["\255"] = 1},
            }
            State.set('global', 'v', v)
            local r = State.get('global', 'v')
            local function same(a, b)
              if type(a) ~= type(b) then return false end
              if type(a) == 'number' then return a == b and math.type(a) == math.type(b) end
              if type(a) ~= 'table' then return a == b end
              for k, x in pairs(a) do if not same(x, b[k]) then return false end end
              for k in pairs(b) do if a[k] == nil then return false end end
              return true
            end
            return same(v, r), math.type(r.f), math.type(r.i), math.type(r.arr[2]), math.type(r.arr[1]),
                   r.bin == "a\0b\255", #r.bin, #r.arr, #r.sparse, r.sparse[3], r.sparse[2], r.sparse[10],
                   next(r.empty), type(r.nested_empty[3][1][1]), r.strnum['1'], r.strnum[1],
                   r.tagged['$bytes'], r.big == math.maxinteger, math.type(r.big), r.binkey["\255"]
        """)
        assert checks == (True, "float", "integer", "float", "integer", True, 4, 3, 1, "c", None, "j",
                          None, "table", "s", "i", "abc", True, "integer", 1)
        stored = lua.components.state.get("global", "v")
        assert stored["bin"] == b"a\x00b\xff" and stored["arr"] == [1, 2.0, "x"] and isinstance(stored["arr"][1], float)
        assert stored["sparse"] == {1: "a", 3: "c", 10: "j"} and stored["nested_empty"] == [{}, {"x": {}}, [[{}]]]
        assert lua.run("State.set('global', 'nan', 0/0) local n = State.get('global', 'nan') return n ~= n") is True
        assert lua.run("State.set('global', 'z', -0.0) return 1 / State.get('global', 'z')") == float("-inf")
        assert lua.run("State.set('global', 'holes', {1, 2, nil, 4}) local h = State.get('global', 'holes') "
                       "return h[1], h[2], h[3], h[4]") == (1, 2, None, 4)

    def test_python_sees_lua_writes_and_lua_sees_python_writes(self, lua: Lua) -> None:
        lua.run("State.set('user:ada', 'prefs', {theme = 'dark', sizes = {10, 12}})")
        assert lua.components.state.get("user:ada", "prefs") == {"theme": "dark", "sizes": [10, 12]}
        lua.components.state.set("global", "from_python", {"n": 1, "blob": b"\x00\xfe"})
        assert lua.run("local v = State.get('global', 'from_python') return v.n, v.blob == '\\0\\254'") == (1, True)

    def test_ttl(self, lua: Lua) -> None:
        assert lua.run("""
            State.set('global', 'short', 1, {ttl_s = 0.2})
            State.set('global', 'long', 2, {ttl_s = 60})
            local a, k = State.get('global', 'short'), State.keys('global')
            sleep(0.3)
            return a, k, State.get('global', 'short', 'gone'), State.keys('global'), State.get('global', 'long')
        """) == (1, ["long", "short"], "gone", ["long"], 2)

    def test_keys_with_prefix_and_delete(self, lua: Lua) -> None:
        assert lua.run("""
            State.set('global', 'p.b', 1) State.set('global', 'p.a', 2) State.set('global', 'q', 3)
            State.set('user:x', 'p.c', 4)
            return State.keys('global', 'p.'), State.keys('global'), State.keys('user:x', 'p'), #State.keys('user:y')
        """) == (["p.a", "p.b"], ["p.a", "p.b", "q"], ["p.c"], 0)
        assert lua.run("return State.delete('global', 'q'), State.delete('global', 'q'), State.get('global', 'q')") == \
            (True, False, None)

    def test_update_with_a_lua_function(self, lua: Lua) -> None:
        assert lua.run("""
            local a = State.update('global', 'n', function(v) return (v or 0) + 1 end)
            local b = State.update('global', 'n', function(v) return v + 10 end)
            local t = State.update('global', 't', function(v) v = v or {items = {}} v.items[#v.items + 1] = 'x' return v end)
            return a, b, State.get('global', 'n'), t
        """) == (1, 11, 11, {"items": ["x"]})
        code, message, value = lua.run("""
            local ok, e = pcall(State.update, 'global', 'n', function(v) error('updater failed') end)
            return e.code, e.message, State.get('global', 'n')""")
        assert code == "lua_error" and "updater failed" in message and value == 11
        assert lua.components.state.get("global", "n") == 11
        assert lua.run("local ok, e = pcall(State.update, 'global', 'n', 5) return e.code, e.message") == \
            ("invalid_argument", "State.update: the updater must be a function, got number")

    def test_compare_and_set(self, lua: Lua) -> None:
        assert lua.run("""
            return State.compare_and_set('global', 'lock', nil, 'me'), State.compare_and_set('global', 'lock', nil, 'you'),
                   State.compare_and_set('global', 'lock', 'other', 'you'), State.get('global', 'lock'),
                   State.compare_and_set('global', 'lock', 'me', 'you'), State.get('global', 'lock'),
                   State.compare_and_set('global', 'tbl', nil, {a = {1, 2}}),
                   State.compare_and_set('global', 'tbl', {a = {1, 2}}, {a = 3}),
                   State.get('global', 'tbl'), State.compare_and_set('global', 'num', nil, 1),
                   State.compare_and_set('global', 'num', 1.0, 2)
        """) == (True, False, False, "me", True, "you", True, True, {"a": 3}, True, True)

    def test_functions_cannot_be_stored(self, lua: Lua) -> None:
        assert lua.run("local ok, e = pcall(State.set, 'global', 'f', function() end) return ok or e.code") == \
            "invalid_argument"

    def test_cyclic_table_is_invalid_argument(self, lua: Lua) -> None:
        assert lua.run("local t = {} t.self = t local ok, e = pcall(State.set, 'global', 'c', t) return e.code") == \
            "invalid_argument"


# ============================================================================ Session, Artifact
class TestSessionAndArtifact:
    def test_session_current_and_list(self, lua: Lua) -> None:
        current = lua.run("return Session.current()")
        assert current["id"] == lua.components.session.id and current["status"] == "active"
        assert lua.run("return Session.current().id == Session.current().id") is True
        other = lua.components.sessions.create(name="other")
        listed = lua.run("return Session.list()")
        assert {s["id"] for s in listed} == {current["id"], other.id}
        assert lua.run("return #Session.list{limit = 1}") == 1
        lua.components.sessions.complete(other.id, "completed")
        assert [s["id"] for s in lua.run("return Session.list{status = 'completed'}")] == [other.id]
        assert "unknown option(s) bogus" in lua.run("local ok, e = pcall(Session.list, {bogus = 1}) return e.message")

    def test_artifact_put_get_list_versions_delete(self, lua: Lua) -> None:
        first = lua.run("return Artifact.put('notes.txt', 'hello')")
        assert first["version"] == 1 and first["size"] == 5 and first["mime"] == "text/plain"
        assert first["session_id"] == lua.components.session.id
        assert lua.run("return Artifact.put('notes.txt', 'hello v2', {metadata = {k = 1}}).version") == 2
        assert lua.run("""local a, b = Artifact.get('notes.txt'), Artifact.get('notes.txt', 1)
                          return a.content, a.version, a.metadata, b.content""") == ("hello v2", 2, {"k": 1}, "hello")
        assert lua.run("return Artifact.put('data.json', '{}', {mime = 'application/json'}).mime") == "application/json"
        listed = lua.run("return Artifact.list()")
        assert [(a["name"], a["version"]) for a in listed] == [("data.json", 1), ("notes.txt", 2)]
        assert [a["name"] for a in lua.run("return Artifact.list{prefix = 'no'}")] == ["notes.txt"]
        assert len(lua.run("return Artifact.list{session = Session.current().id}")) == 2
        assert lua.run("return #Artifact.list{session = 's-nobody'}") == 0
        assert [v["version"] for v in lua.run("return Artifact.versions('notes.txt')")] == [1, 2]
        assert lua.run("return Artifact.versions('none')") in ([], {})
        assert lua.components.artifacts.get("notes.txt")[1] == b"hello v2"
        assert lua.run("return Artifact.delete('notes.txt', 1), #Artifact.versions('notes.txt')") == (1, 1)
        assert lua.run("return Artifact.delete('notes.txt'), #Artifact.versions('notes.txt')") == (1, 0)
        code, message = lua.run("local ok, e = pcall(Artifact.get, 'notes.txt') return e.code, e.message")
        assert code == "not_found" and "notes.txt" in message
        message = lua.run("Artifact.put('v', 'a') Artifact.put('v', 'b') "
                          "local ok, e = pcall(Artifact.get, 'v', 9) return e.message")
        assert "stored versions: 1, 2" in message
        assert lua.run("local ok, e = pcall(Artifact.delete, 'notes.txt') return e.code") == "not_found"
        assert lua.run("local ok, e = pcall(Artifact.put, 'tbl', {a = 1}) return e.code") == "invalid_argument"
        assert lua.run("local ok, e = pcall(Artifact.put, '', 'x') return e.code") == "invalid_argument"

    def test_binary_content(self, lua: Lua) -> None:
        info, same, size = lua.run(r"""
            local data = "\0\1\2\255\254" .. string.rep("\128", 10)
            local info = Artifact.put('blob.bin', data)
            local back = Artifact.get('blob.bin')
            return info, back.content == data, #back.content""")
        assert info["mime"] == "application/octet-stream" and info["size"] == 15
        assert same is True and size == 15
        assert lua.components.artifacts.get("blob.bin")[1] == b"\x00\x01\x02\xff\xfe" + b"\x80" * 10

    def test_size_limit(self, make_lua: Callable[..., Lua]) -> None:
        lua = make_lua(env={"AIKIT_ARTIFACTS__MAX_BYTES": "100"})
        assert lua.components.artifacts.max_bytes == 100
        assert lua.run("return Artifact.put('fits', string.rep('x', 100)).size") == 100
        code, message, count = lua.run("""
            local ok, e = pcall(Artifact.put, 'big', string.rep('x', 101))
            return e.code, e.message, #Artifact.versions('big')""")
        assert code == "resource_exhausted" and "101 bytes" in message and "artifacts.max_bytes" in message
        assert count == 0
        assert lua.fail("Artifact.put('big', string.rep('\\255', 500))").ename == "resource_exhausted"


# ====================================================================================== Event
class TestEvent:
    def test_publish_subscribe_with_a_lua_callback(self, lua: Lua) -> None:
        count, inside, after, got = lua.run("""
            got = {}
            sub = Event.subscribe('job.*', function(e)
              got[#got + 1] = e.topic .. ':' .. tostring(e.payload.n) .. ':' .. e.source
            end)
            local n = Event.publish('job.done', {n = 1})
            local inside = #got          -- Event.publish from Lua is itself a safe point
            Event.publish('other.topic', {n = 2})
            Event.publish('job.failed', {n = 3})
            return n, inside, #got, got""")
        assert (count, inside, after) == (1, 1, 2)
        assert got == ["job.done:1:lua", "job.failed:3:lua"]
        assert lua.run("return Event.publish('nobody.listens')") == 0

    def test_python_publish_is_delivered_at_safe_points_only(self, lua: Lua) -> None:
        lua.run("got = {} sub = Event.subscribe('py.*', function(e) got[#got + 1] = e.payload end)")
        lua.components.events.publish("py.one", "between cells", source="python")
        assert lua.run("local before = #got local n = Event.dispatch() return before, n, got") == (0, 1, ["between cells"])
        # published by another thread while Lua runs code without a safe point: queued, not delivered
        def publish_once_the_cell_runs() -> None:
            wait_until(lambda: lua.components.state.get("global", "running"), 60)
            lua.components.events.publish("py.two", "thread", source="python")
            lua.components.state.set("global", "published", True)

        publisher = threading.Thread(target=publish_once_the_cell_runs, daemon=True)
        publisher.start()
        assert lua.run("""
            State.set('global', 'running', true)
            local deadline = os.clock() + 60
            while not State.get('global', 'published') and os.clock() < deadline do end
            return #got""") == 1
        publisher.join()
        assert lua.run("return got") == ["between cells", "thread"]  # delivered at the end of the previous cell

    def test_sleep_is_a_safe_point_for_other_threads(self, lua: Lua) -> None:
        lua.run("got = {} sub = Event.subscribe('bg.*', function(e) got[#got + 1] = e.payload.i end)")
        timer = later(0.05, lambda: [lua.components.events.publish("bg.tick", {"i": i}) for i in range(3)])
        assert lua.run("for i = 1, 100 do sleep(0.05) if #got == 3 then break end end return got") == [0, 1, 2]
        timer.join()

    def test_pull_subscription_and_receive_timeout(self, lua: Lua) -> None:
        result = lua.run("""
            local p = Event.subscribe('pull.*')
            local e0 = p:receive()
            local t0 = os.time()
            local e1 = p:receive(0.1)
            Event.publish('pull.one', {x = 1})
            Event.publish('nomatch', {})
            local e2 = p:receive(1)
            return e0, e1, e2.topic, e2.payload, e2.source, type(e2.time), math.type(e2.seq),
                   p:receive(0), p:pending(), tostring(p)""")
        assert result[:9] == (None, None, "pull.one", {"x": 1}, "lua", "number", "integer", None, 0)
        assert result[9].startswith("subscription ") and "(pull.*)" in result[9]
        started = time.perf_counter()
        assert lua.run("local p = Event.subscribe('never') return p:receive(0.2)") is None
        assert 0.15 < time.perf_counter() - started < 20  # waited its 0.2 s, not for ever

    def test_receive_waits_for_another_thread(self, lua: Lua) -> None:
        lua.run("waiting = Event.subscribe('wait.*')")  # before the publish: an event nobody listens to is dropped
        timer = later(0.1, lambda: lua.components.events.publish("wait.x", {"from": "thread"}))
        assert lua.run("local e = waiting:receive(60) return e and e.payload") == {"from": "thread"}
        timer.join()

    def test_glob_patterns(self, lua: Lua) -> None:
        everything, middle, exact, question = lua.run("""
            local all, mid, exact, q = Event.subscribe('*'), Event.subscribe('deep.*.b'), Event.subscribe('deep.a.b'),
                                       Event.subscribe('x.?')
            for _, t in ipairs({'deep.a.b', 'deep.x.b', 'deep.x.c', 'x.1', 'x.12'}) do Event.publish(t) end
            local function topics(s)
              local out = {}
              while true do local e = s:receive(0) if not e then return out end out[#out + 1] = e.topic end
            end
            return topics(all), topics(mid), topics(exact), topics(q)""")
        assert everything == ["deep.a.b", "deep.x.b", "deep.x.c", "x.1", "x.12"]
        assert middle == ["deep.a.b", "deep.x.b"] and exact == ["deep.a.b"] and question == ["x.1"]

    def test_overflow_policies(self, lua: Lua) -> None:
        assert lua.run("""
            local old = Event.subscribe('ov.*', {max_size = 3})
            local new = Event.subscribe('ov.*', {max_size = 3, overflow = 'drop_newest'})
            for i = 1, 5 do Event.publish('ov.x', i) end
            local function payloads(s)
              local out = {}
              for i = 1, 10 do local e = s:receive(0) if e then out[#out + 1] = e.payload end end
              return out
            end
            local pending = old:pending()
            return pending, payloads(old), old:dropped(), payloads(new), new:dropped()
        """) == (3, [3, 4, 5], 2, [1, 2, 3], 2)
        assert lua.run("""
            seen = {}
            local s = Event.subscribe('cb.*', function(e) seen[#seen + 1] = e.payload end, {max_size = 2})
            Event.publish('cb.x', 1)
            return seen, s:dropped()""") == ([1], 0)

    @pytest.mark.parametrize("opts", ["{overflow = 'nah'}", "{max_size = 'big'}"])
    def test_bad_subscribe_options_are_invalid_argument(self, lua: Lua, opts: str) -> None:
        assert lua.run(f"local ok, e = pcall(Event.subscribe, 'x', {opts}) return ok or e.code") == "invalid_argument"

    def test_zero_max_size_never_breaks_publishers(self, lua: Lua) -> None:
        lua.run(ECHO)
        ok = lua.run("""
            local ok = pcall(Event.subscribe, 'tool.*', {max_size = 0})
            local published = pcall(Event.publish, 'tool.x', 1)
            local called = pcall(Tool.call, 'echo', {text = 'x'})
            return published and called""")
        assert ok is True

    def test_unsubscribe(self, lua: Lua) -> None:
        removed, matched, ok, code, message = lua.run("""
            calls = 0
            local cb = Event.subscribe('un.*', function() calls = calls + 1 end)
            local s = Event.subscribe('un.*')
            Event.publish('un.a')
            local removed = s:remove()
            cb:remove()
            local matched = Event.publish('un.a')
            local ok, e = pcall(s.receive, s, 0)
            return removed, matched, ok, e.code, e.message""")
        assert (removed, matched, ok, code) == (True, 0, False, "not_found")
        assert "closed already" in message
        assert lua.run("Event.dispatch() return calls") == 1
        assert lua.run("local ok, e = pcall(Event.subscribe, 'x', 5) return e.code") == "invalid_argument"

    def test_erroring_lua_subscriber_does_not_break_publishing(self, lua: Lua, capfd: pytest.CaptureFixture[str]) -> None:
        assert lua.run("""
            good = 0
            Event.subscribe('bad.*', function(e) error('subscriber broke') end)
            Event.subscribe('bad.*', function(e) good = good + 1 end)
            local n = Event.publish('bad.x', 1)
            Event.publish('bad.y', 2)
            return n, good""") == (2, 2)
        assert lua.components.events.publish("bad.z", 3) == 2
        assert lua.run("Event.dispatch() return good") == 3
        shown = "".join(text for name, text in lua.out.streams if name == "stderr")
        assert "subscriber broke" in shown  # reported in the notebook, not lost in the kernel's log

    def test_components_publish_events_seen_from_lua(self, lua: Lua) -> None:
        lua.run(ECHO)
        topics = lua.run("""
            local s = Event.subscribe('*')
            Tool.call('echo', {text = 'x'})
            State.set('global', 'k', 1)
            State.delete('global', 'k')
            Artifact.put('a', 'b')
            local out = {} while true do local e = s:receive(0) if not e then break end out[#out + 1] = e.topic end
            return out""")
        assert topics == ["tool.called", "tool.finished", "state.written", "state.deleted", "artifact.put"]


# ====================================================================================== Hook
class TestHook:
    def test_before_cancel(self, lua: Lua) -> None:
        lua.run(ECHO)
        ok, code, message, fine = lua.run("""
            local h = Hook.register('tool.before', function(ctx)
              if ctx.payload.name == 'echo' and ctx.payload.args.text == 'forbidden' then return Hook.cancel('no way') end
            end)
            local ok, e = pcall(Tool.call, 'echo', {text = 'forbidden'})
            return ok, e.code, e.message, Tool.call('echo', {text = 'fine'})""")
        assert (ok, code, fine) == (False, "cancelled", "fine:nil")
        assert "no way" in message
        assert lua.fail("Tool.call('echo', {text = 'forbidden'})").ename == "cancelled"

    def test_before_modify_edit_and_replace(self, lua: Lua) -> None:
        lua.run(ECHO)
        assert lua.run("""
            local h = Hook.register('tool.before', function(ctx)
              return Hook.modify({name = ctx.payload.name, args = {text = 'modified', n = 1}})
            end)
            local a = Tool.call('echo', {text = 'orig'})
            h:remove()
            h = Hook.register('tool.before', function(ctx)
              ctx.payload.args.text = ctx.payload.args.text:upper()
              ctx.payload.args.n = 7
            end)
            local b = Tool.call('echo', {text = 'orig'})
            h:remove()
            h = Hook.register('tool.before', function(ctx) return Hook.replace({skipped = true}) end)
            local c = Tool.call('echo', {text = 'orig'})
            h:remove()
            return a, b, c, Tool.call('echo', {text = 'orig'})""") == ("modified:1", "ORIG:7", {"skipped": True}, "orig:nil")

    def test_before_modified_args_are_validated(self, lua: Lua) -> None:
        lua.run(ECHO)
        code, message = lua.run("""
            Hook.register('tool.before', function(ctx) ctx.payload.args.n = 'not an integer' end)
            local ok, e = pcall(Tool.call, 'echo', {text = 'x'})
            return e.code, e.message""")
        assert code == "invalid_argument" and "hook gave 'echo' invalid arguments" in message
        assert "n: expected integer" in message

    def test_after_replace(self, lua: Lua) -> None:
        lua.run(ECHO)
        assert lua.run("""
            Hook.register('tool.after', function(ctx)
              if ctx.payload.name == 'echo' then return Hook.replace(ctx.payload.result .. '+after') end
            end)
            return Tool.call('echo', {text = 'orig'})""") == "orig:nil+after"

    def test_error_retry_with_a_flaky_tool(self, lua: Lua) -> None:
        result, attempts, errors, events = lua.run("""
            attempts = 0
            Tool.define{name = 'flaky', description = 'fails twice', fn = function()
              attempts = attempts + 1
              if attempts < 3 then error('flaky failure ' .. attempts) end
              return 'ok after ' .. attempts
            end}
            local seen = {}
            local h = Hook.register('tool.error', function(ctx)
              seen[#seen + 1] = ctx.payload.error.code .. '|' .. ctx.payload.error.message
              return Hook.retry()
            end)
            local s = Event.subscribe('tool.*')
            local r = Tool.call('flaky', {})
            local topics = {} while true do local e = s:receive(0) if not e then break end topics[#topics + 1] = e.topic end
            return r, attempts, seen, topics""")
        assert (result, attempts) == ("ok after 3", 3)
        assert len(errors) == 2 and all(e.startswith("lua_error|") for e in errors)
        assert "flaky failure 1" in errors[0] and "flaky failure 2" in errors[1]
        assert events == ["tool.called", "tool.failed", "tool.called", "tool.failed", "tool.called", "tool.finished"]

    def test_error_retry_gives_up_after_three_retries(self, lua: Lua) -> None:
        code, attempts = lua.run("""
            attempts = 0
            Tool.define{name = 'always', description = 'a', fn = function() attempts = attempts + 1 error('nope') end}
            Hook.register('tool.error', function() return Hook.retry() end)
            local ok, e = pcall(Tool.call, 'always')
            return e.code, attempts""")
        assert code == "lua_error" and attempts == 4

    def test_raising_hook_is_reported_and_the_call_succeeds(self, lua: Lua) -> None:
        lua.run(ECHO)
        result, failed = lua.run("""
            local f = Event.subscribe('hook.failed')
            local h = Hook.register('tool.before', function(ctx) error('hook exploded') end, {name = 'exploder'})
            local r = Tool.call('echo', {text = 'still'})
            local e = f:receive(0)
            return r, e and e.payload""")
        assert result == "still:nil"
        assert failed["point"] == "tool.before" and failed["hook"] == "exploder"
        assert "hook exploded" in failed["error"]
        result = lua.run("""
            Hook.register('tool.after', function() return 42 end)
            return Tool.call('echo', {text = 'bad return'})""")
        assert result == "bad return:nil"

    def test_priorities_order_list_and_unregister(self, lua: Lua) -> None:
        lua.run(ECHO)
        order, listed = lua.run("""
            order = {}
            local low = Hook.register('tool.before', function() order[#order + 1] = 'low' end, {priority = -5, name = 'low'})
            high = Hook.register('tool.before', function() order[#order + 1] = 'high' end, {priority = 10, name = 'high'})
            Hook.register('tool.before', function() order[#order + 1] = 'mid1' end, {name = 'mid1'})
            Hook.register('tool.before', function() order[#order + 1] = 'mid2' end, {name = 'mid2'})
            Hook.register('state.write.before', function() end, {name = 'sw'})
            Tool.call('echo', {text = 'x'})
            local listed = Hook.list('tool.before')
            return order, listed""")
        assert order == ["high", "mid1", "mid2", "low"]
        assert [h["name"] for h in listed] == ["high", "mid1", "mid2", "low"]
        assert {"point": "state.write.before", "name": "sw"} in lua.run("return Hook.list()")
        assert lua.run("return high:remove(), high:remove()") == (True, False)
        assert lua.run("order = {} Tool.call('echo', {text = 'x'}) return order") == ["mid1", "mid2", "low"]
        assert [name for _, name in lua.components.hooks.list("tool.before")] == ["mid1", "mid2", "low"]
        assert lua.run("return Hook.unregister('tool.before#nope')") is False

    def test_register_errors(self, lua: Lua) -> None:
        assert lua.run("local ok, e = pcall(Hook.register, 'tool.before', 5) return e.code, e.message") == \
            ("invalid_argument", "Hook.register: the hook must be a function, got number")
        assert "unknown option(s) prio" in lua.run(
            "local ok, e = pcall(Hook.register, 'tool.before', function() end, {prio = 1}) return e.message")
        assert lua.run("local ok, e = pcall(Hook.register, '', function() end) return e.code") == "invalid_argument"

    def test_state_write_before_from_lua(self, lua: Lua) -> None:
        result = lua.run("""
            local h = Hook.register('state.write.before', function(ctx)
              if ctx.payload.key:sub(1, 3) == 'ro.' then return Hook.cancel('read-only key') end
              if ctx.payload.key == 'rewrite' then ctx.payload.value = {rewritten = ctx.payload.value} end
            end)
            State.set('global', 'rw', 1)
            State.set('global', 'rewrite', 5)
            local ok, e = pcall(State.set, 'global', 'ro.x', 1)
            local ok2, e2 = pcall(State.update, 'global', 'ro.y', function() return 1 end)
            return ok, e.code, e.message, ok2, e2.code, State.get('global', 'ro.x'), State.get('global', 'ro.y'),
                   State.get('global', 'rw'), State.get('global', 'rewrite')""")
        assert result[:2] == (False, "cancelled") and "read-only key" in result[2]
        assert result[3:] == (False, "cancelled", None, None, 1, {"rewritten": 5})
        assert lua.components.state.get("global", "ro.x") is None
        from aikit_components.errors import Cancelled
        with pytest.raises(Cancelled):
            lua.components.state.set("global", "ro.python", 1)  # Python writers meet the Lua hook too

    def test_python_tool_call_from_the_io_loop_runs_lua_hooks(self, lua: Lua) -> None:
        lua.run(ECHO + "Hook.register('tool.after', function(ctx) hooked = true "
                       "return Hook.replace(ctx.payload.result .. '!') end)")
        ctx = lua.components.tool_context()
        future: list[Any] = []
        timer = later(0.05, lambda: future.append(runtime.submit(lua.components.tools.acall("echo", {"text": "io"}, ctx))))
        lua.run("for _ = 1, 1200 do if hooked then break end sleep(0.05) end")  # serves the call while it sleeps
        timer.join()
        assert future[0].result(timeout=60) == "io:nil!"


# ====================================================================================== Config
class TestConfig:
    def test_get_with_defaults_and_secrets(self, make_lua: Callable[..., Lua], tmp_path: Path) -> None:
        (tmp_path / "aikit.toml").write_text('[providers.openai]\napi_key = "sk-xyz"\nmodel = "gpt-test"\n'
                                             '[tools]\nhttp_timeout_s = 5\n')
        lua = make_lua()
        assert lua.run("return Config.get('tools.http_timeout_s'), Config.get('providers.openai.model')") == (5, "gpt-test")
        assert lua.run("return Config.get('no.such.key', 'dflt'), Config.get('no.such.key')") == ("dflt", None)
        assert lua.run("return Config.get('security.max_tool_calls')") == 1000
        code, message = lua.run("local ok, e = pcall(Config.get, 'providers.openai.api_key') return e.code, e.message")
        assert code == "permission_denied" and "secret" in message and "sk-xyz" not in message
        assert lua.run("local ok, e = pcall(Config.get, 'providers.other.api_key') return e.code") == "permission_denied"
        assert lua.run("return Config.get('providers.openai')") == {"api_key": "****", "model": "gpt-test"}
        assert lua.run("return Config.get('providers')") == {"openai": {"api_key": "****", "model": "gpt-test"}}
        assert lua.run("local ok, e = pcall(Config.get, 5) return e.code") == "invalid_argument"
        assert lua.run("return Config.sources()") == [str(tmp_path / "aikit.toml")]
        assert lua.run("return Config.profile()") is None

    def test_show_masks_secrets(self, make_lua: Callable[..., Lua], tmp_path: Path) -> None:
        (tmp_path / "aikit.toml").write_text('[providers.openai]\napi_key = "sk-xyz"\n')
        lua = make_lua()
        shown = lua.run("shown = Config.show() return shown")
        assert shown["providers"]["openai"]["api_key"] == "****"
        assert "sk-xyz" not in repr(shown)
        rendered = lua.engine.render_values(lua.engine.run_cell("return Config.show()", "[show]").values)
        assert "****" in rendered and "sk-xyz" not in rendered
        for code in ("Config", "Config.show", "Config.get", "shown", "shown.providers", "shown.providers.openai",
                     "Config.show()"):
            doc = lua.engine.introspection.inspect(code, len(code))
            assert doc is None or "sk-xyz" not in doc, code
        assert "sk-xyz" not in lua.engine.introspection.inspect("shown.providers.openai", 22)
        assert "sk-xyz" not in repr(lua.run("return Config.get('providers.openai'), Config.get('providers')"))
        assert "sk-xyz" not in "".join(t for _, t in lua.out.streams)
        assert lua.components.config.secret("providers.openai.api_key") == "sk-xyz"  # still usable from Python


# ================================================================================= Interrupts
class TestInterrupt:
    def test_interrupt_a_spinning_lua_tool(self, lua: Lua) -> None:
        lua.run("Tool.define{name = 'spin', description = 's', fn = function() while true do end end}")
        timer = LateInterrupt(lua.engine, 0.2)
        started = time.perf_counter()
        failure = lua.fail("Tool.call('spin', {})")
        timer.join()
        assert failure.ename == "KeyboardInterrupt"
        assert time.perf_counter() - started < 20  # stopped, not run out (spin forever or sleep 30 s)
        assert lua.run("return 1 + 1") == 2
        assert lua.run("Tool.define{name = 'ok', description = 'o', fn = function() return 'fine' end} "
                       "return Tool.call('ok')") == "fine"

    def test_interrupt_a_spinning_state_updater(self, lua: Lua) -> None:
        lua.run("State.set('global', 'u', 1)")
        timer = LateInterrupt(lua.engine, 0.2)
        failure = lua.fail("State.update('global', 'u', function(v) while true do end end)")
        timer.join()
        assert failure.ename == "KeyboardInterrupt"
        assert lua.run("return State.get('global', 'u'), "
                       "State.update('global', 'u', function(v) return v + 1 end)") == (1, 2)

    def test_interrupt_a_sleeping_lua_tool(self, lua: Lua) -> None:
        lua.run("Tool.define{name = 'nap', description = 'n', fn = function() sleep(30) return 'woke' end}")
        timer = LateInterrupt(lua.engine, 0.2)
        started = time.perf_counter()
        assert lua.fail("Tool.call('nap')").ename == "KeyboardInterrupt"
        timer.join()
        assert time.perf_counter() - started < 20  # stopped, not run out (spin forever or sleep 30 s)
        assert lua.run("return 'alive'") == "alive"

    def test_pcall_does_not_swallow_an_interrupt_inside_a_lua_tool(self, lua: Lua) -> None:
        lua.run("Tool.define{name = 'spin', description = 's', fn = function() while true do end end}")
        timer = LateInterrupt(lua.engine, 0.2)
        result = lua.engine.run_cell("local ok, e = pcall(Tool.call, 'spin', {}) return 'swallowed'", "[pcall]")
        timer.join()
        assert result.error is not None and result.error.ename == "KeyboardInterrupt"

    @pytest.mark.parametrize("body", ["while true do end", "sleep(30)"])
    def test_interrupt_a_lua_hook(self, lua: Lua, body: str) -> None:
        lua.run("Tool.define{name = 'ok', description = 'o', fn = function() return 'fine' end}\n"
                f"Hook.register('tool.before', function(ctx) {body} end)")
        timer = LateInterrupt(lua.engine, 0.2)
        started = time.perf_counter()
        result = lua.engine.run_cell("return Tool.call('ok')", "[hook]")
        timer.join()
        assert time.perf_counter() - started < 20  # stopped, not run out (spin forever or sleep 30 s)
        assert result.error is not None and result.error.ename == "KeyboardInterrupt"

    def test_engine_usable_after_an_interrupted_hook(self, lua: Lua) -> None:
        lua.run("Tool.define{name = 'ok', description = 'o', fn = function() return 'fine' end}\n"
                "h = Hook.register('tool.before', function(ctx) while true do end end)")
        timer = LateInterrupt(lua.engine, 0.2)
        started = time.perf_counter()
        lua.engine.run_cell("return Tool.call('ok')", "[hook]")  # interrupted (or, see the xfail above, not)
        timer.join()
        assert time.perf_counter() - started < 20  # stopped, not run out (spin forever or sleep 30 s)
        assert lua.run("h:remove() return Tool.call('ok'), 1 + 1") == ("fine", 2)


class TestNames:
    """The 0.2 renames (CHANGELOG.md): new names work, old ones stay as aliases until 0.3."""

    def test_hook_register_returns_a_handle(self, lua: Lua) -> None:
        assert lua.run("""
            h = Hook.register('cell.after', function() end, {name = 'n1'})
            return h.point, h.name, type(h.id), tostring(h):match('^hook '), getmetatable(h).__name""") == (
            "cell.after", "n1", "string", "hook ", "aikit.Hook")
        assert lua.run("return h:remove(), h:remove(), Hook.unregister(h)") == (True, False, False)

    def test_old_names_still_work(self, lua: Lua) -> None:
        assert lua.run("""
            State.set('global', 't', 1, {ttl = 60})
            local cas = State.cas('global', 'lock', nil, 'me')
            local sub = Event.subscribe('old.*', {maxsize = 1})
            Event.publish('old.a', 1) Event.publish('old.b', 2)
            local got, dropped = Event.receive(sub).payload, sub:dropped()
            local closed = Event.unsubscribe(sub)
            local sub2 = Event.subscribe('x') local closed2 = sub2:close()
            local h = Hook.register('cell.after', function() end)
            local unregistered = Hook.unregister(h.id)
            return State.get('global', 't'), cas, got, dropped, closed, closed2, unregistered,
                   Agent.usage == Agent.total_usage""") == (1, True, 2, 1, True, True, True, True)

    def test_old_duration_names_of_workflows_and_supervisors(self, lua: Lua) -> None:
        assert lua.run("""
            local wf = Workflow.new{name = 'old', timeout = 5, retry_delay = 0,
                                    steps = {{id = 'a', timeout = 1, retry_delay = 0, noop = true}}}
            local first = wf:run()
            local sup = Supervisor.new{period = 7, children = {{name = 'w', shutdown_timeout = 1, start = function()
                return {init = function() return 0 end, handle = function(s) return s end} end}}}
            return first.status, Workflow.resume(first.run_id, wf).status, wf:resume(first.run_id).status,
                   sup:status().period_s, sup:status().period""") == ("succeeded", "succeeded", "succeeded", 7, 7)

    @pytest.mark.parametrize(("code", "message"), [
        ("State.set('global', 'k', 1, {ttl = 1, ttl_s = 1})", "give ttl_s or its old name ttl, not both"),
        ("Event.subscribe('x', {maxsize = 1, max_size = 1})", "give max_size or its old name maxsize, not both"),
        ("Workflow.new{name = 'w', timeout = 1, timeout_s = 1, steps = {{id = 'a', noop = true}}}",
         "give timeout_s or its old name timeout, not both"),
        ("Supervisor.new{period = 1, period_s = 1}", "give period_s or its old name period, not both"),
    ])
    def test_a_new_name_and_its_old_name_together_is_an_error(self, lua: Lua, code: str, message: str) -> None:
        assert message in lua.fail(code).evalue
