"""CassetteTransport: record real HTTP exchanges with a local OpenAI-format server (127.0.0.1,
http.server in a thread), then replay them with the server stopped; nothing mocked."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from aikit_components.config import Config
from aikit_components.errors import NotFound
from aikit_components.providers import Message, ProviderError, Request
from aikit_components.providers.cassette import Cassette, CassetteMiss, CassetteTransport
from aikit_components.providers.fallback import FallbackChain
from aikit_components.providers.registry import ModelRegistry
from tests.support.http import QuietHandler

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SECRET = "sk-cassette-secret-0123456789"
OTHER_SECRET = "anthropic-like-secret-abcdef"
QUERY_SECRET = "query-key-secret-424242"

def have(module: str) -> bool:
    return importlib.util.find_spec(f"aikit_components.providers.{module}") is not None


needs_openai = pytest.mark.skipif(importlib.util.find_spec("aikit_components.providers.openai") is None,
                                  reason="providers/openai.py is not there yet")


class Server:
    """``POST /v1/chat/completions`` (OpenAI format, streaming too; model ``m-flaky`` answers 429
    the first time) and ``GET /v1/echo`` (the query and headers back)."""

    def __init__(self) -> None:
        self.hits: dict[str, int] = {}
        outer = self

        class Handler(QuietHandler):
            def send(self, status: int, payload: Any, extra: dict[str, str] | None = None) -> None:
                self.send_json(status, payload, {"Set-Cookie": "session=abc123secret", "X-Request-Id": "req-1",
                                                 **(extra or {})})

            def do_GET(self) -> None:  # noqa: N802
                parts = urlsplit(self.path)
                self.send(200, {"path": parts.path, "query": parse_qs(parts.query)})

            def fixture(self, name: str, content_type: str, sep: str | None) -> None:
                text = (FIXTURES / name).read_text(encoding="utf-8")
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                parts = [text] if sep is None else [p + sep for p in text.split(sep) if p.strip()]
                for part in parts:
                    self.chunk(part.encode())
                self.wfile.write(b"0\r\n\r\n")

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                if self.path == "/v1/messages":  # Anthropic
                    if body.get("stream"):
                        return self.fixture("anthropic_stream_text.sse", "text/event-stream", "\n\n")
                    return self.fixture("anthropic_message_text.json", "application/json", None)
                if self.path == "/api/chat":  # Ollama
                    if body.get("stream", True):
                        return self.fixture("ollama_stream_text.ndjson", "application/x-ndjson", "\n")
                    return self.fixture("ollama_chat_text.json", "application/json", None)
                model = body.get("model", "")
                outer.hits[model] = outer.hits.get(model, 0) + 1
                if model == "m-flaky" and outer.hits[model] == 1:
                    return self.send(429, {"error": {"message": "slow down", "type": "requests"}}, {"Retry-After": "0"})
                text = f"Hello from {model}: {body['messages'][-1]['content']}"
                if not body.get("stream"):
                    return self.send(200, {
                        "id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": model,
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                     "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}})
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000, "model": model}
                events = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": w},
                                                "finish_reason": None}]} for w in text.split(" ")]
                for e in events[1:]:
                    e["choices"][0]["delta"]["content"] = " " + e["choices"][0]["delta"]["content"]
                    del e["choices"][0]["delta"]["role"]
                events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                events.append({**base, "choices": [],
                               "usage": {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}})
                for e in events:
                    self.chunk(b"data: " + json.dumps(e).encode() + b"\n\n")
                self.chunk(b"data: [DONE]\n\n")
                self.wfile.write(b"0\r\n\r\n")

            def chunk(self, data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.root = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.base_url = self.root + "/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.running = True

    def stop(self) -> None:
        if self.running:
            self.running = False
            self.httpd.shutdown()
            self.httpd.server_close()


@pytest.fixture
def server():
    srv = Server()
    yield srv
    srv.stop()


HEADERS = {"Authorization": f"Bearer {SECRET}", "x-api-key": OTHER_SECRET, "Cookie": "sid=cookie-secret-99",
           "X-Trace": "t-1"}
CHAT = {"model": "m-ok", "messages": [{"role": "user", "content": "hi"}]}


def assert_clean(path: Path) -> str:
    text = path.read_text()
    for secret in (SECRET, OTHER_SECRET, QUERY_SECRET, "cookie-secret-99", "abc123secret"):
        assert secret not in text
    lowered = text.lower()
    for header in ('"authorization"', '"x-api-key"', '"cookie"', '"set-cookie"'):
        assert header not in lowered
    return text


# --------------------------------------------------------------------------------------------
# Wire level (plain httpx)
# --------------------------------------------------------------------------------------------


def test_record_then_replay_with_server_stopped(server: Server, tmp_path: Path) -> None:
    path = tmp_path / "chat.json"

    async def run(transport: CassetteTransport) -> list[tuple[int, str, bytes]]:
        async with httpx.AsyncClient(transport=transport, headers=HEADERS) as client:
            out = []
            r = await client.post(f"{server.base_url}/chat/completions", json=CHAT)
            out.append((r.status_code, r.headers["content-type"], r.content))
            r = await client.get(f"{server.base_url}/echo", params={"api_key": QUERY_SECRET, "q": "x"})
            out.append((r.status_code, r.headers["content-type"], r.content))
            return out

    recorded = asyncio.run(run(CassetteTransport(path, "record")))
    assert recorded[0][0] == 200 and b"Hello from m-ok: hi" in recorded[0][2]
    text = assert_clean(path)
    doc = json.loads(text)
    first = doc["exchanges"][0]
    assert first["request"]["method"] == "POST"
    assert first["request"]["url"] == f"{server.base_url}/chat/completions"
    assert first["request"]["body"]["json"] == CHAT
    assert first["request"]["headers"]["x-trace"] == "t-1"
    assert first["response"]["status"] == 200
    assert first["response"]["headers"]["x-request-id"] == "req-1"
    assert "api_key=%2A%2A%2A%2A" in doc["exchanges"][1]["request"]["url"]  # masked query value

    assert QUERY_SECRET.encode() in recorded[1][2]  # the server echoed the key: the cassette masks it

    server.stop()
    replay = CassetteTransport(path, "replay")
    assert replay.mode == "replay"
    replayed = asyncio.run(run(replay))
    assert replayed[0] == recorded[0]  # byte-identical
    assert replayed[1][2] == recorded[1][2].replace(QUERY_SECRET.encode(), b"****")
    assert replay.cassette.unused() == []


def test_streamed_body_is_recorded_raw_and_replayed_in_chunks(server: Server, tmp_path: Path) -> None:
    path = tmp_path / "stream.json"

    async def run(transport: CassetteTransport) -> list[bytes]:
        async with (
            httpx.AsyncClient(transport=transport) as client,
            client.stream("POST", f"{server.base_url}/chat/completions", json={**CHAT, "stream": True}) as r,
        ):
            assert r.headers["content-type"] == "text/event-stream"
            return [chunk async for chunk in r.aiter_raw()]

    live = asyncio.run(run(CassetteTransport(path, "record")))
    body = b"".join(live)
    recorded = json.loads(path.read_text())["exchanges"][0]["response"]["body"]["text"]
    assert recorded.encode() == body and recorded.endswith("data: [DONE]\n\n")
    server.stop()
    chunks = asyncio.run(run(CassetteTransport(path, "replay")))
    assert b"".join(chunks) == body
    assert len(chunks) == body.count(b"\n\n") > 3  # one SSE event per chunk
    assert all(c.endswith(b"\n\n") for c in chunks)


def test_missing_recording_names_file_and_request(server: Server, tmp_path: Path) -> None:
    path = tmp_path / "one.json"

    async def post(transport: CassetteTransport, body: dict[str, Any]) -> httpx.Response:
        async with httpx.AsyncClient(transport=transport) as client:
            return await client.post(f"{server.base_url}/chat/completions", json=body)

    asyncio.run(post(CassetteTransport(path, "record"), CHAT))
    server.stop()
    replay = CassetteTransport(path, "replay")
    assert asyncio.run(post(replay, CHAT)).status_code == 200
    with pytest.raises(CassetteMiss) as info:  # recorded once, asked twice
        asyncio.run(post(replay, CHAT))
    assert str(path) in info.value.message and "POST" in info.value.message
    assert "/v1/chat/completions" in info.value.message and "1 already used" in info.value.message
    with pytest.raises(CassetteMiss) as info:
        asyncio.run(post(CassetteTransport(path, "replay"), {**CHAT, "model": "other"}))
    assert '"model":"other"' in info.value.message

    with pytest.raises(NotFound, match="does not exist"):
        CassetteTransport(tmp_path / "absent.json", "replay")


def test_auto_mode_jsonl_and_host_independent_matching(server: Server, tmp_path: Path) -> None:
    path = tmp_path / "auto.jsonl"

    async def post(transport: CassetteTransport, base: str) -> bytes:
        async with httpx.AsyncClient(transport=transport) as client:
            return (await client.post(f"{base}/chat/completions", json=CHAT)).content

    first = CassetteTransport(path, "auto")
    assert first.mode == "record"
    live = asyncio.run(post(first, server.base_url))
    lines = path.read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["request"]["method"] == "POST"
    server.stop()
    again = CassetteTransport(path, "auto")
    assert again.mode == "replay"
    # matching uses method + path + body: another host replays the same recording
    assert asyncio.run(post(again, "http://api.example.invalid/v1")) == live


def test_transport_errors_are_recorded_and_replayed(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = tmp_path / "refused.json"

    async def get(transport: CassetteTransport) -> None:
        async with httpx.AsyncClient(transport=transport) as client:
            await client.get(f"http://127.0.0.1:{port}/v1/models")

    with pytest.raises(httpx.ConnectError):
        asyncio.run(get(CassetteTransport(path, "record")))
    assert json.loads(path.read_text())["exchanges"][0]["error"]["type"] == "ConnectError"
    with pytest.raises(httpx.ConnectError):
        asyncio.run(get(CassetteTransport(path, "replay")))


def test_bad_mode() -> None:
    from aikit_components.errors import InvalidArgument

    with pytest.raises(InvalidArgument):
        CassetteTransport("x.json", "rewind")


# --------------------------------------------------------------------------------------------
# Provider level: the registry's transport hook
# --------------------------------------------------------------------------------------------


def registry_for(base_url: str, cassette: Cassette, retries: int = 0) -> ModelRegistry:
    config = Config({"providers": {"openai": {"base_url": base_url, "api_key": SECRET, "retries": retries,
                                              "timeout_s": 5}}})
    return ModelRegistry(config, transport=cassette.transport)


def chat(text: str, model: str = "gpt-4o-mini") -> Request:
    return Request(model=model, messages=[Message.system("be brief"), Message.user(text)])


@needs_openai
def test_provider_record_and_replay_identical(server: Server, tmp_path: Path) -> None:
    path = tmp_path / "openai.json"

    async def run(reg: ModelRegistry) -> tuple[Any, list[Any], Any]:
        try:
            provider, model, _ = reg.resolve("openai/gpt-4o-mini")
            completion = await provider.complete(chat("hi", model))
            events = [e async for e in provider.stream(chat("stream please", model))]
            flaky = await FallbackChain(reg, ["openai/m-flaky"]).complete(chat("again"))
            return completion, events, flaky
        finally:
            await reg.aclose()

    live = asyncio.run(run(registry_for(server.base_url, Cassette(path, "record"), retries=1)))
    completion, events, flaky = live
    assert completion.text == "Hello from gpt-4o-mini: hi"
    assert "".join(e.text for e in events if e.kind == "text") == "Hello from gpt-4o-mini: stream please"
    assert events[-1].kind == "end" and events[-1].completion.usage.output_tokens == 5
    assert flaky.text == "Hello from m-flaky: again" and flaky.model == "openai/m-flaky"
    text = assert_clean(path)
    doc = json.loads(text)
    statuses = [e["response"]["status"] for e in doc["exchanges"]]
    assert statuses == [200, 200, 429, 200]  # the retry after a 429 is recorded too
    assert "data: [DONE]" in doc["exchanges"][1]["response"]["body"]["text"]

    server.stop()
    cassette = Cassette(path, "replay")
    replayed = asyncio.run(run(registry_for(server.base_url, cassette, retries=1)))
    assert replayed == live  # identical Completion, identical stream events (dataclass equality)
    assert cassette.unused() == []


@needs_openai
def test_provider_replay_miss_is_not_a_fallback(server: Server, tmp_path: Path) -> None:
    path = tmp_path / "miss.json"

    async def ask(reg: ModelRegistry, text: str) -> Any:
        try:
            return await FallbackChain(reg, ["openai/gpt-4o-mini", "openai/other"]).complete(chat(text))
        finally:
            await reg.aclose()

    asyncio.run(ask(registry_for(server.base_url, Cassette(path, "record")), "recorded"))
    server.stop()
    with pytest.raises(CassetteMiss) as info:
        asyncio.run(ask(registry_for(server.base_url, Cassette(path, "replay")), "never recorded"))
    assert str(path) in info.value.message and "never recorded" in info.value.message


@needs_openai
def test_replayed_errors_reach_the_provider(tmp_path: Path) -> None:
    """A recorded refused connection replays as the same ProviderError (kind connection)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        base = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    path = tmp_path / "down.json"

    async def ask(reg: ModelRegistry) -> Any:
        try:
            provider, model, _ = reg.resolve("openai/gpt-4o-mini")
            return await provider.complete(chat("hi", model))
        finally:
            await reg.aclose()

    errors = []
    for mode in ("record", "replay"):
        with pytest.raises(ProviderError) as info:
            asyncio.run(ask(registry_for(base, Cassette(path, mode))))
        errors.append((info.value.kind, info.value.message))
    assert errors[0] == errors[1] and errors[0][0] == "connection"


@pytest.mark.skipif(not (have("anthropic") and have("ollama") and (FIXTURES / "ollama_stream_text.ndjson").exists()
                         and (FIXTURES / "anthropic_stream_text.sse").exists()),
                    reason="the Anthropic/Ollama providers or their wire fixtures are not there yet")
def test_anthropic_and_ollama_share_one_cassette(server: Server, tmp_path: Path) -> None:
    """One cassette for two providers (x-api-key auth, SSE and NDJSON streams), replayed offline."""
    path = tmp_path / "mixed.json"

    def registry(cassette: Cassette) -> ModelRegistry:
        config = Config({"providers": {"anthropic": {"base_url": server.root, "api_key": OTHER_SECRET, "retries": 0},
                                       "ollama": {"base_url": server.root, "retries": 0}}})
        return ModelRegistry(config, transport=cassette.transport)

    async def run(reg: ModelRegistry) -> list[Any]:
        out: list[Any] = []
        try:
            for name in ("anthropic/claude-3-5-haiku-latest", "ollama/llama3.2"):
                provider, model, _ = reg.resolve(name)
                out.append(await provider.complete(chat("hi", model)))
                out.append([e async for e in provider.stream(chat("stream", model))])
        finally:
            await reg.aclose()
        return out

    live = asyncio.run(run(registry(Cassette(path, "record"))))
    assert all(isinstance(x, list) and x[-1].kind == "end" for x in live[1::2])
    assert "".join(e.text for e in live[3] if e.kind == "text").startswith("Hello! How can I help")
    doc = json.loads(assert_clean(path))
    assert [e["request"]["url"].rsplit("/", 2)[-2:] for e in doc["exchanges"]] == [
        ["v1", "messages"], ["v1", "messages"], ["api", "chat"], ["api", "chat"]]
    ndjson = doc["exchanges"][3]["response"]["body"]["text"]
    assert ndjson == (FIXTURES / "ollama_stream_text.ndjson").read_text(encoding="utf-8")

    server.stop()
    cassette = Cassette(path, "replay")
    assert asyncio.run(run(registry(cassette))) == live
    assert cassette.unused() == []

    async def raw_chunks() -> list[bytes]:  # NDJSON comes back one line per chunk
        async with httpx.AsyncClient(transport=CassetteTransport(path, "replay")) as client:
            payload = doc["exchanges"][3]["request"]["body"]["json"]
            async with client.stream("POST", server.root + "/api/chat", json=payload) as r:
                return [c async for c in r.aiter_raw()]

    chunks = asyncio.run(raw_chunks())
    assert len(chunks) == ndjson.count("\n") and b"".join(chunks) == ndjson.encode()
