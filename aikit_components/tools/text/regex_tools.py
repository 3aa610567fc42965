"""Regular expressions with a timeout (a catastrophic pattern cannot hang the caller)."""

from __future__ import annotations

import time
from typing import Any, Literal

from ...errors import InvalidArgument, ResourceExhausted, Timeout
from ..base import tool
from .common import (
    HAS_TIMEOUT,
    MAX_MATCHES,
    MAX_PATTERN,
    MAX_REGEX_TEXT,
    REGEX_TIMEOUT_S,
    check_length,
    re_engine,
)

_FLAGS = {"i": re_engine.IGNORECASE, "m": re_engine.MULTILINE, "s": re_engine.DOTALL, "x": re_engine.VERBOSE}


def _compile_regex(pattern: str, flags: list[str] | None) -> Any:
    check_length(pattern, MAX_PATTERN, "pattern")
    bits = 0
    for flag in flags or []:
        bits |= _FLAGS[flag]
    try:
        return re_engine.compile(pattern, bits)
    except re_engine.error as exc:
        pos = exc.pos if exc.pos is not None else 0
        caret = " " * pos + "^"
        raise InvalidArgument(
            f"invalid regular expression at position {pos}: {exc.msg}\n    {pattern}\n    {caret}",
            details={"position": pos, "reason": exc.msg, "pattern": pattern},
        ) from None
    except (OverflowError, RecursionError) as exc:
        raise InvalidArgument(f"regular expression too large or nested too deeply: {exc}") from None


def _match_info(m: Any) -> dict[str, Any]:
    return {"match": m.group(0), "start": m.start(), "end": m.end(), "groups": list(m.groups()),
            "named": m.groupdict()}


@tool(name="regex", category="text", security="safe", examples=[
    {"args": {"pattern": r"(\w+)@(\w+)\.com", "text": "ada@math.com, alan@enigma.com", "mode": "findall"},
     "result": [["ada", "math"], ["alan", "enigma"]]},
    {"args": {"pattern": r"\d+", "text": "a1b22", "mode": "sub", "replacement": "#"},
     "result": {"text": "a#b#", "count": 2}},
])
def regex_tool(pattern: str, text: str, mode: Literal["search", "findall", "sub", "split"] = "search",
               replacement: str | None = None, flags: list[Literal["i", "m", "s", "x"]] | None = None,
               count: int = 0) -> Any:
    """Search, find all, substitute or split with a regular expression (Python syntax).

    Args:
        pattern: The regular expression, e.g. "(\\d+)-(\\d+)".
        text: The text to work on.
        mode: 'search' (first match), 'findall' (every match), 'sub' (replace), 'split'.
        replacement: The replacement for 'sub'; \\1 or \\g<name> insert groups.
        flags: Any of "i" (ignore case), "m" (^ and $ per line), "s" (. matches newlines), "x" (verbose).
        count: For 'sub' the most replacements, for 'split' the most splits (0: no limit).

    Returns:
        search: `{match, start, end, groups, named}` or nil when nothing matches; findall: a list of
        matches (a list of groups per match when the pattern has several groups); sub: `{text, count}`;
        split: a list of strings.
    """
    check_length(text, MAX_REGEX_TEXT, "text")
    if count < 0:
        raise InvalidArgument(f"count must be 0 or more, got {count}")
    compiled = _compile_regex(pattern, flags)
    timeout = {"timeout": REGEX_TIMEOUT_S, "concurrent": True} if HAS_TIMEOUT else {}
    try:
        if mode == "search":
            found = compiled.search(text, **timeout)
            return _match_info(found) if found else None
        if mode == "findall":
            results: list[Any] = []
            deadline = time.monotonic() + REGEX_TIMEOUT_S
            for m in compiled.finditer(text, **timeout):
                if len(results) >= MAX_MATCHES:
                    raise ResourceExhausted(f"more than {MAX_MATCHES:,} matches; narrow the pattern")
                if time.monotonic() > deadline:
                    raise TimeoutError
                groups = m.groups()
                results.append(m.group(0) if not groups else groups[0] if len(groups) == 1 else list(groups))
            return results
        if mode == "sub":
            if replacement is None:
                raise InvalidArgument("mode 'sub' needs a `replacement` (use \"\" to delete the matches)")
            try:
                new_text, n = compiled.subn(replacement, text, count=count, **timeout)
            except (re_engine.error, IndexError) as exc:
                raise InvalidArgument(f"invalid replacement {replacement!r}: {exc}; refer to groups as \\1 or "
                                      "\\g<name>", details={"replacement": replacement}) from None
            return {"text": new_text, "count": n}
        if mode == "split":
            parts = compiled.split(text, maxsplit=count, **timeout)
            if len(parts) > MAX_MATCHES:
                raise ResourceExhausted(f"more than {MAX_MATCHES:,} pieces; narrow the pattern")
            return parts
    except TimeoutError:
        raise Timeout(f"the regular expression ran longer than {REGEX_TIMEOUT_S:g} s on this text (catastrophic "
                      "backtracking?); avoid nested quantifiers such as (a+)+ or (a|aa)*, or anchor the pattern",
                      details={"pattern": pattern, "timeout_s": REGEX_TIMEOUT_S}) from None
    raise InvalidArgument(f"unknown mode {mode!r}; use search, findall, sub or split")  # pragma: no cover
