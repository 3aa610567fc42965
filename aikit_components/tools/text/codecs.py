"""Diffs, hashes, base64 and UUIDs."""

from __future__ import annotations

import base64
import binascii
import difflib
import hashlib
import secrets
import threading
import time
import uuid as uuid_module
from collections.abc import Callable
from typing import Any, Literal

from ...errors import InvalidArgument, ResourceExhausted
from ..base import tool
from .common import MAX_DIFF_TEXT, MAX_NDIFF_LINES, MAX_TEXT, check_length


@tool(category="text", security="safe", examples=[
    {"args": {"a": "one\ntwo\nthree\n", "b": "one\n2\nthree\n", "context": 1},
     "result": {"diff": "--- a\n+++ b\n@@ -1,3 +1,3 @@\n one\n-two\n+2\n three\n", "changed": True,
                "added": 1, "removed": 1}},
])
def text_diff(a: str, b: str, context: int = 3, format: Literal["unified", "ndiff"] = "unified",
              from_label: str = "a", to_label: str = "b") -> dict[str, Any]:
    """Compare two texts line by line.

    Args:
        a: The original text.
        b: The changed text.
        context: Unchanged lines shown around each change (unified format).
        format: 'unified' (like `diff -u`) or 'ndiff' (every line, with ? hints inside changed lines).
        from_label: The name shown for `a` in a unified diff header.
        to_label: The name shown for `b` in a unified diff header.

    Returns:
        `{diff, changed, added, removed}`: the diff text (empty when equal) and changed-line counts.
    """
    check_length(a, MAX_DIFF_TEXT, "a")
    check_length(b, MAX_DIFF_TEXT, "b")
    if context < 0:
        raise InvalidArgument(f"context must be 0 or more, got {context}")
    old, new = a.splitlines(), b.splitlines()
    if format == "ndiff":
        if max(len(old), len(new)) > MAX_NDIFF_LINES:
            raise ResourceExhausted(f"ndiff compares at most {MAX_NDIFF_LINES:,} lines per text (it is quadratic); "
                                    "use format='unified' for longer texts")
        lines = [line.rstrip("\n") for line in difflib.ndiff(old, new)]  # its "?" hint lines end in \n
        added = sum(1 for line in lines if line.startswith("+ "))
        removed = sum(1 for line in lines if line.startswith("- "))
    else:
        lines = list(difflib.unified_diff(old, new, fromfile=from_label, tofile=to_label, n=context, lineterm=""))
        added = sum(1 for line in lines[2:] if line.startswith("+"))
        removed = sum(1 for line in lines[2:] if line.startswith("-"))
    diff = "\n".join(lines) + ("\n" if lines else "")
    # `changed` also catches differences splitlines() hides (a trailing newline, \r\n versus \n)
    return {"diff": diff, "changed": a != b, "added": added, "removed": removed}


_HASHES: dict[str, Callable[[bytes], Any]] = {
    "md5": lambda data: hashlib.md5(data, usedforsecurity=False),
    "sha1": lambda data: hashlib.sha1(data, usedforsecurity=False),
    "sha256": hashlib.sha256,
    "sha512": hashlib.sha512,
    "blake2b": hashlib.blake2b,
}


@tool(name="hash", category="text", security="safe", examples=[
    {"args": {"text": "hello"}, "result": "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"},
    {"args": {"text": "hello", "algorithm": "md5"}, "result": "5d41402abc4b2a76b9719d911017c592"},
])
def hash_text(text: str, algorithm: Literal["md5", "sha1", "sha256", "sha512", "blake2b"] = "sha256") -> str:
    """Hash text (UTF-8) and return the hex digest.

    Args:
        text: The text to hash.
        algorithm: One of md5, sha1, sha256, sha512, blake2b (md5 and sha1 are for checksums, not security).

    Returns:
        The lowercase hexadecimal digest.
    """
    check_length(text, MAX_TEXT, "text")
    return _HASHES[algorithm](text.encode("utf-8")).hexdigest()


@tool(category="text", security="safe", examples=[{"args": {"text": "hi there"}, "result": "aGkgdGhlcmU="}])
def base64_encode(text: str, url_safe: bool = False) -> str:
    """Encode text (as UTF-8) in base64.

    Args:
        text: The text to encode.
        url_safe: Use the URL-safe alphabet (- and _ instead of + and /).

    Returns:
        The base64 text.
    """
    check_length(text, MAX_TEXT, "text")
    raw = text.encode("utf-8")
    return (base64.urlsafe_b64encode(raw) if url_safe else base64.b64encode(raw)).decode("ascii")


@tool(category="text", security="safe", examples=[{"args": {"data": "aGkgdGhlcmU="}, "result": "hi there"}])
def base64_decode(data: str, url_safe: bool = False) -> str:
    """Decode base64 into text (UTF-8). Whitespace is ignored and missing padding is tolerated.

    Args:
        data: The base64 text.
        url_safe: The input uses the URL-safe alphabet (- and _); detected automatically when present.

    Returns:
        The decoded text.
    """
    check_length(data, MAX_TEXT, "data")
    cleaned = "".join(data.split())
    if url_safe or "-" in cleaned or "_" in cleaned:
        cleaned = cleaned.replace("-", "+").replace("_", "/")
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        raw = base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError) as exc:
        bad = next((i for i, ch in enumerate(cleaned) if not (ch.isalnum() or ch in "+/=")), None)
        where = f" (character {cleaned[bad]!r} at position {bad})" if bad is not None else ""
        raise InvalidArgument(f"data is not valid base64{where}: {exc}; base64 uses A-Z, a-z, 0-9, + and / "
                              "(or - and _), with = padding", details={"reason": str(exc)}) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"the decoded bytes are not UTF-8 text (invalid byte at offset {exc.start}); this "
                              "base64 holds binary data", details={"offset": exc.start}) from None


_V7_LOCK = threading.Lock()
_v7_last = [0, 0]  # the last (millisecond, counter) handed out


def _uuid7() -> uuid_module.UUID:
    """RFC 9562 version 7: 48-bit Unix milliseconds, a 12-bit counter (monotonic within a
    millisecond, so values sort in creation order), then 62 random bits."""
    with _V7_LOCK:
        ms = time.time_ns() // 1_000_000
        last_ms, counter = _v7_last
        if ms <= last_ms:
            ms, counter = last_ms, counter + 1
            if counter > 0xFFF:  # counter exhausted: borrow the next millisecond (RFC 9562, 6.2)
                ms, counter = ms + 1, secrets.randbits(10)
        else:
            counter = secrets.randbits(10)  # random start, with room to count up
        _v7_last[:] = [ms, counter]
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | secrets.randbits(62)
    return uuid_module.UUID(int=value)


@tool(name="uuid", category="text", security="safe", examples=[
    {"args": {}, "result": "3f0c2b7e-5d2a-4c55-9a5e-2f1b8c7d9e10"},
    {"args": {"version": 7, "count": 2}, "result": ["0190c5a4-3b1e-7c2d-8e4f-5a6b7c8d9e0f",
                                                   "0190c5a4-3b1e-7f00-9a1b-2c3d4e5f6a7b"]},
])
def uuid_tool(version: Literal[1, 4, 7] = 4, count: int = 1) -> Any:
    """Generate UUIDs.

    Args:
        version: 4 (random), 7 (time-ordered, sorts by creation) or 1 (time-based, random node).
        count: How many to generate (1 to 1000).

    Returns:
        One UUID string when count is 1, else a list of them.
    """
    if not 1 <= count <= 1000:
        raise InvalidArgument(f"count must be between 1 and 1000, got {count}")
    if version == 4:
        make: Callable[[], uuid_module.UUID] = uuid_module.uuid4
    elif version == 7:
        make = _uuid7
    else:
        make = lambda: uuid_module.uuid1(node=secrets.randbits(48) | (1 << 40))  # noqa: E731 - no MAC address
    values = [str(make()) for _ in range(int(count))]
    return values[0] if count == 1 else values
