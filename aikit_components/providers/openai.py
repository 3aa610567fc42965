"""OpenAI Chat Completions (``POST {base_url}/chat/completions``), also spoken by vLLM, the
llama.cpp server, Ollama's ``/v1``, LM Studio and most gateways (local servers need no key).

Wire shapes: assistant tool calls carry their arguments as a JSON *string*; tool results are
``{"role": "tool", "tool_call_id", "content"}`` messages; tools are
``{"type": "function", "function": {name, description, parameters}}``. Streaming is SSE with
``stream_options.include_usage`` (the usage arrives in a last chunk whose ``choices`` is empty)
and ends with ``data: [DONE]``.
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
from .messages import Completion, Message, Request, StopReason, StreamEvent, ToolCall, Usage, new_call_id, response_id
from .streams import aiter_sse
from .tool_arguments import encode_arguments, make_tool_call
from .wire_errors import error_from_body, not_streaming_error

__all__ = ["OpenAIProvider"]

FINISH_REASONS: dict[str, StopReason] = {
    "stop": "end",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "length": "max_tokens",
    "content_filter": "content_filter",
}


def _stop_reason(finish: str | None, has_calls: bool) -> StopReason:
    reason = FINISH_REASONS.get(finish or "stop", "end")
    if has_calls and reason == "end":  # some local servers say "stop" after tool calls
        return "tool_calls"
    return reason


def _usage(data: Any) -> Usage:
    if not isinstance(data, dict):
        return Usage()
    return Usage(int(data.get("prompt_tokens") or 0), int(data.get("completion_tokens") or 0))


def _response_format(schema: dict[str, Any]) -> dict[str, Any]:
    """``json_schema`` may be a bare JSON Schema or already ``{"name", "schema", "strict"?}``."""
    if isinstance(schema.get("schema"), dict) and "name" in schema:
        spec = dict(schema)
    else:
        spec = {"name": str(schema.get("title") or "response").replace(" ", "_")[:64], "schema": schema}
    return {"type": "json_schema", "json_schema": spec}


class OpenAIProvider(ChatClient):
    """The Chat Completions wire format on one endpoint.

    ``max_tokens_param`` names the field that carries ``Request.max_tokens`` ("max_tokens", or
    "max_completion_tokens" for OpenAI's reasoning models); ``stream_usage=False`` drops
    ``stream_options`` for servers that reject it.
    """

    path = "/chat/completions"

    def __init__(self, name: str = "openai", base_url: str = "https://api.openai.com/v1",
                 api_key: str | Secret | None = None, *, timeout_s: float = 60.0, retries: int = 2,
                 transport: httpx.AsyncBaseTransport | None = None, headers: dict[str, str] | None = None,
                 pipeline: Pipeline | None = None,
                 max_tokens_param: str = "max_tokens", stream_usage: bool = True,
                 backoff_s: float = DEFAULT_BACKOFF_S, max_retry_after_s: float = DEFAULT_MAX_RETRY_AFTER_S) -> None:
        self.name = name
        self.max_tokens_param = max_tokens_param
        self.stream_usage = stream_usage
        self.http = HTTPEndpoint(base_url, api_key, name=name, headers=headers, auth="bearer", timeout_s=timeout_s,
                                 retries=retries, transport=transport, pipeline=pipeline, backoff_s=backoff_s,
                                 max_retry_after_s=max_retry_after_s)



    # ------------------------------------------------------------------ request
    @staticmethod
    def wire_message(message: Message) -> dict[str, Any]:
        if message.role == "assistant":
            out: dict[str, Any] = {"role": "assistant", "content": message.text or (None if message.tool_calls else "")}
            if message.tool_calls:
                out["tool_calls"] = [{"id": c.id, "type": "function",
                                      "function": {"name": c.name, "arguments": encode_arguments(c)}}
                                     for c in message.tool_calls]
            return out
        if message.role == "tool":
            text = message.text
            if message.is_error and not text.lower().startswith("error"):
                text = "Error: " + text
            return {"role": "tool", "tool_call_id": message.tool_call_id or "", "content": text}
        return {"role": message.role, "content": message.text}

    def request_body(self, request: Request, *, stream: bool = False) -> dict[str, Any]:
        """The JSON body of ``POST /chat/completions`` for ``request``."""
        body: dict[str, Any] = {"model": request.model, "messages": [self.wire_message(m) for m in request.messages]}
        if request.tools:
            body["tools"] = [{"type": "function", "function": {"name": t.name, "description": t.description,
                                                               "parameters": t.parameters}} for t in request.tools]
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.max_tokens is not None:
            body[self.max_tokens_param] = request.max_tokens
        if request.stop:
            body["stop"] = list(request.stop)
        if request.json_schema is not None:
            body["response_format"] = _response_format(request.json_schema)
        if stream:
            body["stream"] = True
            if self.stream_usage:
                body["stream_options"] = {"include_usage": True}
        return body

    # ------------------------------------------------------------------ response
    def _model(self, data: dict[str, Any], request: Request) -> str:
        return f"{self.name}/{data.get('model') or request.model}"

    def parse_completion(self, data: Any, request: Request) -> Completion:
        """A Completion from a ``chat.completion`` object."""
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list) or not data["choices"]:
            if isinstance(data, dict) and data.get("error"):
                raise error_from_body(self.name, data, has_key=self.http.api_key is not None)
            raise ProviderError(f"{self.name} answered without choices: {str(data)[:300]}; check that "
                                f"{self.http.base_url} speaks the OpenAI Chat Completions API",
                                kind="bad_response", provider=self.name)
        choice = data["choices"][0]
        wire = choice.get("message") or {}
        calls = [make_tool_call((c.get("function") or {}).get("name") or "", (c.get("function") or {}).get("arguments"),
                                c.get("id")) for c in wire.get("tool_calls") or []]
        text = wire.get("content") or ""
        if isinstance(text, list):  # content parts
            text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
        stop = _stop_reason(choice.get("finish_reason"), bool(calls))
        refusal = wire.get("refusal") or ""
        if refusal:
            text, stop = text or refusal, "content_filter"
        return Completion(Message.assistant(text, calls), stop, _usage(data.get("usage")), self._model(data, request),
                          refusal=str(refusal), response_id=response_id(data))

    # ------------------------------------------------------------------ streaming
    async def stream_once(self, request: Request) -> AsyncIterator[StreamEvent]:
        state = _StreamState(self.name, request.model)
        lines = self.http.stream_lines(self.path, self.request_body(request, stream=True), retries=0)
        async with aclosing(lines), aclosing(aiter_sse(lines)) as events:
            async for event in events:
                state.events += 1
                if event.is_done:
                    state.done = True
                    break
                chunk = event.json(self.name)
                if isinstance(chunk, dict) and chunk.get("error"):
                    raise error_from_body(self.name, chunk, has_key=self.http.api_key is not None)
                for out in state.feed(chunk):
                    yield out
        if not state.events:
            raise not_streaming_error(self.name, self.http.base_url)
        if not state.done and state.finish is None:
            raise ProviderError(f"the stream from {self.name} ended before the completion was finished; try again",
                                kind="connection", provider=self.name)
        for out in state.flush_pending():
            yield out
        yield StreamEvent("end", completion=state.completion())


@dataclass
class _CallSlot:
    id: str | None = None
    name: str | None = None
    arguments: list[str] = field(default_factory=list)
    started: bool = False
    pending: list[str] = field(default_factory=list)


class _StreamState:
    """Assembles ``chat.completion.chunk`` objects into events and a final Completion."""

    def __init__(self, provider: str, model: str) -> None:
        self.provider = provider
        self.model = model
        self.text: list[str] = []
        self.refusal: list[str] = []
        self.calls: dict[int, _CallSlot] = {}
        self.finish: str | None = None
        self.usage = Usage()
        self.done = False
        self.events = 0
        self.response_id = ""

    def feed(self, chunk: dict[str, Any]) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        if chunk.get("model"):
            self.model = chunk["model"]
        if not self.response_id:
            self.response_id = response_id(chunk)
        if isinstance(chunk.get("usage"), dict):  # servers that report usage on several chunks: the fullest
            seen = _usage(chunk["usage"])
            self.usage = Usage(max(self.usage.input_tokens, seen.input_tokens),
                               max(self.usage.output_tokens, seen.output_tokens))
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if delta.get("content"):
                self.text.append(delta["content"])
                out.append(StreamEvent("text", text=delta["content"]))
            if delta.get("refusal"):
                self.refusal.append(delta["refusal"])
                out.append(StreamEvent("text", text=delta["refusal"]))
            for tc in delta.get("tool_calls") or []:
                out.extend(self._tool_delta(tc))
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]
        return out

    def _tool_delta(self, tc: dict[str, Any]) -> list[StreamEvent]:
        index = tc.get("index")
        if not isinstance(index, int):  # servers that omit the index: a new id opens a new call
            index = len(self.calls) if tc.get("id") or not self.calls else max(self.calls)
        slot = self.calls.setdefault(index, _CallSlot())
        fn = tc.get("function") or {}
        out: list[StreamEvent] = []
        if tc.get("id") and not slot.id:
            slot.id = tc["id"]
        if fn.get("name") and not slot.name:
            slot.name = fn["name"]
            slot.id = slot.id or new_call_id()
        fragment = fn.get("arguments")
        if isinstance(fragment, dict):  # a few servers send the object itself
            fragment = json.dumps(fragment, ensure_ascii=False)
        if fragment:
            slot.arguments.append(fragment)
            if slot.started:
                out.append(StreamEvent("tool_call_delta", text=fragment, index=index, call_id=slot.id))
            else:
                slot.pending.append(fragment)
        if not slot.started and slot.id and slot.name:
            slot.started = True
            out.append(StreamEvent("tool_call_start", index=index, call_id=slot.id, name=slot.name))
            if slot.pending:
                out.append(StreamEvent("tool_call_delta", text="".join(slot.pending), index=index, call_id=slot.id))
                slot.pending.clear()
        return out

    def flush_pending(self) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for index, slot in sorted(self.calls.items()):
            if not slot.started:
                slot.id = slot.id or new_call_id()
                slot.started = True
                out.append(StreamEvent("tool_call_start", index=index, call_id=slot.id, name=slot.name or ""))
                if slot.pending:
                    out.append(StreamEvent("tool_call_delta", text="".join(slot.pending), index=index, call_id=slot.id))
                    slot.pending.clear()
        return out

    def completion(self) -> Completion:
        calls: list[ToolCall] = [make_tool_call(slot.name or "", "".join(slot.arguments), slot.id)
                                 for _, slot in sorted(self.calls.items())]
        stop = _stop_reason(self.finish, bool(calls))
        text = "".join(self.text)
        refusal = "".join(self.refusal)
        if refusal:
            text, stop = text or refusal, "content_filter"
        return Completion(Message.assistant(text, calls), stop, self.usage, f"{self.provider}/{self.model}",
                          refusal=refusal, response_id=self.response_id)
