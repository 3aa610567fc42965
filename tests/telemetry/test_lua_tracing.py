"""Spans of real runs in process: an agent with a tool against the local OpenAI-format server, a
workflow, State writes; read back through the Lua ``Trace`` API and the span store."""

from __future__ import annotations

from typing import Any

from tests.support.agents import BACKUP, OPENAI, answer, call, chat, sse
from tests.support.llm_server import Reply

NEW = "a = Agent.new{name = 'helper', model = 'openai/m', tools = {'calculate'}}"


def by_name(spans: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in spans}


def test_an_agent_run_is_one_tree_with_genai_attributes(make_agent_lua: Any, llm_server: Any) -> None:
    lua = make_agent_lua('[models.prices."openai/m"]\ninput_per_mtok = 1.0\noutput_per_mtok = 2.0\n')
    llm_server.reply(OPENAI, answer(None, [call("calculate", {"expression": "6 * 7"}, "call_t1")], usage=(20, 5)),
                     answer("It is 42.", usage=(30, 4)))
    trace_id = lua.run(NEW + "\nr = a:run('What is 6 * 7?') return r.trace_id")
    assert isinstance(trace_id, str) and len(trace_id) == 32
    t = lua.run(f"return Trace.get('{trace_id[:12]}')")
    assert t["trace_id"] == trace_id and t["name"] == "invoke_agent helper" and t["kind"] == "agent"
    assert (t["input_tokens"], t["output_tokens"], t["status"]) == (50, 9, "ok")
    assert abs(t["cost_usd"] - (50 * 1.0 + 9 * 2.0) / 1e6) < 1e-12
    spans = t["spans"]
    names = [s["name"] for s in spans]
    assert names.count("chat openai/m") == 2 and "execute_tool calculate" in names
    root = by_name(spans)["invoke_agent helper"]
    assert root.get("parent_span_id") is None and root["attributes"]["gen_ai.agent.name"] == "helper"
    tool = by_name(spans)["execute_tool calculate"]
    assert tool["parent_span_id"] == root["span_id"]
    assert tool["attributes"]["gen_ai.tool.call.id"] == "call_t1"
    assert "gen_ai.tool.call.arguments" not in tool["attributes"]  # content is off by default
    chats = [s for s in spans if s["name"] == "chat openai/m"]
    first = chats[0]["attributes"]
    assert chats[0]["parent_span_id"] == root["span_id"] and chats[0]["kind"] == "CLIENT"
    assert first["gen_ai.operation.name"] == "chat" and first["gen_ai.provider.name"] == "openai"
    assert first["gen_ai.request.model"] == "openai/m" and first["gen_ai.response.model"] == "openai/m"
    assert (first["gen_ai.usage.input_tokens"], first["gen_ai.usage.output_tokens"]) == (20, 5)
    assert first["gen_ai.response.finish_reasons"] == ["tool_use"] or first["gen_ai.response.finish_reasons"]
    assert "gen_ai.input.messages" not in first
    # the HTTP request under each model call carried the trace to the provider
    http = [s for s in spans if s["kind"] == "CLIENT" and s["name"] == "POST"]
    assert len(http) == 2 and {h["parent_span_id"] for h in http} == {c["span_id"] for c in chats}
    sent = llm_server.requests_to(OPENAI)[0].headers["traceparent"]
    assert sent.split("-")[1] == trace_id and sent.split("-")[2] == http[0]["span_id"]
    assert "authorization" not in str(spans).lower() and "test-key" not in str(spans)


def test_fallback_attempts_are_child_spans_of_the_model_call(make_agent_lua: Any, llm_server: Any) -> None:
    lua = make_agent_lua()
    llm_server.reply(OPENAI, Reply.fixture("openai_error_429.json", status=429))
    llm_server.reply(BACKUP, answer("backup here"))
    trace_id = lua.run("r = Agent.new{name = 'fb', model = 'openai/m', fallback = {'backup/m'}}:run('hi') "
                       "assert(r.model == 'backup/m') return r.trace_id")
    spans = lua.run(f"return Trace.get('{trace_id}')")["spans"]
    attempts = [s for s in spans if s["attributes"].get("aikit.operation.kind") == "llm.attempt"]
    assert [a["attributes"]["gen_ai.request.model"] for a in attempts] == ["openai/m", "backup/m"]
    assert [a["status"] for a in attempts] == ["ERROR", "UNSET"]  # the failed model, then the one that answered
    parents = {a["parent_span_id"] for a in attempts}
    assert len(parents) == 1 and by_id(spans)[parents.pop()]["attributes"]["gen_ai.operation.name"] == "chat"
    assert attempts[0]["start_ns"] <= attempts[1]["start_ns"]  # laid end to end, the failed one first


def by_id(spans: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {s["span_id"]: s for s in spans}


def test_chat_spans_carry_the_response_id_when_the_provider_gives_one(make_agent_lua: Any, llm_server: Any) -> None:
    lua = make_agent_lua()
    first = chat(None, [call("calculate", {"expression": "1 + 1"}, "call_r1")])
    anonymous = chat("Two.")  # a server that gives no id (a local model's may not): no attribute
    del anonymous["id"]
    llm_server.reply(OPENAI, Reply.json(first), Reply.json(anonymous), sse(["Thr", "ee."]))
    lua.run("a = Agent.new{name = 'ids', model = 'openai/m', tools = {'calculate'}} a:run('1 + 1?')")
    chats = [s for s in lua.run("return Trace.last().spans") if s["name"] == "chat openai/m"]
    assert [c["attributes"].get("gen_ai.response.id") for c in chats] == [first["id"], None]
    lua.run("a:stream('1 + 2?', function(delta) end)")  # a streamed answer: the chunks' id
    streamed = [s for s in lua.run("return Trace.last().spans") if s["name"] == "chat openai/m"]
    assert streamed[0]["attributes"]["gen_ai.response.id"] == "chatcmpl-stream"


def test_trace_last_list_and_the_display(make_agent_lua: Any, llm_server: Any) -> None:
    lua = make_agent_lua()
    llm_server.reply(OPENAI, answer("Hi."))
    lua.run("b = Agent.new{name = 'writer', model = 'openai/m'} r = b:run('hello')")
    last = lua.run("return Trace.last()")
    assert last["name"] == "invoke_agent writer"
    assert lua.run("return Trace.list{agent = 'writer'}")[0]["trace_id"] == last["trace_id"]
    assert lua.run("return #Trace.list{agent = 'nobody'}") == 0
    assert lua.run("return #Trace.list{errors = true}") == 0
    text = lua.run("return tostring(Trace.last())")
    assert text.splitlines()[0].startswith("invoke_agent writer") and "  chat openai/m" in text
    lua.run("Trace.last():show()")
    data = lua.out.displays[-1][0]
    assert "invoke_agent writer" in data["text/html"] and data["text/plain"] == text
    lua.run("display(Trace.last())")
    assert "text/html" in lua.out.displays[-1][0]
    err = lua.fail("Trace.get('0123456789abcdef')")
    assert err.ename == "not_found" and "Trace.list()" in err.evalue
    err = lua.fail("Trace.list{lats = 3}")
    assert "unknown option" in err.evalue and "last" in err.evalue


def test_content_is_captured_only_when_enabled(make_agent_lua: Any, llm_server: Any) -> None:
    lua = make_agent_lua("[telemetry]\ncapture_content = true\n")
    llm_server.reply(OPENAI, answer(None, [call("calculate", {"expression": "2 + 2"}, "call_c1")]), answer("Four."))
    trace_id = lua.run("local a = Agent.new{name = 'c', model = 'openai/m', tools = {'calculate'}} "
                       "return a:run('What is 2 + 2?').trace_id")
    spans = by_name(lua.run(f"return Trace.get('{trace_id}').spans"))
    tool = spans["execute_tool calculate"]["attributes"]
    assert '"2 + 2"' in tool["gen_ai.tool.call.arguments"] and tool["gen_ai.tool.call.result"] == "4"
    agent = spans["invoke_agent c"]["attributes"]
    assert "What is 2 + 2?" in agent["gen_ai.input.messages"] and "Four." in agent["gen_ai.output.messages"]


def test_workflow_steps_hang_under_the_run(make_agent_lua: Any) -> None:
    lua = make_agent_lua()
    lua.run("""
        wf = Workflow.new{name = 'pipeline', steps = {
          {id = 'a', tool = 'hash', params = {text = 'x'}},
          {id = 'b', tool = 'hash', params = {text = 'y'}},
          {id = 'c', tool = 'hash', params = {text = 'z'}, depends_on = {'a', 'b'}},
        }}
        run = wf:run()""")
    t = lua.run("return Trace.last()")
    assert t["name"] == "invoke_workflow pipeline" and t["kind"] == "workflow"
    spans = t["spans"]
    root = by_name(spans)["invoke_workflow pipeline"]
    steps = [s for s in spans if s["name"].startswith("step ")]
    assert sorted(s["name"] for s in steps) == ["step a", "step b", "step c"]
    assert all(s["parent_span_id"] == root["span_id"] for s in steps)
    tools = [s for s in spans if s["name"] == "execute_tool hash"]
    assert {s["parent_span_id"] for s in tools} == {s["span_id"] for s in steps}


def test_parallel_lua_steps_keep_their_own_context(make_agent_lua: Any) -> None:
    # Two Lua function steps run as coroutines on the Lua thread, interleaved at their sleep():
    # each one's tool calls must hang under its own step, not under whichever ran last.
    lua = make_agent_lua()
    lua.run("""
        local function work(tag)
          return function()
            Tool.call('hash', {text = tag .. '1'})
            sleep(0.05)
            Tool.call('hash', {text = tag .. '2'})
            return tag
          end
        end
        Workflow.new{name = 'two', mode = 'parallel',
                     steps = {{id = 'a', fn = work('a')}, {id = 'b', fn = work('b')}}}:run()""")
    spans = lua.run("return Trace.last().spans")
    steps = {s["name"]: s["span_id"] for s in spans if s["name"].startswith("step ")}
    assert set(steps) == {"step a", "step b"}
    tools = [s for s in spans if s["name"] == "execute_tool hash"]
    assert len(tools) == 4
    per_step = {name: sum(1 for t in tools if t["parent_span_id"] == sid) for name, sid in steps.items()}
    assert per_step == {"step a": 2, "step b": 2}


def test_a_sub_agent_and_a_failing_tool_nest_under_the_agent(make_agent_lua: Any, llm_server: Any) -> None:
    lua = make_agent_lua()
    llm_server.reply(OPENAI, answer(None, [call("explode", {}, "call_x")]), answer("Sorry."))
    trace_id = lua.run("""
        Tool.define{name = 'explode', description = 'Always fails', fn = function(a) error('kaboom') end}
        local a = Agent.new{name = 'fragile', model = 'openai/m', tools = {'explode'}}
        return a:run('go').trace_id""")
    spans = by_name(lua.run(f"return Trace.get('{trace_id}').spans"))
    tool = spans["execute_tool explode"]
    assert tool["status"] == "ERROR" and tool["attributes"]["error.type"] == "lua_error"
    assert "kaboom" in tool["status_message"]
    assert tool["parent_span_id"] == spans["invoke_agent fragile"]["span_id"]
    t = lua.run("return Trace.list{errors = true, agent = 'fragile'}")
    assert t[0]["trace_id"] == trace_id and t[0]["error_count"] == 1 and t[0]["status"] == "ok"


def test_rag_ingest_and_search_spans(make_agent_lua: Any) -> None:
    lua = make_agent_lua()
    lua.run("""
        local c = RAG.collection('facts')
        local v = {} for i = 1, 384 do v[i] = (i % 7) / 7 end
        c:ingest{{id = 'a', text = 'alpha', vector = v}}
        return c:search(v, {k = 1, mode = 'vector'})""")
    names = [t["name"] for t in lua.run("return Trace.list{last = 5}")]
    assert names[0] == "retrieval facts" and names[1].startswith("embeddings ")
    search = lua.run("return Trace.last().spans[1].attributes")
    assert search["gen_ai.operation.name"] == "retrieval" and search["aikit.rag.hits"] == 1


def test_a_program_aikit_starts_gets_the_traceparent_of_its_span(make_agent_lua: Any) -> None:
    lua = make_agent_lua('[security]\nallowed_commands = ["sh"]\n')
    out = lua.run("return Tool.call('run_process', {command = {'sh', '-c', 'echo $TRACEPARENT'}})")
    sent = str(out["stdout"]).strip()
    last = lua.run("return Trace.last()")
    process = [s for s in last["spans"] if s["name"].startswith("process ")][0]
    assert sent == f"00-{last['trace_id']}-{process['span_id']}-01"
