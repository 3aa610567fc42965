"""The local provider (``local/gemma3-270m``): the prompt builder and tool-call parser (pure), and
the real model behind a real llama.cpp server over real HTTP (``slow``).

The slow tests need llama-cpp-python (the ``local`` extra, which ``make venv`` installs); they are
skipped, not failed, when it is not installed. They share one server (one xdist group) and keep
``max_tokens`` small so the whole module stays well under a minute.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from aikit_components.providers import Completion, Message, ProviderError, Request, ToolCall, ToolSpec
from aikit_components.providers import local_server as local_server_mod
from aikit_components.providers.local import DEFAULT_MAX_TOKENS, DEFAULT_TEMPERATURE, LocalProvider
from aikit_components.providers.local_prompt import Holdback, build_prompt, parse_tool_calls
from aikit_components.providers.local_server import LocalServer, local_tokens_per_second, shared_server
from tests.support.processes import gone, wait_until

REPO = Path(__file__).resolve().parents[2]
HAVE_LLAMA = importlib.util.find_spec("llama_cpp") is not None
needs_model = [
    pytest.mark.slow,
    pytest.mark.xdist_group("local_model"),
    pytest.mark.skipif(not HAVE_LLAMA, reason="llama_cpp is not installed: run `make venv` "
                       "(installs aikit[local], llama-cpp-python built portably)"),
]

WEATHER = ToolSpec("get_weather", "The current weather in a city.",
                   {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})


def run(coro):
    return asyncio.run(coro)


# ---------------------------------------------------------------------------------------------
# Pure: prompt builder, tool-call parser, stream hold-back
# ---------------------------------------------------------------------------------------------


def test_prompt_single_user_turn():
    assert build_prompt([Message.user("Hi there")]) == (
        "<start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\n")


def test_prompt_folds_system_and_alternates_turns():
    call = ToolCall("get_weather", {"city": "Paris"}, id="call_1")
    messages = [
        Message.system("Be brief."),
        Message.user("Weather in Paris?"),
        Message.assistant("Let me look.", [call]),
        Message.tool_result(call, "18 C, sunny"),
        Message.user("And tomorrow?"),
    ]
    prompt = build_prompt(messages)
    assert prompt == (
        "<start_of_turn>user\nBe brief.\n\nWeather in Paris?<end_of_turn>\n"
        "<start_of_turn>model\nLet me look.\n"
        '{"tool": "get_weather", "arguments": {"city": "Paris"}}<end_of_turn>\n'
        "<start_of_turn>user\nThe tool get_weather returned: 18 C, sunny\n\nAnd tomorrow?<end_of_turn>\n"
        "<start_of_turn>model\n")
    assert "system" not in prompt.replace("Be brief.", "")


def test_prompt_tool_error_system_later_and_no_user():
    call = ToolCall("get_weather", {}, id="c")
    prompt = build_prompt([Message.user("a"), Message.system("late rule"),
                           Message.assistant("", [call]), Message.tool_result(call, "boom", is_error=True)])
    assert prompt.startswith("<start_of_turn>user\nlate rule\n\na<end_of_turn>\n")
    assert "The tool get_weather failed: boom<end_of_turn>\n<start_of_turn>model\n" in prompt
    # only a system prompt: it becomes the user turn
    assert build_prompt([Message.system("Say hi.")]) == (
        "<start_of_turn>user\nSay hi.<end_of_turn>\n<start_of_turn>model\n")


def test_prompt_offers_tools_and_schema_as_text():
    prompt = build_prompt([Message.user("Weather in Oslo?")], [WEATHER], {"type": "object"})
    first_turn = prompt.split("<end_of_turn>")[0]
    assert "get_weather: The current weather in a city." in first_turn
    assert '"required": ["city"]' in first_turn
    assert '{"tool": "<tool name>", "arguments": {<the arguments>}}' in first_turn
    assert "matches this JSON Schema" in first_turn
    assert first_turn.endswith("Weather in Oslo?")


def test_prompt_assistant_prefill_and_raw_format():
    prompt = build_prompt([Message.user("Count"), Message.assistant("1, 2,")])
    assert prompt.endswith("<start_of_turn>model\n1, 2,")
    assert build_prompt([Message.system("Facts."), Message.user("The capital of France is")],
                        prompt_format="raw") == "Facts.\n\nThe capital of France is"
    with pytest.raises(ProviderError):
        build_prompt([Message.user("x")], prompt_format="chatml")


def test_parse_tool_calls():
    text, calls = parse_tool_calls('Sure.\n{"tool": "get_weather", "arguments": {"city": "Oslo"}}\n', ["get_weather"])
    assert text == "Sure."
    assert [(c.name, c.arguments) for c in calls] == [("get_weather", {"city": "Oslo"})]
    assert calls[0].id.startswith("call_")
    # fenced, multi-line, "name" for "tool", arguments as a JSON string
    text, calls = parse_tool_calls('```json\n{"name": "get_weather",\n "arguments": "{\\"city\\": \\"Rome\\"}"}\n```',
                                   ["get_weather"])
    assert text == "" and calls[0].arguments == {"city": "Rome"}
    # unknown tool, JSON that is not a call, and broken JSON stay text
    for raw in ('{"tool": "rm_rf", "arguments": {}}', '{"a": 1}', '{"tool": "get_weather", "argu'):
        assert parse_tool_calls(raw, ["get_weather"]) == (raw, [])
    # JSON inside a sentence is not a call
    assert parse_tool_calls('I would send {"tool": "get_weather"}', ["get_weather"])[1] == []


def test_holdback_only_holds_lines_that_may_be_calls():
    hb = Holdback()
    out = "".join(hb.feed(d) for d in ["Hello", " {not held}", "\n", "  ", '{"tool"', ': "x"}', "\nmore"])
    assert out == "Hello {not held}\n  "
    assert hb.held == '{"tool": "x"}\nmore'


def test_missing_package_is_a_connection_error_naming_the_extra(monkeypatch):
    monkeypatch.setattr(local_server_mod, "missing_modules", lambda: ["llama_cpp"])
    server = LocalServer()
    with pytest.raises(ProviderError) as info:
        server.ensure()
    assert info.value.kind == "connection"
    assert "aikit[local]" in info.value.message and "make venv" in info.value.message
    assert server.process is None

    async def call():
        provider = LocalProvider()
        provider.server = server
        try:
            await provider.complete(Request("gemma3-270m", [Message.user("hi")]))
        finally:
            await provider.aclose()

    with pytest.raises(ProviderError) as info:
        run(call())
    assert "aikit[local]" in info.value.message and "restart" not in info.value.message


def test_missing_model_file(monkeypatch):
    monkeypatch.setattr(local_server_mod, "missing_modules", lambda: [])
    with pytest.raises(ProviderError) as info:
        LocalServer("/nonexistent/model.gguf").ensure()
    assert info.value.kind == "connection" and "model_path" in info.value.message


def test_defaults_in_the_payload():
    provider = LocalProvider(base_url="http://127.0.0.1:1/v1")
    payload = provider._payload(Request("gemma3-270m", [Message.user("hi")], stop=["\n\n"]), stream=True)
    assert payload["temperature"] == DEFAULT_TEMPERATURE == 0.7
    assert payload["max_tokens"] == DEFAULT_MAX_TOKENS == 128
    assert payload["stop"] == ["<end_of_turn>", "<start_of_turn>", "\n\n"]
    assert payload["stream"] is True and payload["model"] == "gemma3-270m"


def _sse_transport(pieces: list[str], finish: str = "stop") -> httpx.MockTransport:
    """Replays llama_cpp.server's completion stream format (one chunk per token, no usage)."""
    seen: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append({"path": request.url.path, **body})
        if request.url.path == "/extras/tokenize/count":
            return httpx.Response(200, json={"count": 42})
        if not body.get("stream"):
            return httpx.Response(200, json={"choices": [{"text": "".join(pieces), "finish_reason": finish}],
                                             "usage": {"prompt_tokens": 42, "completion_tokens": len(pieces)}})
        chunks = [{"id": "cmpl-1", "object": "text_completion", "model": "gemma3-270m",
                   "choices": [{"text": p, "index": 0, "logprobs": None,
                                "finish_reason": finish if i == len(pieces) - 1 else None}]}
                  for i, p in enumerate(pieces)]
        text = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
        return httpx.Response(200, text=text, headers={"content-type": "text/event-stream"})

    transport = httpx.MockTransport(handler)
    transport.seen = seen  # type: ignore[attr-defined]
    return transport


def test_replayed_stream_with_a_tool_call():
    pieces = ["Sure", ".", "\n", '{"', 'tool', '": "get_weather", "arguments": {"city": "', 'Oslo"}}', "\n"]
    transport = _sse_transport(pieces)

    async def go():
        provider = LocalProvider(transport=transport, grammar=False)  # unconstrained: text, then a call line
        assert provider.server is None  # a replaying transport: nothing is started
        try:
            events = [e async for e in provider.stream(Request("gemma3-270m", [Message.user("Weather in Oslo?")],
                                                               tools=[WEATHER]))]
            completion = await provider.complete(Request("gemma3-270m", [Message.user("Weather in Oslo?")],
                                                         tools=[WEATHER]))
            return events, completion
        finally:
            await provider.aclose()

    events, completion = run(go())
    kinds = [e.kind for e in events]
    assert kinds == ["text", "text", "text", "tool_call_start", "tool_call_delta", "end"]
    assert "".join(e.text for e in events if e.kind == "text") == "Sure.\n" == events[-1].completion.text
    end = events[-1].completion
    assert end.stop_reason == "tool_calls" and end.usage.input_tokens == 42 and end.usage.output_tokens == len(pieces)
    assert [(c.name, c.arguments) for c in end.tool_calls] == [("get_weather", {"city": "Oslo"})]
    assert events[3].name == "get_weather" and events[3].call_id == end.tool_calls[0].id
    assert json.loads(events[4].text) == {"city": "Oslo"}
    assert completion.text == "Sure." and completion.tool_calls[0].name == "get_weather"
    assert completion.stop_reason == "tool_calls" and completion.model == "local/gemma3-270m"
    request = transport.seen[0]
    assert request["path"] == "/v1/completions" and "get_weather" in request["prompt"]
    assert request["stop"][:2] == ["<end_of_turn>", "<start_of_turn>"]


def test_replayed_constrained_call_and_constrained_text():
    """With the grammar (the default) a call is the whole output; text that merely holds JSON later
    stays text (the grammar only lets a call start the output)."""
    call = ['{"tool": "get_weather", ', '"arguments": {"city": ', '"Oslo"}}']
    prose = ["Sure", ".\n", '{"tool": "get_weather", "arguments": {"city": "Oslo"}}']

    async def go(pieces: list[str]):
        transport = _sse_transport(pieces)
        provider = LocalProvider(transport=transport)
        try:
            request = Request("gemma3-270m", [Message.user("Weather in Oslo?")], tools=[WEATHER])
            events = [e async for e in provider.stream(request)]
            return events, await provider.complete(request), transport.seen
        finally:
            await provider.aclose()

    events, completion, seen = run(go(call))
    assert [(c.name, c.arguments) for c in events[-1].completion.tool_calls] == [("get_weather", {"city": "Oslo"})]
    assert completion.tool_calls[0].arguments == {"city": "Oslo"} and completion.text == ""
    assert "get_weather" in seen[0]["grammar"] and seen[0]["max_tokens"] == 192
    events, completion, _ = run(go(prose))
    assert events[-1].completion.tool_calls == [] and completion.tool_calls == []
    assert events[-1].completion.text == "".join(prose)


def test_replayed_stream_max_tokens_without_tools():
    async def go():
        provider = LocalProvider(transport=_sse_transport(["{a", "}", " b"], finish="length"))
        try:
            return [e async for e in provider.stream(Request("gemma3-270m", [Message.user("x")]))]
        finally:
            await provider.aclose()

    events = run(go())
    assert [e.text for e in events if e.kind == "text"] == ["{a", "}", " b"]  # no tools: nothing held back
    assert events[-1].completion.stop_reason == "max_tokens" and events[-1].completion.text == "{a} b"


# ---------------------------------------------------------------------------------------------
# Slow: the real model behind the real server
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server():
    """The process-wide shared server, started once for the module (cold start measured)."""
    srv = shared_server()
    started = time.monotonic()
    srv.ensure()
    print(f"\nlocal model server cold start: {time.monotonic() - started:.2f} s "
          f"(spawn to ready {srv.last_start_s:.2f} s, pid {srv.pid})")
    yield srv


def _req(text: str, **kw) -> Request:
    return Request("gemma3-270m", [Message.user(text)], **kw)


def complete_raw(request: Request) -> Completion:
    """``request`` completed by a new LocalProvider (raw prompt format), closed afterwards."""
    async def go() -> Completion:
        provider = LocalProvider(prompt_format="raw")
        try:
            return await provider.complete(request)
        finally:
            await provider.aclose()

    return run(go())


def with_model(fn):
    for mark in needs_model:
        fn = mark(fn)
    return pytest.mark.usefixtures("server")(fn)



def expect_gone(pid: int, *, within_s: float, after: str) -> None:
    """The server process ``pid`` ends within ``within_s`` seconds (else it is killed and the test
    fails)."""
    if wait_until(lambda: gone(pid), within_s):
        return
    os.killpg(pid, signal.SIGKILL)
    pytest.fail(f"the server (pid {pid}) outlived {after}")

@with_model
def test_completion_continues_text():
    completion = complete_raw(_req("The capital of France is", max_tokens=12, temperature=0.0))
    assert completion.text.strip(), completion
    assert completion.model == "local/gemma3-270m"
    assert completion.usage.input_tokens > 0 and 0 < completion.usage.output_tokens <= 12
    assert completion.stop_reason in ("end", "max_tokens")
    assert completion.message.role == "assistant" and completion.tool_calls == []


@with_model
def test_turn_format_completion_answers():
    async def go():
        provider = LocalProvider()
        try:
            return await provider.complete(Request("gemma3-270m", [
                Message.system("You are a helpful assistant."),
                Message.user("Write one sentence about the sea."),
            ], max_tokens=24, temperature=0.0))
        finally:
            await provider.aclose()

    completion = run(go())
    assert completion.text.strip(), completion
    assert "<end_of_turn>" not in completion.text and "<start_of_turn>" not in completion.text
    assert completion.usage.input_tokens > 10


@with_model
def test_stream_deltas_concatenate_to_the_completion():
    async def go():
        provider = LocalProvider(prompt_format="raw")
        try:
            return [e async for e in provider.stream(_req("Once upon a time", max_tokens=16, temperature=0.7))]
        finally:
            await provider.aclose()

    events = run(go())
    deltas = [e.text for e in events if e.kind == "text"]
    assert len(deltas) >= 3, events
    assert [e.kind for e in events][-1] == "end" and sum(e.kind == "end" for e in events) == 1
    completion = events[-1].completion
    assert completion is not None
    assert completion.text == "".join(deltas) and completion.text.strip()
    assert completion.usage.input_tokens > 0 and completion.usage.output_tokens > 0
    assert completion.model == "local/gemma3-270m"


@with_model
def test_stream_with_tools_offered_keeps_text_consistent():
    async def go():
        provider = LocalProvider()
        try:
            return [e async for e in provider.stream(Request("gemma3-270m", [Message.user("What is the weather in Oslo?")],
                                                             tools=[WEATHER], max_tokens=24, temperature=0.0))]
        finally:
            await provider.aclose()

    events = run(go())
    completion = events[-1].completion
    assert events[-1].kind == "end" and completion is not None
    assert completion.text == "".join(e.text for e in events if e.kind == "text")
    starts = [e for e in events if e.kind == "tool_call_start"]
    assert [e.name for e in starts] == [c.name for c in completion.tool_calls]  # weak model: often none
    assert completion.stop_reason == ("tool_calls" if completion.tool_calls else completion.stop_reason)


@with_model
def test_stop_sequences_are_honoured():
    async def go():
        provider = LocalProvider(prompt_format="raw")
        try:
            free = await provider.complete(_req("1, 2, 3, 4, 5, 6,", max_tokens=12, temperature=0.0))
            stopped = await provider.complete(_req("1, 2, 3, 4, 5, 6,", max_tokens=12, temperature=0.0, stop=[","]))
            return free, stopped
        finally:
            await provider.aclose()

    free, stopped = run(go())
    assert "," in free.text, free.text  # the model goes on counting ...
    assert "," not in stopped.text and stopped.text.strip(), stopped.text  # ... and stops at the first ","
    assert stopped.stop_reason == "end"


@with_model
def test_server_is_reused_across_calls_and_providers(server):
    pid = server.pid
    starts = server.starts

    async def go():
        a, b = LocalProvider(prompt_format="raw"), LocalProvider()
        try:
            await a.complete(_req("Hello", max_tokens=2))
            await b.complete(_req("Hello", max_tokens=2))
            return a.server, b.server
        finally:
            await a.aclose()
            await b.aclose()

    server_a, server_b = run(go())
    assert server_a is server_b is server
    assert server.pid == pid and server.starts == starts


@with_model
def test_restart_after_the_server_was_killed(server):
    old_pid = server.pid
    os.killpg(old_pid, signal.SIGKILL)
    server.process.wait(10)

    completion = complete_raw(_req("The sky is", max_tokens=4))
    assert completion.text is not None and completion.usage.output_tokens > 0
    assert server.alive() and server.pid != old_pid
    print(f"\nrestart (spawn to ready): {server.last_start_s:.2f} s")


@with_model
def test_restart_when_the_server_dies_between_ensure_and_request(server, monkeypatch):
    """The connection is refused (the process died after the liveness check): one restart, then success."""
    server.ensure()
    starts = server.starts
    real_ensure = LocalServer.ensure
    calls = []

    def dying_ensure(self):
        url = real_ensure(self)
        if not calls:  # first call: kill it right after it was found alive
            os.killpg(self.pid, signal.SIGKILL)
            self.process.wait(10)
        calls.append(url)
        return url

    monkeypatch.setattr(LocalServer, "ensure", dying_ensure)

    completion = complete_raw(_req("Hi", max_tokens=2))
    assert completion.usage.output_tokens > 0 and server.alive()
    assert server.starts == starts + 1 and len(set(calls)) == 2  # one restart, on a new port


@with_model
def test_tokens_per_second(server):
    result = local_tokens_per_second(48, server=server)
    print(f"\nlocal model generation: {result['tokens_per_second']:.1f} tokens/s "
          f"({result['tokens']:.0f} tokens, first token after {result['first_token_s']:.2f} s)")
    assert result["tokens"] >= 8
    assert result["tokens_per_second"] > 0  # the rate itself is a benchmark (bench/agents.py), not a test


# A child process that starts the local server (one token from the model) and prints its pid.
START_SERVER = textwrap.dedent("""
    import asyncio
    from aikit_components.providers import Message, Request
    from aikit_components.providers.local import LocalProvider
    p = LocalProvider(prompt_format="raw")
    asyncio.run(p.complete(Request("gemma3-270m", [Message.user("Hi")], max_tokens=1)))
    print(p.server.pid, flush=True)
""")


@with_model
def test_server_stops_at_interpreter_exit():
    """atexit stops the process group: no llama.cpp server outlives the aikit process."""
    out = subprocess.run([sys.executable, "-c", START_SERVER], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr
    pid = int(out.stdout.split()[-1])
    expect_gone(pid, within_s=5, after="its parent exited")


@with_model
def test_restart_once_then_error(server, monkeypatch):
    """A server that dies on every request: one restart, then a ProviderError saying so."""
    real_ensure = LocalServer.ensure

    def always_dying(self):
        url = real_ensure(self)
        os.killpg(self.pid, signal.SIGKILL)
        self.process.wait(10)
        return url

    monkeypatch.setattr(LocalServer, "ensure", always_dying)

    with pytest.raises(ProviderError) as info:
        complete_raw(_req("Hi", max_tokens=2))
    assert info.value.kind == "connection" and "after a restart" in info.value.message
    monkeypatch.undo()
    server.ensure()  # leave a healthy server for the other tests
    assert server.alive()


@with_model
def test_concurrent_streams_share_the_server():
    """Two agents streaming at once: the server serialises them and neither is cut off."""
    async def one(provider, text):
        return [e async for e in provider.stream(_req(text, max_tokens=8, temperature=0.0))][-1].completion

    async def go():
        a, b = LocalProvider(prompt_format="raw"), LocalProvider(prompt_format="raw")
        try:
            return await asyncio.gather(one(a, "Once upon a time"), one(b, "The capital of France is"))
        finally:
            await a.aclose()
            await b.aclose()

    first, second = run(go())
    assert first.usage.output_tokens > 0 and second.usage.output_tokens > 0
    assert first.text.strip() and second.text.strip()


@with_model
def test_server_exits_when_its_parent_is_killed():
    """kill -9 of the aikit process (no atexit): the server notices and exits by itself."""
    code = START_SERVER + "import time\ntime.sleep(60)\n"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        pid = int(proc.stdout.readline())
    finally:
        proc.kill()
        proc.wait(10)
    expect_gone(pid, within_s=10, after="its parent was killed")


@with_model
def test_a_server_that_cannot_start_reports_its_output(tmp_path):
    bogus = tmp_path / "not-a-model.gguf"
    bogus.write_bytes(b"this is not a GGUF file")
    server = LocalServer(str(bogus), startup_timeout_s=30)
    with pytest.raises(ProviderError) as info:
        server.ensure()
    assert info.value.kind == "connection" and "exited during start-up" in info.value.message
    assert "output ends with" in info.value.message and len(info.value.message) > 120
    assert server.process is None and not server.alive()
