"""Lua code run for the I/O loop (a Lua model function, a supervised Lua worker) that itself waits
for the I/O loop, whose work needs the Lua thread again (a Lua hook around the tool it calls): the
calls nest on the Lua thread instead of waiting for each other forever (found by the application
suite: a hook plus a tool call from a Lua model function hung the kernel)."""

from __future__ import annotations

from tests.support.lua import Lua

SHOUT = """
Tool.define{name = "shout", description = "upper-case a text",
  params = {type = "object", properties = {text = {type = "string"}}, required = {"text"}},
  fn = function(a) return string.upper(a.text) end}
seen = {}
Hook.register("tool.before", function(ctx) seen[#seen + 1] = ctx.payload.name end)
"""


def test_a_lua_model_function_calls_a_tool_that_has_a_lua_hook(lua: Lua) -> None:
    lua.run(SHOUT)
    text = lua.run("""
        local a = Agent.new{name = "w", model = function(messages, tools)
          local r = Tool.call("shout", {text = "hey"})
          return {text = "got " .. r}
        end}
        return a:run("hi").text""")
    assert text == "got HEY"
    assert lua.run("return seen") == ["shout"]


def test_a_supervised_lua_worker_runs_an_agent_whose_tool_has_a_lua_hook(lua: Lua) -> None:
    lua.run(SHOUT)
    reply = lua.run("""
        local turn = 0
        local a = Agent.new{name = "w", tools = {"shout"}, model = function(messages, tools)
          turn = turn + 1
          if turn == 1 then return {tool_calls = {{name = "shout", arguments = {text = "hey"}}}} end
          return {text = "done"}
        end}
        local sup = Supervisor.new{children = {{name = "worker", start = function()
          return {handle = function(_, msg) return a:run(msg).text end}
        end}}}:start()
        local reply = sup:call("worker", "hi")
        sup:stop()
        return reply""")
    assert reply == "done"
    assert "shout" in lua.run("return seen")


def test_nesting_is_bounded_and_past_the_bound_is_a_clear_error(lua: Lua) -> None:
    # an agent whose Lua model function runs an agent whose model function ..., and the innermost
    # calls a tool with a Lua hook: each level is a queued call waiting for the I/O loop
    lua.run(SHOUT)
    lua.run("""
        function agent(level)
          return Agent.new{name = "a" .. level, model = function()
            if level == 0 then return {text = Tool.call("shout", {text = "deep"})} end
            return {text = agent(level - 1):run("go").text}
          end}
        end""")
    assert lua.run('return agent(4):run("go").text') == "DEEP"
    error = lua.run('local ok, err = pcall(function() return agent(20):run("go") end) return ok, tostring(err)')
    assert error[0] is False and "levels deep" in error[1] and "flatten the chain" in error[1]
    assert lua.run('return agent(2):run("go").text') == "DEEP"  # and the engine works on
