"""Gemma's turn format for the local base model, and tool calls written as JSON lines.

The packaged model (google/gemma-3-270m, the *base* model) has no chat template, so the local
provider builds the prompt itself (:func:`build_prompt`) and calls the plain completions endpoint
with :data:`TURN_STOPS` as stop sequences. Tools are offered as text with an instruction to answer
``{"tool": "<name>", "arguments": {...}}`` on one line; :func:`parse_tool_calls` turns such lines
into :class:`ToolCall` objects, and :class:`Holdback` keeps them out of streamed text deltas.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from .base import ProviderError
from .messages import Message, ToolCall, ToolSpec

__all__ = ["END_OF_TURN", "START_OF_TURN", "TURN_STOPS", "Holdback", "build_prompt", "chat_messages",
           "parse_tool_calls"]

START_OF_TURN = "<start_of_turn>"
END_OF_TURN = "<end_of_turn>"
#: Always-on stop sequences: the end of the model's turn, or the model starting a new turn.
TURN_STOPS = (END_OF_TURN, START_OF_TURN)


def _tools_block(tools: Sequence[ToolSpec]) -> str:
    lines = ["You can call these tools:"]
    for tool in tools:
        lines.append(f"- {tool.name}: {tool.description.strip()}")
        lines.append("  arguments (JSON Schema): " + json.dumps(tool.parameters, ensure_ascii=False, sort_keys=True))
    lines.append("To call a tool, answer with exactly one line of JSON and nothing else, like this:")
    lines.append('{"tool": "<tool name>", "arguments": {<the arguments>}}')
    lines.append("Otherwise answer in plain text.")
    return "\n".join(lines)


def _schema_block(schema: dict[str, Any]) -> str:
    return ("Answer with one JSON object that matches this JSON Schema, and nothing else:\n"
            + json.dumps(schema, ensure_ascii=False, sort_keys=True))


def _call_line(call: ToolCall) -> str:
    return json.dumps({"tool": call.name, "arguments": call.arguments}, ensure_ascii=False)


def _tool_result_text(message: Message) -> str:
    name = message.name or "the tool"
    if message.is_error:
        return f"The tool {name} failed: {message.text}"
    return f"The tool {name} returned: {message.text}"


def _turns(messages: Sequence[Message], tools: Sequence[ToolSpec],
           json_schema: dict[str, Any] | None) -> list[list[Any]]:
    """The conversation as alternating ``[side, [parts]]`` turns (side: user or model), with the
    system messages, the tool list and the JSON-Schema instruction folded into the first user turn."""
    preamble = [m.text.strip() for m in messages if m.role == "system" and m.text.strip()]
    if tools:
        preamble.append(_tools_block(tools))
    if json_schema is not None:
        preamble.append(_schema_block(json_schema))
    turns: list[list[Any]] = []  # [side, [parts]]
    for message in messages:
        if message.role == "system":
            continue
        if message.role == "assistant":
            side = "model"
            parts = [message.text] if message.text else []
            parts += [_call_line(c) for c in message.tool_calls]
            text = "\n".join(parts)
        elif message.role == "tool":
            side, text = "user", _tool_result_text(message)
        else:
            side, text = "user", message.text
        if turns and turns[-1][0] == side:
            turns[-1][1].append(text)
        else:
            turns.append([side, [text]])
    if preamble:
        if turns and turns[0][0] == "user":
            turns[0][1][:0] = preamble
        else:
            turns.insert(0, ["user", preamble])
    return turns


def build_prompt(messages: Sequence[Message], tools: Sequence[ToolSpec] = (),
                 json_schema: dict[str, Any] | None = None, *, prompt_format: str = "gemma") -> str:
    """The completion prompt for ``messages`` in Gemma's turn format.

    System messages (wherever they are), the tool list and the JSON-Schema instruction are folded
    into the first user turn; assistant tool calls are rendered as ``{"tool": ..., "arguments":
    ...}`` lines; tool results become user turns describing the result; consecutive turns of one
    side are merged (Gemma alternates user/model). The prompt ends with an open model turn, or,
    when the last message is from the assistant, continues that turn (a prefill).

    ``prompt_format="raw"``: the texts joined by blank lines, no turn markers (base-model
    continuation: "The capital of France is").
    """
    turns = _turns(messages, tools, json_schema)
    if prompt_format == "raw":
        return "\n\n".join(p for _, parts in turns for p in parts if p)
    if prompt_format != "gemma":
        raise ProviderError(f"prompt_format must be 'gemma' or 'raw', not {prompt_format!r}",
                            kind="bad_request", provider="local")
    out = []
    for i, (side, parts) in enumerate(turns):
        body = "\n\n".join(p for p in parts if p)
        if side == "model" and i == len(turns) - 1:
            out.append(f"{START_OF_TURN}model\n{body}")  # prefill: the model continues its own turn
            return "".join(out)
        out.append(f"{START_OF_TURN}{side}\n{body}{END_OF_TURN}\n")
    out.append(f"{START_OF_TURN}model\n")
    return "".join(out)


def chat_messages(messages: Sequence[Message], tools: Sequence[ToolSpec] = (),
                  json_schema: dict[str, Any] | None = None) -> list[dict[str, str]]:
    """The conversation for a chat endpoint that applies the model's own chat template: the same
    turns as :func:`build_prompt` (system text, tools and schema folded into the first user turn,
    which every template accepts), as ``{"role": "user"|"assistant", "content": ...}``."""
    return [{"role": "assistant" if side == "model" else "user", "content": "\n\n".join(p for p in parts if p)}
            for side, parts in _turns(messages, tools, json_schema)]


_DECODER = json.JSONDecoder()
_FENCE_LINE = re.compile(r"^\s*```[A-Za-z]*\s*$")


def _as_call(value: Any, names: set[str] | None) -> ToolCall | None:
    if not isinstance(value, dict):
        return None
    name = value.get("tool", value.get("name"))
    if not isinstance(name, str) or not name or (names is not None and name not in names):
        return None
    arguments = value.get("arguments", value.get("args", value.get("parameters", {})))
    if arguments is None:
        arguments = {}
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            arguments = {"_raw": arguments}
    if not isinstance(arguments, dict):
        arguments = {"_raw": arguments}
    return ToolCall(name, arguments)


def parse_tool_calls(text: str, tool_names: Iterable[str] | None = None) -> tuple[str, list[ToolCall]]:
    """``(remaining text, calls)``: every JSON object starting a line (possibly spanning lines, or
    inside a code fence) of the form ``{"tool": name, "arguments": {...}}`` (``"name"`` is accepted
    for ``"tool"``) becomes a :class:`ToolCall` and is removed from the text. With ``tool_names``,
    only those names count (other JSON stays text)."""
    names = set(tool_names) if tool_names is not None else None
    calls: list[ToolCall] = []
    spans: list[tuple[int, int]] = []
    pos = 0
    for match in re.finditer(r"(?m)^[ \t]*\{", text):
        start = match.end() - 1
        if start < pos:
            continue
        try:
            value, end = _DECODER.raw_decode(text, start)
        except ValueError:
            continue
        call = _as_call(value, names)
        if call is None:
            continue
        calls.append(call)
        spans.append((match.start(), end))
        pos = end
    if not calls:
        return text, []
    kept, last = [], 0
    for start, end in spans:
        kept.append(text[last:start])
        last = end
    kept.append(text[last:])
    remaining = "".join(kept)
    lines = [line for line in remaining.split("\n") if not _FENCE_LINE.match(line)]
    return "\n".join(lines).strip(), calls


class Holdback:
    """Streams text deltas but holds back everything from a line that starts with ``{`` or a code
    fence (a possible tool call) until the end."""

    def __init__(self) -> None:
        self.line = ""  # the current line, as emitted so far
        self.held: str | None = None

    def feed(self, delta: str) -> str:
        if self.held is not None:
            self.held += delta
            return ""
        out = []
        for i, ch in enumerate(delta):
            if ch in "{`" and not self.line.strip():
                self.held = delta[i:]
                break
            out.append(ch)
            self.line = "" if ch == "\n" else self.line + ch
        return "".join(out)
