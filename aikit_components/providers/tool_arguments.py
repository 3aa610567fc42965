"""Tool-call arguments between the wire (a JSON string, or an object) and :class:`ToolCall` (always
an object). Arguments that are not a JSON object become ``{"_raw": "<text>"}`` and the call is
flagged; :func:`argument_error` tells the agent so it can report the problem back to the model.
"""

from __future__ import annotations

import json
from typing import Any

from ..jsontext import dumps_with
from .messages import ToolCall, new_call_id

_ARGUMENTS_JSON = dumps_with(ensure_ascii=False)  # json.dumps(..., ensure_ascii=False), encoder made once

__all__ = ["RAW_ARGUMENTS_KEY", "argument_error", "decode_arguments", "encode_arguments", "make_tool_call"]

RAW_ARGUMENTS_KEY = "_raw"


def decode_arguments(raw: Any) -> tuple[dict[str, Any], str | None]:
    """Arguments as an object, and a problem description when they are not a JSON object (then
    the arguments are ``{"_raw": <the text>}``)."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}, None
    if isinstance(raw, dict):
        return raw, None
    if not isinstance(raw, str):
        return {RAW_ARGUMENTS_KEY: json.dumps(raw, ensure_ascii=False)}, "the arguments are not a JSON object"
    try:
        value = json.loads(raw)
    except ValueError as exc:
        detail = f"{exc.msg} at position {exc.pos}" if isinstance(exc, json.JSONDecodeError) else str(exc)
        return {RAW_ARGUMENTS_KEY: raw}, f"the arguments are not valid JSON ({detail})"
    if not isinstance(value, dict):
        return {RAW_ARGUMENTS_KEY: raw}, "the arguments are not a JSON object"
    return value, None


def make_tool_call(name: str, raw_arguments: Any, call_id: str | None = None) -> ToolCall:
    """A ToolCall from wire arguments (a JSON string or an object); bad arguments are flagged."""
    arguments, problem = decode_arguments(raw_arguments)
    call = ToolCall(name, arguments, call_id or new_call_id())
    if problem:
        call.arguments_error = problem  # type: ignore[attr-defined]  # see argument_error()
    return call


def argument_error(call: ToolCall) -> str | None:
    """Why a tool call's arguments could not be decoded (None when they are fine): the agent should
    return this to the model as an error result instead of running the tool."""
    problem = getattr(call, "arguments_error", None) or getattr(call, "parse_error", None)
    if problem is None and set(call.arguments) == {RAW_ARGUMENTS_KEY} and isinstance(call.arguments[RAW_ARGUMENTS_KEY], str):
        problem = "the arguments are not a JSON object"
    if problem is None:
        return None
    raw = call.arguments.get(RAW_ARGUMENTS_KEY, "")
    return f"{problem}; tool {call.name!r} was not run. Send the arguments again as one JSON object. Received: {raw[:500]}"


def encode_arguments(call: ToolCall) -> str:
    """Arguments as a JSON string for wire formats that want one (a flagged call's raw text is sent
    back as the model wrote it)."""
    if set(call.arguments) == {RAW_ARGUMENTS_KEY} and isinstance(call.arguments[RAW_ARGUMENTS_KEY], str):
        return call.arguments[RAW_ARGUMENTS_KEY]
    return _ARGUMENTS_JSON(call.arguments)
