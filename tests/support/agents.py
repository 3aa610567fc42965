"""Helpers for tests of agents against a real local HTTP server speaking the OpenAI
chat-completions wire format (``tests/support/llm_server.py``): builders for the exact JSON bodies
the OpenAI API answers with, components configured to talk to the server, and (a pytest plugin)
the ``make_agent_lua`` fixture: Lua engines whose components use that server.

``[providers.openai]`` points at ``<server>/v1``; ``[providers.backup]`` (type openai) at
``<server>/backup/v1``, so fallback tests can script both endpoints. Retries are 0 so an
error reaches the fallback chain at once. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from aikit_components.components import Components
from aikit_components.config import Config
from aikit_kernel import runtime
from tests.support.factories import closing_factory
from tests.support.kernels import Kernel, start_kernel
from tests.support.llm_server import Reply
from tests.support.lua import Lua, open_lua
from tests.support.trust import trusting_env

OPENAI = "/v1/chat/completions"
BACKUP = "/backup/v1/chat/completions"
ANTHROPIC = "/anthropic/v1/messages"
OLLAMA = "/ollama/api/chat"

_ids = itertools.count(1)


# --------------------------------------------------------------------------- wire bodies
def call(name: str, arguments: Any, call_id: str | None = None) -> dict[str, Any]:
    """One entry of ``choices[0].message.tool_calls`` (arguments as a JSON string, as OpenAI sends)."""
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": call_id or f"call_{next(_ids):04d}", "type": "function", "function": {"name": name, "arguments": raw}}


def chat(content: str | None = None, tool_calls: list[dict[str, Any]] | None = None, *, model: str = "m",
         finish: str | None = None, usage: tuple[int, int] = (10, 5)) -> dict[str, Any]:
    """A ``chat.completion`` object exactly as the OpenAI API returns it."""
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None, "annotations": []}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": f"chatcmpl-{next(_ids):08d}", "object": "chat.completion", "created": 1741569952, "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": finish or ("tool_calls" if tool_calls else "stop")}],
        "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": usage[0] + usage[1],
                  "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                  "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}},
        "service_tier": "default", "system_fingerprint": "fp_b3f1157249",
    }


def answer(content: str | None = None, tool_calls: list[dict[str, Any]] | None = None, **kw: Any) -> Reply:
    """A 200 reply carrying :func:`chat`."""
    delay = kw.pop("delay_s", 0.0)
    return Reply.json(chat(content, tool_calls, **kw), delay_s=delay)


def sse(deltas: list[str], *, model: str = "m", usage: tuple[int, int] = (7, 4), chunk_delay_s: float = 0.0,
        **hold: Any) -> Reply:
    """A streamed chat completion (``text/event-stream``, one ``chat.completion.chunk`` per event,
    the usage chunk and ``[DONE]`` last), as OpenAI streams with ``stream_options.include_usage``.
    ``hold``: ``hold_after`` and ``gate`` (see :class:`Reply`); the first delta is chunk 2."""
    base = {"id": "chatcmpl-stream", "object": "chat.completion.chunk", "created": 1741569953, "model": model,
            "service_tier": "default", "system_fingerprint": "fp_b3f1157249"}
    events = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "", "refusal": None},
                                    "logprobs": None, "finish_reason": None}], "usage": None}]
    events += [{**base, "choices": [{"index": 0, "delta": {"content": d}, "logprobs": None, "finish_reason": None}],
                "usage": None} for d in deltas]
    events.append({**base, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}],
                   "usage": None})
    events.append({**base, "choices": [], "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1],
                                                    "total_tokens": sum(usage)}})
    chunks = [f"data: {json.dumps(e)}\n\n".encode() for e in events] + [b"data: [DONE]\n\n"]
    return Reply(200, b"".join(chunks), content_type="text/event-stream; charset=utf-8", chunks=chunks,
                 chunk_delay_s=chunk_delay_s, **hold)


def error(status: int, message: str, etype: str, code: str | None = None, headers: dict[str, str] | None = None) -> Reply:
    """An OpenAI error body with its HTTP status."""
    return Reply.json({"error": {"message": message, "type": etype, "param": None, "code": code}}, status=status,
                      headers=headers)


def sent_messages(server: Any, path: str = OPENAI, index: int = -1) -> list[dict[str, Any]]:
    """The ``messages`` of one request the server received on ``path``."""
    return server.requests_to(path)[index].json()["messages"]


# --------------------------------------------------------------------------- components
def config_text(url: str, extra: str = "") -> str:
    return f"""
[providers.openai]
base_url = "{url}/v1"
api_key = "test-key"
retries = 0
timeout_s = 10

[providers.backup]
type = "openai"
base_url = "{url}/backup/v1"
api_key = "test-key"
retries = 0
timeout_s = 10

[providers.anthropic]
base_url = "{url}/anthropic"
api_key = "test-key"
retries = 0

[providers.ollama]
base_url = "{url}/ollama"
retries = 0
{extra}
"""


def run(coro: Coroutine[Any, Any, Any], timeout: float = 15) -> Any:
    """Run ``coro`` on aikit's I/O loop (as the kernel does) and wait for its result."""
    return runtime.submit(coro).result(timeout)


class AgentEnv:
    """Components wired to the local server, data under ``tmp_path``."""

    def __init__(self, server: Any, tmp_path: Path, extra: str = "") -> None:
        self.server = server
        directory = tmp_path / f"env{next(_ids)}"
        directory.mkdir()
        (directory / "aikit.toml").write_text(config_text(server.url, extra))
        self.config = Config.load(cwd=directory, env=trusting_env(), user_dir=directory / "user-config")
        self.components = Components.open(config=self.config, data_dir=directory / "data", plugins=False,
                                          loop_getter=runtime.get_loop)

    def agent(self, **fields: Any) -> Any:
        from aikit_components.agents import AgentSpec

        fields.setdefault("model", "openai/m")
        return self.components.new_agent(AgentSpec(**fields))

    def close(self) -> None:
        try:
            run(self.components.models.aclose(), timeout=5)
        finally:
            self.components.close()


@pytest.fixture
def make_agent_lua(llm_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Lua]]:
    """Factory: ``make_agent_lua(extra="")``, a Lua engine with every aikit global (``Agent``
    included), its components configured to use the local server (``config_text(url, extra)``
    written to ``tmp_path/aikit.toml``), as the kernel wires them, minus ZMQ."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AIKIT_DATA_DIR", str(tmp_path / "data"))

    def make(extra: str = "") -> Lua:
        (tmp_path / "aikit.toml").write_text(config_text(llm_server.url, extra))
        return open_lua(tmp_path)

    yield from closing_factory(make, lambda lua: lua.close(close_models=True))


@pytest.fixture
def agent_kernel(llm_server: Any, tmp_path: Path) -> Iterator[Kernel]:
    """A kernel whose project config points the openai provider at ``llm_server``."""
    (tmp_path / "aikit.toml").write_text(config_text(llm_server.url))
    kernel = start_kernel(tmp_path / "data", cwd=tmp_path, XDG_CONFIG_HOME=tmp_path / "xdg")
    yield kernel
    kernel.shutdown(now=True)


async def gather_with_cancel(task_coro: Coroutine[Any, Any, Any], when: Callable[[], Any]) -> BaseException | Any:
    """Start ``task_coro``, cancel it as soon as ``when()`` is true (checked every 10 ms, at most
    15 s); what awaiting it gave. Waiting for a condition, not a delay, keeps the test exact on a
    loaded machine."""
    task = asyncio.ensure_future(task_coro)
    for _ in range(1500):
        if when() or task.done():
            break
        await asyncio.sleep(0.01)
    task.cancel()
    try:
        return await task
    except BaseException as exc:  # noqa: BLE001 - the test inspects it
        return exc
