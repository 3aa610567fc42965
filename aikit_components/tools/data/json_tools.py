"""JSON in and out, and JSONPath queries."""

from __future__ import annotations

import json
import re
import time
from contextvars import ContextVar
from functools import lru_cache
from typing import Any

import jsonpath_ng.ext.filter as _jsonpath_filter
import regex
from jsonpath_ng.exceptions import JSONPathError
from jsonpath_ng.ext import parse as _jsonpath_parse

from ...errors import InvalidArgument, ResourceExhausted, Timeout
from ..base import ToolContext, tool
from .common import MAX_QUERY_MATCHES, offload, read_text_input, syntax_error, too_deep

QUERY_REGEX_TIMEOUT_S = 2.0  # all the =~ matches of one json_query call
_regex_deadline: ContextVar[float | None] = ContextVar("json_query_regex_deadline", default=None)


def _bounded_regex_match(value: Any, pattern: Any) -> bool:
    """jsonpath-ng's ``=~`` with the ``regex`` engine and the calling query's time budget instead of
    ``re`` (which a pattern such as ``(a|aa)+$`` would hang). Installed into jsonpath-ng's operator
    table below: the library looks the operator up there at match time."""
    if not isinstance(value, str):
        return False
    deadline = _regex_deadline.get() or time.monotonic() + QUERY_REGEX_TIMEOUT_S
    try:
        return regex.search(str(pattern), value, timeout=max(deadline - time.monotonic(), 0.001)) is not None
    except regex.error as exc:
        raise InvalidArgument(f"the =~ pattern {pattern!r} is not a valid regular expression: {exc}") from None
    except TimeoutError:
        raise Timeout(f"the =~ pattern {pattern!r} ran longer than {QUERY_REGEX_TIMEOUT_S:g} s (catastrophic "
                      "backtracking?); avoid nested quantifiers such as (a+)+, or anchor the pattern",
                      details={"pattern": str(pattern), "timeout_s": QUERY_REGEX_TIMEOUT_S}) from None


_jsonpath_filter.OPERATOR_MAP["=~"] = _bounded_regex_match


def parse_json_text(text: str, source: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise syntax_error("JSON", source, exc.msg, exc.lineno, exc.colno, text) from None
    except RecursionError:
        raise too_deep(source) from None
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
    content, source = await read_text_input(ctx, text, path, "JSON")
    return await offload(lambda: parse_json_text(content, source), len(content))


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
        raise too_deep("data") from None


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
                bare = re.fullmatch(r"[A-Za-z_]\w*", field_name)
                parts.append(f".{field_name}" if bare else f"[{json.dumps(field_name)}]")
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
    token = _regex_deadline.set(time.monotonic() + QUERY_REGEX_TIMEOUT_S)
    try:
        matches = expression.find(data)
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
        raise InvalidArgument(f"JSONPath {query!r} cannot be applied to this data: {exc}",
                              details={"query": query}) from None
    except RecursionError:
        raise InvalidArgument("the data is nested too deeply for a JSONPath query") from None
    finally:
        _regex_deadline.reset(token)
    if len(matches) > MAX_QUERY_MATCHES:
        raise ResourceExhausted(f"JSONPath {query!r} matched {len(matches):,} values (limit {MAX_QUERY_MATCHES:,}); "
                                "narrow the query")
    if with_paths:
        return [{"path": _match_path(m), "value": m.value} for m in matches]
    return [m.value for m in matches]
