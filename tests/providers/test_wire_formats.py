"""Wire formats of the LLM providers against a real local HTTP server replaying canned answers in
each API's format (fixtures/), asserting both what is sent (headers, body) and what is parsed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from aikit_components.providers import Completion, Message, ProviderError, Request, StreamEvent, ToolCall, ToolSpec, Usage
from aikit_components.providers.anthropic import STRUCTURED_TOOL, AnthropicProvider
from aikit_components.providers.embeddings import OllamaEmbeddings, OpenAIEmbeddings
from aikit_components.providers.http import HTTPEndpoint, is_local_url
from aikit_components.providers.ollama import OllamaProvider
from aikit_components.providers.openai import OpenAIProvider
from aikit_components.providers.streams import SSEDecoder, aiter_ndjson, aiter_sse
from aikit_components.providers.tool_arguments import argument_error, decode_arguments
from tests.support.llm_server import LocalServer, Reply, fixture_json, fixture_text

FAST = {"backoff_s": 0.01}

WEATHER = ToolSpec("get_weather", "Current weather for a location",
                   {"type": "object", "properties": {"location": {"type": "string"},
                                                     "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                    "required": ["location"]})
TIME = ToolSpec("get_time", "Local time in a time zone",
                {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]})
WEATHER_ARGS = {"location": "Paris, France", "unit": "celsius"}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _complete(provider: Any, *requests: Request) -> list[Completion]:
    async with provider:
        return [await provider.complete(r) for r in requests]


async def _stream(provider: Any, request: Request) -> list[StreamEvent]:
    async with provider:
        return [event async for event in provider.stream(request)]


def complete(provider: Any, request: Request) -> Completion:
    return run(_complete(provider, request))[0]


def stream(provider: Any, request: Request) -> list[StreamEvent]:
    return run(_stream(provider, request))


def stream_then_complete(provider: Callable[[LocalServer], Any], server: LocalServer, path: str, stream_file: str,
                         json_file: str, request: Request) -> tuple[list[StreamEvent], Completion]:
    """``request`` streamed (``server`` answers at ``path`` with the fixture ``stream_file``), then
    asked plainly (answered with ``json_file``), each time by a new ``provider(server)``."""
    server.reply(path, Reply.fixture(stream_file), Reply.fixture(json_file))
    return stream(provider(server), request), complete(provider(server), request)


def expect(kind: str, fn: Any, *args: Any) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        fn(*args)
    assert info.value.kind == kind, f"expected {kind}, got {info.value.kind}: {info.value.message}"
    return info.value


def streamed_text(events: list[StreamEvent]) -> str:
    return "".join(e.text for e in events if e.kind == "text")


def end_of(events: list[StreamEvent]) -> Completion:
    assert events[-1].kind == "end" and [e.kind for e in events].count("end") == 1
    assert events[-1].completion is not None
    return events[-1].completion


def assert_calls_streamed(events: list[StreamEvent], calls: list[ToolCall]) -> None:
    """Call ``i`` of ``calls`` was streamed as event ``tool_call_start`` ``i`` (its id and name)
    and ``tool_call_delta`` fragments of ``i`` that join to its arguments."""
    for index, call in enumerate(calls):
        [start] = [e for e in events if e.kind == "tool_call_start" and e.index == index]
        assert (start.call_id, start.name) == (call.id, call.name)
        fragments = "".join(e.text for e in events if e.kind == "tool_call_delta" and e.index == index)
        assert json.loads(fragments) == call.arguments


def without_ids(completion: Completion) -> Completion:
    calls = [ToolCall(c.name, c.arguments, "-") for c in completion.tool_calls]
    return Completion(Message.assistant(completion.text, calls), completion.stop_reason, completion.usage,
                      completion.model)


def tool_round_trip(first: Completion, results: list[tuple[str, bool]]) -> list[Message]:
    """The conversation an agent sends after running the tools of ``first``."""
    return [Message.system("You are terse."), Message.user("Weather and time in Paris?"), first.message,
            *[Message.tool_result(call, text, is_error=err) for call, (text, err) in zip(first.tool_calls, results)]]


# =============================================================================================
# OpenAI Chat Completions
# =============================================================================================

CHAT = "/v1/chat/completions"


def openai(server: LocalServer, **kw: Any) -> OpenAIProvider:
    return OpenAIProvider("openai", server.url + "/v1", kw.pop("api_key", "sk-test-1234"), **{**FAST, **kw})


def test_openai_text_request_and_response(llm_server: LocalServer) -> None:
    llm_server.reply(CHAT, Reply.fixture("openai_chat_text.json"))
    request = Request("gpt-4.1", [Message.system("You are terse."), Message.user("Hello")], temperature=0.2,
                      max_tokens=64, stop=["\n\n"])
    result = complete(openai(llm_server), request)
    assert result.text == "Hello! How can I assist you today?"
    assert result.stop_reason == "end" and result.tool_calls == []
    assert result.usage == Usage(19, 10)
    assert result.model == "openai/gpt-4.1-2025-04-14"

    [sent] = llm_server.requests
    assert sent.method == "POST" and sent.path == CHAT
    assert sent.headers["authorization"] == "Bearer sk-test-1234"
    assert sent.headers["content-type"] == "application/json"
    assert sent.json() == {
        "model": "gpt-4.1",
        "messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hello"}],
        "temperature": 0.2, "max_tokens": 64, "stop": ["\n\n"],
    }


def test_openai_tool_calls_round_trip(llm_server: LocalServer) -> None:
    llm_server.reply(CHAT, Reply.fixture("openai_chat_tool_calls.json"), Reply.fixture("openai_chat_text.json"))
    first_request = Request("gpt-4.1", [Message.system("You are terse."), Message.user("Weather and time in Paris?")],
                            tools=[WEATHER, TIME])

    async def scenario() -> tuple[Completion, Completion]:
        async with openai(llm_server) as provider:
            first = await provider.complete(first_request)
            follow_up = Request("gpt-4.1", tool_round_trip(first, [("18 °C, sunny", False), ("unknown zone", True)]),
                                tools=[WEATHER, TIME])
            return first, await provider.complete(follow_up)

    first, second = run(scenario())
    assert first.stop_reason == "tool_calls" and first.text == ""
    assert [c.to_dict() for c in first.tool_calls] == [
        {"id": "call_DdmO9pD3xa9XTPNJ32zg2hcA", "name": "get_weather", "arguments": WEATHER_ARGS},
        {"id": "call_4VuSNn6gKCcqIQ2pUe0Fj8bX", "name": "get_time", "arguments": {"timezone": "Europe/Paris"}},
    ]
    assert first.usage == Usage(82, 51) and all(argument_error(c) is None for c in first.tool_calls)
    assert second.text.startswith("Hello")

    one, two = (r.json() for r in llm_server.requests)
    assert one["tools"] == [
        {"type": "function", "function": {"name": "get_weather", "description": WEATHER.description,
                                          "parameters": WEATHER.parameters}},
        {"type": "function", "function": {"name": "get_time", "description": TIME.description,
                                          "parameters": TIME.parameters}},
    ]
    assistant, weather, clock = two["messages"][2:]
    assert assistant["role"] == "assistant" and assistant["content"] is None
    assert assistant["tool_calls"][0]["type"] == "function"
    assert assistant["tool_calls"][0]["id"] == "call_DdmO9pD3xa9XTPNJ32zg2hcA"
    assert assistant["tool_calls"][0]["function"]["name"] == "get_weather"
    assert isinstance(assistant["tool_calls"][0]["function"]["arguments"], str)  # a JSON string on this wire
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == WEATHER_ARGS
    assert weather == {"role": "tool", "tool_call_id": "call_DdmO9pD3xa9XTPNJ32zg2hcA", "content": "18 °C, sunny"}
    assert clock == {"role": "tool", "tool_call_id": "call_4VuSNn6gKCcqIQ2pUe0Fj8bX", "content": "Error: unknown zone"}


def test_openai_stream_text_equals_non_streamed(llm_server: LocalServer) -> None:
    request = Request("gpt-4.1", [Message.user("Hello")])
    events, plain = stream_then_complete(openai, llm_server, CHAT, "openai_stream_text.sse", "openai_chat_text.json",
                                         request)
    assert [e.kind for e in events[:-1]] == ["text"] * 9
    assert streamed_text(events) == plain.text
    assert end_of(events) == plain
    assert end_of(events).usage == Usage(19, 10)
    sent = llm_server.requests[0]
    assert sent.json()["stream"] is True and sent.json()["stream_options"] == {"include_usage": True}
    assert "stream" not in llm_server.requests[1].json()


def test_openai_compatible_stream_with_usage_on_several_chunks_keeps_the_input_tokens(llm_server: LocalServer) -> None:
    """Some OpenAI-compatible servers (vLLM's continuous usage, llama.cpp's server) report usage on
    every chunk, the prompt's tokens only on some: the input tokens must not be lost to a later
    chunk that says 0."""
    chunks = [{"choices": [{"index": 0, "delta": {"content": "Hi"}}], "usage": {"prompt_tokens": 11,
                                                                                 "completion_tokens": 1}},
              {"choices": [{"index": 0, "delta": {"content": " there"}, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 11, "completion_tokens": 2}},
              {"choices": [], "usage": {"prompt_tokens": 0, "completion_tokens": 2}}]
    body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    reply = Reply.text(body, content_type="text/event-stream")
    reply.chunks = [(part + "\n\n").encode() for part in body.split("\n\n") if part.strip()]
    llm_server.reply(CHAT, reply)
    end = end_of(stream(openai(llm_server), Request("m", [Message.user("Hello")])))
    assert end.text == "Hi there" and end.usage == Usage(11, 2)


def test_openai_stream_tool_calls_equals_non_streamed(llm_server: LocalServer) -> None:
    request = Request("gpt-4.1", [Message.user("Weather and time in Paris?")], tools=[WEATHER, TIME])
    events, plain = stream_then_complete(openai, llm_server, CHAT, "openai_stream_tool_calls.sse",
                                         "openai_chat_tool_calls.json", request)
    starts = [e for e in events if e.kind == "tool_call_start"]
    assert [(e.index, e.call_id, e.name) for e in starts] == [
        (0, "call_DdmO9pD3xa9XTPNJ32zg2hcA", "get_weather"), (1, "call_4VuSNn6gKCcqIQ2pUe0Fj8bX", "get_time")]
    for start in starts:
        position = events.index(start)
        fragments = [e for e in events[position:] if e.kind == "tool_call_delta" and e.index == start.index]
        assert all(e.call_id == start.call_id for e in fragments)
        assert json.loads("".join(e.text for e in fragments)) == plain.tool_calls[start.index].arguments
        assert not [e for e in events[:position] if e.kind == "tool_call_delta" and e.index == start.index]
    assert end_of(events) == plain
    assert plain.stop_reason == "tool_calls" and plain.usage == Usage(82, 51)


def test_openai_invalid_tool_arguments_are_flagged_and_sent_back_verbatim(llm_server: LocalServer) -> None:
    llm_server.reply(CHAT, Reply.fixture("openai_chat_invalid_arguments.json"), Reply.fixture("openai_chat_text.json"))

    async def scenario() -> Completion:
        async with openai(llm_server) as provider:
            first = await provider.complete(Request("gpt-4.1", [Message.user("Weather?")], tools=[WEATHER]))
            call = first.tool_calls[0]
            problem = argument_error(call)
            assert problem is not None
            await provider.complete(Request("gpt-4.1", [Message.user("Weather?"), first.message,
                                                        Message.tool_result(call, problem, is_error=True)]))
            return first

    first = run(scenario())
    [call] = first.tool_calls
    raw = '{"location": "Paris, France", "unit": celsius'
    assert call.name == "get_weather" and call.id == "call_Zx81JkqP0u2vRbXo9m4TfL3s"
    assert call.arguments == {"_raw": raw}
    assert "not valid JSON" in argument_error(call) and raw in argument_error(call)
    sent = llm_server.requests[1].json()["messages"]
    assert sent[1]["tool_calls"][0]["function"]["arguments"] == raw  # what the model wrote
    assert sent[2]["role"] == "tool" and sent[2]["content"].startswith("Error: the arguments are not valid JSON")


def test_openai_compatible_local_server_without_key_and_json_schema(llm_server: LocalServer) -> None:
    llm_server.reply(CHAT, Reply.fixture("openai_chat_text.json"))
    schema = {"title": "Answer", "type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    provider = OpenAIProvider("local", llm_server.url + "/v1", max_tokens_param="max_completion_tokens")
    complete(provider, Request("qwen2.5", [Message.user("Hi")], json_schema=schema, max_tokens=10))
    [sent] = llm_server.requests
    assert "authorization" not in sent.headers
    assert sent.json()["response_format"] == {"type": "json_schema", "json_schema": {"name": "Answer", "schema": schema}}
    assert sent.json()["max_completion_tokens"] == 10 and "max_tokens" not in sent.json()
    assert is_local_url(llm_server.url) and is_local_url("http://localhost:1234/v1")
    assert is_local_url("http://192.168.1.20:8000/v1") and not is_local_url("https://api.openai.com/v1")


def test_openai_finish_reasons(llm_server: LocalServer) -> None:
    base = fixture_json("openai_chat_text.json")
    for finish, expected in (("stop", "end"), ("length", "max_tokens"), ("content_filter", "content_filter")):
        data = json.loads(json.dumps(base))
        data["choices"][0]["finish_reason"] = finish
        llm_server.reply(CHAT, Reply.json(data))
        done = complete(openai(llm_server), Request("gpt-4.1", [Message.user("Hi")]))
        assert (done.stop_reason, done.refusal) == (expected, "")
    refusal = json.loads(json.dumps(base))
    refusal["choices"][0]["message"].update(content=None, refusal="I can't help with that.")
    llm_server.reply(CHAT, Reply.json(refusal))
    result = complete(openai(llm_server), Request("gpt-4.1", [Message.user("Hi")]))
    assert result.stop_reason == "content_filter" and result.text == "I can't help with that."
    assert result.refusal == "I can't help with that."  # kept apart, so an agent can say who refused


# ------------------------------------------------------------------------------------ errors


def retries_logged(caplog: pytest.LogCaptureFixture) -> list[tuple[str, float, float | None]]:
    """(kind, delay, retry_after) of every retry the HTTP plumbing announced."""
    return [(r.kind, r.retry_delay_s, r.retry_after) for r in caplog.records  # type: ignore[attr-defined]
            if r.name == "aikit.providers.http" and hasattr(r, "retry_delay_s")]


def test_429_with_retry_after_is_retried_after_the_wait(llm_server: LocalServer,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="aikit.providers.http")
    llm_server.reply(CHAT, Reply.fixture("openai_error_429.json", 429, {"Retry-After": "1"}),
                     Reply.fixture("openai_error_429.json", 429, {"retry-after-ms": "20"}),
                     Reply.fixture("openai_chat_text.json"))
    result = complete(openai(llm_server), Request("gpt-4.1", [Message.user("Hi")]))
    assert result.text.startswith("Hello")
    assert len(llm_server.requests) == 3
    # the waits are exactly what the server asked for (seconds, then OpenAI's milliseconds header)
    assert retries_logged(caplog) == [("rate_limit", 1.0, 1.0), ("rate_limit", 0.02, 0.02)]


def test_backoff_without_retry_after_is_exponential_with_full_jitter() -> None:
    endpoint = HTTPEndpoint("http://127.0.0.1:9/v1", name="p", retries=10, backoff_s=0.5, max_backoff_s=3.0)
    failure = ProviderError("busy", kind="server", provider="p", status=500)
    for attempt, ceiling in enumerate([0.5, 1.0, 2.0, 3.0, 3.0]):  # 0.5 * 2**attempt, capped at 3 s
        delays = [endpoint.retry_delay(failure, attempt) for _ in range(200)]
        assert all(d is not None and 0.0 <= d <= ceiling for d in delays), (attempt, max(delays))  # type: ignore[operator]
        assert len(set(delays)) > 100  # jittered: clients that failed together do not retry together
        assert max(delays) > ceiling / 2  # type: ignore[type-var]  # the window really grows
    asked = ProviderError("slow down", kind="rate_limit", provider="p", status=429, retry_after=2.5)
    assert {endpoint.retry_delay(asked, 0) for _ in range(20)} == {2.5}  # Retry-After is used as given
    assert endpoint.retry_delay(failure, 10) is None  # retries exhausted
    assert endpoint.retry_delay(ProviderError("no", kind="auth", provider="p", status=401), 0) is None


def test_retry_after_beyond_the_cap_fails_at_once(llm_server: LocalServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="aikit.providers.http")
    llm_server.reply(CHAT, Reply.fixture("openai_error_429.json", 429, {"Retry-After": "3600"}))
    error = expect("rate_limit", complete, openai(llm_server, max_retry_after_s=5), Request("gpt-4.1", [Message.user("x")]))
    assert len(llm_server.requests) == 1 and retries_logged(caplog) == []  # no wait, no retry
    assert error.retry_after == 3600 and "did not wait" in error.message
    assert "Rate limit reached for gpt-4.1" in error.message and error.falls_back


def test_503_is_retried_then_fails_with_overloaded(llm_server: LocalServer) -> None:
    llm_server.reply(CHAT, *[Reply.fixture("openai_error_503.json", 503)] * 3)
    error = expect("overloaded", complete, openai(llm_server), Request("gpt-4.1", [Message.user("x")]))
    assert len(llm_server.requests) == 3  # 1 + retries (2)
    assert error.status == 503 and "gave up after 3 attempts" in error.message
    assert '"The server is overloaded or not ready yet."' in error.message
    assert error.details["attempts"] == 3 and error.retryable


def test_500_then_success_and_retries_setting(llm_server: LocalServer) -> None:
    llm_server.reply(CHAT, Reply.json({"error": {"message": "boom", "type": "server_error"}}, 500),
                     Reply.fixture("openai_chat_text.json"))
    assert complete(openai(llm_server), Request("gpt-4.1", [Message.user("x")])).text.startswith("Hello")
    llm_server.reply(CHAT, Reply.json({"error": {"message": "boom", "type": "server_error"}}, 500))
    error = expect("server", complete, openai(llm_server, retries=0), Request("gpt-4.1", [Message.user("x")]))
    assert len(llm_server.requests) == 3 and '"boom"' in error.message


def test_401_is_auth_not_retried_and_names_the_key_setting(llm_server: LocalServer) -> None:
    llm_server.reply(CHAT, Reply.fixture("openai_error_401.json", 401))
    error = expect("auth", complete, openai(llm_server), Request("gpt-4.1", [Message.user("x")]))
    assert len(llm_server.requests) == 1 and not error.retryable and not error.falls_back
    assert "Incorrect API key provided" in error.message
    assert "providers.openai.api_key" in error.message and "api_key_env" in error.message
    assert "sk-test-1234" not in error.message and "sk-test-1234" not in repr(openai(llm_server).http)


def test_401_without_a_key_says_none_is_set(llm_server: LocalServer) -> None:
    llm_server.reply(CHAT, Reply.fixture("openai_error_401.json", 401))
    provider = OpenAIProvider("groq", llm_server.url + "/v1", **FAST)
    error = expect("auth", complete, provider, Request("llama-3.3-70b", [Message.user("x")]))
    assert "none is set" in error.message and "providers.groq.api_key" in error.message


def test_400_is_bad_request_quoting_the_provider(llm_server: LocalServer) -> None:
    llm_server.reply(CHAT, Reply.fixture("openai_error_400.json", 400, {"x-request-id": "req_abc"}))
    error = expect("bad_request", complete, openai(llm_server), Request("o3", [Message.user("x")], max_tokens=5))
    assert len(llm_server.requests) == 1
    assert "Unsupported parameter: 'max_tokens' is not supported with this model" in error.message
    assert error.details["request_id"] == "req_abc" and error.details["error_type"] == "invalid_request_error"


def test_timeout_on_a_slow_endpoint(llm_server: LocalServer) -> None:
    llm_server.reply(CHAT, *[Reply.fixture("openai_chat_text.json", delay_s=1.0)] * 2)
    error = expect("timeout", complete, openai(llm_server, timeout_s=0.3, retries=1),
                   Request("gpt-4.1", [Message.user("x")]))
    assert len(llm_server.requests) == 2 and "0.3 s" in error.message and error.retryable


def test_connection_refused(refused_url: str) -> None:
    provider = OpenAIProvider("local", refused_url + "/v1", retries=1, **FAST)
    error = expect("connection", complete, provider, Request("m", [Message.user("x")]))
    assert refused_url in error.message and "gave up after 2 attempts" in error.message


def test_malformed_json_body_is_a_clear_error(llm_server: LocalServer) -> None:
    llm_server.reply(CHAT, Reply.text("<html><body>Welcome to nginx!</body></html>", content_type="text/html"))
    error = expect("bad_response", complete, openai(llm_server), Request("gpt-4.1", [Message.user("x")]))
    assert len(llm_server.requests) == 1
    assert "not valid JSON" in error.message and "text/html" in error.message
    assert "Welcome to nginx" in error.message and "base_url" in error.message


def test_openai_stream_is_retried_before_it_opens(llm_server: LocalServer) -> None:
    llm_server.reply(CHAT, Reply.fixture("openai_error_429.json", 429, {"retry-after-ms": "50"}),
                     Reply.fixture("openai_stream_text.sse"))
    events = stream(openai(llm_server), Request("gpt-4.1", [Message.user("Hello")]))
    assert streamed_text(events) == "Hello! How can I assist you today?" and len(llm_server.requests) == 2


def test_openai_stream_cut_short_or_carrying_an_error(llm_server: LocalServer) -> None:
    chunks = Reply.fixture("openai_stream_text.sse").chunks
    assert chunks is not None
    llm_server.reply(CHAT, Reply(chunks=chunks[:4], content_type="text/event-stream"))
    events: list[StreamEvent] = []

    async def consume(provider: OpenAIProvider) -> None:
        async with provider:
            async for event in provider.stream(Request("gpt-4.1", [Message.user("Hello")])):
                events.append(event)

    error = expect("connection", run, consume(openai(llm_server)))
    assert streamed_text(events) == "Hello! How" and "ended before" in error.message
    assert len(llm_server.requests) == 1  # text had been yielded: not retried

    in_stream = chunks[:2] + [b'data: {"error":{"message":"The server had an error while processing your request.",'
                              b'"type":"server_error","param":null,"code":null}}\n\n']
    llm_server.reply(CHAT, Reply(chunks=in_stream, content_type="text/event-stream"))
    events.clear()
    error = expect("server", run, consume(openai(llm_server)))
    assert "The server had an error" in error.message



def test_server_that_ignores_stream_and_unencodable_requests(llm_server: LocalServer) -> None:
    llm_server.reply(CHAT, Reply.fixture("openai_chat_text.json"))  # a JSON answer to stream: true
    error = expect("bad_response", stream, openai(llm_server), Request("gpt-4.1", [Message.user("Hello")]))
    assert "without any stream events" in error.message and len(llm_server.requests) == 1

    bad_tool = ToolSpec("f", "d", {"type": "object", "properties": {"x": {"type": "number", "maximum": float("nan")}}})
    error = expect("bad_request", complete, openai(llm_server), Request("gpt-4.1", [Message.user("x")], tools=[bad_tool]))
    assert "cannot be encoded as JSON" in error.message and len(llm_server.requests) == 1


# =============================================================================================
# Anthropic Messages
# =============================================================================================

MESSAGES = "/v1/messages"


def anthropic(server: LocalServer, **kw: Any) -> AnthropicProvider:
    return AnthropicProvider("anthropic", server.url, kw.pop("api_key", "sk-ant-test"), **{**FAST, **kw})


def test_anthropic_text_request_and_response(llm_server: LocalServer) -> None:
    llm_server.reply(MESSAGES, Reply.fixture("anthropic_message_text.json"))
    request = Request("claude-sonnet-4-20250514", [Message.system("You are terse."), Message.system("Answer in English."),
                                                   Message.user("Hello")], temperature=0.5, stop=["END"])
    result = complete(anthropic(llm_server), request)
    assert result.text == "Hello! How can I help you today?" and result.stop_reason == "end"
    assert result.usage == Usage(12, 12) and result.model == "anthropic/claude-sonnet-4-20250514"
    [sent] = llm_server.requests
    assert sent.path == MESSAGES
    assert sent.headers["x-api-key"] == "sk-ant-test" and sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent.headers
    assert sent.json() == {"model": "claude-sonnet-4-20250514", "max_tokens": 1024,
                           "system": "You are terse.\n\nAnswer in English.",
                           "messages": [{"role": "user", "content": "Hello"}],
                           "temperature": 0.5, "stop_sequences": ["END"]}


def test_anthropic_tool_use_round_trip(llm_server: LocalServer) -> None:
    llm_server.reply(MESSAGES, Reply.fixture("anthropic_message_tool_use.json"),
                     Reply.fixture("anthropic_message_text.json"))
    first_request = Request("claude-sonnet-4-20250514", [Message.system("You are terse."),
                                                         Message.user("Weather and time in Paris?")],
                            tools=[WEATHER, TIME], max_tokens=300)

    async def scenario() -> Completion:
        async with anthropic(llm_server) as provider:
            first = await provider.complete(first_request)
            # the agent also ran a second call of its own choosing: two results, one failing
            extra = ToolCall("get_time", {"timezone": "Europe/Paris"}, "toolu_01B2")
            message = Message.assistant(first.text, first.tool_calls + [extra])
            follow = [Message.system("You are terse."), Message.user("Weather and time in Paris?"), message,
                      Message.tool_result(first.tool_calls[0], "18 °C, sunny"),
                      Message.tool_result(extra, "unknown zone", is_error=True)]
            await provider.complete(Request("claude-sonnet-4-20250514", follow, tools=[WEATHER, TIME]))
            return first

    first = run(scenario())
    assert first.text == "I'll check the weather in Paris for you." and first.stop_reason == "tool_calls"
    assert [c.to_dict() for c in first.tool_calls] == [
        {"id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather", "arguments": WEATHER_ARGS}]
    assert first.usage == Usage(384, 71)
    one, two = (r.json() for r in llm_server.requests)
    assert one["max_tokens"] == 300
    assert one["tools"][0] == {"name": "get_weather", "description": WEATHER.description,
                               "input_schema": WEATHER.parameters}
    assert two["messages"][1:] == [
        {"role": "assistant", "content": [
            {"type": "text", "text": "I'll check the weather in Paris for you."},
            {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather", "input": WEATHER_ARGS},
            {"type": "tool_use", "id": "toolu_01B2", "name": "get_time", "input": {"timezone": "Europe/Paris"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01A09q90qw90lq917835lq9", "content": "18 °C, sunny"},
            {"type": "tool_result", "tool_use_id": "toolu_01B2", "content": "unknown zone", "is_error": True}]},
    ]


@pytest.mark.parametrize("stream_file,json_file", [("anthropic_stream_text.sse", "anthropic_message_text.json"),
                                                   ("anthropic_stream_tool_use.sse", "anthropic_message_tool_use.json")])
def test_anthropic_stream_equals_non_streamed(llm_server: LocalServer, stream_file: str, json_file: str) -> None:
    request = Request("claude-sonnet-4-20250514", [Message.user("Hello")], tools=[WEATHER])
    events, plain = stream_then_complete(anthropic, llm_server, MESSAGES, stream_file, json_file, request)
    assert end_of(events) == plain
    assert streamed_text(events) == plain.text
    assert llm_server.requests[0].json()["stream"] is True and "stream" not in llm_server.requests[1].json()
    assert_calls_streamed(events, plain.tool_calls)


def test_anthropic_stream_overloaded_error_event(llm_server: LocalServer) -> None:
    llm_server.reply(MESSAGES, Reply.fixture("anthropic_stream_overloaded.sse"), Reply.fixture("anthropic_stream_text.sse"))
    events = stream(anthropic(llm_server), Request("claude-sonnet-4-20250514", [Message.user("Hello")]))
    assert end_of(events).text == "Hello! How can I help you today?"
    assert len(llm_server.requests) == 2  # failed before producing anything: retried

    llm_server.reply(MESSAGES, Reply.fixture("anthropic_stream_overloaded.sse"))
    error = expect("overloaded", stream, anthropic(llm_server, retries=0),
                   Request("claude-sonnet-4-20250514", [Message.user("Hello")]))
    assert '"Overloaded"' in error.message and error.status is None


def test_anthropic_http_errors(llm_server: LocalServer) -> None:
    request = Request("claude-sonnet-4-20250514", [Message.user("x")])
    llm_server.reply(MESSAGES, Reply.fixture("anthropic_error_529.json", 529), Reply.fixture("anthropic_message_text.json"))
    assert complete(anthropic(llm_server), request).text.startswith("Hello")

    llm_server.reply(MESSAGES, *[Reply.fixture("anthropic_error_529.json", 529)] * 2)
    error = expect("overloaded", complete, anthropic(llm_server, retries=1), request)
    assert error.status == 529 and error.details["request_id"] == "req_011CSHoEeqs5C35K2UUqR7Fz"

    llm_server.reply(MESSAGES, Reply.fixture("anthropic_error_401.json", 401))
    count = len(llm_server.requests)
    error = expect("auth", complete, anthropic(llm_server), request)
    assert len(llm_server.requests) == count + 1
    assert '"invalid x-api-key"' in error.message and "providers.anthropic.api_key" in error.message

    llm_server.reply(MESSAGES, Reply.fixture("anthropic_error_400.json", 400))
    error = expect("bad_request", complete, anthropic(llm_server), Request("claude-sonnet-4-20250514",
                                                                           [Message.user("x")], max_tokens=100000))
    assert "max_tokens: 100000 > 64000" in error.message and error.details["error_type"] == "invalid_request_error"


def test_anthropic_stop_reasons_v1_base_url_and_structured_output(llm_server: LocalServer) -> None:
    base = fixture_json("anthropic_message_text.json")
    provider_v1 = AnthropicProvider("anthropic", llm_server.url + "/v1", "k", **FAST)
    for reason, expected in (("end_turn", "end"), ("max_tokens", "max_tokens"), ("stop_sequence", "stop_sequence"),
                             ("refusal", "content_filter"), ("tool_use", "tool_calls")):
        llm_server.reply(MESSAGES, Reply.json({**base, "stop_reason": reason}))
        assert complete(provider_v1, Request("claude", [Message.user("x")])).stop_reason == expected
    assert {r.path for r in llm_server.requests} == {MESSAGES}

    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    structured = {**base, "stop_reason": "tool_use", "content": [
        {"type": "tool_use", "id": "toolu_01X", "name": STRUCTURED_TOOL, "input": {"answer": "Paris"}}]}
    llm_server.reply(MESSAGES, Reply.json(structured))
    result = complete(anthropic(llm_server), Request("claude", [Message.user("Capital of France?")], json_schema=schema))
    assert json.loads(result.text) == {"answer": "Paris"} and result.tool_calls == [] and result.stop_reason == "end"
    sent = llm_server.requests[-1].json()
    assert sent["tools"] == [{"name": STRUCTURED_TOOL, "description": sent["tools"][0]["description"],
                              "input_schema": schema}]
    assert sent["tool_choice"] == {"type": "tool", "name": STRUCTURED_TOOL}


# =============================================================================================
# Ollama /api/chat
# =============================================================================================

OLLAMA_CHAT = "/api/chat"


def ollama(server: LocalServer, **kw: Any) -> OllamaProvider:
    return OllamaProvider("ollama", server.url, **{**FAST, **kw})


def test_ollama_text_request_and_response(llm_server: LocalServer) -> None:
    llm_server.reply(OLLAMA_CHAT, Reply.fixture("ollama_chat_text.json"))
    request = Request("llama3.2", [Message.system("You are terse."), Message.user("Hello")], temperature=0.1,
                      max_tokens=50, stop=["###"])
    result = complete(ollama(llm_server, options={"num_ctx": 8192}), request)
    assert result.text == "Hello! How can I help you today?" and result.stop_reason == "end"
    assert result.usage == Usage(26, 10) and result.model == "ollama/llama3.2"
    [sent] = llm_server.requests
    assert "authorization" not in sent.headers
    assert sent.json() == {"model": "llama3.2", "stream": False,
                           "messages": [{"role": "system", "content": "You are terse."},
                                        {"role": "user", "content": "Hello"}],
                           "options": {"num_ctx": 8192, "temperature": 0.1, "num_predict": 50, "stop": ["###"]}}


def test_ollama_tool_calls_round_trip(llm_server: LocalServer) -> None:
    llm_server.reply(OLLAMA_CHAT, Reply.fixture("ollama_chat_tool_calls.json"), Reply.fixture("ollama_chat_text.json"))

    async def scenario() -> Completion:
        async with ollama(llm_server) as provider:
            first = await provider.complete(Request("llama3.2", [Message.user("Weather in Paris?")], tools=[WEATHER]))
            follow = [Message.user("Weather in Paris?"), first.message,
                      Message.tool_result(first.tool_calls[0], "18 °C, sunny")]
            await provider.complete(Request("llama3.2", follow, tools=[WEATHER]))
            return first

    first = run(scenario())
    [call] = first.tool_calls
    assert call.name == "get_weather" and call.arguments == WEATHER_ARGS and call.id.startswith("call_")
    assert first.stop_reason == "tool_calls" and first.usage == Usage(168, 25)
    one, two = (r.json() for r in llm_server.requests)
    assert one["tools"] == [{"type": "function", "function": {"name": "get_weather", "description": WEATHER.description,
                                                              "parameters": WEATHER.parameters}}]
    assert two["messages"][1:] == [
        {"role": "assistant", "content": "",
         "tool_calls": [{"function": {"name": "get_weather", "arguments": WEATHER_ARGS}}]},
        {"role": "tool", "content": "18 °C, sunny", "tool_name": "get_weather"}]


@pytest.mark.parametrize("stream_file,json_file", [("ollama_stream_text.ndjson", "ollama_chat_text.json"),
                                                   ("ollama_stream_tool_calls.ndjson", "ollama_chat_tool_calls.json")])
def test_ollama_stream_equals_non_streamed(llm_server: LocalServer, stream_file: str, json_file: str) -> None:
    request = Request("llama3.2", [Message.user("Hello")], tools=[WEATHER])
    events, plain = stream_then_complete(ollama, llm_server, OLLAMA_CHAT, stream_file, json_file, request)
    assert without_ids(end_of(events)) == without_ids(plain)
    assert streamed_text(events) == plain.text
    assert llm_server.requests[0].json()["stream"] is True
    assert_calls_streamed(events, end_of(events).tool_calls)


def test_ollama_errors(llm_server: LocalServer) -> None:
    llm_server.reply(OLLAMA_CHAT, Reply.fixture("ollama_error_404.json", 404))
    error = expect("bad_request", complete, ollama(llm_server), Request("llama9", [Message.user("x")]))
    assert 'model "llama9" not found, try pulling it first' in error.message and "model name" in error.message

    lines = fixture_text("ollama_stream_text.ndjson").splitlines()
    broken = [(lines[0] + "\n").encode(), b'{"error":"an error was encountered while running the model: unexpected EOF"}\n']
    llm_server.reply(OLLAMA_CHAT, Reply(chunks=broken, content_type="application/x-ndjson"))
    error = expect("server", stream, ollama(llm_server), Request("llama3.2", [Message.user("x")]))
    assert "unexpected EOF" in error.message


# =============================================================================================
# Embeddings
# =============================================================================================


def test_openai_embeddings_in_input_order_with_usage(llm_server: LocalServer) -> None:
    data = fixture_json("openai_embeddings.json")
    expected = [item["embedding"] for item in data["data"]]
    data["data"].reverse()  # order by "index", not by position
    llm_server.reply("/v1/embeddings", Reply.json(data))
    embedder = OpenAIEmbeddings(llm_server.url + "/v1", "sk-test", "text-embedding-3-small", **FAST)

    async def scenario() -> list[list[float]]:
        async with embedder:
            return await embedder.embed(["alpha", "beta", "gamma"])

    assert run(scenario()) == expected
    assert embedder.usage.input_tokens == 9
    [sent] = llm_server.requests
    assert sent.headers["authorization"] == "Bearer sk-test"
    assert sent.json() == {"model": "text-embedding-3-small", "input": ["alpha", "beta", "gamma"],
                           "encoding_format": "float"}


def test_openai_embeddings_batches(llm_server: LocalServer) -> None:
    def answer(vectors: list[list[float]], tokens: int) -> Reply:
        return Reply.json({"object": "list", "model": "m", "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                           "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]})

    llm_server.reply("/v1/embeddings", answer([[1.0, 0.0], [0.0, 1.0]], 4), answer([[0.5, 0.5]], 2))
    embedder = OpenAIEmbeddings(llm_server.url + "/v1", None, "m", batch_size=2, dimensions=2, **FAST)

    async def scenario() -> list[list[float]]:
        async with embedder:
            return await embedder.embed(["a", "b", "c"])

    assert run(scenario()) == [[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]
    assert [r.json()["input"] for r in llm_server.requests] == [["a", "b"], ["c"]]
    assert llm_server.requests[0].json()["dimensions"] == 2 and embedder.usage.input_tokens == 6


def test_ollama_embeddings_and_legacy_fallback(llm_server: LocalServer) -> None:
    llm_server.reply("/api/embed", Reply.fixture("ollama_embed.json"))
    embedder = OllamaEmbeddings(llm_server.url, "all-minilm", **FAST)

    async def embed(e: OllamaEmbeddings, texts: list[str]) -> list[list[float]]:
        async with e:
            return await e.embed(texts)

    assert run(embed(embedder, ["Why is the sky blue?", "Why is the grass green?"])) == \
        fixture_json("ollama_embed.json")["embeddings"]
    assert llm_server.requests[0].json() == {"model": "all-minilm",
                                             "input": ["Why is the sky blue?", "Why is the grass green?"]}
    assert embedder.usage.input_tokens == 8

    # an old server without /api/embed answers 404 "404 page not found": one text at a time on /api/embeddings
    llm_server.reply("/api/embed", Reply.text("404 page not found", 404))
    legacy = Reply.fixture("ollama_embeddings_legacy.json")
    llm_server.reply("/api/embeddings", legacy, legacy)
    old = OllamaEmbeddings(llm_server.url, "all-minilm", **FAST)
    vectors = run(embed(old, ["a", "b"]))
    assert vectors == [fixture_json("ollama_embeddings_legacy.json")["embedding"]] * 2 and old.legacy
    assert [r.json() for r in llm_server.requests_to("/api/embeddings")] == [
        {"model": "all-minilm", "prompt": "a"}, {"model": "all-minilm", "prompt": "b"}]

    # a missing model is not a missing route
    llm_server.reply("/api/embed", Reply.fixture("ollama_error_404.json", 404))
    error = expect("bad_request", run, embed(OllamaEmbeddings(llm_server.url, "llama9", **FAST), ["a"]))
    assert "try pulling it first" in error.message and len(llm_server.requests_to("/api/embeddings")) == 2


# =============================================================================================
# Plumbing: parsers, arguments, client lifetime
# =============================================================================================


def test_sse_decoder_rules() -> None:
    decoder = SSEDecoder()
    lines = [": keep-alive comment", "event: update", "id: 7", "data: first line", "data:second line", "", "",
             "retry: 3000", "data: {\"a\": 1}", "", "data: [DONE]", "", "data: trailing without blank line"]
    events = [e for e in (decoder.feed(line) for line in lines) if e is not None]
    assert [(e.event, e.data, e.id) for e in events] == [
        ("update", "first line\nsecond line", "7"), ("message", '{"a": 1}', "7"), ("message", "[DONE]", "7")]
    assert events[1].retry == 3000 and events[1].json() == {"a": 1} and events[2].is_done
    last = decoder.flush()
    assert last is not None and last.data == "trailing without blank line"

    async def collect() -> list[str]:
        return [e.data async for e in aiter_sse(["data: x\r", "", "event: end", "data: y"])]

    assert run(collect()) == ["x", "y"]
    with pytest.raises(ProviderError) as info:
        events[0].json("openai")
    assert info.value.kind == "bad_response"


def test_ndjson_parser() -> None:
    async def collect(lines: list[str]) -> list[Any]:
        return [v async for v in aiter_ndjson(lines, "ollama")]

    assert run(collect(['{"a":1}', "", "  ", '{"b":2}'])) == [{"a": 1}, {"b": 2}]
    with pytest.raises(ProviderError) as info:
        run(collect(['{"a":1}', "{not json"]))
    assert info.value.kind == "bad_response" and "not valid JSON" in info.value.message


def test_decode_arguments() -> None:
    assert decode_arguments('{"x": 1}') == ({"x": 1}, None)
    assert decode_arguments("") == ({}, None) and decode_arguments(None) == ({}, None)
    assert decode_arguments({"x": 1}) == ({"x": 1}, None)
    args, problem = decode_arguments("[1, 2]")
    assert args == {"_raw": "[1, 2]"} and problem == "the arguments are not a JSON object"
    args, problem = decode_arguments('{"x": ')
    assert args == {"_raw": '{"x": '} and problem is not None and "not valid JSON" in problem


def test_endpoint_client_follows_the_event_loop_and_custom_transport() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=fixture_json("openai_chat_text.json"))

    provider = OpenAIProvider("openai", "https://api.openai.com/v1", "sk-x", transport=httpx.MockTransport(handler))
    request = Request("gpt-4.1", [Message.user("Hi")])
    first = run(provider.complete(request))  # no aclose: a later loop gets a fresh client
    second = complete(provider, request)
    assert first == second and len(seen) == 2
    assert str(seen[0].url) == "https://api.openai.com/v1/chat/completions"
    assert seen[0].headers["authorization"] == "Bearer sk-x"

    with pytest.raises(ProviderError) as info:
        HTTPEndpoint("api.openai.com/v1", name="openai")
    assert "providers.openai.base_url" in info.value.message
