"""Anthropic Messages API (``POST {base_url}/v1/messages``, headers ``x-api-key`` and
``anthropic-version: 2023-06-01``).

Wire shapes: the system prompt is the top-level ``system`` string; an assistant's tool calls are
``tool_use`` content blocks (``input`` is an object); tool results go back in a *user* message
as ``tool_result`` blocks (``is_error`` when the tool failed), consecutive results merged into
one user message; ``max_tokens`` is required. Streaming is SSE with named events
(message_start, content_block_start/delta/stop, message_delta, message_stop, ping, error).

Structured output (``Request.json_schema``) has no request field here, so it is asked for the
usual way: a tool whose input schema is the schema, forced with ``tool_choice``; its input comes
back as the completion's text (JSON) and never as a tool call.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import httpx

from ..config import Secret
from ..operations import Pipeline
from .base import ProviderError
from .http import DEFAULT_BACKOFF_S, DEFAULT_MAX_RETRY_AFTER_S, ChatClient, HTTPEndpoint
from .messages import Completion, Message, Request, StopReason, StreamEvent, ToolCall, Usage, response_id
from .streams import aiter_sse
from .tool_arguments import make_tool_call
from .wire_errors import error_from_body, not_streaming_error

__all__ = ["ANTHROPIC_VERSION", "AnthropicProvider", "STRUCTURED_TOOL"]

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 1024
STRUCTURED_TOOL = "json_response"  # the tool that carries structured output (json_schema)

STOP_REASONS: dict[str, StopReason] = {
    "end_turn": "end",
    "tool_use": "tool_calls",
    "max_tokens": "max_tokens",
    "model_context_window_exceeded": "max_tokens",
    "stop_sequence": "stop_sequence",
    "refusal": "content_filter",
    "pause_turn": "end",
}


def _usage(data: Any, previous: Usage | None = None) -> Usage:
    """Input tokens include cache writes and reads (Anthropic counts those apart)."""
    usage = Usage(previous.input_tokens, previous.output_tokens) if previous else Usage()
    if not isinstance(data, dict):
        return usage
    if any(data.get(k) is not None for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")):
        usage.input_tokens = sum(int(data.get(k) or 0) for k in (
            "input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"))
    if data.get("output_tokens") is not None:
        usage.output_tokens = int(data["output_tokens"])
    return usage


def _structured_schema(schema: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """(input_schema, wrapped): a non-object schema is wrapped as ``{"value": ...}``."""
    if isinstance(schema.get("schema"), dict) and "name" in schema:  # OpenAI-style wrapper
        schema = schema["schema"]
    if schema.get("type") == "object":
        return schema, False
    return {"type": "object", "properties": {"value": schema}, "required": ["value"]}, True


class AnthropicProvider(ChatClient):
    """The Messages wire format on one endpoint (``base_url`` without ``/v1``; one ending in ``/v1``
    is accepted too)."""

    def __init__(self, name: str = "anthropic", base_url: str = "https://api.anthropic.com",
                 api_key: str | Secret | None = None, *, timeout_s: float = 60.0, retries: int = 2,
                 transport: httpx.AsyncBaseTransport | None = None, headers: dict[str, str] | None = None,
                 pipeline: Pipeline | None = None,
                 default_max_tokens: int = DEFAULT_MAX_TOKENS, version: str = ANTHROPIC_VERSION,
                 backoff_s: float = DEFAULT_BACKOFF_S, max_retry_after_s: float = DEFAULT_MAX_RETRY_AFTER_S) -> None:
        self.name = name
        self.default_max_tokens = default_max_tokens
        self.http = HTTPEndpoint(base_url, api_key, name=name, headers={"anthropic-version": version, **(headers or {})},
                                 auth="x-api-key", timeout_s=timeout_s, retries=retries, transport=transport,
                                 pipeline=pipeline, backoff_s=backoff_s, max_retry_after_s=max_retry_after_s)
        self.path = "/messages" if self.http.base_url.endswith("/v1") else "/v1/messages"



    # ------------------------------------------------------------------ request
    @staticmethod
    def wire_messages(messages: list[Message]) -> tuple[str, list[dict[str, Any]]]:
        """(system, messages) in the Messages API shape."""
        system: list[str] = []
        out: list[dict[str, Any]] = []
        for m in messages:
            if m.role == "system":
                if m.text:
                    system.append(m.text)
            elif m.role == "tool":
                block: dict[str, Any] = {"type": "tool_result", "tool_use_id": m.tool_call_id or "", "content": m.text}
                if m.is_error:
                    block["is_error"] = True
                last = out[-1] if out else None
                if (last is not None and last["role"] == "user" and isinstance(last["content"], list)
                        and all(b.get("type") == "tool_result" for b in last["content"])):
                    last["content"].append(block)
                else:
                    out.append({"role": "user", "content": [block]})
            elif m.role == "assistant":
                if m.tool_calls:
                    blocks: list[dict[str, Any]] = [{"type": "text", "text": m.text}] if m.text else []
                    blocks += [{"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments}
                               for c in m.tool_calls]
                    out.append({"role": "assistant", "content": blocks})
                elif m.text:  # the API refuses empty assistant turns
                    out.append({"role": "assistant", "content": m.text})
            else:
                out.append({"role": "user", "content": m.text})
        return "\n\n".join(system), out

    def request_body(self, request: Request, *, stream: bool = False) -> dict[str, Any]:
        """The JSON body of ``POST /v1/messages`` for ``request``."""
        system, messages = self.wire_messages(request.messages)
        max_tokens = request.max_tokens if request.max_tokens is not None else self.default_max_tokens
        body: dict[str, Any] = {"model": request.model, "max_tokens": max_tokens, "messages": messages}
        if system:
            body["system"] = system
        tools = [{"name": t.name, "description": t.description, "input_schema": t.parameters} for t in request.tools]
        if request.json_schema is not None:
            schema, _ = _structured_schema(request.json_schema)
            tools.append({"name": STRUCTURED_TOOL, "description": "Give the final answer as JSON matching the schema.",
                          "input_schema": schema})
            body["tool_choice"] = {"type": "any"} if request.tools else {"type": "tool", "name": STRUCTURED_TOOL}
        if tools:
            body["tools"] = tools
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.stop:
            body["stop_sequences"] = list(request.stop)
        if stream:
            body["stream"] = True
        return body

    # ------------------------------------------------------------------ response
    @staticmethod
    def _structured_text(arguments: dict[str, Any], request: Request) -> str:
        _, wrapped = _structured_schema(request.json_schema or {})
        return json.dumps(arguments.get("value") if wrapped else arguments, ensure_ascii=False)

    def parse_completion(self, data: Any, request: Request) -> Completion:
        """A Completion from a ``message`` object."""
        if not isinstance(data, dict) or data.get("type") == "error" or not isinstance(data.get("content"), list):
            if isinstance(data, dict) and data.get("error"):
                raise error_from_body(self.name, data, has_key=self.http.api_key is not None)
            raise ProviderError(f"{self.name} answered without message content: {str(data)[:300]}; check that "
                                f"{self.http.base_url} speaks the Anthropic Messages API",
                                kind="bad_response", provider=self.name)
        texts: list[str] = []
        calls: list[ToolCall] = []
        structured: str | None = None
        for block in data["content"]:
            kind = block.get("type")
            if kind == "text":
                texts.append(block.get("text") or "")
            elif kind == "tool_use":
                if request.json_schema is not None and block.get("name") == STRUCTURED_TOOL:
                    structured = self._structured_text(block.get("input") or {}, request)
                else:
                    calls.append(make_tool_call(block.get("name") or "", block.get("input"), block.get("id")))
        stop = STOP_REASONS.get(data.get("stop_reason") or "end_turn", "end")
        text = "".join(texts)
        if structured is not None:
            text = structured
            if stop == "tool_calls" and not calls:
                stop = "end"
        model = f"{self.name}/{data.get('model') or request.model}"
        return Completion(Message.assistant(text, calls), stop, _usage(data.get("usage")), model,
                          response_id=response_id(data))

    # ------------------------------------------------------------------ streaming
    async def stream_once(self, request: Request) -> AsyncIterator[StreamEvent]:
        state = _StreamState(self, request)
        lines = self.http.stream_lines(self.path, self.request_body(request, stream=True), retries=0)
        seen = 0
        async with aclosing(lines), aclosing(aiter_sse(lines)) as events:
            async for event in events:
                seen += 1
                data = event.json(self.name)
                if not isinstance(data, dict):
                    continue
                etype = data.get("type") or event.event
                if etype == "error":
                    raise error_from_body(self.name, data, has_key=self.http.api_key is not None)
                for out in state.feed(etype, data):
                    yield out
                if etype == "message_stop":
                    break
        if not seen:
            raise not_streaming_error(self.name, self.http.base_url)
        if not state.stopped:
            raise ProviderError(f"the stream from {self.name} ended before message_stop; try again",
                                kind="connection", provider=self.name)
        yield StreamEvent("end", completion=state.completion())


@dataclass
class _Block:
    type: str
    text: list[str] = field(default_factory=list)
    call_index: int = -1
    id: str = ""
    name: str = ""
    initial_input: Any = None
    structured: bool = False


class _StreamState:
    def __init__(self, provider: AnthropicProvider, request: Request) -> None:
        self.provider = provider
        self.request = request
        self.model = request.model
        self.blocks: dict[int, _Block] = {}
        self.order: list[int] = []
        self.calls = 0
        self.stop_reason: str | None = None
        self.usage = Usage()
        self.response_id = ""
        self.stopped = False

    def feed(self, etype: str, data: dict[str, Any]) -> list[StreamEvent]:
        if etype == "message_start":
            message = data.get("message") or {}
            self.model = message.get("model") or self.model
            self.response_id = response_id(message)
            self.usage = _usage(message.get("usage"))
        elif etype == "content_block_start":
            cb = data.get("content_block") or {}
            index = int(data.get("index", len(self.order)))
            block = _Block(cb.get("type") or "")
            self.blocks[index] = block
            self.order.append(index)
            if block.type == "text":
                if cb.get("text"):
                    block.text.append(cb["text"])
                    return [StreamEvent("text", text=cb["text"])]
            elif block.type == "tool_use":
                block.id, block.name, block.initial_input = cb.get("id") or "", cb.get("name") or "", cb.get("input")
                if self.request.json_schema is not None and block.name == STRUCTURED_TOOL:
                    block.structured = True
                else:
                    block.call_index = self.calls
                    self.calls += 1
                    return [StreamEvent("tool_call_start", index=block.call_index, call_id=block.id, name=block.name)]
        elif etype == "content_block_delta":
            block = self.blocks.get(int(data.get("index", -1)))
            delta = data.get("delta") or {}
            if block is None:
                return []
            if delta.get("type") == "text_delta" and delta.get("text"):
                block.text.append(delta["text"])
                return [StreamEvent("text", text=delta["text"])]
            if delta.get("type") == "input_json_delta" and delta.get("partial_json"):
                block.text.append(delta["partial_json"])
                if block.structured:
                    return []  # the JSON text is given whole at content_block_stop
                return [StreamEvent("tool_call_delta", text=delta["partial_json"], index=block.call_index,
                                    call_id=block.id)]
        elif etype == "content_block_stop":
            block = self.blocks.get(int(data.get("index", -1)))
            if block is not None and block.structured:
                return [StreamEvent("text", text=self._structured(block))]
        elif etype == "message_delta":
            delta = data.get("delta") or {}
            if delta.get("stop_reason"):
                self.stop_reason = delta["stop_reason"]
            self.usage = _usage(data.get("usage"), self.usage)
        elif etype == "message_stop":
            self.stopped = True
        return []

    def _arguments(self, block: _Block) -> Any:
        raw = "".join(block.text)
        return raw if raw.strip() else (block.initial_input or {})

    def _structured(self, block: _Block) -> str:
        call = make_tool_call(block.name, self._arguments(block), block.id)
        return self.provider._structured_text(call.arguments, self.request)

    def completion(self) -> Completion:
        texts: list[str] = []
        calls: list[ToolCall] = []
        structured: str | None = None
        for index in self.order:
            block = self.blocks[index]
            if block.type == "text":
                texts.append("".join(block.text))
            elif block.type == "tool_use":
                if block.structured:
                    structured = self._structured(block)
                else:
                    calls.append(make_tool_call(block.name, self._arguments(block), block.id))
        stop = STOP_REASONS.get(self.stop_reason or "end_turn", "end")
        text = "".join(texts)
        if structured is not None:
            text = structured
            if stop == "tool_calls" and not calls:
                stop = "end"
        return Completion(Message.assistant(text, calls), stop, self.usage, f"{self.provider.name}/{self.model}",
                          response_id=self.response_id)
