"""aikit's one internal format for LLM conversations and streams; every wire format (OpenAI,
Anthropic, Ollama, the local model) converts to and from it.

- :class:`Message`: role (system | user | assistant | tool), text, tool calls (assistant), and for
  role "tool" the id of the call it answers plus an error flag.
- :class:`ToolCall`: id (generated when a wire format has none, e.g. Ollama), name, arguments
  as an object (never a JSON string).
- :class:`Completion`: the assistant message, usage, the normalised stop reason, the model
  that actually answered and any refusal text the provider sent.
- :class:`StreamEvent`: ``text`` deltas, ``tool_call_start`` / ``tool_call_delta`` (argument
  JSON fragments), and one final ``end`` carrying the assembled :class:`Completion`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]
StopReason = Literal["end", "tool_calls", "max_tokens", "content_filter", "stop_sequence", "error"]


def new_call_id() -> str:
    """A tool-call id for wire formats that do not give one."""
    return "call_" + uuid.uuid4().hex[:24]


def response_id(data: Any) -> str:
    """The provider's id of a response (the ``id`` of an OpenAI ``chat.completion`` or chunk, of
    an Anthropic message); "" when the body has none (a local server may not give one)."""
    value = data.get("id") if isinstance(data, dict) else None
    return value if isinstance(value, str) else ""


@dataclass
class ToolCall:
    """One tool call requested by the model."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=new_call_id)
    arguments_error: str | None = field(default=None, compare=False)  # the model sent arguments that are not JSON

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments}


@dataclass
class Message:
    """One conversation turn in aikit's format."""

    role: Role
    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_call_id: str | None = None  # role "tool": the call this result answers
    name: str | None = None  # role "tool": the tool's name
    is_error: bool = False  # role "tool": the tool failed (the text says why)

    @classmethod
    def system(cls, text: str) -> Message:
        return cls("system", text)

    @classmethod
    def user(cls, text: str) -> Message:
        return cls("user", text)

    @classmethod
    def assistant(cls, text: str = "", tool_calls: list[ToolCall] | None = None) -> Message:
        return cls("assistant", text, list(tool_calls or []))

    @classmethod
    def tool_result(cls, call: ToolCall, text: str, is_error: bool = False) -> Message:
        return cls("tool", text, tool_call_id=call.id, name=call.name, is_error=is_error)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"role": self.role, "text": self.text}
        if self.tool_calls:
            data["tool_calls"] = [c.to_dict() for c in self.tool_calls]
        if self.role == "tool":
            data.update(tool_call_id=self.tool_call_id, name=self.name, is_error=self.is_error)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Message:
        calls = [ToolCall(c["name"], dict(c.get("arguments") or {}), c.get("id") or new_call_id())
                 for c in data.get("tool_calls") or []]
        return cls(data["role"], data.get("text") or "", calls, data.get("tool_call_id"), data.get("name"),
                   bool(data.get("is_error", False)))


@dataclass
class Usage:
    """Token counts of one or more LLM calls."""

    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def add(self, other: Usage) -> None:
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens

    def to_dict(self) -> dict[str, int]:
        return {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens, "total_tokens": self.total_tokens}


@dataclass
class ToolSpec:
    """A tool as offered to a model: name, description and JSON Schema of its arguments."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass
class Request:
    """One completion request in aikit's format."""

    model: str  # the provider's own model name (without the "provider/" prefix)
    messages: list[Message]
    tools: list[ToolSpec] = field(default_factory=list)
    temperature: float | None = None
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    json_schema: dict[str, Any] | None = None  # ask for structured output where the API supports it

    def for_model(self, model: str) -> Request:
        """This request for ``model``: ``dataclasses.replace(self, model=model)`` without its
        per-field work (a fallback chain makes one per model call). A shallow copy, as replace's."""
        copied = object.__new__(type(self))
        copied.__dict__.update(self.__dict__)
        copied.model = model
        return copied


@dataclass
class Completion:
    """A finished LLM call."""

    message: Message
    stop_reason: StopReason = "end"
    usage: Usage = field(default_factory=Usage)
    model: str = ""  # "provider/model" that answered
    refusal: str = ""  # what the provider's safety system said when it refused (OpenAI's ``refusal``)
    # the provider's id of this response (OpenAI's and Anthropic's ``id``; "" if none): which
    # response it was, not what it says, so not compared
    response_id: str = field(default="", compare=False)

    @property
    def text(self) -> str:
        return self.message.text

    @property
    def tool_calls(self) -> list[ToolCall]:
        return self.message.tool_calls


StreamKind = Literal["text", "tool_call_start", "tool_call_delta", "end"]


@dataclass
class StreamEvent:
    """One event of a streamed completion."""

    kind: StreamKind
    text: str = ""  # "text": the delta; "tool_call_delta": a fragment of the arguments' JSON
    index: int = 0  # which tool call (for tool_call_* events)
    call_id: str | None = None
    name: str | None = None  # "tool_call_start"
    completion: Completion | None = None  # "end"
