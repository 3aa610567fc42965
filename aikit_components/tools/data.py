"""Data tools: JSON, YAML, TOML and XML in and out, JSONPath queries, JSON Schema validation, and
CSV profiling, filtering, conversion and cleaning.

Parsers take their input inline (``text``) or from a file (``path``, checked against the security
policy): exactly one of the two. Those tools are ``async`` so that file reads and big inputs stay
off the caller's thread (inputs above ``OFFLOAD_CHARS`` are parsed in a worker thread). Writers,
queries and validation work on values already in memory and are plain functions.

Results are JSON-like (dicts, lists, strings, numbers, booleans, None): YAML and TOML dates become
ISO 8601 strings, YAML binary becomes base64 text. A parse error is an ``InvalidArgument`` carrying
the line and column (``details["line"]``, ``details["column"]``) and an excerpt of the bad line.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import datetime as dt
import io
import json
import math
import os
import re
import stat
import statistics
import tomllib
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, TypeVar

import defusedxml.ElementTree as DefusedET
import tomli_w
import yaml
from defusedxml import DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden, NotSupportedError
from jsonpath_ng.exceptions import JSONPathError
from jsonpath_ng.ext import parse as _jsonpath_parse

from ..errors import AikitError, InvalidArgument, NotFound, ResourceExhausted, error_from_exception
from .base import Tool, ToolContext, tool

MAX_INPUT_BYTES = 20 * 1024 * 1024  # per input, inline or file; tools.max_input_bytes overrides
OFFLOAD_CHARS = 256 * 1024  # inputs larger than this are parsed in a worker thread
MAX_NODES = 1_000_000  # values a parsed document may expand to (YAML alias bombs)
MAX_DEPTH = 500  # nesting levels of parsed or written data
MAX_SCHEMA_ERRORS = 1000
MAX_QUERY_MATCHES = 100_000

_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_YAML_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

T = TypeVar("T")


# ============================================================================ shared helpers
def _max_input(ctx: ToolContext) -> int:
    try:
        return int(ctx.setting("tools.max_input_bytes", MAX_INPUT_BYTES))
    except (TypeError, ValueError):
        return MAX_INPUT_BYTES


def _one_of(kind: str, **given: Any) -> str:
    """The name of the one input that was given; InvalidArgument unless exactly one was."""
    present = [name for name, value in given.items() if value is not None]
    if len(present) != 1:
        names = " or ".join(f"`{n}`" for n in given)
        got = " and ".join(f"`{n}`" for n in present) or "neither"
        raise InvalidArgument(
            f"give exactly one of {names} for the {kind} input (`text`: the content itself, `path`: a file to read); "
            f"got {got}",
            details={"given": present},
        )
    return present[0]


async def _read_text(ctx: ToolContext, text: str | None, path: str | None, kind: str) -> tuple[str, str]:
    """(content, source label) from inline ``text`` or the file at ``path`` (policy-checked)."""
    _one_of(kind, text=text, path=path)
    limit = _max_input(ctx)
    if text is not None:
        if len(text) > limit:
            raise ResourceExhausted(
                f"the {kind} text is {len(text):,} characters, over the {limit:,} limit of data tools; "
                "split it or raise tools.max_input_bytes in aikit.toml",
                details={"limit": limit, "size": len(text)},
            )
        return text, "text"
    assert path is not None
    resolved = ctx.policy.check_path(path)
    content = await asyncio.to_thread(_read_file, resolved, path, limit)
    return content, path


def _read_file(resolved: Path, shown: str, limit: int) -> str:
    try:
        info = resolved.stat()
        if stat.S_ISDIR(info.st_mode):
            raise InvalidArgument(f"{shown!r} is a directory; give the path of a file", details={"path": str(resolved)})
        if not stat.S_ISREG(info.st_mode):
            raise InvalidArgument(f"{shown!r} is not a regular file (a device, pipe or socket); give a file path",
                                  details={"path": str(resolved)})
        if info.st_size > limit:
            raise ResourceExhausted(
                f"{shown!r} is {info.st_size:,} bytes, over the {limit:,}-byte limit of data tools; "
                "split the file or raise tools.max_input_bytes in aikit.toml",
                details={"limit": limit, "size": info.st_size, "path": str(resolved)},
            )
        with open(resolved, "rb") as fh:
            raw = fh.read(limit + 1)
    except AikitError:
        raise
    except FileNotFoundError:
        raise NotFound(
            f"no file {shown!r} (resolved to {resolved}); check the name — relative paths start at the working "
            f"directory {os.getcwd()}",
            details={"path": str(resolved)},
        ) from None
    except OSError as exc:
        raise error_from_exception(exc) from None
    if len(raw) > limit:
        raise ResourceExhausted(f"{shown!r} is over the {limit:,}-byte limit of data tools; split the file or raise "
                                "tools.max_input_bytes in aikit.toml", details={"limit": limit, "path": str(resolved)})
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidArgument(
            f"{shown!r} is not UTF-8 text (invalid byte 0x{raw[exc.start]:02x} at offset {exc.start}); re-save it as UTF-8",
            details={"path": str(resolved), "offset": exc.start},
        ) from None


async def _compute(fn: Callable[[], T], size: int) -> T:
    """Run ``fn`` here for small inputs, in a worker thread for big ones (keeps the loop responsive)."""
    if size > OFFLOAD_CHARS:
        return await asyncio.to_thread(fn)
    return fn()


def _excerpt(text: str, line: int, column: int) -> str:
    lines = text.splitlines()
    if not 1 <= line <= len(lines):
        return ""
    source = lines[line - 1].expandtabs(1)
    start = max(0, column - 1 - 50)
    snippet = source[start:start + 100]
    caret = " " * max(0, column - 1 - start) + "^"
    return f"\n    {snippet}\n    {caret}"


def _syntax_error(fmt: str, source: str, reason: str, line: int, column: int, text: str) -> InvalidArgument:
    return InvalidArgument(
        f"invalid {fmt} in {source} at line {line}, column {column}: {reason}{_excerpt(text, line, column)}",
        details={"format": fmt, "source": source, "line": line, "column": column, "reason": reason},
    )


def _too_deep(source: str) -> InvalidArgument:
    return InvalidArgument(f"the data in {source} is nested more than {MAX_DEPTH} levels deep; flatten it",
                           details={"source": source, "max_depth": MAX_DEPTH})


def _plain_key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    if isinstance(key, (dt.date, dt.time)):
        return key.isoformat()
    return str(key)


def _jsonable(value: Any, source: str, max_nodes: int = MAX_NODES) -> Any:
    """A JSON-like copy of a parsed YAML/TOML value: dates as ISO strings, bytes as base64, string keys.
    Raises on cycles (recursive YAML anchors), excessive nesting and alias bombs."""
    count = 0
    active: set[int] = set()

    def walk(v: Any, depth: int) -> Any:
        nonlocal count
        count += 1
        if count > max_nodes:
            raise ResourceExhausted(
                f"the data in {source} expands to more than {max_nodes:,} values (an anchor/alias 'bomb'?); "
                "reduce the document or its aliases",
                details={"source": source, "max_nodes": max_nodes},
            )
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, (dict, list, tuple, set, frozenset)):
            if depth >= MAX_DEPTH:
                raise _too_deep(source)
            marker = id(v)
            if marker in active:
                raise InvalidArgument(f"the data in {source} contains itself (a recursive anchor/alias); "
                                      "JSON-like values cannot be cyclic", details={"source": source})
            active.add(marker)
            try:
                if isinstance(v, dict):
                    return {_plain_key(k): walk(x, depth + 1) for k, x in v.items()}
                return [walk(x, depth + 1) for x in v]
            finally:
                active.discard(marker)
        if isinstance(v, (dt.date, dt.time)):
            return v.isoformat()
        if isinstance(v, (bytes, bytearray)):
            return base64.b64encode(bytes(v)).decode("ascii")
        return str(v)

    return walk(value, 0)


# ============================================================================ JSON
def _parse_json_text(text: str, source: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _syntax_error("JSON", source, exc.msg, exc.lineno, exc.colno, text) from None
    except RecursionError:
        raise _too_deep(source) from None
    except ValueError as exc:  # e.g. an integer with more than 4300 digits
        reason = "a number has too many digits; quote it as a string" if "digits" in str(exc) else str(exc)
        raise InvalidArgument(f"invalid JSON in {source}: {reason}", details={"source": source}) from None


@tool(category="data", security="read", examples=[
    {"args": {"text": '{"name": "aikit", "tags": ["lua", "ai"]}'}, "result": {"name": "aikit", "tags": ["lua", "ai"]}},
])
async def parse_json(ctx: ToolContext, text: str | None = None, path: str | None = None) -> Any:
    """Parse JSON text (inline or from a file) into a value.

    Args:
        text: The JSON text itself (give this or `path`).
        path: A JSON file to read, relative to the working directory (give this or `text`).

    Returns:
        The parsed value: object, array, string, number, boolean or null.
    """
    content, source = await _read_text(ctx, text, path, "JSON")
    return await _compute(lambda: _parse_json_text(content, source), len(content))


@tool(category="data", security="safe", examples=[
    {"args": {"data": {"b": 1, "a": [1, 2]}, "indent": 0, "sort_keys": True}, "result": '{"a":[1,2],"b":1}'},
])
def to_json(data: Any, indent: int = 2, sort_keys: bool = False) -> str:
    """Serialise a value as JSON text.

    Args:
        data: The value to serialise (table, list, string, number, boolean).
        indent: Spaces per nesting level; 0 writes compact single-line JSON.
        sort_keys: Sort object keys alphabetically.

    Returns:
        The JSON text (UTF-8 characters kept as they are, not escaped).
    """
    if not 0 <= indent <= 16:
        raise InvalidArgument(f"indent must be between 0 and 16, got {indent}")
    try:
        if indent == 0:
            return json.dumps(data, ensure_ascii=False, sort_keys=sort_keys, separators=(",", ":"), allow_nan=False)
        return json.dumps(data, ensure_ascii=False, sort_keys=sort_keys, indent=indent, allow_nan=False)
    except ValueError as exc:
        if "circular" in str(exc).lower():
            raise InvalidArgument("data contains itself (a cycle); JSON cannot represent it") from None
        raise InvalidArgument("data contains NaN or infinity, which JSON cannot represent; replace them "
                              "(for example with null or a string)") from None
    except TypeError as exc:
        hint = "; with sort_keys=true every key must be a string" if sort_keys and "not supported" in str(exc) else ""
        raise InvalidArgument(f"data cannot be written as JSON: {exc}{hint}") from None
    except RecursionError:
        raise _too_deep("data") from None


@lru_cache(maxsize=256)
def _compile_jsonpath(query: str) -> Any:
    return _jsonpath_parse(query)


def _match_path(match: Any) -> str:
    parts: list[str] = []
    node = match
    while node is not None:
        segment = node.path
        name = type(segment).__name__
        if name == "Index":  # jsonpath-ng >= 1.7 has `indices`, older versions `index`
            indices = getattr(segment, "indices", None) or (getattr(segment, "index", "?"),)
            parts.append("".join(f"[{i}]" for i in reversed(indices)))
        elif name == "Fields":
            for field_name in segment.fields:
                parts.append(f".{field_name}" if re.fullmatch(r"[A-Za-z_]\w*", field_name) else f"[{json.dumps(field_name)}]")
        node = node.context
    return "$" + "".join(reversed(parts))


@tool(category="data", security="safe", examples=[
    {"args": {"data": {"books": [{"title": "A", "price": 8}, {"title": "B", "price": 12}]},
              "query": "$.books[?(@.price < 10)].title"}, "result": ["A"]},
])
def json_query(data: Any, query: str, with_paths: bool = False) -> list[Any]:
    """Select values from JSON-like data with a JSONPath query.

    Supports `$.a.b`, `$..key` (recursive), `[0]`, `[*]`, `[1:3]`, filters such as
    `[?(@.price < 10)]`, `[?(@.name == "x")]`, and `.length()`.

    Args:
        data: The value to query (table/object or list).
        query: The JSONPath expression, starting with `$`.
        with_paths: Return `{path, value}` pairs instead of bare values.

    Returns:
        The list of matching values in document order (empty when nothing matches).
    """
    try:
        expression = _compile_jsonpath(query.strip())
    except (JSONPathError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise InvalidArgument(
            f"invalid JSONPath {query!r}: {exc}; write queries like $.store.book[0].title, $..price or "
            "$.items[?(@.price < 10)]", details={"query": query},
        ) from None
    try:
        matches = expression.find(data)
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
        raise InvalidArgument(f"JSONPath {query!r} cannot be applied to this data: {exc}",
                              details={"query": query}) from None
    except RecursionError:
        raise InvalidArgument("the data is nested too deeply for a JSONPath query") from None
    if len(matches) > MAX_QUERY_MATCHES:
        raise ResourceExhausted(f"JSONPath {query!r} matched {len(matches):,} values (limit {MAX_QUERY_MATCHES:,}); "
                                "narrow the query")
    if with_paths:
        return [{"path": _match_path(m), "value": m.value} for m in matches]
    return [m.value for m in matches]


# ============================================================================ YAML
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
            raise _syntax_error("YAML", source, reason, mark.line + 1, mark.column + 1, text) from None
        raise InvalidArgument(f"invalid YAML in {source}: {reason}", details={"source": source}) from None
    except yaml.YAMLError as exc:
        raise InvalidArgument(f"invalid YAML in {source}: {exc}", details={"source": source}) from None
    except RecursionError:
        raise _too_deep(source) from None
    return _jsonable(value, source)


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
    content, source = await _read_text(ctx, text, path, "YAML")
    return await _compute(lambda: _parse_yaml_text(content, source, all_documents), len(content))


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
        raise _too_deep("data") from None


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
            raise _syntax_error("TOML", source, reason, int(found.group(1)), int(found.group(2)), text) from None
        reason = message.replace("(at end of document)", "").strip()
        lines = text.splitlines() or [""]
        raise _syntax_error("TOML", source, f"{reason} (detected at the end of the document)", len(lines),
                            len(lines[-1]) + 1, text) from None
    except RecursionError:
        raise _too_deep(source) from None
    return _jsonable(value, source)


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
    content, source = await _read_text(ctx, text, path, "TOML")
    return await _compute(lambda: _parse_toml_text(content, source), len(content))


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
        raise _too_deep("data") from None


# ============================================================================ XML
_XML_POSITION = re.compile(r":\s*line \d+, column \d+\s*$")


def _xml_name(tag: str, strip_namespaces: bool) -> str:
    if strip_namespaces and tag.startswith("{"):
        return tag.rpartition("}")[2]
    return tag


def _xml_element(element: ET.Element, strip: bool, depth: int, source: str) -> Any:
    if depth >= MAX_DEPTH:
        raise _too_deep(source)
    node: dict[str, Any] = {}
    for key, value in element.attrib.items():
        node["@" + _xml_name(key, strip)] = value
    repeated: set[str] = set()
    pieces = [element.text]
    for child in element:
        if not isinstance(child.tag, str):  # comments, processing instructions
            pieces.append(child.tail)
            continue
        key = _xml_name(child.tag, strip)
        value = _xml_element(child, strip, depth + 1, source)
        if key in node:
            if key not in repeated:
                node[key] = [node[key]]
                repeated.add(key)
            node[key].append(value)
        else:
            node[key] = value
        pieces.append(child.tail)
    text = " ".join(p.strip() for p in pieces if p and p.strip())
    if not node:
        return text if text else None
    if text:
        node["#text"] = text
    return node


def _parse_xml_text(text: str, source: str, strip_namespaces: bool) -> dict[str, Any]:
    try:
        root = DefusedET.fromstring(text, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except EntitiesForbidden as exc:
        raise InvalidArgument(
            f"XML in {source} declares the entity {exc.name!r}: entity declarations are refused because they enable "
            "entity-expansion ('billion laughs') and external-file attacks; remove the <!ENTITY ...> declarations "
            "(or the whole <!DOCTYPE ...> block)",
            details={"source": source, "rule": "xml_entities", "entity": exc.name},
        ) from None
    except (ExternalReferenceForbidden, DTDForbidden, NotSupportedError) as exc:
        raise InvalidArgument(
            f"XML in {source} refers to external resources ({exc}); they are refused: remove the <!DOCTYPE ...> "
            "block or the external reference", details={"source": source, "rule": "xml_external"},
        ) from None
    except ET.ParseError as exc:
        line, column = exc.position
        reason = _XML_POSITION.sub("", str(exc)) or "syntax error"
        raise _syntax_error("XML", source, reason, line, column + 1, text) from None
    return {_xml_name(root.tag, strip_namespaces): _xml_element(root, strip_namespaces, 0, source)}


@tool(category="data", security="read", examples=[
    {"args": {"text": '<book id="7"><title>Dune</title><tag>sf</tag><tag>classic</tag></book>'},
     "result": {"book": {"@id": "7", "title": "Dune", "tag": ["sf", "classic"]}}},
])
async def parse_xml(ctx: ToolContext, text: str | None = None, path: str | None = None,
                    strip_namespaces: bool = False) -> dict[str, Any]:
    """Parse XML (inline or from a file) into nested tables, refusing entity declarations.

    Attributes become `@name` keys, text becomes `#text` (or the value itself for an element with
    neither attributes nor children), repeated child elements become lists.

    Args:
        text: The XML text itself (give this or `path`).
        path: An XML file to read, relative to the working directory (give this or `text`).
        strip_namespaces: Drop `{namespace-uri}` prefixes from element and attribute names.

    Returns:
        A table with one key, the root element's name.
    """
    content, source = await _read_text(ctx, text, path, "XML")
    return await _compute(lambda: _parse_xml_text(content, source, strip_namespaces), len(content))


# ============================================================================ JSON Schema
@tool(category="data", security="safe", examples=[
    {"args": {"data": {"name": "aikit", "port": "80"},
              "schema": {"type": "object", "required": ["name", "port"], "properties": {"port": {"type": "integer"}}}},
     "result": {"valid": False, "errors": [{"path": "$.port", "message": "'80' is not of type 'integer'",
                                             "keyword": "type", "schema_path": "properties/port/type"}]}},
])
def validate_schema(data: Any, schema: dict[str, Any]) -> dict[str, Any]:
    """Validate a value against a JSON Schema and list every error.

    The schema's `$schema` picks the draft (default 2020-12); `format` keywords are checked.
    Only references inside the schema (`#/$defs/...`) are resolved; nothing is fetched.

    Args:
        data: The value to validate.
        schema: The JSON Schema, as a table.

    Returns:
        `{valid, errors}` where each error is `{path, message, keyword, schema_path}`; `path` is a
        JSONPath such as `$.items[2].name`.
    """
    import jsonschema  # imported on first use: it takes about a second (its format checkers)

    try:
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(top level)"
        raise InvalidArgument(f"the schema itself is invalid at {where}: {exc.message}; fix the schema",
                              details={"schema_path": where}) from None
    except RecursionError:
        raise _too_deep("schema") from None
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
    errors: list[dict[str, Any]] = []
    truncated = False
    try:
        for err in validator.iter_errors(data):
            if len(errors) >= MAX_SCHEMA_ERRORS:
                truncated = True
                break
            errors.append({
                "path": err.json_path, "message": err.message, "keyword": err.validator,
                "schema_path": "/".join(str(p) for p in err.schema_path),
            })
    except RecursionError:
        raise InvalidArgument("validation recursed too deeply: the data is nested too deeply or the schema's $ref "
                              "loops without consuming data; fix the one at fault") from None
    except Exception as exc:  # referencing.exceptions.Unresolvable and friends
        if type(exc).__module__.startswith(("referencing", "jsonschema")):
            raise InvalidArgument(
                f"the schema cannot be applied: {exc}; only references inside the schema (#/$defs/...) are supported",
            ) from None
        raise
    errors.sort(key=lambda e: (e["path"], e["message"]))
    result: dict[str, Any] = {"valid": not errors, "errors": errors}
    if truncated:
        result["truncated"] = True
    return result


# ============================================================================ CSV
_DELIMITER_NAMES = {"comma": ",", "tab": "\t", "\\t": "\t", "semicolon": ";", "pipe": "|", "space": " "}


def _delimiter(text: str, delimiter: str) -> str:
    if delimiter.lower() == "auto":
        sample = "\n".join(text[:32768].splitlines()[:50])
        try:
            return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
        except csv.Error:
            return ","
    chosen = _DELIMITER_NAMES.get(delimiter.lower(), delimiter)
    if len(chosen) != 1 or chosen in "\"\r\n":
        raise InvalidArgument(
            f"delimiter must be one character (or 'auto', 'comma', 'tab', 'semicolon', 'pipe'), got {delimiter!r}",
            details={"delimiter": delimiter},
        )
    return chosen


@dataclass
class _Table:
    columns: list[str]
    rows: list[list[str]]
    lines: list[int]
    delimiter: str
    ragged: list[dict[str, int]] = field(default_factory=list)
    header_problems: list[str] = field(default_factory=list)


def _header(names: list[str]) -> tuple[list[str], list[str]]:
    columns: list[str] = []
    problems: list[str] = []
    seen: Counter[str] = Counter()
    for i, raw in enumerate(names):
        name = raw.strip()
        if not name:
            name = f"column{i + 1}"
            problems.append(f"column {i + 1} has no name (called {name!r})")
        seen[name] += 1
        if seen[name] > 1:
            renamed = f"{name}_{seen[name]}"
            problems.append(f"column name {name!r} is repeated (the copy is called {renamed!r})")
            name = renamed
        columns.append(name)
    return columns, problems


def _parse_csv(text: str, source: str, delimiter: str, header: bool) -> _Table:
    delim = _delimiter(text, delimiter)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim, strict=True)
    raw_rows: list[list[str]] = []
    lines: list[int] = []
    try:
        for row in reader:
            if row:
                raw_rows.append(row)
                lines.append(reader.line_num)
    except csv.Error as exc:
        raise InvalidArgument(
            f"invalid CSV in {source} at line {reader.line_num}: {exc}; check the quoting on that line "
            "(a quote inside a quoted field is written as two quotes)",
            details={"source": source, "line": reader.line_num, "reason": str(exc)},
        ) from None
    problems: list[str] = []
    if header:
        if raw_rows:
            columns, problems = _header(raw_rows[0])
            raw_rows, lines = raw_rows[1:], lines[1:]
        else:
            columns = []
    else:
        width = max((len(r) for r in raw_rows), default=0)
        columns = [f"column{i + 1}" for i in range(width)]
    table = _Table(columns, [], lines, delim, header_problems=problems)
    width = len(columns)
    for row, line in zip(raw_rows, lines):
        if len(row) != width:
            table.ragged.append({"line": line, "fields": len(row), "expected": width})
            row = (row + [""] * width)[:width]
        table.rows.append(row)
    return table


async def _load_table(ctx: ToolContext, text: str | None, path: str | None, delimiter: str, header: bool) -> _Table:
    content, source = await _read_text(ctx, text, path, "CSV")
    return await _compute(lambda: _parse_csv(content, source, delimiter, header), len(content))


_INT = re.compile(r"[+-]?(?:0|[1-9]\d{0,300})")
_FLOAT = re.compile(r"[+-]?(?:\d+\.\d*|\.\d+|\d+(?=[eE]))(?:[eE][+-]?\d+)?")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}.*")


def _typed(raw: str) -> Any:
    """The value a CSV cell stands for: None (empty), int, float, bool or the string itself.
    Integers with leading zeros (zip codes, ids) stay strings."""
    s = raw.strip()
    if not s:
        return None
    first = s[0]
    if first.isdigit() or first in "+-.":
        if _INT.fullmatch(s):
            return int(s)
        if _FLOAT.fullmatch(s):
            number = float(s)
            if math.isfinite(number):
                return number
    low = s.lower()
    if low == "true":
        return True
    if low == "false":
        return False
    return raw


def _kind(value: Any, raw: str) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    s = raw.strip()
    if _DATE.fullmatch(s):
        try:
            dt.date.fromisoformat(s)
            return "date"
        except ValueError:
            return "string"
    if _DATETIME.fullmatch(s):
        try:
            dt.datetime.fromisoformat(s)
            return "datetime"
        except ValueError:
            return "string"
    return "string"


def _round(x: float) -> float | int:
    if isinstance(x, float) and math.isfinite(x):
        return round(x, 6)
    return x


def _column_profile(name: str, raws: list[str]) -> dict[str, Any]:
    present = [r for r in raws if r.strip()]
    typed = [_typed(r) for r in present]
    kinds = Counter(_kind(v, r) for v, r in zip(typed, present))
    if not present:
        inferred = "empty"
    elif len(kinds) == 1:
        inferred = next(iter(kinds))
    elif set(kinds) <= {"integer", "number"}:
        inferred = "number"
    elif set(kinds) <= {"date", "datetime"}:
        inferred = "datetime"
    else:
        inferred = "string"
    distinct = Counter(r.strip() for r in present)
    samples: list[Any] = []
    for value, raw in zip(typed, present):
        if len(samples) >= 5:
            break
        if value not in samples:
            samples.append(value)
    info: dict[str, Any] = {
        "name": name, "type": inferred, "non_null": len(present), "nulls": len(raws) - len(present),
        "distinct": len(distinct), "samples": samples,
    }
    if len(kinds) > 1:
        info["type_counts"] = dict(kinds)
    if inferred in ("integer", "number"):
        numbers = [v for v in typed if isinstance(v, (int, float)) and not isinstance(v, bool)]
        info.update({
            "min": min(numbers), "max": max(numbers), "mean": _round(statistics.fmean(numbers)),
            "median": _round(statistics.median(numbers)), "sum": _round(math.fsum(numbers)),
            "stdev": _round(statistics.pstdev(numbers)) if len(numbers) > 1 else 0.0,
        })
    elif inferred in ("date", "datetime"):
        stripped = sorted(r.strip() for r in present)
        info.update({"min": stripped[0], "max": stripped[-1]})
    elif inferred in ("string", "boolean"):
        lengths = [len(r.strip()) for r in present]
        if inferred == "string":
            info.update({"min_length": min(lengths), "max_length": max(lengths)})
        info["top_values"] = [{"value": v, "count": c} for v, c in distinct.most_common(5)]
    return info


def _profile(table: _Table) -> dict[str, Any]:
    columns = [_column_profile(name, [row[i] for row in table.rows]) for i, name in enumerate(table.columns)]
    result: dict[str, Any] = {
        "row_count": len(table.rows), "column_count": len(table.columns),
        "delimiter": table.delimiter, "columns": columns,
    }
    if table.ragged:
        result["ragged_rows"] = len(table.ragged)
    return result


_OPS = ("eq", "ne", "lt", "le", "gt", "ge", "contains", "in")
_OP_ALIASES = {"==": "eq", "=": "eq", "!=": "ne", "~=": "ne", "<": "lt", "<=": "le", ">": "gt", ">=": "ge"}


def _compile_where(where: dict[str, Any] | None, columns: list[str]) -> list[tuple[int, str, Any]]:
    conditions: list[tuple[int, str, Any]] = []
    problems: list[str] = []
    for name, cond in (where or {}).items():
        if name not in columns:
            problems.append(f"unknown column {name!r} (columns: {', '.join(columns) or 'none'})")
            continue
        index = columns.index(name)
        if isinstance(cond, dict):
            for op, value in cond.items():
                canonical = _OP_ALIASES.get(op, op)
                if canonical not in _OPS:
                    problems.append(f"{name}: unknown operator {op!r} (use one of {', '.join(_OPS)})")
                    continue
                if canonical == "in":
                    if value == {}:
                        value = []
                    if not isinstance(value, (list, tuple)):
                        problems.append(f"{name}: 'in' needs a list of values, got {type(value).__name__}")
                        continue
                conditions.append((index, canonical, _condition_value(value)))
        elif isinstance(cond, list):
            conditions.append((index, "in", [_condition_value(v) for v in cond]))
        else:
            conditions.append((index, "eq", _condition_value(cond)))
    if problems:
        raise InvalidArgument("invalid `where`: " + "; ".join(problems), details={"problems": problems})
    return conditions


def _condition_value(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_condition_value(v) for v in value]
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _text_of(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _equal(raw: str, typed: Any, value: Any) -> bool:
    if value is None:
        return typed is None
    if isinstance(value, bool) or isinstance(typed, bool):
        return typed is value or raw.strip().lower() == _text_of(value).lower()
    if _is_number(value) and _is_number(typed):
        return typed == value
    return raw.strip() == _text_of(value)


def _test(raw: str, typed: Any, op: str, value: Any) -> bool:
    if op == "eq":
        return _equal(raw, typed, value)
    if op == "ne":
        return not _equal(raw, typed, value)
    if op == "in":
        return any(_equal(raw, typed, v) for v in value)
    if op == "contains":
        return _text_of(value) in raw
    if typed is None:
        return False
    other = _typed(value) if isinstance(value, str) else value
    if _is_number(typed) and _is_number(other):
        a, b = typed, other
    elif isinstance(value, str):
        a, b = raw.strip(), value
    else:
        return False
    return {"lt": a < b, "le": a <= b, "gt": a > b, "ge": a >= b}[op]


def _select_columns(table: _Table, columns: list[str] | None) -> list[int]:
    if columns is None:
        return list(range(len(table.columns)))
    unknown = [c for c in columns if c not in table.columns]
    if unknown:
        raise InvalidArgument(f"unknown column(s) {', '.join(map(repr, unknown))}; the CSV has "
                              f"{', '.join(table.columns) or 'no columns'}", details={"unknown": unknown})
    return [table.columns.index(c) for c in columns]


def _check_limit(limit: int | None) -> int | None:
    if limit is None:
        return None
    if limit < 0:
        raise InvalidArgument(f"limit must be 0 or more, got {limit}")
    return int(limit)


def _filter(table: _Table, where: dict[str, Any] | None, columns: list[str] | None, limit: int | None,
            infer_types: bool) -> dict[str, Any]:
    conditions = _compile_where(where, table.columns)
    selected = _select_columns(table, columns)
    limit = _check_limit(limit)
    names = [table.columns[i] for i in selected]
    rows: list[dict[str, Any]] = []
    matched = 0
    for row in table.rows:
        typed_cache: dict[int, Any] = {}
        ok = True
        for index, op, value in conditions:
            if index not in typed_cache:
                typed_cache[index] = _typed(row[index])
            if not _test(row[index], typed_cache[index], op, value):
                ok = False
                break
        if not ok:
            continue
        matched += 1
        if limit is None or len(rows) < limit:
            rows.append({n: (_typed(row[i]) if infer_types else row[i]) for n, i in zip(names, selected)})
    return {"columns": names, "rows": rows, "count": len(rows), "matched": matched}


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _records_in(data: Any) -> tuple[list[str], list[dict[str, Any]]]:
    """(columns, records) from JSON records: a list of objects, or a list of rows whose first row names the columns."""
    if isinstance(data, str):
        data = _parse_json_text(data, "from_json")
    if isinstance(data, dict):
        data = [data] if data else []
    if not isinstance(data, list):
        raise InvalidArgument("from_json must be a list of records (tables with the same keys) or a list of rows "
                              f"whose first row holds the column names; got {type(data).__name__}")
    if not data:
        return [], []
    if all(isinstance(r, dict) for r in data):
        columns: dict[str, None] = {}
        for record in data:
            for key in record:
                columns.setdefault(str(key), None)
        return list(columns), [{str(k): v for k, v in r.items()} for r in data]
    if all(isinstance(r, list) for r in data):
        header = [_cell(c) for c in data[0]]
        names, _ = _header(header)
        records = [{n: (r[i] if i < len(r) else None) for i, n in enumerate(names)} for r in data[1:]]
        return names, records
    raise InvalidArgument("from_json mixes records (tables) and rows (lists); use one form for every item")


def _write_delimited(columns: list[str], rows: list[list[str]], delimiter: str) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buffer.getvalue()


def _convert(columns: list[str], records: list[dict[str, Any]] | None, table: _Table | None, to: str,
             infer_types: bool) -> Any:
    if to in ("csv", "tsv"):
        delim = "," if to == "csv" else "\t"
        if table is not None:
            return _write_delimited(table.columns, table.rows, delim)
        assert records is not None
        return _write_delimited(columns, [[_cell(r.get(c)) for c in columns] for r in records], delim)
    if records is None:
        assert table is not None
        records = [{c: (_typed(v) if infer_types else v) for c, v in zip(table.columns, row)} for row in table.rows]
    if to == "json":
        return json.dumps(records, ensure_ascii=False, indent=2, allow_nan=False)
    return records


_SNAKE = re.compile(r"[^0-9a-zA-Z]+")


def _normalize(table: _Table) -> tuple[_Table, dict[str, Any]]:
    snake = [(_SNAKE.sub("_", re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", c.strip())).strip("_").lower() or c)
             for c in table.columns]
    columns, _ = _header(snake)
    rows: list[list[str]] = []
    lines: list[int] = []
    blank = 0
    for row, line in zip(table.rows, table.lines):
        cells = [c.strip() for c in row]
        if not any(cells):
            blank += 1
            continue
        rows.append(cells)
        lines.append(line)
    renamed = {old: new for old, new in zip(table.columns, columns) if old != new}
    normalized = _Table(columns, rows, lines, table.delimiter, table.ragged, table.header_problems)
    return normalized, {"renamed": renamed, "removed_blank_rows": blank}


def _validate(table: _Table, max_problems: int = 200) -> dict[str, Any]:
    problems: list[dict[str, Any]] = []

    def add(severity: str, message: str, line: int | None = None, column: str | None = None) -> None:
        problems.append({"severity": severity, "line": line, "column": column, "message": message})

    if not table.columns:
        add("error", "the CSV is empty (no header row)")
    for text in table.header_problems:
        add("error", text, line=1)
    for info in table.ragged:
        add("error", f"row has {info['fields']} fields, the header has {info['expected']}", line=info["line"])
    for index, name in enumerate(table.columns):
        cells = [(row[index], line) for row, line in zip(table.rows, table.lines)]
        present = [(raw, line) for raw, line in cells if raw.strip()]
        if table.rows and not present:
            add("warning", "column is empty", column=name)
            continue
        numeric = [(raw, line) for raw, line in present if _is_number(_typed(raw))]
        if present and len(numeric) != len(present) and len(numeric) >= 0.8 * len(present):
            for raw, line in present:
                if not _is_number(_typed(raw)):
                    add("error", f"expected a number like the rest of the column, got {raw!r}", line=line, column=name)
    errors = sum(1 for p in problems if p["severity"] == "error")
    result: dict[str, Any] = {
        "valid": errors == 0, "row_count": len(table.rows), "column_count": len(table.columns),
        "errors": errors, "warnings": len(problems) - errors, "problems": problems[:max_problems],
    }
    if len(problems) > max_problems:
        result["truncated"] = True
    return result


@tool(category="data", security="read", examples=[
    {"args": {"text": "name,age\nAda,36\nAlan,41\n"},
     "result": {"row_count": 2, "column_count": 2, "delimiter": ",", "columns": [
         {"name": "name", "type": "string", "non_null": 2, "nulls": 0, "distinct": 2, "samples": ["Ada", "Alan"],
          "min_length": 3, "max_length": 4, "top_values": [{"value": "Ada", "count": 1}, {"value": "Alan", "count": 1}]},
         {"name": "age", "type": "integer", "non_null": 2, "nulls": 0, "distinct": 2, "samples": [36, 41],
          "min": 36, "max": 41, "mean": 38.5, "median": 38.5, "sum": 77.0, "stdev": 2.5}]}},
])
async def csv_profile(ctx: ToolContext, text: str | None = None, path: str | None = None, delimiter: str = "auto",
                      header: bool = True) -> dict[str, Any]:
    """Profile CSV data: per column the inferred type, counts, and statistics.

    Args:
        text: The CSV text itself (give this or `path`).
        path: A CSV file to read, relative to the working directory (give this or `text`).
        delimiter: The field separator: one character, 'tab', or 'auto' to detect it.
        header: Whether the first row names the columns (else they are column1, column2, ...).

    Returns:
        `{row_count, column_count, delimiter, columns}`; each column has name, type (integer, number,
        boolean, date, datetime, string or empty), non_null, nulls, distinct, samples, and min, max,
        mean, median, sum, stdev for numbers (min_length, max_length, top_values for strings).
    """
    table = await _load_table(ctx, text, path, delimiter, header)
    return await _compute(lambda: _profile(table), len(table.rows) * max(1, len(table.columns)) * 8)


@tool(category="data", security="read", examples=[
    {"args": {"text": "name,age\nAda,36\nAlan,41\nGrace,85\n", "where": {"age": {"gt": 40}}, "columns": ["name"]},
     "result": {"columns": ["name"], "rows": [{"name": "Alan"}, {"name": "Grace"}], "count": 2, "matched": 2}},
])
async def csv_filter(ctx: ToolContext, text: str | None = None, path: str | None = None,
                     where: dict[str, Any] | None = None, columns: list[str] | None = None, limit: int | None = None,
                     delimiter: str = "auto", header: bool = True, infer_types: bool = True) -> dict[str, Any]:
    """Select CSV rows matching conditions.

    `where` maps a column to a value (equality), a list (any of), or a table of operators:
    eq, ne, lt, le, gt, ge, contains, in (also ==, !=, <, <=, >, >=). All conditions must hold.
    Numbers compare numerically, other values as text (so ISO dates order correctly).

    Args:
        text: The CSV text itself (give this or `path`).
        path: A CSV file to read, relative to the working directory (give this or `text`).
        where: Conditions by column, e.g. {"age": {"ge": 18}, "city": "Paris"}; empty or absent keeps every row.
        columns: The columns to return, in this order (default: all).
        limit: The most rows to return (`matched` still counts them all).
        delimiter: The field separator: one character, 'tab', or 'auto' to detect it.
        header: Whether the first row names the columns (else they are column1, column2, ...).
        infer_types: Return numbers and booleans as such (empty cells as null) instead of raw text.

    Returns:
        `{columns, rows, count, matched}`: rows as tables keyed by column name.
    """
    table = await _load_table(ctx, text, path, delimiter, header)
    return await _compute(lambda: _filter(table, where, columns, limit, infer_types), len(table.rows) * 8)


@tool(category="data", security="read", examples=[
    {"args": {"text": "name,age\nAda,36\n", "to": "records"}, "result": [{"name": "Ada", "age": 36}]},
    {"args": {"from_json": [{"name": "Ada", "age": 36}], "to": "csv"}, "result": "name,age\nAda,36\n"},
])
async def csv_convert(ctx: ToolContext, text: str | None = None, path: str | None = None, from_json: Any = None,
                      to: Literal["json", "csv", "tsv", "records"] = "json", delimiter: str = "auto",
                      header: bool = True, infer_types: bool = True) -> Any:
    """Convert between CSV and JSON records (CSV <-> JSON, CSV <-> TSV).

    Args:
        text: CSV text to convert (give exactly one of `text`, `path`, `from_json`).
        path: A CSV file to convert, relative to the working directory.
        from_json: Records to convert: a list of tables (or its JSON text), or rows headed by the column names.
        to: The output: 'json' (JSON text), 'records' (a list of tables), 'csv' or 'tsv' (text).
        delimiter: The input CSV's field separator: one character, 'tab', or 'auto' to detect it.
        header: Whether the input CSV's first row names the columns.
        infer_types: Turn numeric and boolean cells into numbers and booleans in JSON output.

    Returns:
        A string for 'json', 'csv' and 'tsv'; a list of tables for 'records'.
    """
    _one_of("CSV", text=text, path=path, from_json=from_json)
    if from_json is not None:
        columns, records = _records_in(from_json)
        return _convert(columns, records, None, to, infer_types)
    table = await _load_table(ctx, text, path, delimiter, header)
    return await _compute(lambda: _convert(table.columns, None, table, to, infer_types), len(table.rows) * 8)


_Operation = Literal["profile", "statistics", "filter", "convert", "normalize", "validate"]


@tool(category="data", security="read", examples=[
    {"args": {"text": "Name , Age\n Ada ,36\n,\n", "operations": ["normalize", "validate"]},
     "result": {"normalize": {"columns": ["name", "age"], "rows": [{"name": "Ada", "age": 36}], "row_count": 1,
                              "renamed": {"Name": "name", "Age": "age"}, "removed_blank_rows": 1},
                "validate": {"valid": True, "row_count": 1, "column_count": 2, "errors": 0, "warnings": 0,
                             "problems": []}}},
])
async def csv_process(ctx: ToolContext, text: str | None = None, path: str | None = None,
                      operation: _Operation = "profile", operations: list[_Operation] | None = None,
                      where: dict[str, Any] | None = None, columns: list[str] | None = None,
                      limit: int | None = None, to: Literal["json", "csv", "tsv", "records"] = "records",
                      delimiter: str = "auto", header: bool = True) -> Any:
    """Run one or more CSV operations (the mission engine's `csv_process` step).

    Operations: profile / statistics (as csv_profile), filter (as csv_filter with `where`,
    `columns`, `limit`), convert (as csv_convert with `to`), normalize (trim cells, snake_case
    column names, drop blank rows), validate (header problems, ragged rows, non-numbers in
    numeric columns, empty columns). With `operations`, each runs in turn and a `normalize`
    earlier in the list cleans the data the later ones see.

    Args:
        text: The CSV text itself (give this or `path`).
        path: A CSV file to read, relative to the working directory (give this or `text`).
        operation: The single operation to run when `operations` is not given.
        operations: Several operations to run in order; the result is a table keyed by operation.
        where: Conditions for 'filter' (see csv_filter).
        columns: Columns to keep for 'filter'.
        limit: Most rows to return for 'filter'.
        to: Output form for 'convert': 'json', 'records', 'csv' or 'tsv'.
        delimiter: The field separator: one character, 'tab', or 'auto' to detect it.
        header: Whether the first row names the columns.

    Returns:
        The operation's result, or `{operation: result}` for each of `operations`.
    """
    if operations is not None and not operations:
        raise InvalidArgument("operations is empty; list at least one of profile, statistics, filter, convert, "
                              "normalize, validate")
    steps = list(operations) if operations else [operation]
    table = await _load_table(ctx, text, path, delimiter, header)

    def run() -> Any:
        current = table
        results: dict[str, Any] = {}
        for step in steps:
            if step in ("profile", "statistics"):
                results[step] = _profile(current)
            elif step == "filter":
                results[step] = _filter(current, where, columns, limit, True)
            elif step == "convert":
                results[step] = _convert(current.columns, None, current, to, True)
            elif step == "normalize":
                current, info = _normalize(current)
                records = [{c: _typed(v) for c, v in zip(current.columns, row)} for row in current.rows]
                results[step] = {"columns": current.columns, "rows": records, "row_count": len(records), **info}
            elif step == "validate":
                results[step] = _validate(current)
            else:  # pragma: no cover - the schema's enum stops this
                raise InvalidArgument(f"unknown operation {step!r}")
        return results if operations else results[steps[0]]

    return await _compute(run, len(table.rows) * 8 * len(steps))


TOOLS: list[Tool] = [
    parse_json, to_json, json_query, parse_yaml, to_yaml, parse_toml, to_toml, parse_xml, validate_schema,
    csv_profile, csv_filter, csv_convert, csv_process,
]

__all__ = ["TOOLS"]
