"""The agent loop (``aikit_components.agents.Agent``) against a real local HTTP server speaking the
OpenAI chat-completions wire format (plus one Anthropic and one Ollama conversation): every
request the agent makes is checked on the wire, every answer is a JSON body exactly as the API
sends it. Components are built from an ``aikit.toml`` (see ``tests/support/agents.py``); nothing is mocked.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from aikit_components.errors import Cancelled, InvalidArgument, NotFound
from aikit_components.hooks import HookResult
from aikit_components.providers import ProviderError
from aikit_components.tools import tool
from tests.support.agents import (
    ANTHROPIC,
    BACKUP,
    OLLAMA,
    OPENAI,
    AgentEnv,
    answer,
    call,
    chat,
    error,
    gather_with_cancel,
    run,
    sent_messages,
    sse,
)
from tests.support.llm_server import Reply


def tool_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if m["role"] == "tool"]


def assert_tool_pairs_consistent(messages: list[dict[str, Any]]) -> None:
    """What the OpenAI API demands: every assistant ``tool_calls`` entry is answered by a ``tool``
    message with its id, right after it (else it answers HTTP 400)."""
    for i, m in enumerate(messages):
        if m["role"] == "assistant" and m.get("tool_calls"):
            wanted = [c["id"] for c in m["tool_calls"]]
            following = [x.get("tool_call_id") for x in messages[i + 1:i + 1 + len(wanted)] if x["role"] == "tool"]
            assert following == wanted, f"assistant tool_calls {wanted} answered by {following} in {messages}"


# ====================================================================== one model call
class TestPlainAnswer:
    def test_text_steps_usage_model_and_the_request_on_the_wire(self, env: AgentEnv) -> None:
        env.server.reply(OPENAI, Reply.fixture("openai_chat_text.json"))
        agent = env.agent(name="greeter", system="Be brief.", temperature=0.2, max_tokens=50)
        result = run(agent.run("Hello"))
        assert result.text == "Hello! How can I assist you today?"
        assert (result.steps, result.stop_reason, result.model) == (1, "end", "openai/m")
        assert result.usage.to_dict() == {"input_tokens": 19, "output_tokens": 10, "total_tokens": 29}
        assert result.tool_calls == [] and result.data is None
        assert agent.usage.to_dict() == result.usage.to_dict()

        [request] = env.server.requests
        assert request.method == "POST" and request.path == OPENAI
        assert request.headers["authorization"] == "Bearer test-key"
        assert request.headers["content-type"] == "application/json"
        body = request.json()
        assert body["model"] == "m"
        assert body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]
        assert body["temperature"] == 0.2 and body["max_tokens"] == 50
        assert "tools" not in body and "stream" not in body and "response_format" not in body

    def test_to_dict_is_what_lua_gets(self, env: AgentEnv) -> None:
        env.server.reply(OPENAI, answer("fine"))
        result = run(env.agent(name="d").run("x"))
        assert result.to_dict() == {"text": "fine", "data": None, "tool_calls": [], "steps": 1,
                                    "usage": {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15},
                                    "model": "openai/m", "stop_reason": "end", "refusal": None,
                                    "trace_id": result.trace_id, "run_id": result.run_id, "status": "done"}
        assert result.trace_id is not None and len(result.trace_id) == 32  # tracing is on by default
        assert result.run_id.startswith("run-")

    def test_finish_reason_length_is_max_tokens(self, env: AgentEnv) -> None:
        env.server.reply(OPENAI, answer("cut sh", finish="length"))
        result = run(env.agent(name="short").run("write a novel"))
        assert (result.text, result.stop_reason) == ("cut sh", "max_tokens")

    def test_a_content_filter_stop_says_why(self, env: AgentEnv) -> None:
        finished = env.components.events.subscribe("agent.finished")
        env.server.reply(OPENAI, answer(None, finish="content_filter"))
        result = run(env.agent(name="filtered", fallback=["backup/m"]).run("something risky"))
        assert (result.text, result.stop_reason) == ("", "content_filter")
        assert result.refusal is not None
        assert "content filter of provider 'openai'" in result.refusal and "model 'openai/m'" in result.refusal
        assert "before it produced any text" in result.refusal and "does not fall back" in result.refusal
        assert env.server.requests_to(BACKUP) == []  # a refusal is not something another model should get around
        assert result.to_dict()["refusal"] == result.refusal and finished.receive(0).payload["refusal"] == result.refusal

    def test_a_refusal_keeps_what_the_provider_said(self, env: AgentEnv) -> None:
        body = chat(None)
        body["choices"][0]["message"]["refusal"] = "I'm sorry, I can't help with that."
        env.server.reply(OPENAI, Reply.json(body))
        result = run(env.agent(name="refused").run("something risky"))
        assert result.stop_reason == "content_filter" and result.text == "I'm sorry, I can't help with that."
        assert result.refusal == ("the content filter of provider 'openai' stopped the answer of model 'openai/m'; "
                                  "the provider said: I'm sorry, I can't help with that.")

    def test_a_refusal_is_not_sent_back_as_invalid_output(self, env: AgentEnv) -> None:
        env.server.reply(OPENAI, answer(None, finish="content_filter"))
        schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
        result = run(env.agent(name="schema_refused", output_schema=schema).run("n?"))
        assert (result.stop_reason, result.data, len(env.server.requests)) == ("content_filter", None, 1)
        assert result.refusal is not None

    def test_a_filter_that_cuts_an_answer_short_says_so(self, env: AgentEnv) -> None:
        env.server.reply(OPENAI, answer("Here is how to", finish="content_filter"))
        result = run(env.agent(name="cut").run("something risky"))
        assert result.text == "Here is how to" and "part way" in (result.refusal or "")

    def test_a_streamed_refusal_says_why(self, env: AgentEnv) -> None:
        base = {"id": "chatcmpl-r", "object": "chat.completion.chunk", "created": 1741569953, "model": "m",
                "service_tier": "default", "system_fingerprint": "fp_b3f1157249"}
        events = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": None, "refusal": ""},
                                        "logprobs": None, "finish_reason": None}], "usage": None}]
        events += [{**base, "choices": [{"index": 0, "delta": {"refusal": piece}, "logprobs": None,
                                         "finish_reason": None}], "usage": None} for piece in ("I can't ", "do that.")]
        events.append({**base, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}],
                       "usage": None})
        chunks = [f"data: {json.dumps(e)}\n\n".encode() for e in events] + [b"data: [DONE]\n\n"]
        env.server.reply(OPENAI, Reply(200, b"".join(chunks), content_type="text/event-stream", chunks=chunks))
        deltas: list[str] = []
        result = run(env.agent(name="streamed").run("something risky", on_text=deltas.append))
        assert "".join(deltas) == result.text == "I can't do that." and result.stop_reason == "content_filter"
        assert result.refusal is not None and result.refusal.endswith("the provider said: I can't do that.")

    def test_bad_spec_and_unknown_tool_fail_at_creation(self, env: AgentEnv) -> None:
        with pytest.raises(InvalidArgument) as err:
            env.agent(name="bad", max_steps=0, temperature=3)
        assert "max_steps" in err.value.message and "temperature" in err.value.message
        with pytest.raises(NotFound) as nf:
            env.agent(name="typo", tools=["calculat"])
        assert "calculate" in nf.value.details["suggestions"]
        assert env.server.requests == []


# ====================================================================== tools
class TestTools:
    def test_calculate_then_answer(self, env: AgentEnv) -> None:
        env.server.reply(OPENAI,
                         answer(None, [call("calculate", {"expression": "6 * 7"}, "call_calc_1")], usage=(30, 12)),
                         answer("6 * 7 = 42", usage=(50, 8)))
        agent = env.agent(name="math", system="Use tools.", tools=["calculate"])
        result = run(agent.run("What is 6 * 7?"))
        assert (result.text, result.steps, result.stop_reason) == ("6 * 7 = 42", 2, "end")
        assert result.usage.to_dict() == {"input_tokens": 80, "output_tokens": 20, "total_tokens": 100}
        [record] = result.tool_calls
        assert (record.name, record.arguments, record.result, record.error, record.step) == \
            ("calculate", {"expression": "6 * 7"}, 42, None, 1)
        assert record.to_dict() == {"name": "calculate", "arguments": {"expression": "6 * 7"}, "step": 1, "result": 42}

        first, second = (r.json() for r in env.server.requests_to(OPENAI))
        [offered] = first["tools"]
        assert offered["type"] == "function" and offered["function"]["name"] == "calculate"
        assert offered["function"]["parameters"]["required"] == ["expression"]
        assert "arithmetic" in offered["function"]["description"]
        assert second["messages"] == [
            {"role": "system", "content": "Use tools."},
            {"role": "user", "content": "What is 6 * 7?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_calc_1", "type": "function",
                 "function": {"name": "calculate", "arguments": json.dumps({"expression": "6 * 7"})}}]},
            {"role": "tool", "tool_call_id": "call_calc_1", "content": "42"},
        ]

    def test_parallel_tool_calls_run_concurrently(self, env: AgentEnv) -> None:
        arrived: list[str] = []
        both_in: dict[str, asyncio.Event] = {}

        @tool(name="rendezvous")
        async def rendezvous(label: str) -> str:
            """Wait until the other call has started too (a run one after the other never meets).

            Args:
                label: Which call this is.
            """
            event = both_in.setdefault("event", asyncio.Event())
            arrived.append(label)
            if len(arrived) == 2:
                event.set()
            try:
                await asyncio.wait_for(event.wait(), 10)  # a safety net only: concurrent calls meet at once
            except TimeoutError:
                return f"{label} waited alone"
            return f"{label} met {sorted(arrived)}"

        env.components.tools.register(rendezvous)
        env.server.reply(OPENAI,
                         answer(None, [call("rendezvous", {"label": "a"}, "call_a"),
                                       call("rendezvous", {"label": "b"}, "call_b")]),
                         answer("both done"))
        result = run(env.agent(name="par", tools=["rendezvous"]).run("meet twice"))
        assert result.text == "both done"
        assert [(r.name, r.arguments, r.result) for r in result.tool_calls] == [
            ("rendezvous", {"label": "a"}, "a met ['a', 'b']"), ("rendezvous", {"label": "b"}, "b met ['a', 'b']")]
        assert tool_messages(sent_messages(env.server)) == [
            {"role": "tool", "tool_call_id": "call_a", "content": "a met ['a', 'b']"},
            {"role": "tool", "tool_call_id": "call_b", "content": "b met ['a', 'b']"}]

    def test_parallel_calls_from_the_real_fixture(self, env: AgentEnv) -> None:
        @tool()
        def get_weather(location: str, unit: str = "celsius") -> dict:
            """The weather.

            Args:
                location: City.
                unit: celsius or fahrenheit.
            """
            return {"location": location, "temp": 18, "unit": unit}

        @tool()
        def get_time(timezone: str) -> str:
            """The time.

            Args:
                timezone: IANA zone.
            """
            return f"12:00 in {timezone}"

        env.components.tools.register(get_weather)
        env.components.tools.register(get_time)
        env.server.reply(OPENAI, Reply.fixture("openai_chat_tool_calls.json"), Reply.fixture("openai_chat_text.json"))
        result = run(env.agent(name="fx", tools=["get_weather", "get_time"]).run("Weather and time in Paris?"))
        assert result.steps == 2
        assert result.usage.input_tokens == 82 + 19
        assert tool_messages(sent_messages(env.server)) == [
            {"role": "tool", "tool_call_id": "call_DdmO9pD3xa9XTPNJ32zg2hcA",
             "content": json.dumps({"location": "Paris, France", "temp": 18, "unit": "celsius"})},
            {"role": "tool", "tool_call_id": "call_4VuSNn6gKCcqIQ2pUe0Fj8bX", "content": "12:00 in Europe/Paris"}]

    def test_argument_validation_problems_go_back_to_the_model(self, env: AgentEnv) -> None:
        env.server.reply(OPENAI,
                         answer(None, [call("calculate", {"expr": "1 + 1"}, "call_bad")]),
                         answer(None, [call("calculate", {"expression": "1 + 1"}, "call_good")]),
                         answer("2"))
        result = run(env.agent(name="val", tools=["calculate"]).run("1 + 1?"))
        assert (result.text, result.steps, result.stop_reason) == ("2", 3, "end")
        bad, good = result.tool_calls
        assert bad.error is not None and bad.error["code"] == "invalid_argument"
        assert set(bad.error["details"]["problems"]) == {"expression: required",
                                                         "expr: unknown parameter (known: expression)"}
        assert good.result == 2 and good.error is None
        [feedback] = tool_messages(sent_messages(env.server, index=1))
        assert feedback["tool_call_id"] == "call_bad"
        assert feedback["content"].startswith("Error: ")
        assert "expression: required" in feedback["content"] and "expr: unknown parameter" in feedback["content"]
        assert json.loads(feedback["content"][len("Error: "):])["error"]["code"] == "invalid_argument"

    def test_arguments_that_are_not_json_go_back_to_the_model(self, env: AgentEnv) -> None:
        @tool()
        def get_weather(location: str, unit: str = "celsius") -> str:
            """The weather.

            Args:
                location: City.
                unit: Unit.
            """
            raise AssertionError("must not run with broken arguments")

        env.components.tools.register(get_weather)
        env.server.reply(OPENAI, Reply.fixture("openai_chat_invalid_arguments.json"), answer("sorry"))
        result = run(env.agent(name="badjson", tools=["get_weather"]).run("weather?"))
        assert result.text == "sorry"
        [record] = result.tool_calls
        assert record.error["code"] == "invalid_argument" and "not valid JSON" in record.error["message"]
        [feedback] = tool_messages(sent_messages(env.server))
        assert feedback["tool_call_id"] == "call_Zx81JkqP0u2vRbXo9m4TfL3s"
        assert "not valid JSON" in feedback["content"] and '"unit\\": celsius' in feedback["content"]

    def test_unknown_tool_name_is_an_error_result(self, env: AgentEnv) -> None:
        env.server.reply(OPENAI, answer(None, [call("delete_everything", {}, "call_x")]), answer("ok, I cannot"))
        result = run(env.agent(name="unk", tools=["calculate"]).run("clean up"))
        assert (result.text, result.stop_reason) == ("ok, I cannot", "end")
        [record] = result.tool_calls
        assert record.error["code"] == "not_found"
        [feedback] = tool_messages(sent_messages(env.server))
        assert feedback["tool_call_id"] == "call_x"
        assert "delete_everything" in feedback["content"] and "available: calculate" in feedback["content"]

    def test_a_registered_tool_not_given_to_the_agent_is_not_run(self, env: AgentEnv) -> None:
        env.server.reply(OPENAI, answer(None, [call("write_file", {"path": "x", "content": "y"}, "call_w")]),
                         answer("no"))
        result = run(env.agent(name="scoped", tools=["calculate"]).run("write"))
        assert result.tool_calls[0].error["code"] == "not_found"
        assert not (env.components.data_dir.parent / "x").exists()

    def test_a_tool_that_raises_is_fed_back(self, env: AgentEnv) -> None:
        @tool()
        def explode(reason: str) -> str:
            """Always fails.

            Args:
                reason: Why.
            """
            raise RuntimeError(f"boom: {reason}")

        env.components.tools.register(explode)
        env.server.reply(OPENAI, answer(None, [call("explode", {"reason": "test"}, "call_e")]),
                         answer("the tool failed"))
        result = run(env.agent(name="boom", tools=["explode"]).run("go"))
        assert (result.text, result.stop_reason) == ("the tool failed", "end")
        [record] = result.tool_calls
        assert record.error is not None and "boom: test" in record.error["message"]
        [feedback] = tool_messages(sent_messages(env.server))
        assert feedback["tool_call_id"] == "call_e" and "boom: test" in feedback["content"]
        assert feedback["content"].startswith("Error: ")

    def test_max_steps(self, env: AgentEnv) -> None:
        env.server.reply(OPENAI, *(answer(None, [call("calculate", {"expression": f"{i} + 1"})]) for i in range(5)))
        result = run(env.agent(name="loop", tools=["calculate"], max_steps=3).run("count"))
        assert (result.stop_reason, result.steps) == ("max_steps", 3)
        assert "3 steps" in result.text
        assert [r.result for r in result.tool_calls] == [1, 2, 3]
        assert len(env.server.requests_to(OPENAI)) == 3

    def test_repeated_call_guard(self, env: AgentEnv) -> None:
        env.server.reply(OPENAI, *(answer(None, [call("calculate", {"expression": "1 + 1"})]) for _ in range(6)))
        result = run(env.agent(name="stuck", tools=["calculate"], max_steps=8).run("again"))
        assert result.stop_reason == "repeated_call"
        assert "calculate" in result.text and "3 times" in result.text
        assert result.steps == 4 and len(result.tool_calls) == 3
        assert len(env.server.requests_to(OPENAI)) == 4

    def test_memory_after_repeated_call_stays_a_valid_conversation(self, env: AgentEnv) -> None:
        env.server.reply(OPENAI, *(answer(None, [call("calculate", {"expression": "1 + 1"})]) for _ in range(4)),
                         answer("fine"))
        agent = env.agent(name="stuckmem", tools=["calculate"], memory=True)
        assert run(agent.run("again")).stop_reason == "repeated_call"
        run(agent.run("next question"))
        assert_tool_pairs_consistent(sent_messages(env.server))


# ====================================================================== structured output
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "temp": {"type": "number"}},
          "required": ["city", "temp"], "additionalProperties": False}


class TestOutputSchema:
    def test_invalid_then_valid(self, env: AgentEnv) -> None:
        env.server.reply(OPENAI, answer('{"city": 5}'), answer('```json\n{"city": "Paris", "temp": 21.5}\n```'))
        result = run(env.agent(name="json", output_schema=SCHEMA).run("weather in Paris as JSON"))
        assert result.data == {"city": "Paris", "temp": 21.5}
        assert (result.stop_reason, result.steps) == ("end", 2)
        first, second = (r.json() for r in env.server.requests_to(OPENAI))
        assert first["response_format"] == {"type": "json_schema", "json_schema": {"name": "response", "schema": SCHEMA}}
        feedback = second["messages"][-1]
        assert feedback["role"] == "user" and "did not match the required JSON schema" in feedback["content"]
        assert "city: expected string" in feedback["content"] and "temp: required" in feedback["content"]
        assert second["messages"][-2] == {"role": "assistant", "content": '{"city": 5}'}

    def test_not_json_then_valid(self, env: AgentEnv) -> None:
        env.server.reply(OPENAI, answer("It is sunny."), answer('{"city": "Oslo", "temp": -3}'))
        result = run(env.agent(name="json2", output_schema=SCHEMA).run("x"))
        assert result.data == {"city": "Oslo", "temp": -3}
        assert "not JSON" in sent_messages(env.server)[-1]["content"]

    def test_invalid_beyond_the_retries(self, env: AgentEnv) -> None:
        env.server.reply(OPENAI, answer("nope"), answer('{"city": "Rome"}'), answer("unused"))
        result = run(env.agent(name="json3", output_schema=SCHEMA, max_output_retries=1).run("x"))
        assert (result.stop_reason, result.data, result.text, result.steps) == \
            ("invalid_output", None, '{"city": "Rome"}', 2)
        assert len(env.server.requests_to(OPENAI)) == 2


# ====================================================================== memory
class TestMemory:
    def test_turns_persist_in_state_and_forget_clears(self, env: AgentEnv) -> None:
        env.server.reply(OPENAI, answer("Nice to meet you, Ada."), answer("Your name is Ada."), answer("I don't know."))
        agent = env.agent(name="mem", system="Remember things.", memory=True)
        run(agent.run("My name is Ada."))
        stored = env.components.state.get("agent:mem", "memory")
        assert [(m["role"], m["text"]) for m in stored] == [("user", "My name is Ada."),
                                                           ("assistant", "Nice to meet you, Ada.")]
        # a new agent object with the same name (a re-run cell) remembers too: memory lives in State
        again = env.agent(name="mem", system="Remember things.", memory=True)
        assert run(again.run("What is my name?")).text == "Your name is Ada."
        assert sent_messages(env.server) == [
            {"role": "system", "content": "Remember things."},
            {"role": "user", "content": "My name is Ada."},
            {"role": "assistant", "content": "Nice to meet you, Ada."},
            {"role": "user", "content": "What is my name?"}]
        assert len(env.components.state.get("agent:mem", "memory")) == 4

        agent.forget()
        assert env.components.state.get("agent:mem", "memory") is None
        run(agent.run("What is my name?"))
        assert sent_messages(env.server) == [{"role": "system", "content": "Remember things."},
                                             {"role": "user", "content": "What is my name?"}]

    def test_tool_turns_are_remembered_in_wire_order(self, env: AgentEnv) -> None:
        env.server.reply(OPENAI, answer(None, [call("calculate", {"expression": "2 ** 10"}, "call_m")]),
                         answer("1024"), answer("It was 1024."))
        agent = env.agent(name="memtools", tools=["calculate"], memory=True)
        run(agent.run("2^10?"))
        run(agent.run("What was the result?"))
        messages = sent_messages(env.server)
        assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant", "user"]
        assert messages[2] == {"role": "tool", "tool_call_id": "call_m", "content": "1024"}
        assert_tool_pairs_consistent(messages)

    def test_without_memory_nothing_is_stored(self, env: AgentEnv) -> None:
        env.server.reply(OPENAI, answer("a"), answer("b"))
        agent = env.agent(name="nomem")
        run(agent.run("one"))
        run(agent.run("two"))
        assert sent_messages(env.server) == [{"role": "user", "content": "two"}]
        assert env.components.state.get("agent:nomem", "memory") is None


# ====================================================================== fallback and errors
class TestFallback:
    @pytest.mark.parametrize("failure, kind", [
        (Reply.fixture("openai_error_503.json", status=503), "overloaded"),  # 503 + "overloaded" in the body
        (error(500, "The server had an error while processing your request.", "server_error"), "server"),
        (Reply.fixture("openai_error_429.json", status=429), "rate_limit"),
    ], ids=["503", "500", "429"])
    def test_the_backup_answers(self, env: AgentEnv, failure: Reply, kind: str) -> None:
        fallbacks = env.components.events.subscribe("llm.fallback")
        env.server.reply(OPENAI, failure)
        env.server.reply(BACKUP, answer("from the backup", model="m2"))
        result = run(env.agent(name="fb", fallback=["backup/m2"]).run("hi"))
        assert (result.text, result.model) == ("from the backup", "backup/m2")
        assert len(env.server.requests_to(OPENAI)) == 1  # retries = 0
        assert env.server.requests_to(BACKUP)[0].json()["model"] == "m2"
        event = fallbacks.receive(0)
        assert event is not None and (event.payload["from"], event.payload["to"]) == ("openai/m", "backup/m2")
        assert event.payload["kind"] == kind

    def test_every_step_falls_back_independently(self, env: AgentEnv) -> None:
        env.server.reply(OPENAI, answer(None, [call("calculate", {"expression": "1+2"}, "c1")]),
                         Reply.fixture("openai_error_503.json", status=503))
        env.server.reply(BACKUP, answer("3"))
        result = run(env.agent(name="fb2", tools=["calculate"], fallback=["backup/m"]).run("1+2"))
        assert (result.text, result.model) == ("3", "backup/m")
        # the backup got the whole conversation, tool result included
        assert tool_messages(sent_messages(env.server, BACKUP)) == [
            {"role": "tool", "tool_call_id": "c1", "content": "3"}]

    @pytest.mark.parametrize("status, fixture, kind, says", [
        (401, "openai_error_401.json", "auth", "authentication error"),
        (400, "openai_error_400.json", "bad_request", "Unsupported parameter"),
    ])
    def test_no_fallback_on_auth_and_bad_request(self, env: AgentEnv, status: int, fixture: str, kind: str,
                                                 says: str) -> None:
        env.server.reply(OPENAI, Reply.fixture(fixture, status=status))
        env.server.reply(BACKUP, answer("must not be used"))
        failed = env.components.events.subscribe("agent.failed")
        with pytest.raises(ProviderError) as err:
            run(env.agent(name="nofb", fallback=["backup/m"]).run("hi"))
        exc = err.value
        assert (exc.code, exc.kind, exc.status) == ("provider_error", kind, status)
        assert "Not falling back to backup/m" in exc.message and says in exc.message
        assert env.server.requests_to(BACKUP) == []
        event = failed.receive(0)
        assert event is not None and event.payload["code"] == "provider_error"

    def test_all_models_down(self, env: AgentEnv) -> None:
        env.server.reply(OPENAI, Reply.fixture("openai_error_503.json", status=503))
        env.server.reply(BACKUP, Reply.fixture("openai_error_503.json", status=503))
        with pytest.raises(ProviderError) as err:
            run(env.agent(name="down", fallback=["backup/m"]).run("hi"))
        assert "all 2 models failed" in err.value.message
        assert [a["model"] for a in err.value.details["attempts"]] == ["openai/m", "backup/m"]

    def test_the_provider_retries_before_falling_back(self, make_env: Any, llm_server: Any) -> None:
        env = make_env(f'\n[providers.patient]\ntype = "openai"\nbase_url = "{llm_server.url}/v1"\n'
                       'api_key = "test-key"\nretries = 1\n')
        env.server.reply(OPENAI, Reply.fixture("openai_error_429.json", status=429, headers={"retry-after-ms": "10"}),
                         answer("second try"))
        env.server.reply(BACKUP, answer("must not be used"))
        result = run(env.agent(name="retry", model="patient/m", fallback=["backup/m"]).run("hi"))
        assert (result.text, result.model) == ("second try", "patient/m")
        assert len(env.server.requests_to(OPENAI)) == 2 and env.server.requests_to(BACKUP) == []


# ====================================================================== agents as tools, usage
class TestAgentAsTool:
    def test_commander_delegates_to_a_specialist(self, env: AgentEnv) -> None:
        specialist = env.agent(name="mathematician", system="You compute.", tools=["calculate"])
        env.components.tools.register(specialist.as_tool("Ask the mathematician."))
        commander = env.agent(name="commander", system="Delegate maths.", tools=["mathematician"])
        env.server.reply(
            OPENAI,
            answer(None, [call("mathematician", {"input": "What is 6 * 7?"}, "call_cmd")], usage=(100, 20)),  # commander
            answer(None, [call("calculate", {"expression": "6 * 7"}, "call_spec")], usage=(40, 10)),  # specialist
            answer("42", usage=(60, 2)),  # specialist
            answer("The mathematician says 42.", usage=(150, 9)),  # commander
        )
        result = run(commander.run("Ask the mathematician for 6 * 7."))
        assert result.text == "The mathematician says 42."
        [delegation] = result.tool_calls
        assert delegation.name == "mathematician"
        assert delegation.result == {"text": "42", "data": None, "model": "openai/m"}

        cmd1, spec1, spec2, cmd2 = (r.json() for r in env.server.requests_to(OPENAI))
        assert [t["function"]["name"] for t in cmd1["tools"]] == ["mathematician"]
        assert cmd1["tools"][0]["function"]["description"] == "Ask the mathematician."
        assert spec1["messages"] == [{"role": "system", "content": "You compute."},
                                     {"role": "user", "content": "What is 6 * 7?"}]
        assert [t["function"]["name"] for t in spec1["tools"]] == ["calculate"]
        assert tool_messages(spec2["messages"]) == [{"role": "tool", "tool_call_id": "call_spec", "content": "42"}]
        [back] = tool_messages(cmd2["messages"])
        assert back["tool_call_id"] == "call_cmd" and json.loads(back["content"])["text"] == "42"

        ledger = env.components.ledger.to_dict()
        assert ledger["agents"]["mathematician"]["input_tokens"] == 100
        assert ledger["agents"]["commander"]["input_tokens"] == 250
        assert ledger["session"]["total_tokens"] == 100 + 20 + 40 + 10 + 60 + 2 + 150 + 9


class TestUsage:
    def test_per_agent_session_and_cost(self, make_env: Any) -> None:
        env = make_env('\n[models.prices."openai/m"]\ninput_per_mtok = 2.5\noutput_per_mtok = 10.0\n')
        env.server.reply(OPENAI, answer("a", usage=(1000, 100)), answer("b", usage=(3000, 300)),
                         answer("c", model="other", usage=(500, 50)))
        env.server.reply(BACKUP, answer("d", usage=(7, 7)))
        alpha, beta = env.agent(name="alpha"), env.agent(name="beta")
        run(alpha.run("1"))
        run(alpha.run("2"))
        run(beta.run("3"))
        gamma = env.agent(name="gamma", model="backup/free")
        run(gamma.run("4"))
        assert alpha.usage.to_dict() == {"input_tokens": 4000, "output_tokens": 400, "total_tokens": 4400}
        ledger = env.components.ledger.to_dict()
        assert ledger["agents"]["alpha"] == {"input_tokens": 4000, "output_tokens": 400, "total_tokens": 4400,
                                             "cost": round((4000 * 2.5 + 400 * 10.0) / 1e6, 6)}
        assert ledger["agents"]["beta"]["cost"] == round((500 * 2.5 + 50 * 10.0) / 1e6, 6)
        assert ledger["agents"]["gamma"] == {"input_tokens": 7, "output_tokens": 7, "total_tokens": 14, "cost": 0.0}
        assert ledger["session"]["total_tokens"] == 4400 + 550 + 14
        assert ledger["session"]["cost"] == round((4500 * 2.5 + 450 * 10.0) / 1e6, 6)


class TestAccounting:
    def test_tokens_of_a_failed_run_are_counted(self, make_env: Any) -> None:
        env = make_env('\n[models.prices."openai/m"]\ninput_per_mtok = 1.0\noutput_per_mtok = 1.0\n')
        env.server.reply(OPENAI, answer(None, [call("calculate", {"expression": "1"})], usage=(1000, 100)),
                         Reply.fixture("openai_error_401.json", status=401))
        agent = env.agent(name="spent", tools=["calculate"])
        with pytest.raises(ProviderError):
            run(agent.run("x"))
        assert agent.usage.total_tokens == 1100
        assert env.components.ledger.to_dict()["agents"]["spent"]["total_tokens"] == 1100

    def test_cost_follows_the_model_of_each_step(self, make_env: Any) -> None:
        env = make_env('\n[models.prices."openai/m"]\ninput_per_mtok = 10.0\noutput_per_mtok = 10.0\n')
        env.server.reply(OPENAI, answer(None, [call("calculate", {"expression": "1"})], usage=(1000, 0)),
                         Reply.fixture("openai_error_503.json", status=503))
        env.server.reply(BACKUP, answer("1", usage=(1000, 0)))  # backup/m has no price: free
        result = run(env.agent(name="mixed", tools=["calculate"], fallback=["backup/m"]).run("1"))
        assert result.model == "backup/m"
        assert env.components.ledger.to_dict()["agents"]["mixed"]["cost"] == round(1000 * 10.0 / 1e6, 6)

    def test_security_max_tool_calls_limits_an_agent_run(self, make_env: Any) -> None:
        env = make_env("\n[security]\nmax_tool_calls = 2\n")
        env.server.reply(OPENAI, answer(None, [call("calculate", {"expression": f"{i}"}) for i in range(3)]),
                         answer("done"))
        result = run(env.agent(name="budget", tools=["calculate"]).run("count"))
        assert [c.error["code"] if c.error else c.result for c in result.tool_calls] == [0, 1, "budget_exceeded"]


# ====================================================================== hooks and events
class TestHooksAndEvents:
    def test_llm_before_cancel(self, env: AgentEnv) -> None:
        seen: list[dict[str, Any]] = []

        def guard(ctx: Any) -> Any:
            seen.append(ctx.payload)
            return HookResult.cancel("offline mode")

        env.components.hooks.register("llm.before", guard)
        with pytest.raises(Cancelled) as err:
            run(env.agent(name="hooked").run("hi"))
        assert "offline mode" in err.value.message
        assert seen[0]["agent"] == "hooked" and seen[0]["step"] == 1
        assert seen[0]["messages"] == [{"role": "user", "text": "hi"}]
        assert env.server.requests == []

    def test_agent_before_modifies_the_input(self, env: AgentEnv) -> None:
        def redact(ctx: Any) -> None:
            ctx.payload["input"] = ctx.payload["input"].replace("secret-123", "[redacted]")

        env.components.hooks.register("agent.before", redact)
        env.server.reply(OPENAI, answer("ok"))
        run(env.agent(name="redactor").run("my token is secret-123"))
        assert sent_messages(env.server) == [{"role": "user", "content": "my token is [redacted]"}]

    def test_agent_before_replace_and_after_replace(self, env: AgentEnv) -> None:
        hook = env.components.hooks.register("agent.before", lambda ctx: HookResult.replace("cached answer"))
        result = run(env.agent(name="cached").run("q"))
        assert (result.text, result.model) == ("cached answer", "hook") and env.server.requests == []
        env.components.hooks.unregister(hook)
        env.components.hooks.register("agent.after", lambda ctx: HookResult.replace(ctx.payload["result"]["text"].upper()))
        env.server.reply(OPENAI, answer("shout"))
        assert run(env.agent(name="loud").run("q")).text == "SHOUT"

    def test_tool_before_sees_and_modifies_the_agents_calls(self, env: AgentEnv) -> None:
        calls: list[tuple[str, dict[str, Any]]] = []

        def rewrite(ctx: Any) -> None:
            calls.append((ctx.payload["name"], dict(ctx.payload["args"])))
            if ctx.payload["name"] == "calculate":
                ctx.payload["args"] = {"expression": "100 + 1"}

        env.components.hooks.register("tool.before", rewrite)
        env.server.reply(OPENAI, answer(None, [call("calculate", {"expression": "1 + 1"}, "c_h")]), answer("101"))
        result = run(env.agent(name="toolhook", tools=["calculate"]).run("1+1"))
        assert calls == [("calculate", {"expression": "1 + 1"})]
        assert result.tool_calls[0].result == 101
        assert tool_messages(sent_messages(env.server)) == [{"role": "tool", "tool_call_id": "c_h", "content": "101"}]

    def test_tool_before_cancel_is_fed_back(self, env: AgentEnv) -> None:
        env.components.hooks.register("tool.before", lambda ctx: HookResult.cancel("calculator disabled"))
        env.server.reply(OPENAI, answer(None, [call("calculate", {"expression": "1 + 1"}, "c_x")]), answer("cannot"))
        result = run(env.agent(name="toolcancel", tools=["calculate"]).run("1+1"))
        assert result.text == "cannot" and result.tool_calls[0].error["code"] == "cancelled"
        [feedback] = tool_messages(sent_messages(env.server))
        assert "calculator disabled" in feedback["content"]

    def test_tool_calls_carry_the_agent_as_caller(self, env: AgentEnv) -> None:
        called = env.components.events.subscribe("tool.called")
        env.server.reply(OPENAI, answer(None, [call("calculate", {"expression": "2"})]), answer("2"))
        run(env.agent(name="who", tools=["calculate"]).run("2"))
        assert called.receive(0).payload == {"name": "calculate", "caller": "agent:who"}

    def test_events_in_order(self, env: AgentEnv) -> None:
        sub = env.components.events.subscribe("*")
        env.server.reply(OPENAI, answer(None, [call("calculate", {"expression": "3 * 3"})], usage=(11, 3)),
                         answer("9", usage=(13, 1)))
        run(env.agent(name="observed", tools=["calculate"]).run("3*3"))
        events = [e for e in sub.drain() if e.topic.split(".")[0] in ("agent", "llm", "tool")]
        assert [e.topic for e in events] == ["agent.started", "llm.called", "llm.finished", "tool.called",
                                             "tool.finished", "llm.called", "llm.finished", "agent.finished"]
        started, called, finished = events[0].payload, events[1].payload, events[2].payload
        assert started == {"agent": "observed", "model": "openai/m"}
        assert called == {"agent": "observed", "model": "openai/m", "step": 1}
        assert finished["model"] == "openai/m" and finished["usage"]["input_tokens"] == 11
        done = events[-1].payload
        assert (done["agent"], done["steps"], done["stop_reason"]) == ("observed", 2, "end")
        assert done["usage"] == {"input_tokens": 24, "output_tokens": 4, "total_tokens": 28}
        assert done["duration_ms"] >= 0 and all(e.source == "agents" for e in events if e.topic.startswith(("agent", "llm")))


# ====================================================================== streaming, cancellation
class TestStreaming:
    def test_on_text_receives_the_deltas(self, env: AgentEnv) -> None:
        env.server.reply(OPENAI, Reply.fixture("openai_stream_text.sse"))
        deltas: list[str] = []
        result = run(env.agent(name="streamer").run("Hello", on_text=deltas.append))
        assert deltas == ["Hello", "!", " How", " can", " I", " assist", " you", " today", "?"]
        assert "".join(deltas) == result.text == "Hello! How can I assist you today?"
        assert result.usage.to_dict() == {"input_tokens": 19, "output_tokens": 10, "total_tokens": 29}
        assert result.model == "openai/m"
        body = env.server.requests[0].json()
        assert body["stream"] is True and body["stream_options"] == {"include_usage": True}

    def test_streaming_with_tool_steps(self, env: AgentEnv) -> None:
        # step 1 streams a tool call, step 2 streams the text
        tool_chunks = [
            {"id": "c", "object": "chat.completion.chunk", "model": "m", "choices": [{"index": 0, "delta": {
                "role": "assistant", "content": None, "tool_calls": [{"index": 0, "id": "call_s", "type": "function",
                                                                      "function": {"name": "calculate", "arguments": ""}}]},
                "finish_reason": None}]},
            {"id": "c", "object": "chat.completion.chunk", "model": "m", "choices": [{"index": 0, "delta": {
                "tool_calls": [{"index": 0, "function": {"arguments": "{\"expression\": "}}]}, "finish_reason": None}]},
            {"id": "c", "object": "chat.completion.chunk", "model": "m", "choices": [{"index": 0, "delta": {
                "tool_calls": [{"index": 0, "function": {"arguments": "\"2+2\"}"}}]}, "finish_reason": None}]},
            {"id": "c", "object": "chat.completion.chunk", "model": "m", "choices": [{"index": 0, "delta": {},
                                                                                     "finish_reason": "tool_calls"}]},
        ]
        chunks = [f"data: {json.dumps(c)}\n\n".encode() for c in tool_chunks] + [b"data: [DONE]\n\n"]
        env.server.reply(OPENAI, Reply(200, b"".join(chunks), content_type="text/event-stream", chunks=chunks),
                         sse(["The answer", " is 4."]))
        deltas: list[str] = []
        result = run(env.agent(name="streamtools", tools=["calculate"]).run("2+2", on_text=deltas.append))
        assert result.tool_calls[0].result == 4
        assert "".join(deltas) == result.text == "The answer is 4."
        assert tool_messages(sent_messages(env.server)) == [{"role": "tool", "tool_call_id": "call_s", "content": "4"}]

    def test_stream_falls_back_before_the_first_token(self, env: AgentEnv) -> None:
        env.server.reply(OPENAI, Reply.fixture("openai_error_503.json", status=503))
        env.server.reply(BACKUP, sse(["from ", "backup"]))
        deltas: list[str] = []
        result = run(env.agent(name="sfb", fallback=["backup/m"]).run("hi", on_text=deltas.append))
        assert (result.text, result.model, deltas) == ("from backup", "backup/m", ["from ", "backup"])


class TestCancellation:
    def test_cancelling_the_run_mid_request(self, env: AgentEnv) -> None:
        failed = env.components.events.subscribe("agent.failed")
        env.server.reply(OPENAI, answer("too late", delay_s=3.0), answer("after the cancel"))
        agent = env.agent(name="slow")
        outcome = run(gather_with_cancel(agent.run("take your time"), lambda: env.server.requests_to(OPENAI)))
        assert isinstance(outcome, asyncio.CancelledError)  # not "too late": the request was abandoned
        event = failed.receive(1)
        assert event is not None and (event.payload["agent"], event.payload["code"]) == ("slow", "interrupted")
        assert agent.usage.total_tokens == 0 and env.components.ledger.session.total_tokens == 0
        # the agent (and its provider's connection pool) still work
        assert run(agent.run("again")).text == "after the cancel"

    def test_cancelling_during_parallel_tools_cancels_them(self, env: AgentEnv) -> None:
        started: list[str] = []
        finished: list[str] = []
        cancelled: list[str] = []

        @tool(name="sleepy")
        async def sleepy(label: str) -> str:
            """Sleep.

            Args:
                label: Label.
            """
            started.append(label)
            try:
                await asyncio.sleep(5)
            except asyncio.CancelledError:
                cancelled.append(label)
                raise
            finished.append(label)
            return label

        env.components.tools.register(sleepy)
        env.server.reply(OPENAI, answer(None, [call("sleepy", {"label": "a"}), call("sleepy", {"label": "b"})]))
        sleeper = env.agent(name="sleeper", tools=["sleepy"])
        outcome = run(gather_with_cancel(sleeper.run("sleep"), lambda: len(started) == 2))
        assert isinstance(outcome, asyncio.CancelledError)
        assert sorted(cancelled) == ["a", "b"] and finished == []


# ====================================================================== other wire formats
def weather_tool(answer: Callable[[str, str], str]) -> Any:
    """The tool ``get_weather(location, unit="celsius")``, answering ``answer(location, unit)``."""
    @tool()
    def get_weather(location: str, unit: str = "celsius") -> str:
        """The weather.

        Args:
            location: City.
            unit: Unit.
        """
        return answer(location, unit)

    return get_weather


class TestOtherWireFormats:
    def test_anthropic_tool_use_round_trip(self, env: AgentEnv) -> None:
        env.components.tools.register(weather_tool(lambda location, unit: f"18 degrees {unit} in {location}"))
        env.server.reply(ANTHROPIC, Reply.fixture("anthropic_message_tool_use.json"),
                         Reply.fixture("anthropic_message_text.json"))
        agent = env.agent(name="claude", model="anthropic/claude-sonnet-4-20250514", system="Be kind.",
                          tools=["get_weather"])
        result = run(agent.run("Weather in Paris?"))
        assert (result.text, result.model, result.steps) == ("Hello! How can I help you today?",
                                                            "anthropic/claude-sonnet-4-20250514", 2)
        assert result.usage.input_tokens == 384 + 12
        first, second = (r for r in env.server.requests_to(ANTHROPIC))
        assert first.headers["x-api-key"] == "test-key" and "anthropic-version" in first.headers
        body = second.json()
        assert body["system"] == "Be kind."
        assert body["tools"][0]["name"] == "get_weather" and "input_schema" in body["tools"][0]
        assert body["messages"][1]["role"] == "assistant"
        assert body["messages"][1]["content"][1] == {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9",
                                                     "name": "get_weather",
                                                     "input": {"location": "Paris, France", "unit": "celsius"}}
        assert body["messages"][2] == {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01A09q90qw90lq917835lq9",
             "content": "18 degrees celsius in Paris, France"}]}

    def test_ollama_tool_call_round_trip(self, env: AgentEnv) -> None:
        env.components.tools.register(weather_tool(lambda location, unit: f"18 {unit}"))
        env.server.reply(OLLAMA, Reply.fixture("ollama_chat_tool_calls.json"), Reply.fixture("ollama_chat_text.json"))
        result = run(env.agent(name="llama", model="ollama/llama3.2", tools=["get_weather"]).run("Weather?"))
        assert (result.text, result.model) == ("Hello! How can I help you today?", "ollama/llama3.2")
        assert result.tool_calls[0].result == "18 celsius"
        second = env.server.requests_to(OLLAMA)[1].json()
        assert second["model"] == "llama3.2" and second["stream"] is False
        assert second["messages"][-1]["role"] == "tool" and second["messages"][-1]["content"] == "18 celsius"
        assert second["messages"][-2]["tool_calls"][0]["function"] == {
            "name": "get_weather", "arguments": {"location": "Paris, France", "unit": "celsius"}}
