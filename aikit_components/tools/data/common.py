"""What the data tools share: size limits, reading inline text or a policy-checked file, parsing
big inputs off the caller's thread, parse-error excerpts, and converting parsed values to JSON-like data."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ...errors import (
    AikitError,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    error_from_exception,
)
from ..base import ToolContext

MAX_INPUT_BYTES = 20 * 1024 * 1024  # per input, inline or file; tools.max_input_bytes overrides
OFFLOAD_CHARS = 256 * 1024  # inputs larger than this are parsed in a worker thread
MAX_NODES = 1_000_000  # values a parsed document may expand to (YAML alias bombs)
MAX_DEPTH = 500  # nesting levels of parsed or written data
MAX_SCHEMA_ERRORS = 1000
MAX_QUERY_MATCHES = 100_000

T = TypeVar("T")


# ============================================================================ shared helpers
def _max_input(ctx: ToolContext) -> int:
    try:
        return int(ctx.setting("tools.max_input_bytes", MAX_INPUT_BYTES))
    except (TypeError, ValueError):
        return MAX_INPUT_BYTES


def one_of(kind: str, **given: Any) -> str:
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


async def read_text_input(ctx: ToolContext, text: str | None, path: str | None, kind: str) -> tuple[str, str]:
    """(content, source label) from inline ``text`` or the file at ``path`` (policy-checked)."""
    one_of(kind, text=text, path=path)
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


async def offload(fn: Callable[[], T], size: int) -> T:
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


def syntax_error(fmt: str, source: str, reason: str, line: int, column: int, text: str) -> InvalidArgument:
    """A parse error naming the format, source, line and column, with an excerpt of the bad line."""
    return InvalidArgument(
        f"invalid {fmt} in {source} at line {line}, column {column}: {reason}{_excerpt(text, line, column)}",
        details={"format": fmt, "source": source, "line": line, "column": column, "reason": reason},
    )


def too_deep(source: str) -> InvalidArgument:
    """The error for data nested more than ``MAX_DEPTH`` levels."""
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


def jsonable(value: Any, source: str, max_nodes: int = MAX_NODES) -> Any:
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
                raise too_deep(source)
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
