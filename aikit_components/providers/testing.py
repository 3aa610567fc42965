"""Models for testing agents without a network or a real model (like pydantic-ai's ``TestModel``
and ``FunctionModel``). Each is a :class:`~aikit_components.providers.base.Provider`, so an agent
using one goes through the whole operation pipeline (hooks, events, tracing, budgets) exactly as
with a real model.

``test`` (:class:`TestProvider`, the model name ``"test"`` or ``"test/<anything>"``)
    On the first turn of a run it calls every offered tool once, with arguments generated from the
    tool's JSON Schema (:func:`example_value`); on the next turn it answers with a JSON object
    mapping each tool called to its result (``{"error": ...}`` for a failed call). Offered no
    tools, it answers ``test answer: <the last user message>``; asked for structured output
    (``output_schema``), it answers with a value generated from that schema.

``scripted`` (:class:`ScriptedProvider`)
    Each turn is decided by a function ``decide(messages, tools) -> reply`` (messages and tools as
    dicts, see :func:`reply_completion` for the reply). :func:`scripted_decider` makes one from a
    list of replies given in advance, one per model call. :meth:`ScriptedProvider.add` registers a
    decider under a model name of its own, ``"scripted/<n>"``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from ..codec import lua_type_name
from ..errors import InvalidArgument
from .messages import Completion, Message, Request, StreamEvent, ToolCall, ToolSpec, Usage

__all__ = ["ScriptedProvider", "TestProvider", "example_value", "reply_completion", "scripted_decider"]

Decide = Callable[[list[dict[str, Any]], list[dict[str, Any]]], Awaitable[Any]]


def example_value(schema: Any, depth: int = 0) -> Any:
    """A value matching ``schema`` (enough of JSON Schema for tool parameters): its ``default``,
    first ``example``/``enum`` value or ``const`` when it has one, else the simplest value of its
    type that meets its bounds (``"a"``, ``0``, ``false``, a list of ``minItems`` items, an object
    with its required properties)."""
    if not isinstance(schema, dict) or depth > 8:
        return None
    for key in ("const", "default"):
        if key in schema:
            return schema[key]
    for key in ("examples", "enum"):
        if isinstance(schema.get(key), list) and schema[key]:
            return schema[key][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return example_value(schema[key][0], depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), kind[0] if kind else None)
    if kind is None:
        kind = "object" if "properties" in schema else "string"
    if kind == "string":
        return "a" * max(1, int(schema.get("minLength", 1)))
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        value = low + (1 if "exclusiveMinimum" in schema and "minimum" not in schema else 0)
        high = schema.get("maximum")
        if high is not None and value > high:
            value = high
        return int(value) if kind == "integer" else value
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    if kind == "array":
        count = int(schema.get("minItems", 0))
        return [example_value(schema.get("items", {}), depth + 1) for _ in range(count)]
    properties = schema.get("properties") or {}
    required = schema.get("required") or []
    return {name: example_value(properties.get(name, {}), depth + 1) for name in required}


def _tool_dicts(tools: Sequence[ToolSpec]) -> list[dict[str, Any]]:
    return [{"name": t.name, "description": t.description, "parameters": t.parameters} for t in tools]


def _since_last_user(messages: Sequence[Message]) -> list[Message]:
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].role == "user":
            return list(messages[i + 1:])
    return list(messages)


def _result_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


async def _stream_of(completion: Completion) -> AsyncIterator[StreamEvent]:
    if completion.text:
        yield StreamEvent("text", completion.text)
    for i, call in enumerate(completion.tool_calls):
        yield StreamEvent("tool_call_start", index=i, call_id=call.id, name=call.name)
        yield StreamEvent("tool_call_delta", json.dumps(call.arguments), index=i, call_id=call.id)
    yield StreamEvent("end", completion=completion)


def _usage(request: Request, completion: Completion) -> Usage:
    """Rough token counts (words), so usage and budgets see something happen."""
    words_in = sum(len(m.text.split()) for m in request.messages)
    return Usage(words_in, len(completion.text.split()) + len(completion.tool_calls))


class TestProvider:
    """The ``test`` model (see the module docstring)."""

    __test__ = False  # not a pytest test class

    def __init__(self, name: str = "test", **_settings: Any) -> None:
        self.name = name

    async def complete(self, request: Request) -> Completion:
        completion = self._answer(request)
        completion.usage = _usage(request, completion)
        return completion

    def stream(self, request: Request) -> AsyncIterator[StreamEvent]:
        completion = self._answer(request)
        completion.usage = _usage(request, completion)
        return _stream_of(completion)

    def _answer(self, request: Request) -> Completion:
        model = f"{self.name}/{request.model or 'test'}"
        turn = _since_last_user(request.messages)
        results = [m for m in turn if m.role == "tool"]
        if request.tools and not results:
            calls = [ToolCall(t.name, example_value(t.parameters) or {}) for t in request.tools]
            return Completion(Message.assistant("", calls), stop_reason="tool_calls", model=model)
        if request.json_schema:
            text = json.dumps(example_value(request.json_schema))
        elif results:
            text = json.dumps({m.name: _result_value(m.text) for m in results}, ensure_ascii=False, default=str)
        else:
            last = next((m.text for m in reversed(request.messages) if m.role == "user"), "")
            text = f"test answer: {last}"
        return Completion(Message.assistant(text), model=model)

    async def aclose(self) -> None:
        pass


def reply_completion(reply: Any, model: str) -> Completion:
    """A decider's reply as a completion: a string (the answer's text) or a table
    ``{text = ..., tool_calls = {{name = ..., arguments = {...}}, ...}}``."""
    if isinstance(reply, str):
        return Completion(Message.assistant(reply), model=model)
    if not isinstance(reply, dict):
        raise InvalidArgument("a scripted model's reply must be a string or a table {text = ..., tool_calls = {...}}, "
                              f"got {lua_type_name(reply)}")
    unknown = sorted(set(reply) - {"text", "tool_calls", "stop_reason"})
    if unknown:
        raise InvalidArgument(f"a scripted model's reply has unknown field(s) {', '.join(map(str, unknown))} "
                              "(known: text, tool_calls, stop_reason)")
    stop = reply.get("stop_reason")
    if stop is not None and stop not in SCRIPTED_STOPS:
        raise InvalidArgument(f"a scripted model's reply stop_reason must be one of {', '.join(SCRIPTED_STOPS)}, "
                              f"got {stop!r}")
    text = reply.get("text") or ""
    if not isinstance(text, str):
        raise InvalidArgument(f"a scripted model's reply text must be a string, got {lua_type_name(text)}")
    calls = []
    for i, item in enumerate(reply.get("tool_calls") or [], 1):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidArgument(f"tool call {i} of a scripted model's reply must be a table "
                                  "{name = 'tool', arguments = {...}}")
        arguments = item.get("arguments", item.get("args")) or {}
        if not isinstance(arguments, dict):
            raise InvalidArgument(f"tool call {i} ({item['name']}) of a scripted model's reply: arguments must be "
                                  f"a table of named parameters, got {lua_type_name(arguments)}")
        calls.append(ToolCall(item["name"], arguments))
    return Completion(Message.assistant(text, calls), stop_reason=stop or ("tool_calls" if calls else "end"),
                      model=model)


#: What a scripted reply may say about how its answer ended (to test code that handles a cut answer).
SCRIPTED_STOPS = ("end", "max_tokens", "stop_sequence", "content_filter")


def scripted_decider(replies: Sequence[Any]) -> Decide:
    """A decider answering with ``replies`` in order, one per model call (checked up front)."""
    if not isinstance(replies, (list, tuple)) or not replies:
        raise InvalidArgument("Agent.scripted needs a list of replies, one per model call: "
                              "{ {tool_calls = {{name = 'x', arguments = {...}}}}, 'the final answer' }")
    for reply in replies:
        reply_completion(reply, "scripted")
    position = {"next": 0}

    async def decide(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Any:
        i = position["next"]
        if i >= len(replies):
            raise InvalidArgument(f"the scripted model has no reply left: it was given {len(replies)} and was "
                                  f"asked for reply {i + 1} (add replies, or make a new Agent.scripted for each run)")
        position["next"] = i + 1
        return replies[i]

    return decide


class ScriptedProvider:
    """The ``scripted`` provider: models whose every turn is decided by a function
    ``decide(messages, tools)`` (see the module docstring). :meth:`add` registers a decider and
    returns its model name, ``"scripted/<n>"``."""

    def __init__(self, name: str = "scripted", **_settings: Any) -> None:
        self.name = name
        self._deciders: dict[str, Decide] = {}

    def add(self, decide: Decide) -> str:
        """Register ``decide``; the full model name that uses it."""
        model = str(len(self._deciders) + 1)
        self._deciders[model] = decide
        return f"{self.name}/{model}"

    async def complete(self, request: Request) -> Completion:
        decide = self._deciders.get(request.model)
        if decide is None:
            raise InvalidArgument(f"no scripted model {self.name}/{request.model}: make one with Agent.scripted{{...}} "
                                  "or give Agent.new a function as its model")
        reply = await decide([m.to_dict() for m in request.messages], _tool_dicts(request.tools))
        completion = reply_completion(reply, f"{self.name}/{request.model}")
        completion.usage = _usage(request, completion)
        return completion

    async def stream(self, request: Request) -> AsyncIterator[StreamEvent]:
        completion = await self.complete(request)
        async for event in _stream_of(completion):
            yield event

    async def aclose(self) -> None:
        pass
