"""Ollama's native chat API (``POST {base_url}/api/chat``).

Wire shapes: messages ``{"role", "content"}``; an assistant's tool calls are
``{"function": {"name", "arguments": {...}}}`` (arguments already an object, no ids: aikit
generates them); tool results are ``{"role": "tool", "content", "tool_name"}``; tools use the
OpenAI function schema; sampling goes in ``options`` (``temperature``, ``num_predict``, ``stop``);
``json_schema`` becomes ``format``. With ``stream: true`` the answer is NDJSON, one object per
line, the last with ``done: true``, ``done_reason`` and the token counts
(``prompt_eval_count``, ``eval_count``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import httpx

from ..config import Secret
from ..operations import Pipeline
from .base import ProviderError
from .http import DEFAULT_BACKOFF_S, DEFAULT_MAX_RETRY_AFTER_S, ChatClient, HTTPEndpoint
from .messages import Completion, Message, Request, StopReason, StreamEvent, ToolCall, Usage
from .streams import aiter_ndjson
from .tool_arguments import make_tool_call

__all__ = ["OllamaProvider"]

DONE_REASONS: dict[str, StopReason] = {"stop": "end", "length": "max_tokens", "load": "end", "unload": "end"}


def _usage(data: dict[str, Any]) -> Usage:
    return Usage(int(data.get("prompt_eval_count") or 0), int(data.get("eval_count") or 0))


def _stop_reason(reason: str | None, has_calls: bool) -> StopReason:
    stop = DONE_REASONS.get(reason or "stop", "end")
    return "tool_calls" if has_calls and stop == "end" else stop


class OllamaProvider(ChatClient):
    """Ollama's ``/api/chat`` on one server. ``options`` are default model options merged under
    the request's own (``{"num_ctx": 8192}``, say); ``keep_alive`` is sent when given. No key is
    needed for a local server (one is sent as a Bearer token when given, for hosted Ollama)."""

    def __init__(self, name: str = "ollama", base_url: str = "http://127.0.0.1:11434",
                 api_key: str | Secret | None = None, *, timeout_s: float = 120.0, retries: int = 2,
                 transport: httpx.AsyncBaseTransport | None = None, headers: dict[str, str] | None = None,
                 pipeline: Pipeline | None = None,
                 options: dict[str, Any] | None = None, keep_alive: str | int | None = None,
                 backoff_s: float = DEFAULT_BACKOFF_S, max_retry_after_s: float = DEFAULT_MAX_RETRY_AFTER_S) -> None:
        self.name = name
        self.options = dict(options or {})
        self.keep_alive = keep_alive
        self.http = HTTPEndpoint(base_url, api_key, name=name, headers=headers, auth="bearer", timeout_s=timeout_s,
                                 retries=retries, transport=transport, pipeline=pipeline, backoff_s=backoff_s,
                                 max_retry_after_s=max_retry_after_s)
        self.path = "/chat" if self.http.base_url.endswith("/api") else "/api/chat"



    # ------------------------------------------------------------------ request
    @staticmethod
    def wire_message(message: Message) -> dict[str, Any]:
        out: dict[str, Any] = {"role": message.role, "content": message.text}
        if message.role == "assistant" and message.tool_calls:
            out["tool_calls"] = [{"function": {"name": c.name, "arguments": c.arguments}} for c in message.tool_calls]
        if message.role == "tool":
            if message.name:
                out["tool_name"] = message.name
            if message.is_error and not message.text.lower().startswith("error"):
                out["content"] = "Error: " + message.text
        return out

    def request_body(self, request: Request, *, stream: bool = False) -> dict[str, Any]:
        """The JSON body of ``POST /api/chat`` for ``request``."""
        body: dict[str, Any] = {"model": request.model, "messages": [self.wire_message(m) for m in request.messages],
                                "stream": stream}
        if request.tools:
            body["tools"] = [{"type": "function", "function": {"name": t.name, "description": t.description,
                                                               "parameters": t.parameters}} for t in request.tools]
        options = dict(self.options)
        if request.temperature is not None:
            options["temperature"] = request.temperature
        if request.max_tokens is not None:
            options["num_predict"] = request.max_tokens
        if request.stop:
            options["stop"] = list(request.stop)
        if options:
            body["options"] = options
        if request.json_schema is not None:
            schema = request.json_schema
            if isinstance(schema.get("schema"), dict) and "name" in schema:
                schema = schema["schema"]
            body["format"] = schema
        if self.keep_alive is not None:
            body["keep_alive"] = self.keep_alive
        return body

    # ------------------------------------------------------------------ response
    def _error(self, data: dict[str, Any]) -> ProviderError:
        message = str(data.get("error"))
        return ProviderError(f"{self.name} failed: \"{message}\"; check the model and the server log",
                             kind="server", provider=self.name, details={"provider_message": message})

    @staticmethod
    def _calls(wire: dict[str, Any]) -> list[ToolCall]:
        calls = []
        for c in wire.get("tool_calls") or []:
            fn = c.get("function") or {}
            calls.append(make_tool_call(fn.get("name") or "", fn.get("arguments"), c.get("id")))
        return calls

    def parse_completion(self, data: Any, request: Request) -> Completion:
        """A Completion from a non-streamed ``/api/chat`` answer."""
        if isinstance(data, dict) and data.get("error"):
            raise self._error(data)
        if not isinstance(data, dict) or not isinstance(data.get("message"), dict):
            raise ProviderError(f"{self.name} answered without a message: {str(data)[:300]}; check that "
                                f"{self.http.base_url} is an Ollama server", kind="bad_response", provider=self.name)
        wire = data["message"]
        calls = self._calls(wire)
        return Completion(Message.assistant(wire.get("content") or "", calls),
                          _stop_reason(data.get("done_reason"), bool(calls)), _usage(data),
                          f"{self.name}/{data.get('model') or request.model}")

    # ------------------------------------------------------------------ streaming
    async def stream_once(self, request: Request) -> AsyncIterator[StreamEvent]:
        text: list[str] = []
        calls: list[ToolCall] = []
        final: dict[str, Any] | None = None
        model = request.model
        lines = self.http.stream_lines(self.path, self.request_body(request, stream=True), retries=0)
        async with aclosing(lines), aclosing(aiter_ndjson(lines, self.name)) as chunks:
            async for chunk in chunks:
                if not isinstance(chunk, dict):
                    continue
                if chunk.get("error"):
                    raise self._error(chunk)
                model = chunk.get("model") or model
                wire = chunk.get("message") or {}
                if wire.get("content"):
                    text.append(wire["content"])
                    yield StreamEvent("text", text=wire["content"])
                for call in self._calls(wire):
                    index = len(calls)
                    calls.append(call)
                    yield StreamEvent("tool_call_start", index=index, call_id=call.id, name=call.name)
                    yield StreamEvent("tool_call_delta", text=json.dumps(call.arguments, ensure_ascii=False),
                                      index=index, call_id=call.id)
                if chunk.get("done"):
                    final = chunk
                    break
        if final is None:
            raise ProviderError(f"the stream from {self.name} ended before done: true; try again",
                                kind="connection", provider=self.name)
        completion = Completion(Message.assistant("".join(text), calls),
                                _stop_reason(final.get("done_reason"), bool(calls)), _usage(final),
                                f"{self.name}/{model}")
        yield StreamEvent("end", completion=completion)
