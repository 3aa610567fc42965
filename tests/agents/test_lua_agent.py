"""The Lua ``Agent`` global, in process: an engine with every aikit global installed (as the kernel
wires it, minus ZMQ), its components configured to talk to the local OpenAI-format server of
``tests/support/agents.py``. Output goes to a RecordingOutput, so streamed displays can be checked.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from aikit_kernel.lua.api import expose
from aikit_kernel.lua.api.agents import STREAM_DISPLAY_INTERVAL_S
from tests.support.agents import BACKUP, OPENAI, answer, call, error, sent_messages, sse
from tests.support.llm_server import Reply
from tests.support.lua import Lua
from tests.support.processes import wait_until

NEW = "a = Agent.new{name = 'helper', model = 'openai/m', system = 'Be brief.', tools = {'calculate'}}"


class TestRun:
    def test_run_returns_the_result_table(self, lua: Lua, llm_server: Any) -> None:
        server = llm_server
        server.reply(OPENAI, answer(None, [call("calculate", {"expression": "6 * 7"}, "call_l1")], usage=(20, 5)),
                     answer("It is 42.", usage=(30, 4)))
        result = lua.run(NEW + "\nr = a:run('What is 6 * 7?') return r")
        assert len(result.pop("trace_id")) == 32  # the run's trace (Trace.get shows it)
        assert result.pop("run_id").startswith("run-")
        assert result == {"text": "It is 42.", "steps": 2, "model": "openai/m", "stop_reason": "end", "status": "done",
                          "usage": {"input_tokens": 50, "output_tokens": 9, "total_tokens": 59},
                          "tool_calls": [{"name": "calculate", "arguments": {"expression": "6 * 7"}, "step": 1,
                                          "result": 42}]}
        assert lua.run("return r.data == nil, r.tool_calls[1].result, #r.tool_calls") == (True, 42, 1)
        assert lua.run("return tostring(a), a.name, a.model") == ("agent helper (openai/m)", "helper", "openai/m")
        info = lua.run("return a:info()")
        assert info["name"] == "helper" and info["tools"] == ["calculate"] and info["max_steps"] == 8
        assert info["system"] == "Be brief." and info["memory"] is False
        assert lua.run("return a:usage()") == {"input_tokens": 50, "output_tokens": 9, "total_tokens": 59}
        assert sent_messages(server)[-1] == {"role": "tool", "tool_call_id": "call_l1", "content": "42"}

    def test_a_result_prints_as_its_answer_and_shows_its_fields_as_a_cell_value(self, lua: Lua,
                                                                                 llm_server: Any) -> None:
        llm_server.reply(OPENAI, answer("It is 42."), sse(["Again ", "42."]))
        assert lua.run(NEW + "\nr = a:run('What is 6 * 7?') return tostring(r), r.text") == ("It is 42.", "It is 42.")
        shown = lua.engine.repr(lua.engine.run_cell("return r").values[0])
        assert 'text = "It is 42."' in shown and 'stop_reason = "end"' in shown  # every field, not only the text
        assert lua.run("return tostring(a:stream('again', function() end))") == "Again 42."

    def test_output_schema_from_a_lua_table(self, lua: Lua, llm_server: Any) -> None:
        server = llm_server
        server.reply(OPENAI, answer("forty-two"), answer('{"n": 42, "why": "6 * 7"}'))
        data, stop = lua.run("""
            local a = Agent.new{name = 'json', model = 'openai/m',
                                output_schema = {type = 'object',
                                                 properties = {n = {type = 'integer'}, why = {type = 'string'}},
                                                 required = {'n'}}}
            local r = a:run('6 * 7 as JSON')
            return r.data, r.stop_reason""")
        assert (data, stop) == ({"n": 42, "why": "6 * 7"}, "end")
        schema = server.requests_to(OPENAI)[0].json()["response_format"]["json_schema"]["schema"]
        assert schema["required"] == ["n"] and schema["properties"]["n"] == {"type": "integer"}

    def test_memory_and_forget(self, lua: Lua, llm_server: Any) -> None:
        server = llm_server
        server.reply(OPENAI, answer("Hi Ada."), answer("Ada."), answer("No idea."))
        lua.run("m = Agent.new{name = 'mem', model = 'openai/m', memory = true} m:run('I am Ada.') m:run('Who am I?')")
        assert [x["content"] for x in sent_messages(server)] == ["I am Ada.", "Hi Ada.", "Who am I?"]
        assert len(lua.run("return State.get('agent:mem', 'memory')")) == 4
        assert lua.run("m:forget() return State.get('agent:mem', 'memory')") is None
        lua.run("m:run('Who am I?')")
        assert sent_messages(server) == [{"role": "user", "content": "Who am I?"}]

    def test_fallback_from_lua(self, lua: Lua, llm_server: Any) -> None:
        server = llm_server
        server.reply(OPENAI, Reply.fixture("openai_error_429.json", status=429))
        server.reply(BACKUP, answer("backup here"))
        assert lua.run("return Agent.new{model = 'openai/m', fallback = {'backup/m'}}:run('hi').model") == "backup/m"


class TestAgentTools:
    def test_tools_as_names_and_as_an_agent(self, lua: Lua, llm_server: Any) -> None:
        server = llm_server
        server.reply(OPENAI,
                     answer(None, [call("researcher", {"input": "capital of France?"}, "call_boss")]),  # boss
                     answer("Paris."),  # researcher
                     answer(None, [call("calculate", {"expression": "2 + 2"}, "call_calc")]),  # boss
                     answer("Paris; and 4."))  # boss
        result = lua.run("""
            researcher = Agent.new{name = 'researcher', model = 'openai/m', system = 'You look things up.'}
            boss = Agent.new{name = 'boss', model = 'openai/m', tools = {researcher, 'calculate'}}
            return boss:run('Capital of France, and 2 + 2?')""")
        assert result["text"] == "Paris; and 4."
        assert [c["name"] for c in result["tool_calls"]] == ["researcher", "calculate"]
        assert result["tool_calls"][0]["result"] == {"text": "Paris.", "model": "openai/m"}
        boss1, researcher1, _, boss3 = (r.json() for r in server.requests_to(OPENAI))
        assert [t["function"]["name"] for t in boss1["tools"]] == ["researcher", "calculate"]
        assert boss1["tools"][0]["function"]["parameters"]["required"] == ["input"]
        assert researcher1["messages"] == [{"role": "system", "content": "You look things up."},
                                           {"role": "user", "content": "capital of France?"}]
        assert [m.get("tool_call_id") for m in boss3["messages"] if m["role"] == "tool"] == ["call_boss", "call_calc"]
        usage = lua.run("return Agent.total_usage()")
        assert set(usage["agents"]) == {"boss", "researcher"}

    def test_as_tool_registers_a_callable_tool(self, lua: Lua, llm_server: Any) -> None:
        server = llm_server
        server.reply(OPENAI, answer("delegated answer"))
        name, info = lua.run("""
            local s = Agent.new{name = 'summariser', model = 'openai/m', system = 'Summarise.'}
            local name = s:as_tool('Summarise a text.')
            return name, Tool.info(name)""")
        assert name == "summariser"
        assert info["description"] == "Summarise a text." and info["category"] == "agents"
        assert lua.run("return Tool.call('summariser', {input = 'long text'}).text") == "delegated answer"
        assert sent_messages(server)[-1] == {"role": "user", "content": "long text"}

    def test_a_lua_defined_tool_runs_on_the_lua_thread(self, lua: Lua, llm_server: Any) -> None:
        llm_server.reply(OPENAI, answer(None, [call("shout", {"text": "hello"}, "c_s"), call("shout", {"text": "bye"})]),
                         answer("done"))
        lua_thread = threading.current_thread()
        expose(lua.engine, "Probe", {"on_test_thread": lambda: threading.current_thread() is lua_thread})
        result, threads = lua.run("""
            local threads = {}
            Tool.define{name = 'shout', description = 'Upper-case a text',
                        params = {type = 'object', properties = {text = {type = 'string'}}, required = {'text'}},
                        fn = function(a) threads[#threads + 1] = Probe.on_test_thread() return a.text:upper() end}
            return Agent.new{model = 'openai/m', tools = {'shout'}}:run('shout'), threads""")
        assert [c["result"] for c in result["tool_calls"]] == ["HELLO", "BYE"] and threads == [True, True]
        assert sent_messages(llm_server)[-2] == {"role": "tool", "tool_call_id": "c_s", "content": "HELLO"}

    def test_the_cells_tool_budget_covers_the_agents_calls(self, make_lua: Any, llm_server: Any) -> None:
        lua = make_lua("\n[security]\nmax_tool_calls = 2\n")
        llm_server.reply(OPENAI, answer(None, [call("calculate", {"expression": f"{i}"}) for i in range(3)]),
                         answer("stopped"))
        result = lua.run("return Agent.new{model = 'openai/m', tools = {'calculate'}}:run('count')")
        assert [c.get("result") for c in result["tool_calls"]] == [0, 1, None]
        assert result["tool_calls"][2]["error"]["code"] == "budget_exceeded"

    def test_a_content_filter_stop_says_why_in_lua(self, lua: Lua, llm_server: Any) -> None:
        llm_server.reply(OPENAI, answer(None, finish="content_filter"))
        text, stop, refusal = lua.run("local r = Agent.new{model = 'openai/m'}:run('risky')\n"
                                      "return r.text, r.stop_reason, r.refusal")
        assert (text, stop) == ("", "content_filter")
        assert "content filter of provider 'openai'" in refusal and "model 'openai/m'" in refusal
        llm_server.reply(OPENAI, answer("fine"))
        assert lua.run("return Agent.new{model = 'openai/m'}:run('ok').refusal == nil") is True

    def test_lua_hooks_on_agent_points(self, lua: Lua, llm_server: Any) -> None:
        llm_server.reply(OPENAI, answer("ok"))
        code, message = lua.run("""
            Hook.register('agent.before', function(ctx) ctx.payload.input = ctx.payload.input .. ' (be polite)' end)
            local h = Hook.register('llm.before', function(ctx)
              if ctx.payload.agent == 'blocked' then return Hook.cancel('no LLM for you') end
            end)
            local ok, e = pcall(function() return Agent.new{name = 'blocked', model = 'openai/m'}:run('x') end)
            Agent.new{name = 'fine', model = 'openai/m'}:run('hello')
            return e.code, e.message""")
        assert code == "cancelled" and "no LLM for you" in message
        assert sent_messages(llm_server) == [{"role": "user", "content": "hello (be polite)"}]

    def test_an_agent_named_like_a_builtin_tool_does_not_replace_it(self, lua: Lua) -> None:
        refused = lua.run("local c = Agent.new{name = 'calculate', model = 'openai/m'}\n"
                          "local ok, err = pcall(Agent.new, {name = 'x', tools = {c}}) return ok, err.code")
        assert refused == (False, "invalid_argument")  # refused with a clear error, never shadowed
        assert lua.run("return Tool.call('calculate', {expression = '1 + 1'})") == 2

    def test_agent_tool_calls_do_not_change_the_cells_caller(self, lua: Lua, llm_server: Any) -> None:
        server = llm_server
        server.reply(OPENAI, answer(None, [call("calculate", {"expression": "1"})]), answer("1"))
        callers = lua.run("""
            local s = Event.subscribe('tool.called')
            Agent.new{name = 'worker', model = 'openai/m', tools = {'calculate'}}:run('1')
            Tool.call('calculate', {expression = '2'})
            local out = {} while true do local e = s:receive(0) if not e then break end out[#out + 1] = e.payload.caller end
            return out""")
        assert callers == ["agent:worker", "lua"]


class TestStreaming:
    def test_stream_calls_fn_with_deltas_on_the_lua_thread_in_order(self, lua: Lua, llm_server: Any) -> None:
        server = llm_server
        deltas = ["Once", " upon", " a", " time", "."]
        server.reply(OPENAI, sse(deltas, chunk_delay_s=0.02))
        lua_thread = threading.current_thread()
        expose(lua.engine, "Probe", {"on_test_thread": lambda: threading.current_thread() is lua_thread})
        got, threads, text, during = lua.run("""
            local got, threads, during = {}, {}, {}
            local a = Agent.new{name = 'teller', model = 'openai/m'}
            local r = a:stream('Tell a story', function(delta)
              got[#got + 1] = delta
              threads[#threads + 1] = Probe.on_test_thread()
              State.set('global', 'last_delta', delta)  -- any Lua API is usable from the callback
            end)
            return got, threads, r.text""" + ", State.get('global', 'last_delta')")
        assert got == deltas and all(threads) and len(threads) == len(deltas)
        assert text == "Once upon a time." and during == "."
        assert server.requests[0].json()["stream"] is True

    def test_a_failing_stream_callback_is_reported_not_fatal(self, lua: Lua, llm_server: Any) -> None:
        server = llm_server
        server.reply(OPENAI, sse(["a", "b"]))
        text = lua.run("return Agent.new{model = 'openai/m'}:stream('x', function(d) error('cb broke') end).text")
        assert text == "ab"
        assert "cb broke" in "".join(t for name, t in lua.out.streams if name == "stderr")

    def test_run_with_stream_shows_an_updating_display(self, lua: Lua, llm_server: Any) -> None:
        server = llm_server
        deltas = ["The", " quick", " brown", " fox", " jumps", "."]
        # The display is updated at most every STREAM_DISPLAY_INTERVAL_S: the server holds the rest of
        # the stream until the first display is that old (deltas spaced in time alone could all arrive
        # at once on a busy machine, leaving only the first display and the final one).
        gate = threading.Event()
        server.reply(OPENAI, sse(deltas, chunk_delay_s=0.07, hold_after=2, gate=gate))

        def open_the_gate_after_the_first_display() -> None:
            wait_until(lambda: lua.out.displays, 60)
            time.sleep(STREAM_DISPLAY_INTERVAL_S * 1.2)
            gate.set()

        opener = threading.Thread(target=open_the_gate_after_the_first_display, daemon=True)
        opener.start()
        text = lua.run("return Agent.new{name = 'shown', model = 'openai/m'}:run('go', {stream = true}).text")
        opener.join()
        assert text == "The quick brown fox jumps."
        displays = lua.out.displays
        assert len(displays) >= 3, displays
        (first, first_id, first_update), rest = displays[0], displays[1:]
        assert first_update is False and first["text/plain"] == "The"
        assert all(update for _, _, update in rest) and {i for _, i, _ in displays} == {first_id}
        texts = [d["text/plain"] for d, _, _ in displays]
        assert all(b.startswith(a) for a, b in zip(texts, texts[1:])), texts
        assert texts[-1] == text and displays[-1][0]["text/markdown"] == text
        assert len(set(texts)) >= 3, f"the display did not grow while streaming: {texts}"

    def test_run_stream_option_is_checked(self, lua: Lua) -> None:
        failure = lua.fail("Agent.new{model = 'openai/m'}:run('x', {strem = true})")
        assert failure.ename == "invalid_argument" and "strem" in failure.evalue


class TestErrors:
    def test_provider_error_is_a_structured_lua_error(self, lua: Lua, llm_server: Any) -> None:
        server = llm_server
        server.reply(OPENAI, Reply.fixture("openai_error_401.json", status=401))
        ok, code, kind, status, message = lua.run("""
            local a = Agent.new{name = 'nokey', model = 'openai/m', fallback = {'backup/m'}}
            local ok, e = pcall(a.run, a, 'hi')
            return ok, e.code, e.details.kind, e.details.status, e.message""")
        assert (ok, code, kind, status) == (False, "provider_error", "auth", 401)
        assert "Incorrect API key provided" in message and "Not falling back to backup/m" in message
        assert server.requests_to(BACKUP) == []
        server.reply(OPENAI, error(400, "Invalid 'messages[0].content'", "invalid_request_error"))
        failure = lua.fail("a = Agent.new{model = 'openai/m'} a:run('x')")
        assert failure.ename == "provider_error" and "Invalid 'messages[0].content'" in failure.evalue

    def test_no_server_is_a_connection_error(self, make_lua: Any, refused_url: str) -> None:
        lua = make_lua(f'\n[providers.down]\ntype = "openai"\nbase_url = "{refused_url}/v1"\nretries = 0\n')
        code, kind = lua.run("local ok, e = pcall(function() return Agent.new{model = 'down/m'}:run('x') end) "
                             "return e.code, e.details.kind")
        assert (code, kind) == ("provider_error", "connection")

    @pytest.mark.parametrize("fields, says", [
        ("bogus = 1", "unknown option(s) bogus"),
        ("max_steps = 0", "max_steps"),
        ("temperature = 3", "temperature"),
        ("max_tokens = 1.5", "max_tokens"),
        ("output_schema = 5", "output_schema"),
        ("tools = 'calculate'", "tools must be a list"),
        ("tools = {5}", "each tool is a tool name or an agent"),
    ])
    def test_bad_fields_are_invalid_argument(self, lua: Lua, fields: str, says: str) -> None:
        failure = lua.fail(f"Agent.new{{model = 'openai/m', {fields}}}")
        assert failure.ename == "invalid_argument", failure
        assert says in failure.evalue
        code = lua.run(f"local ok, e = pcall(Agent.new, {{model = 'openai/m', {fields}}}) return e.code")
        assert code == "invalid_argument"

    @pytest.mark.parametrize("fields", ["max_steps = 'many'", "temperature = 'hot'", "max_output_retries = 'x'"])
    def test_badly_typed_fields_are_invalid_argument(self, lua: Lua, fields: str) -> None:
        assert lua.fail(f"Agent.new{{model = 'openai/m', {fields}}}").ename == "invalid_argument"

    def test_fallback_given_as_a_string(self, lua: Lua) -> None:
        result = lua.engine.run_cell("return Agent.new{model = 'openai/m', fallback = 'backup/m'}:info().fallback",
                                     "[fb]")
        if result.error is None:  # taking the string as the one fallback model is fine too
            assert lua.run("return Agent.new{model = 'openai/m', fallback = 'backup/m'}:info().fallback") == ["backup/m"]
        else:
            assert result.error.ename == "invalid_argument"

    def test_unknown_tool_and_unknown_model(self, lua: Lua) -> None:
        failure = lua.fail("Agent.new{model = 'openai/m', tools = {'calculat'}}")
        assert failure.ename == "not_found" and "calculate" in failure.evalue
        code, message = lua.run("local ok, e = pcall(function() return Agent.new{model = 'nosuch/m'}:run('x') end) "
                                "return e.code, e.message")
        assert code == "not_found" and "unknown provider 'nosuch'" in message


def interrupt_once_requested(lua: Lua, server: Any, settle_s: float = 0.0) -> threading.Thread:
    """Interrupt ``lua`` once the model server has received a request (and ``settle_s`` later):
    interrupting before the request left would leave its scripted reply to the next request."""
    def go() -> None:
        deadline = time.monotonic() + 15
        while not server.requests_to(OPENAI) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(settle_s)
        lua.engine.interrupt()

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread


class TestInterrupt:
    def test_interrupt_during_a_slow_model_call(self, lua: Lua, llm_server: Any) -> None:
        server = llm_server
        server.reply(OPENAI, answer("too late", delay_s=5), answer("back again"))
        lua.run("slow = Agent.new{name = 'slow', model = 'openai/m'}")
        interrupter = interrupt_once_requested(lua, server)
        failure = lua.fail("return slow:run('take your time')")
        interrupter.join()
        assert failure.ename == "KeyboardInterrupt"
        assert lua.run("return 1 + 1") == 2
        assert lua.run("return slow:run('again').text") == "back again"
        assert lua.run("return slow:usage().total_tokens") == 15  # only the second answer: the first was abandoned

    def test_interrupt_during_a_stream(self, lua: Lua, llm_server: Any) -> None:
        server = llm_server
        gate = threading.Event()  # the server sends three ticks, then holds the stream until the end
        server.reply(OPENAI, sse(["tick"] * 40, hold_after=4, gate=gate), answer("fine"))
        lua.run("n = 0 s = Agent.new{model = 'openai/m'}")
        interrupter = interrupt_once_requested(lua, server, settle_s=0.5)
        try:
            failure = lua.fail("s:stream('count', function(d) n = n + 1 end)")
            interrupter.join()
        finally:
            gate.set()
        assert failure.ename == "KeyboardInterrupt"
        assert 0 < lua.run("return n") <= 3
        assert lua.run("return s:run('x').text") == "fine"


class TestUsage:
    def test_agent_usage_per_agent_and_session_with_cost(self, make_lua: Any, llm_server: Any) -> None:
        lua = make_lua('\n[models.prices."openai/m"]\ninput_per_mtok = 3.0\noutput_per_mtok = 15.0\n')
        server = llm_server
        server.reply(OPENAI, answer("a", usage=(1000, 200)), answer("b", usage=(2000, 100)),
                     answer("c", usage=(500, 500)))
        usage = lua.run("""
            local x = Agent.new{name = 'x', model = 'openai/m'}
            local y = Agent.new{name = 'y', model = 'openai/m'}
            x:run('1') x:run('2') y:run('3')
            return Agent.total_usage()""")
        cost_x = round((3000 * 3.0 + 300 * 15.0) / 1e6, 6)
        cost_y = round((500 * 3.0 + 500 * 15.0) / 1e6, 6)
        assert usage["agents"]["x"] == {"input_tokens": 3000, "output_tokens": 300, "total_tokens": 3300, "cost": cost_x}
        assert usage["agents"]["y"] == {"input_tokens": 500, "output_tokens": 500, "total_tokens": 1000, "cost": cost_y}
        assert usage["session"] == {"input_tokens": 3500, "output_tokens": 800, "total_tokens": 4300,
                                    "cost": round(cost_x + cost_y, 6)}

    def test_usage_is_empty_before_any_run(self, lua: Lua) -> None:
        usage = lua.run("return Agent.total_usage()")
        assert usage["session"] == {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0, "cost": 0}
