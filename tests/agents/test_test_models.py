"""Test models (issue 17): ``model = "test"``, ``Agent.scripted{...}`` and a Lua function deciding
each turn go through the whole pipeline like any provider; the packaged base model warns when
given tools; an unknown provider fails at ``Agent.new`` with a suggestion."""

from __future__ import annotations

import json

from aikit_components.providers.testing import example_value
from tests.support.lua import Lua


def test_example_values_follow_the_schema() -> None:
    schema = {"type": "object", "required": ["path", "n", "flag", "mode", "tags"],
              "properties": {"path": {"type": "string", "minLength": 3}, "n": {"type": "integer", "minimum": 2},
                             "flag": {"type": "boolean"}, "mode": {"enum": ["fast", "slow"]},
                             "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                             "optional": {"type": "string"}}}
    assert example_value(schema) == {"path": "aaa", "n": 2, "flag": False, "mode": "fast", "tags": ["a"]}


def test_test_model_calls_each_tool_then_summarises(lua: Lua) -> None:
    topics: list[str] = []
    lua.components.events.subscribe("*", lambda event: topics.append(event.topic))
    result = lua.run("""
        Tool.define{name = 'twice', description = 'Twice n', params = {type = 'object',
          properties = {n = {type = 'integer', minimum = 3}}, required = {'n'}}, fn = function(a) return a.n * 2 end}
        local a = Agent.new{model = 'test', tools = {'twice'}}
        return a:run('go')
    """)
    assert result["tool_calls"][0]["arguments"] == {"n": 3}
    assert json.loads(result["text"]) == {"twice": 6}
    assert result["model"] == "test/test" and result["steps"] == 2
    assert result["usage"]["total_tokens"] > 0
    lua.engine.dispatcher.service()
    assert "llm.finished" in topics and "agent.finished" in topics
    assert lua.run("return Agent.new{model = 'test'}:run('hello').text") == "test answer: hello"


def test_scripted_model_and_lua_function_model(lua: Lua) -> None:
    text, result, model = lua.run("""
        local a = Agent.new{model = Agent.scripted{
          {tool_calls = {{name = 'calculate', arguments = {expression = '6*7'}}}}, 'It is 42.'},
          tools = {'calculate'}}
        local r = a:run('what is 6*7?')
        return r.text, r.tool_calls[1].result, r.model
    """)
    assert (text, result) == ("It is 42.", 42) and model.startswith("scripted/")
    seen = lua.run("""
        local seen = {}
        local f = Agent.new{model = function(messages, tools)
          seen[#seen + 1] = messages[#messages].role .. ':' .. #tools
          if messages[#messages].role == 'tool' then return {text = 'got ' .. messages[#messages].text} end
          return {tool_calls = {{name = tools[1].name, arguments = {expression = '1+1'}}}}
        end, tools = {'calculate'}}
        return {f:run('x').text, seen[1], seen[2]}
    """)
    assert seen == ["got 2", "user:1", "tool:1"]
    failure = lua.fail("Agent.new{model = Agent.scripted{{text = 'x', stop_reason = 'tired'}}}:run('a')")
    assert "stop_reason must be one of end, max_tokens" in failure.evalue
    failure = lua.fail("Agent.scripted{42}")
    assert failure.ename == "invalid_argument" and "must be a string or a table" in failure.evalue
    message = lua.run("""
        local a = Agent.new{model = Agent.scripted{'only one'}}
        a:run('a')
        local ok, e = pcall(a.run, a, 'b')
        return e.message
    """)
    assert "no reply left" in message


def test_hooks_see_a_test_model_call(lua: Lua) -> None:
    text = lua.run("""
        Hook.register('llm.after', function(p) return {action = 'replace', value = 'hooked'} end)
        return Agent.new{model = 'test'}:run('x').text
    """)
    assert text == "hooked"


def test_unknown_provider_fails_at_agent_new_with_suggestion(lua: Lua) -> None:
    failure = lua.fail("Agent.new{model = 'opnai/gpt-4o'}")
    assert failure.ename == "not_found"
    assert "did you mean 'openai'" in failure.evalue
    assert '[providers.opnai]\n  type = "openai"\n  base_url = "https://..."' in failure.evalue


def test_tools_on_the_base_model_warn_once(lua: Lua) -> None:
    lua.run("Agent.new{tools = {'calculate'}} Agent.new{tools = {'calculate'}} "
            "Agent.new{model = 'test', tools = {'calculate'}}")
    warnings = [t for name, t in lua.out.streams if name == "stderr" and "cannot call tools" in t]
    assert len(warnings) == 1 and "model = 'test'" in warnings[0]
