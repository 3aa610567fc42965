"""Reading and changing file contents: read_file, write_file, append_file, edit_file."""

from __future__ import annotations

import os
from typing import Any

from ...errors import Conflict, InvalidArgument, NotFound, ResourceExhausted
from .._fsutil import (
    atomic_write,
    checked,
    fsync_dir,
    lexists,
    none_means_default,
)
from ..base import ToolContext, tool
from .common import (
    CATEGORY,
    DEFAULT_READ_BYTES,
    MAX_EDIT_BYTES,
    MAX_READ_BYTES,
    MAX_WRITE_BYTES,
    bounded,
    decode_text,
    encode_text,
    guarded,
    need_regular_file,
    run_blocking,
    text_codec,
)


# ----------------------------------------------------------------------------- read_file
def _read_file(ctx: ToolContext, path: str, encoding: str, max_bytes: int) -> dict[str, Any]:
    bounded("max_bytes", max_bytes, 1, MAX_READ_BYTES)
    text_codec(encoding)
    target = checked(ctx, path)
    st = need_regular_file(target, "read")
    with guarded("read", target), open(target, "rb") as fh:
        data = fh.read(max_bytes)
        truncated = bool(fh.read(1))
    content = decode_text(data, encoding, target, final=not truncated)
    return {"path": str(target), "content": content, "size": max(st.st_size, len(data)), "truncated": truncated,
            "bytes_read": len(data), "encoding": text_codec(encoding)}


@tool(category=CATEGORY, security="read", examples=[
    {"args": {"path": "notes.txt"},
     "result": {"path": "/home/me/project/notes.txt", "content": "hello\n", "size": 6, "truncated": False,
                "bytes_read": 6, "encoding": "utf-8"}},
])
@none_means_default
async def read_file(ctx: ToolContext, path: str, encoding: str = "utf-8",
                    max_bytes: int = DEFAULT_READ_BYTES) -> dict[str, Any]:
    """Read a text file (or a binary one as base64).

    Reads at most max_bytes bytes; a longer file comes back cut at a character boundary with
    truncated = true. Text that is not valid in the encoding is an error naming the byte offset.

    Args:
        path: The file to read, relative to the working directory or absolute, inside the allowed paths.
        encoding: Text encoding of the file, e.g. "utf-8" or "latin-1"; "base64" returns the raw bytes base64-encoded.
        max_bytes: Read at most this many bytes (1 to 104857600, default 10 MiB).

    Returns:
        {path, content, size, truncated, bytes_read, encoding}; size is the whole file's size in bytes.
    """
    return await run_blocking("read", path, _read_file, ctx, path, encoding, max_bytes)


# ----------------------------------------------------------------------------- write_file
def _bounded_content(content: str, encoding: str, advice: str) -> bytes:
    """``content`` encoded, refused when over the write limit (``advice`` ends the message)."""
    data = encode_text(content, encoding, "content")
    if len(data) > MAX_WRITE_BYTES:
        raise ResourceExhausted(f"content is {len(data)} bytes, more than the {MAX_WRITE_BYTES}-byte limit{advice}",
                                details={"limit": MAX_WRITE_BYTES})
    return data


def _write_file(ctx: ToolContext, path: str, content: str, encoding: str, create_dirs: bool,
                overwrite: bool) -> dict[str, Any]:
    data = _bounded_content(content, encoding, " of write_file; write it in parts with append_file")
    target = checked(ctx, path, write=True)
    existed = target.exists()
    if existed:
        if target.is_dir():
            raise InvalidArgument(f"cannot write {target}: it is a directory; give a file path inside it",
                                  details={"path": str(target)})
        if not overwrite:
            raise Conflict(f"{target} already exists; pass overwrite=true to replace it",
                           details={"path": str(target)})
        need_regular_file(target, "write")
    parent = target.parent
    if not parent.is_dir():
        if lexists(parent) and not parent.is_dir():
            raise InvalidArgument(f"cannot write {target}: {parent} is a file, not a directory",
                                  details={"path": str(target)})
        if not create_dirs:
            raise NotFound(f"cannot write {target}: directory {parent} does not exist; pass create_dirs=true "
                           "or create it with make_directory", details={"path": str(parent)})
        with guarded("create directory", parent):
            parent.mkdir(parents=True, exist_ok=True)
    with guarded("write", target):
        written = atomic_write(target, [data])
    return {"path": str(target), "bytes_written": written, "created": not existed}


@tool(category=CATEGORY, security="write", examples=[
    {"args": {"path": "out/report.md", "content": "# Report\n"},
     "result": {"path": "/home/me/project/out/report.md", "bytes_written": 9, "created": True}},
])
@none_means_default
async def write_file(ctx: ToolContext, path: str, content: str, encoding: str = "utf-8", create_dirs: bool = True,
                     overwrite: bool = True) -> dict[str, Any]:
    """Write a file atomically, replacing it whole.

    The content goes to a temporary file beside the target, is flushed to disk and then renamed
    over the target, so a crash never leaves a half-written file. An existing file keeps its
    permissions.

    Args:
        path: The file to write, relative to the working directory or absolute, inside the allowed paths.
        content: The text to write (base64 data when encoding is "base64").
        encoding: Text encoding to write with, e.g. "utf-8"; "base64" decodes content and writes the raw bytes.
        create_dirs: Create missing parent directories.
        overwrite: Replace an existing file; when false an existing file is a conflict error.

    Returns:
        {path, bytes_written, created}; created is false when an existing file was replaced.
    """
    return await run_blocking("write", path, _write_file, ctx, path, content, encoding, create_dirs, overwrite)


# ----------------------------------------------------------------------------- append_file
def _append_file(ctx: ToolContext, path: str, content: str, encoding: str, create_dirs: bool) -> dict[str, Any]:
    data = _bounded_content(content, encoding, "; append it in parts")
    target = checked(ctx, path, write=True)
    existed = target.exists()
    if existed:
        need_regular_file(target, "append to")
    elif not target.parent.is_dir():
        if not create_dirs:
            raise NotFound(f"cannot append to {target}: directory {target.parent} does not exist; pass "
                           "create_dirs=true or create it with make_directory", details={"path": str(target.parent)})
        with guarded("create directory", target.parent):
            target.parent.mkdir(parents=True, exist_ok=True)
    with guarded("append to", target), open(target, "ab") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
        size = os.fstat(fh.fileno()).st_size
    if not existed:
        fsync_dir(target.parent)
    return {"path": str(target), "bytes_written": len(data), "size": size, "created": not existed}


@tool(category=CATEGORY, security="write", examples=[
    {"args": {"path": "log.txt", "content": "step 2 done\n"},
     "result": {"path": "/home/me/project/log.txt", "bytes_written": 12, "size": 24, "created": False}},
])
@none_means_default
async def append_file(ctx: ToolContext, path: str, content: str, encoding: str = "utf-8",
                      create_dirs: bool = True) -> dict[str, Any]:
    """Append text to the end of a file, creating it when missing.

    The appended bytes are flushed to disk before the tool returns. Use it for logs and for
    writing content too large for one write_file call in parts.

    Args:
        path: The file to append to, relative to the working directory or absolute, inside the allowed paths.
        content: The text to append (base64 data when encoding is "base64").
        encoding: Text encoding to write with, e.g. "utf-8"; "base64" decodes content and appends the raw bytes.
        create_dirs: Create missing parent directories when the file does not exist yet.

    Returns:
        {path, bytes_written, size, created}; size is the file's size after appending.
    """
    return await run_blocking("append to", path, _append_file, ctx, path, content, encoding, create_dirs)


# ----------------------------------------------------------------------------- edit_file
def _line_numbers(text: str, old: str, limit: int = 20) -> list[int]:
    lines: list[int] = []
    start = text.find(old)
    while start != -1 and len(lines) < limit:
        lines.append(text.count("\n", 0, start) + 1)
        start = text.find(old, start + max(1, len(old)))
    return lines


def _edit_file(ctx: ToolContext, path: str, old: str, new: str, count: int, encoding: str) -> dict[str, Any]:
    if old == "":
        raise InvalidArgument("old is empty; pass the exact text to replace (read_file shows the file)")
    if count < 0:
        raise InvalidArgument(f"count must be 0 (replace every occurrence) or a positive limit, got {count}")
    codec = text_codec(encoding)
    if codec == "base64":
        raise InvalidArgument("edit_file works on text; pass a text encoding such as 'utf-8'")
    target = checked(ctx, path, write=True)
    st = need_regular_file(target, "edit")
    if st.st_size > MAX_EDIT_BYTES:
        raise ResourceExhausted(f"{target} is {st.st_size} bytes, more than edit_file's {MAX_EDIT_BYTES}-byte "
                                "limit; edit a smaller file", details={"limit": MAX_EDIT_BYTES})
    with guarded("read", target):
        data = target.read_bytes()
    text = decode_text(data, codec, target)
    occurrences = text.count(old)
    if occurrences == 0:
        hint = ""
        if "\r\n" in text and "\n" in old and "\r\n" not in old:
            hint = " The file uses Windows line endings (\\r\\n); include them in old."
        elif old.strip() and old.strip() in text:
            hint = " The text without its leading/trailing whitespace does occur: check spaces, tabs and newlines."
        raise NotFound(f"the text to replace was not found in {target}; old must match exactly, including "
                       f"whitespace and line breaks (read_file shows the current content).{hint}",
                       details={"path": str(target), "rule": "old_not_found"})
    if count and occurrences > count:
        lines = _line_numbers(text, old)
        raise InvalidArgument(
            f"the text to replace occurs {occurrences} times in {target} (lines {', '.join(map(str, lines))}) but "
            f"count allows {count}; include more surrounding text in old to make it unique, or pass "
            f"count={occurrences} (or 0) to replace every occurrence",
            details={"path": str(target), "occurrences": occurrences, "lines": lines},
        )
    first_line = text.count("\n", 0, text.find(old)) + 1
    updated = text.replace(old, new)
    payload = encode_text(updated, codec, "the edited text")
    with guarded("write", target):
        written = atomic_write(target, [payload])
    return {"path": str(target), "replacements": occurrences, "first_line": first_line, "size": written}


@tool(category=CATEGORY, security="write", examples=[
    {"args": {"path": "config.lua", "old": "debug = false", "new": "debug = true"},
     "result": {"path": "/home/me/project/config.lua", "replacements": 1, "first_line": 3, "size": 120}},
])
@none_means_default
async def edit_file(ctx: ToolContext, path: str, old: str, new: str, count: int = 1,
                    encoding: str = "utf-8") -> dict[str, Any]:
    """Replace exact text in a file.

    old must occur in the file exactly (whitespace and line breaks included); it is an error
    when it does not occur, or occurs more often than count allows (the error lists the lines).
    Every occurrence is replaced; the file is rewritten atomically.

    Args:
        path: The text file to edit, inside the allowed paths.
        old: The exact text to find.
        new: The text to put in its place.
        count: The most occurrences allowed (and replaced); 0 replaces every occurrence however many there are.
        encoding: Text encoding of the file, e.g. "utf-8".

    Returns:
        {path, replacements, first_line, size}; first_line is the line of the first replacement, size the
        new file size in bytes.
    """
    return await run_blocking("edit", path, _edit_file, ctx, path, old, new, count, encoding)
