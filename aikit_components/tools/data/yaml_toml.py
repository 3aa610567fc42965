"""YAML and TOML in and out."""

from __future__ import annotations

import re
import tomllib
from typing import Any

import tomli_w
import yaml

from ...errors import InvalidArgument
from ..base import ToolContext, tool
from .common import jsonable, offload, read_text_input, syntax_error, too_deep

_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_YAML_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _parse_yaml_text(text: str, source: str, all_documents: bool) -> Any:
    try:
        if all_documents:
            value: Any = list(yaml.load_all(text, Loader=_YAML_LOADER))
        else:
            value = yaml.load(text, Loader=_YAML_LOADER)
    except yaml.MarkedYAMLError as exc:
        reason = "; ".join(part for part in (exc.context, exc.problem) if part) or "syntax error"
        if "expected a single document" in reason:
            reason += " (pass all_documents=true to get every document as a list)"
        if "constructor" in reason:
            reason += " (only plain YAML is accepted: tags that build objects are refused)"
        mark = exc.problem_mark or exc.context_mark
        if mark is not None:
            raise syntax_error("YAML", source, reason, mark.line + 1, mark.column + 1, text) from None
        raise InvalidArgument(f"invalid YAML in {source}: {reason}", details={"source": source}) from None
    except yaml.YAMLError as exc:
        raise InvalidArgument(f"invalid YAML in {source}: {exc}", details={"source": source}) from None
    except RecursionError:
        raise too_deep(source) from None
    return jsonable(value, source)


@tool(category="data", security="read", examples=[
    {"args": {"text": "name: aikit\nversion: 1\ntags: [lua, ai]\n"},
     "result": {"name": "aikit", "version": 1, "tags": ["lua", "ai"]}},
    {"args": {"text": "a: 1\n---\na: 2\n", "all_documents": True}, "result": [{"a": 1}, {"a": 2}]},
])
async def parse_yaml(ctx: ToolContext, text: str | None = None, path: str | None = None,
                     all_documents: bool = False) -> Any:
    """Parse YAML (inline or from a file) safely: plain data only, no object-building tags.

    Args:
        text: The YAML text itself (give this or `path`).
        path: A YAML file to read, relative to the working directory (give this or `text`).
        all_documents: Parse every `---`-separated document and return them as a list.

    Returns:
        The parsed value (dates become ISO 8601 strings), or a list of documents with all_documents.
    """
    content, source = await read_text_input(ctx, text, path, "YAML")
    return await offload(lambda: _parse_yaml_text(content, source, all_documents), len(content))


@tool(category="data", security="safe", examples=[
    {"args": {"data": {"name": "aikit", "tags": ["lua", "ai"]}}, "result": "name: aikit\ntags:\n- lua\n- ai\n"},
])
def to_yaml(data: Any, sort_keys: bool = False) -> str:
    """Serialise a value as YAML text (block style).

    Args:
        data: The value to serialise (table, list, string, number, boolean).
        sort_keys: Sort mapping keys alphabetically instead of keeping their order.

    Returns:
        The YAML text.
    """
    try:
        return yaml.dump(data, Dumper=_YAML_DUMPER, sort_keys=sort_keys, allow_unicode=True, default_flow_style=False)
    except yaml.YAMLError as exc:
        raise InvalidArgument(f"data cannot be written as YAML: {exc}; use tables, lists, strings, numbers and "
                              "booleans only") from None
    except TypeError as exc:
        raise InvalidArgument(f"data cannot be written as YAML: {exc}") from None
    except RecursionError:
        raise too_deep("data") from None


# ============================================================================ TOML
_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)")


def _parse_toml_text(text: str, source: str) -> dict[str, Any]:
    try:
        value = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = _TOML_POSITION.search(message)
        if found:
            reason = _TOML_POSITION.sub("", message).strip()
            raise syntax_error("TOML", source, reason, int(found.group(1)), int(found.group(2)), text) from None
        reason = message.replace("(at end of document)", "").strip()
        lines = text.splitlines() or [""]
        raise syntax_error("TOML", source, f"{reason} (detected at the end of the document)", len(lines),
                            len(lines[-1]) + 1, text) from None
    except RecursionError:
        raise too_deep(source) from None
    return jsonable(value, source)


@tool(category="data", security="read", examples=[
    {"args": {"text": 'title = "aikit"\n[server]\nport = 8080\n'}, "result": {"title": "aikit", "server": {"port": 8080}}},
])
async def parse_toml(ctx: ToolContext, text: str | None = None, path: str | None = None) -> dict[str, Any]:
    """Parse TOML (inline or from a file) into a table.

    Args:
        text: The TOML text itself (give this or `path`).
        path: A TOML file to read, relative to the working directory (give this or `text`).

    Returns:
        The parsed table; dates and times become ISO 8601 strings.
    """
    content, source = await read_text_input(ctx, text, path, "TOML")
    return await offload(lambda: _parse_toml_text(content, source), len(content))


def _toml_nulls(value: Any, path: str, found: list[str]) -> None:
    if len(found) >= 10:
        return
    if value is None:
        found.append(path or "(top level)")
    elif isinstance(value, dict):
        for k, v in value.items():
            _toml_nulls(v, f"{path}.{k}" if path else str(k), found)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _toml_nulls(v, f"{path}[{i + 1}]", found)


@tool(category="data", security="safe", examples=[
    {"args": {"data": {"title": "aikit", "server": {"port": 8080}}}, "result": 'title = "aikit"\n\n[server]\nport = 8080\n'},
])
def to_toml(data: dict[str, Any]) -> str:
    """Serialise a table as TOML text.

    Args:
        data: The table to serialise; TOML has no null, so every value must be set.

    Returns:
        The TOML text.
    """
    nulls: list[str] = []
    _toml_nulls(data, "", nulls)
    if nulls:
        raise InvalidArgument(f"TOML has no null value: remove or set {', '.join(nulls)}", details={"paths": nulls})
    try:
        return tomli_w.dumps(data)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"data cannot be written as TOML: {exc}; use string keys and tables, lists, strings, "
                              "numbers, booleans") from None
    except RecursionError:
        raise too_deep("data") from None
