"""ModelRegistry (names, aliases, per-provider settings, key errors) and FallbackChain, against a real
OpenAI-format HTTP server on 127.0.0.1 (http.server in a thread; nothing mocked).

The server's behaviour is chosen by the requested model name: ``m-ok`` answers, ``m-429`` /
``m-503`` / ``m-500`` / ``m-400`` / ``m-401`` return that status, ``m-hang`` never answers,
``m-midway`` streams one token and then drops the connection.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import socket
import threading
import time
from http.server import ThreadingHTTPServer
from typing import Any

import pytest

from aikit_components.config import Config
from aikit_components.errors import ConfigError, NotFound
from aikit_components.events import EventBus
from aikit_components.providers import Message, ProviderError, Request
from aikit_components.providers.fallback import FallbackChain
from aikit_components.providers.registry import DEFAULT_MODEL, ModelRegistry
from tests.support.http import QuietHandler

SECRET = "sk-test-secret-value-0123456789"


def have(module: str) -> bool:
    return importlib.util.find_spec(f"aikit_components.providers.{module}") is not None


needs_openai = pytest.mark.skipif(not have("openai"), reason="providers/openai.py is not there yet")


# --------------------------------------------------------------------------------------------
# A real OpenAI-format server
# --------------------------------------------------------------------------------------------


class OpenAIServer:
    """Chat completions on ``/v1/chat/completions``; records every request it receives."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.stopping = threading.Event()
        server = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.read_body() or b"{}")
                server.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                                        "body": body})
                if not self.path.endswith("/chat/completions"):
                    return self.reply(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                model = str(body.get("model", ""))
                behaviour = model.split("-", 1)[1] if "-" in model else "ok"
                if behaviour == "hang":
                    server.stopping.wait(10)
                    return self.reply(200, completion(model, "too late"))
                if behaviour == "filtered":  # Azure OpenAI's refusal of a prompt, as it sends it
                    return self.reply(400, {"error": {
                        "message": "The response was filtered due to the prompt triggering Azure OpenAI's content "
                                   "management policy. Please modify your prompt and retry.",
                        "type": None, "param": "prompt", "code": "content_filter", "status": 400,
                        "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": {
                            "hate": {"filtered": False, "severity": "safe"},
                            "violence": {"filtered": True, "severity": "high"}}}}})
                if behaviour.isdigit():
                    status = int(behaviour)
                    message = {429: "Rate limit reached", 503: "Service unavailable", 500: "Internal error",
                               400: "Invalid parameter: messages", 401: "Incorrect API key provided"}[status]
                    return self.reply(status, {"error": {"message": message, "type": "test_error", "code": None}},
                                      {"Retry-After": "0"} if status == 429 else None)
                if body.get("stream"):
                    return self.stream(model, drop=behaviour == "midway")
                return self.reply(200, completion(model, f"answer from {model}"))

            def reply(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
                self.send_json(status, payload, {"Connection": "close", **(headers or {})})
                self.close_connection = True

            def chunk(self, data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def stream(self, model: str, drop: bool) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                words = ["answer ", "from ", model]
                for i, word in enumerate(words):
                    delta: dict[str, Any] = {"content": word}
                    if i == 0:
                        delta["role"] = "assistant"
                    self.chunk(b"data: " + json.dumps(chunk_payload(model, delta)).encode() + b"\n\n")
                    if drop:
                        time.sleep(0.05)
                        self.wfile.flush()
                        self.connection.shutdown(2)  # mid-body: no terminating chunk
                        return
                self.chunk(b"data: " + json.dumps(chunk_payload(model, {}, "stop")).encode() + b"\n\n")
                usage = {**chunk_payload(model, {}), "choices": [],
                         "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}
                self.chunk(b"data: " + json.dumps(usage).encode() + b"\n\n")
                self.chunk(b"data: [DONE]\n\n")
                self.wfile.write(b"0\r\n\r\n")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def models_requested(self) -> list[str]:
        return [r["body"].get("model") for r in self.requests]

    def stop(self) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def completion(model: str, text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test", "object": "chat.completion", "created": 1700000000, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
    }


def chunk_payload(model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 1700000000, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


@pytest.fixture
def server():
    srv = OpenAIServer()
    yield srv
    srv.stop()


@pytest.fixture
def refused_port() -> int:
    """A port on 127.0.0.1 where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def request(text: str = "hello") -> Request:
    return Request(model="", messages=[Message.user(text)])


def two_providers(server: OpenAIServer, **extra: Any) -> Config:
    """primary and backup: two OpenAI-compatible providers on the test server."""
    common = {"type": "openai", "base_url": server.base_url, "api_key": SECRET, "retries": 0, "timeout_s": 0.5}
    return Config({"providers": {"primary": dict(common), "backup": dict(common)}, **extra})


def complete_then_close(reg: ModelRegistry, chain: FallbackChain) -> Any:
    """``chain.complete(request())`` on a fresh loop, closing the registry's providers after it."""
    async def go() -> Any:
        try:
            return await chain.complete(request())
        finally:
            await reg.aclose()

    return asyncio.run(go())


async def collect(agen) -> list[Any]:
    return [event async for event in agen]


# --------------------------------------------------------------------------------------------
# Registry: names and aliases (no provider module needed)
# --------------------------------------------------------------------------------------------


def test_aliases_and_default() -> None:
    reg = ModelRegistry(Config({"models": {"aliases": {"fast": "openai/gpt-4o-mini", "quick": "fast"}}}))
    assert reg.expand("fast") == "openai/gpt-4o-mini"
    assert reg.expand("quick") == "openai/gpt-4o-mini"  # an alias of an alias
    assert reg.expand("default") == DEFAULT_MODEL == "local/gemma3-270m"
    assert reg.expand("anthropic/claude-3-5-haiku-latest") == "anthropic/claude-3-5-haiku-latest"
    assert reg.expand("groq/meta-llama/llama-4") == "groq/meta-llama/llama-4"  # slashes after the first stay
    assert reg.aliases == {"fast": "openai/gpt-4o-mini", "quick": "fast", "default": DEFAULT_MODEL}

    reg = ModelRegistry(Config({"models": {"default": "ollama/llama3.2"}}))
    assert reg.expand("default") == "ollama/llama3.2"


def test_unknown_model_name_and_alias_loop() -> None:
    reg = ModelRegistry(Config({"models": {"aliases": {"a": "b", "b": "a", "fast": "openai/x"}}}))
    with pytest.raises(ConfigError, match="alias loop"):
        reg.expand("a")
    with pytest.raises(NotFound) as info:
        reg.expand("gpt4")
    assert "provider/model" in info.value.message and "fast" in info.value.message


def test_unknown_provider_lists_configured_ones() -> None:
    reg = ModelRegistry(Config({"providers": {"groq": {"type": "openai", "base_url": "http://127.0.0.1:9/v1"}}}))
    with pytest.raises(NotFound) as info:
        reg.resolve("nope/some-model")
    message = info.value.message
    assert "'nope'" in message
    for name in ("openai", "anthropic", "ollama", "local", "groq"):
        assert name in message
    assert info.value.details["providers"] == ["openai", "anthropic", "ollama", "local", "test", "scripted", "groq"]


def test_custom_provider_needs_type_and_base_url() -> None:
    reg = ModelRegistry(Config({"providers": {"mystery": {"base_url": "http://x"}, "nourl": {"type": "openai"},
                                              "weird": {"type": "soap"}}}))
    with pytest.raises(ConfigError, match=r"providers\.mystery has no type"):
        reg.provider("mystery")
    with pytest.raises(ConfigError, match=r"providers\.nourl\.base_url is required"):
        reg.provider("nourl", )
    with pytest.raises(ConfigError, match=r"providers\.weird\.type must be one of"):
        reg.provider("weird")


def test_missing_key_is_an_auth_error_naming_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GROQ_API_KEY", "MY_GROQ_KEY"):
        monkeypatch.delenv(var, raising=False)
    reg = ModelRegistry(Config({"providers": {"groq": {"type": "openai", "base_url": "http://127.0.0.1:9/v1",
                                                        "api_key_env": "MY_GROQ_KEY"}}}))
    with pytest.raises(ProviderError) as info:
        reg.resolve("openai/gpt-4o-mini")
    err = info.value
    assert err.kind == "auth" and not err.falls_back and err.provider == "openai"
    assert "OPENAI_API_KEY" in err.message and "providers.openai.api_key" in err.message

    with pytest.raises(ProviderError) as info:
        reg.provider("anthropic")
    assert info.value.kind == "auth" and "ANTHROPIC_API_KEY" in info.value.message

    with pytest.raises(ProviderError) as info:  # api_key_env names a variable that is not set
        reg.provider("groq")
    assert info.value.kind == "auth"
    assert "MY_GROQ_KEY" in info.value.message and "providers.groq.api_key_env" in info.value.message


def test_secrets_never_show(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    config = Config({"providers": {"anthropic": {"api_key": SECRET}, "groq": {"type": "openai", "base_url": "http://h",
                                                                             "headers": {"x-api-key": SECRET}}},
                     "models": {"aliases": {"fast": "anthropic/claude-3-5-haiku-latest"}}})
    reg = ModelRegistry(config)
    texts = [repr(reg), str(reg.settings("anthropic")), repr(reg.settings("groq")), repr(config)]
    with pytest.raises(ProviderError) as info:
        reg.provider("openai")
    texts += [str(info.value), repr(info.value), json.dumps(info.value.to_dict())]
    for text in texts:
        assert SECRET not in text


# --------------------------------------------------------------------------------------------
# Registry: building providers
# --------------------------------------------------------------------------------------------


@pytest.mark.skipif(not (have("openai") and have("anthropic") and have("ollama")),
                    reason="the HTTP provider modules are not there yet")
def test_builtin_types_and_caching(monkeypatch: pytest.MonkeyPatch) -> None:
    from aikit_components.providers.anthropic import AnthropicProvider
    from aikit_components.providers.ollama import OllamaProvider
    from aikit_components.providers.openai import OpenAIProvider

    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.delenv("OLLAMA_API_KEY", raising=False)
    reg = ModelRegistry(Config({"providers": {"anthropic": {"api_key": SECRET}},
                                "models": {"aliases": {"fast": "openai/gpt-4o-mini"}}}))
    provider, model, full = reg.resolve("fast")
    assert isinstance(provider, OpenAIProvider)
    assert (model, full) == ("gpt-4o-mini", "openai/gpt-4o-mini")
    assert reg.provider("openai") is provider  # one per name
    assert reg.resolve("openai/gpt-4o")[0] is provider
    assert isinstance(reg.resolve("anthropic/claude-3-5-haiku-latest")[0], AnthropicProvider)
    ollama, model, _ = reg.resolve("ollama/llama3.2")  # no key needed
    assert isinstance(ollama, OllamaProvider) and model == "llama3.2"
    for p in (provider, ollama, reg.provider("anthropic")):
        assert SECRET not in repr(p)
    asyncio.run(reg.aclose())


@pytest.mark.skipif(not have("local"), reason="providers/local.py is not there yet")
def test_default_alias_is_the_local_provider() -> None:
    from aikit_components.providers.local import LocalProvider

    reg = ModelRegistry(Config({}))
    provider, model, full = reg.resolve("default")
    assert isinstance(provider, LocalProvider)
    assert (model, full) == ("gemma3-270m", "local/gemma3-270m")
    asyncio.run(reg.aclose())


@needs_openai
def test_custom_openai_compatible_provider(server: OpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """[providers.groq] type="openai": its base_url, key (via api_key_env), headers and settings are used."""
    monkeypatch.setenv("MY_GROQ_KEY", SECRET)
    reg = ModelRegistry(Config({"providers": {"groq": {
        "type": "openai", "base_url": server.base_url, "api_key_env": "MY_GROQ_KEY", "timeout_s": 5, "retries": 0,
        "headers": {"X-Team": "blue"}}}}))
    provider, model, full = reg.resolve("groq/llama-3.1-8b")
    assert provider.name == "groq" and model == "llama-3.1-8b" and full == "groq/llama-3.1-8b"

    async def go() -> Any:
        try:
            return await provider.complete(Request(model=model, messages=[Message.user("hi")]))
        finally:
            await reg.aclose()

    result = asyncio.run(go())
    assert result.text == "answer from llama-3.1-8b"
    seen = server.requests[-1]
    assert seen["path"] == "/v1/chat/completions"
    assert seen["headers"]["authorization"] == f"Bearer {SECRET}"
    assert seen["headers"]["x-team"] == "blue"
    assert seen["body"]["model"] == "llama-3.1-8b"
    assert reg.warnings == []


@needs_openai
@pytest.mark.parametrize("settings", [{}, {"api_key_required": False}])
def test_keyless_openai_compatible_endpoint(server: OpenAIServer, monkeypatch: pytest.MonkeyPatch,
                                            settings: dict[str, Any]) -> None:
    """A local server (loopback base_url) needs no key by default; api_key_required=false says so anywhere."""
    monkeypatch.delenv("LAB_API_KEY", raising=False)
    reg = ModelRegistry(Config({"providers": {"lab": {"type": "openai", "base_url": server.base_url,
                                                      "retries": 0, **settings}}}))

    async def go() -> Any:
        provider, model, _ = reg.resolve("lab/m-ok")
        try:
            return await provider.complete(Request(model=model, messages=[Message.user("hi")]))
        finally:
            await reg.aclose()

    assert asyncio.run(go()).text == "answer from m-ok"
    assert "authorization" not in server.requests[-1]["headers"]


def test_remote_custom_provider_needs_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GROQ_API_KEY", raising=False)
    reg = ModelRegistry(Config({"providers": {"groq": {"type": "openai", "base_url": "https://api.groq.com/openai/v1"},
                                              "lab": {"type": "openai", "base_url": "https://lab.example/v1",
                                                      "api_key_required": False}}}))
    with pytest.raises(ProviderError) as info:
        reg.resolve("groq/llama-3.1-8b")
    assert info.value.kind == "auth" and "GROQ_API_KEY" in info.value.message
    assert "providers.groq.api_key" in info.value.message
    if have("openai"):
        assert reg.provider("lab").name == "lab"  # keyless by configuration


@needs_openai
def test_unknown_setting_is_a_warning(server: OpenAIServer) -> None:
    reg = ModelRegistry(Config({"providers": {"lab": {"type": "openai", "base_url": server.base_url,
                                                      "api_key": "k", "colour": "red"}}}))
    reg.provider("lab")
    assert any("providers.lab.colour" in w for w in reg.warnings)
    asyncio.run(reg.aclose())


@needs_openai
def test_transport_factory_is_called_per_provider(server: OpenAIServer) -> None:
    import httpx

    made: list[str] = []

    def factory(name: str) -> httpx.AsyncBaseTransport:
        made.append(name)
        return httpx.AsyncHTTPTransport()

    reg = ModelRegistry(two_providers(server), transport=factory)

    async def go() -> None:
        for model in ("primary/m-ok", "backup/m-ok", "primary/m-ok"):
            provider, name, _ = reg.resolve(model)
            await provider.complete(Request(model=name, messages=[Message.user("hi")]))
        await reg.aclose()

    asyncio.run(go())
    assert made == ["primary", "backup"]


# --------------------------------------------------------------------------------------------
# FallbackChain
# --------------------------------------------------------------------------------------------


@needs_openai
@pytest.mark.parametrize("first,kind", [("m-429", "rate_limit"), ("m-503", "server"), ("m-hang", "timeout"),
                                        ("m-500", "server")])
def test_falls_back_to_the_next_model(server: OpenAIServer, first: str, kind: str) -> None:
    bus = EventBus()
    sub = bus.subscribe("llm.*")
    reg = ModelRegistry(two_providers(server))
    chain = FallbackChain(reg, [f"primary/{first}", "backup/m-ok"], events=bus)


    result = complete_then_close(reg, chain)
    assert result.text == "answer from m-ok"
    assert result.model == "backup/m-ok"
    assert [(a.model, a.ok, a.kind) for a in chain.last_attempts] == [(f"primary/{first}", False, kind),
                                                                     ("backup/m-ok", True, None)]
    events = sub.drain()
    assert [(e.topic, e.payload["from"], e.payload["to"], e.payload["kind"]) for e in events] == [
        ("llm.fallback", f"primary/{first}", "backup/m-ok", kind)]
    assert server.models_requested()[-1] == "m-ok"


@needs_openai
@pytest.mark.parametrize("first,kind", [("m-400", "bad_request"), ("m-401", "auth"), ("m-filtered", "content_filter")])
def test_no_fallback_on_request_or_auth_errors(server: OpenAIServer, first: str, kind: str) -> None:
    reg = ModelRegistry(two_providers(server))
    chain = FallbackChain(reg, [f"primary/{first}", "backup/m-ok"])


    with pytest.raises(ProviderError) as info:
        complete_then_close(reg, chain)
    err = info.value
    assert err.kind == kind and not err.falls_back
    assert "Not falling back to backup/m-ok" in err.message
    reason = {"auth": "authentication error is a configuration problem",
              "bad_request": "request itself was rejected",
              "content_filter": "safety system refused the content"}[kind]
    assert reason in err.message
    if kind == "content_filter":  # the provider's own words, and what to do
        assert "content management policy" in err.message and "rephrase the request" in err.message
    assert "m-ok" not in server.models_requested()  # the second model was never tried
    assert [a.model for a in chain.last_attempts] == [f"primary/{first}"]
    assert SECRET not in str(err)


@needs_openai
def test_connection_refused_falls_back(server: OpenAIServer, refused_port: int) -> None:
    common = {"type": "openai", "api_key": SECRET, "retries": 0, "timeout_s": 2}
    reg = ModelRegistry(Config({"providers": {
        "down": {**common, "base_url": f"http://127.0.0.1:{refused_port}/v1"},
        "backup": {**common, "base_url": server.base_url}}}))
    chain = FallbackChain(reg, ["down/m-ok", "backup/m-ok"])


    result = complete_then_close(reg, chain)
    assert (result.text, result.model) == ("answer from m-ok", "backup/m-ok")
    assert [(a.model, a.ok, a.kind) for a in chain.last_attempts] == [("down/m-ok", False, "connection"),
                                                                     ("backup/m-ok", True, None)]
    assert "cannot connect to down" in chain.last_attempts[0].message


@needs_openai
def test_all_failing_lists_every_attempt(server: OpenAIServer) -> None:
    reg = ModelRegistry(two_providers(server, models={"aliases": {"flaky": "primary/m-503"}}))
    chain = FallbackChain(reg, ["primary/m-429", "flaky", "backup/m-500"])


    with pytest.raises(ProviderError) as info:
        complete_then_close(reg, chain)
    err = info.value
    assert err.kind == "server"  # the last error's kind
    assert "all 3 models failed" in err.message
    for model, kind in (("primary/m-429", "rate_limit"), ("primary/m-503", "server"), ("backup/m-500", "server")):
        assert f"{model}: {kind}" in err.message
    assert [a["model"] for a in err.details["attempts"]] == ["primary/m-429", "primary/m-503", "backup/m-500"]
    assert all(not a.ok for a in chain.last_attempts)


@needs_openai
def test_streaming_falls_back_before_the_first_token(server: OpenAIServer) -> None:
    bus = EventBus()
    sub = bus.subscribe("llm.fallback")
    reg = ModelRegistry(two_providers(server))
    chain = FallbackChain(reg, ["primary/m-503", "backup/m-hang", "backup/m-ok"], events=bus)

    async def go() -> list[Any]:
        try:
            return await collect(chain.stream(request()))
        finally:
            await reg.aclose()

    events = asyncio.run(go())
    text = "".join(e.text for e in events if e.kind == "text")
    assert text == "answer from m-ok"
    assert events[-1].kind == "end" and events[-1].completion.model == "backup/m-ok"
    assert events[-1].completion.text == "answer from m-ok"
    assert [(a.model, a.kind) for a in chain.last_attempts] == [
        ("primary/m-503", "server"), ("backup/m-hang", "timeout"), ("backup/m-ok", None)]
    assert [(e.payload["from"], e.payload["to"]) for e in sub.drain()] == [
        ("primary/m-503", "backup/m-hang"), ("backup/m-hang", "backup/m-ok")]


@needs_openai
def test_streaming_does_not_fall_back_after_output(server: OpenAIServer) -> None:
    reg = ModelRegistry(two_providers(server))
    chain = FallbackChain(reg, ["primary/m-midway", "backup/m-ok"])
    seen: list[Any] = []

    async def go() -> None:
        try:
            async for event in chain.stream(request()):
                seen.append(event)
        finally:
            await reg.aclose()

    with pytest.raises(ProviderError) as info:
        asyncio.run(go())
    assert "".join(e.text for e in seen if e.kind == "text") == "answer "
    assert "No fallback once output has been sent" in info.value.message
    assert "m-ok" not in server.models_requested()


@needs_openai
def test_streaming_no_fallback_on_auth(server: OpenAIServer) -> None:
    reg = ModelRegistry(two_providers(server))
    chain = FallbackChain(reg, ["primary/m-401", "backup/m-ok"])

    async def go() -> None:
        try:
            await collect(chain.stream(request()))
        finally:
            await reg.aclose()

    with pytest.raises(ProviderError) as info:
        asyncio.run(go())
    assert info.value.kind == "auth" and "Not falling back" in info.value.message
    assert "m-ok" not in server.models_requested()


def test_missing_key_in_chain_does_not_fall_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    reg = ModelRegistry(Config({}))
    chain = FallbackChain(reg, ["openai/gpt-4o-mini", "local/gemma3-270m"])
    with pytest.raises(ProviderError) as info:
        asyncio.run(chain.complete(request()))
    assert info.value.kind == "auth" and "OPENAI_API_KEY" in info.value.message
    assert "Not falling back to local/gemma3-270m" in info.value.message


def test_chain_needs_models() -> None:
    from aikit_components.errors import InvalidArgument

    with pytest.raises(InvalidArgument):
        FallbackChain(ModelRegistry(Config({})), [])
    with pytest.raises(InvalidArgument):
        FallbackChain(ModelRegistry(Config({})), "openai/gpt-4o-mini")  # type: ignore[arg-type]
