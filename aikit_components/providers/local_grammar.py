"""Grammar-constrained decoding for the local model: llama.cpp GBNF grammars from JSON Schemas.

With a grammar, llama.cpp only samples tokens that keep the output inside it, so
- ``output_schema`` (a request's ``json_schema``): the answer is one JSON value matching the schema;
- tools: the answer is either plain text that does not start with ``{``, or exactly one call
  ``{"tool": "<an offered name>", "arguments": {...}}`` whose arguments match that tool's schema.
  A small base model still picks tools badly, but every call it makes parses and is valid.

The JSON-Schema-to-GBNF converter is llama-cpp-python's (``llama_cpp/llama_grammar.py``, pure
Python), loaded from its file so that the native library is never loaded into this process (the
model runs in the server subprocess). Without llama-cpp-python there is no grammar (None) and
the prompt alone asks for the format.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .messages import ToolCall, ToolSpec

__all__ = ["parse_constrained", "schema_grammar", "tool_call_schema", "tool_grammar"]

log = logging.getLogger("aikit.providers.local")

#: Text that is not a call: any first character but ``{`` and blanks, then anything.
_TEXT_RULES = 'root ::= call | text\ntext ::= [^{ \\t\\r\\n] [^\\x00]*\n'


@functools.cache
def _converter() -> Callable[..., str] | None:
    try:
        spec = importlib.util.find_spec("llama_cpp")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "llama_grammar.py"
    if not path.is_file():
        return None
    module_spec = importlib.util.spec_from_file_location("aikit_llama_grammar", path)
    if module_spec is None or module_spec.loader is None:
        return None
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - an incompatible version: decode without a grammar
        log.warning("cannot load llama.cpp's JSON-schema converter (%s); decoding without a grammar", exc)
        return None
    converter = getattr(module, "json_schema_to_gbnf", None)
    return converter if callable(converter) else None


def schema_grammar(schema: dict[str, Any]) -> str | None:
    """The GBNF grammar of one JSON value matching ``schema`` (None without the converter)."""
    convert = _converter()
    if convert is None:
        return None
    try:
        return str(convert(json.dumps(schema)))
    except Exception as exc:  # noqa: BLE001 - a schema feature the converter lacks: no grammar
        log.warning("cannot turn the JSON schema into a grammar (%s); decoding without one", exc)
        return None


def _arguments_schema(tool: ToolSpec) -> dict[str, Any]:
    params = tool.parameters if isinstance(tool.parameters, dict) and tool.parameters else {}
    return params if params.get("type") == "object" or "properties" in params else {"type": "object"}


def tool_call_schema(tools: Sequence[ToolSpec]) -> dict[str, Any]:
    """The JSON Schema of one call of one of ``tools``."""
    options = [{"type": "object",
                "properties": {"tool": {"const": tool.name}, "arguments": _arguments_schema(tool)},
                "required": ["tool", "arguments"], "additionalProperties": False} for tool in tools]
    return options[0] if len(options) == 1 else {"anyOf": options}


def tool_grammar(tools: Sequence[ToolSpec]) -> str | None:
    """Plain text, or exactly one valid call of an offered tool (None without the converter)."""
    calls = schema_grammar(tool_call_schema(tools))
    if calls is None:
        return None
    lines = calls.splitlines()
    renamed = ["call ::=" + line[len("root ::="):] if line.startswith("root ::=") else line for line in lines]
    if renamed == lines:
        return None  # not the converter output we know
    return "\n".join(renamed) + "\n" + _TEXT_RULES


def parse_constrained(text: str, tool_names: Sequence[str]) -> tuple[str, list[ToolCall]]:
    """``(text, calls)`` for output decoded with :func:`tool_grammar`: a call when it starts with
    ``{`` (the whole output), else plain text. Output that does not parse (cut off by
    ``max_tokens``) stays text."""
    stripped = text.strip()
    if not stripped.startswith("{"):
        return text, []
    try:
        value = json.loads(stripped, strict=False)  # the grammar lets raw newlines into strings
    except ValueError:
        return text, []
    if not isinstance(value, dict) or value.get("tool") not in tool_names or not isinstance(value.get("arguments"), dict):
        return text, []
    return "", [ToolCall(str(value["tool"]), dict(value["arguments"]))]
