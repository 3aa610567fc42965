"""Conversions between MCP's wire shapes and aikit's: a server's tool listing into aikit
:class:`~aikit_components.tools.Tool` definitions, a ``CallToolResult`` into the value a tool call
returns (and ``isError`` into an :class:`~aikit_components.errors.AikitError`), and back the other
way for aikit's own server (an aikit result or error into a ``CallToolResult``).

A result made only of text is returned as that text (what an agent wants to read); a result with
structured content and text only is returned as the structured content; anything else (images,
resource links, embedded resources) is returned as ``{text, content, structured}`` where every
content block is a plain table and an image carries a ``display`` MIME bundle.
"""

from __future__ import annotations

import json
from typing import Any

import mcp_types as types

from ..errors import AikitError
from ..tools.schema import schema_problems

TOOL_ERROR = "tool_error"


def tool_schema(raw: Any) -> tuple[dict[str, Any] | None, list[str]]:
    """A server's ``inputSchema`` as an aikit parameter schema, or ``None`` with the problems that
    make it unusable (an object schema is required: arguments are named)."""
    if not isinstance(raw, dict):
        return None, [f"inputSchema must be an object, got {type(raw).__name__}"]
    schema = dict(raw)
    if schema.get("type", "object") != "object":
        return None, [f"inputSchema must describe an object (named arguments), got type {schema.get('type')!r}"]
    problems = schema_problems(schema)
    if problems:
        return None, problems
    schema.setdefault("type", "object")
    return schema, []


def security_of(tool: types.Tool) -> str:
    """The aikit security level of an MCP tool: ``read`` when the server says it only reads,
    else ``network`` (it runs in another process, possibly on another machine)."""
    annotations = tool.annotations
    if annotations is not None and annotations.read_only_hint:
        return "read"
    return "network"


def content_block(block: Any) -> dict[str, Any]:
    """One content block as a plain dict (``type`` first; images get a ``display`` bundle)."""
    data = block.model_dump(mode="json", by_alias=False, exclude_none=True)
    data.pop("meta", None)
    if data.get("type") == "image":
        mime = data.get("mime_type", "image/png")
        data["display"] = {mime: data.get("data", ""), "text/plain": f"<image {mime}>"}
    elif data.get("type") == "resource":
        resource = data.get("resource", {})
        data["uri"] = resource.get("uri")
    return data


def result_value(result: types.CallToolResult, server: str, tool: str) -> Any:
    """What an MCP tool call returns to aikit (see the module docstring); ``isError`` raises."""
    blocks = [content_block(block) for block in result.content]
    text = "\n".join(b["text"] for b in blocks if b.get("type") == "text")
    if result.is_error:
        raise AikitError(f"MCP tool {server}.{tool} failed: {text or 'the server gave no reason'}", code=TOOL_ERROR,
                         details={"server": server, "tool": tool, "content": blocks})
    only_text = all(b.get("type") == "text" for b in blocks)
    if result.structured_content is not None and only_text:
        return result.structured_content
    if only_text:
        return text
    value: dict[str, Any] = {"text": text, "content": blocks}
    if result.structured_content is not None:
        value["structured"] = result.structured_content
    return value


def size_of(value: Any) -> int:
    """The size in bytes of a result as JSON (how big a result is, for the size limit)."""
    return len(json.dumps(value, default=str, ensure_ascii=False).encode())


def to_call_result(value: Any) -> types.CallToolResult:
    """An aikit tool's result as a ``CallToolResult``: text for a string, JSON text plus
    structured content for a table."""
    if isinstance(value, str):
        return types.CallToolResult(content=[types.TextContent(type="text", text=value)])
    if value is None:
        return types.CallToolResult(content=[])
    encoded = json.dumps(value, default=str, ensure_ascii=False)
    structured = value if isinstance(value, dict) else {"result": value}
    return types.CallToolResult(content=[types.TextContent(type="text", text=encoded)], structured_content=structured)


def error_result(error: AikitError) -> types.CallToolResult:
    """An aikit error as an ``isError`` result: the message as text, the structured error as
    structured content (``{code, message, details}``)."""
    plain = json.loads(json.dumps(error.to_dict(), default=str))
    return types.CallToolResult(content=[types.TextContent(type="text", text=f"{error.code}: {error.message}")],
                                structured_content=plain, is_error=True)


__all__ = ["TOOL_ERROR", "content_block", "error_result", "result_value", "security_of", "size_of", "to_call_result",
           "tool_schema"]
