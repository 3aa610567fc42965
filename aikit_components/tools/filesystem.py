"""Filesystem tools: read, write, list, search and change files inside the allowed paths.

Every path goes through ``ctx.policy.check_path`` (symlinks and ``..`` are resolved first, so
neither leaves an allowed root). The blocking work runs in a worker thread
(``asyncio.to_thread``), so a call never stalls the I/O loop. Writes are atomic (temporary file +
``os.replace``) and fsynced before the tool returns. Paths in results are absolute.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import codecs
import errno
import fnmatch
import hashlib
import os
import re
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import AikitError, Conflict, InvalidArgument, IOFailure, NotFound, PermissionDenied, ResourceExhausted
from ._fsutil import (
    MiB, none_means_default, atomic_write, checked, checked_entry, fsync_dir, is_protected, iso_time, kind_of, lexists, os_error,
)
from .base import Tool, ToolContext, tool

CATEGORY = "filesystem"

DEFAULT_READ_BYTES = 10 * MiB
MAX_READ_BYTES = 100 * MiB
MAX_WRITE_BYTES = 100 * MiB
MAX_EDIT_BYTES = 50 * MiB
HASH_LIMIT = 100 * MiB
MAX_ENTRIES = 100_000
MAX_LINE_CHARS = 1000
GREP_FILE_LIMIT = 100 * MiB
BINARY_SNIFF = 8192


# ----------------------------------------------------------------------------- shared helpers
def _bounded(name: str, value: int, low: int, high: int) -> int:
    if value < low or value > high:
        raise InvalidArgument(f"{name} must be between {low} and {high}, got {value}",
                              details={"parameter": name, "minimum": low, "maximum": high})
    return value


def _text_codec(encoding: str) -> str:
    """The canonical name of a text encoding (``base64`` passes through); InvalidArgument otherwise."""
    if encoding.lower() == "base64":
        return "base64"
    try:
        info = codecs.lookup(encoding)
    except LookupError:
        raise InvalidArgument(f"unknown encoding {encoding!r}; use e.g. 'utf-8', 'latin-1', 'utf-16', "
                              "or 'base64' for binary data", details={"encoding": encoding}) from None
    if not getattr(info, "_is_text_encoding", True):
        raise InvalidArgument(f"{encoding!r} is not a text encoding; use e.g. 'utf-8' or 'latin-1', "
                              "or 'base64' for binary data", details={"encoding": encoding})
    return info.name


def _encode(content: str, encoding: str, what: str) -> bytes:
    codec = _text_codec(encoding)
    if codec == "base64":
        try:
            return base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidArgument(f"{what} is not valid base64 ({exc}); pass the text itself with "
                                  "encoding='utf-8', or fix the base64 data") from None
    try:
        return content.encode(codec)
    except UnicodeEncodeError as exc:
        raise InvalidArgument(f"{what} cannot be encoded as {codec}: character {exc.object[exc.start:exc.end]!r} "
                              f"at index {exc.start} ({exc.reason}); use encoding='utf-8'") from None


def _decode(data: bytes, encoding: str, path: Path, final: bool = True) -> str:
    codec = _text_codec(encoding)
    if codec == "base64":
        return base64.b64encode(data).decode("ascii")
    try:
        return codecs.getincrementaldecoder(codec)(errors="strict").decode(data, final=final)
    except UnicodeDecodeError as exc:
        raise InvalidArgument(
            f"{path} is not valid {codec} text (byte {exc.start}: {exc.reason}); pass encoding='latin-1' "
            "to read it as text anyway, or encoding='base64' for binary data",
            details={"path": str(path), "encoding": codec, "offset": exc.start},
        ) from None


def _lstat(path: Path, action: str) -> os.stat_result:
    try:
        return os.lstat(path)
    except OSError as exc:
        raise os_error(exc, action, path) from None


def _need_regular_file(path: Path, action: str) -> os.stat_result:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise os_error(exc, action, path) from None
    if stat.S_ISDIR(st.st_mode):
        raise InvalidArgument(f"cannot {action} {path}: it is a directory (list_directory lists it)",
                              details={"path": str(path)})
    if not stat.S_ISREG(st.st_mode):
        raise InvalidArgument(f"cannot {action} {path}: it is not a regular file (a device, FIFO or socket)",
                              details={"path": str(path)})
    return st


def _entry_info(path: Path, name: str, st: os.stat_result) -> dict[str, Any]:
    kind = kind_of(st.st_mode)
    info: dict[str, Any] = {
        "name": name, "path": str(path), "type": kind,
        "size": None if kind == "directory" else st.st_size, "modified": iso_time(st.st_mtime),
    }
    if kind == "symlink":
        try:
            info["link_target"] = os.readlink(path)
        except OSError:
            info["link_target"] = None
    return info


def _translate(exc: BaseException, action: str, path: object) -> AikitError | None:
    """The aikit error for a stray OSError (shutil.Error included), or None for anything else."""
    if isinstance(exc, shutil.Error):
        problems = exc.args[0] if exc.args and isinstance(exc.args[0], list) else [str(exc)]
        first = "; ".join(f"{p[0]}: {p[2]}" if isinstance(p, tuple) and len(p) == 3 else str(p) for p in problems[:3])
        return IOFailure(f"cannot {action} {path}: {len(problems)} item(s) failed ({first})",
                         details={"path": str(path)})
    if isinstance(exc, OSError):
        return os_error(exc, action, getattr(exc, "filename", None) or path)
    return None


class _guarded:
    """``with _guarded("copy", path):`` turns a stray OSError into an aikit error."""

    def __init__(self, action: str, path: object) -> None:
        self.action, self.path = action, path

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> bool:
        error = _translate(exc, self.action, self.path) if exc is not None else None
        if error is not None:
            raise error from None
        return False


async def _run(action: str, path: object, fn: Any, *args: Any) -> Any:
    """Run the blocking ``fn(*args)`` in a worker thread; no raw OSError escapes."""
    try:
        return await asyncio.to_thread(fn, *args)
    except OSError as exc:
        error = _translate(exc, action, path)
        raise (error or exc) from None


# ----------------------------------------------------------------------------- read_file
def _read_file(ctx: ToolContext, path: str, encoding: str, max_bytes: int) -> dict[str, Any]:
    _bounded("max_bytes", max_bytes, 1, MAX_READ_BYTES)
    _text_codec(encoding)
    target = checked(ctx, path)
    st = _need_regular_file(target, "read")
    with _guarded("read", target), open(target, "rb") as fh:
        data = fh.read(max_bytes)
        truncated = bool(fh.read(1))
    content = _decode(data, encoding, target, final=not truncated)
    return {"path": str(target), "content": content, "size": max(st.st_size, len(data)), "truncated": truncated,
            "bytes_read": len(data), "encoding": _text_codec(encoding)}


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
    return await _run("read", path, _read_file, ctx, path, encoding, max_bytes)


# ----------------------------------------------------------------------------- write_file
def _write_file(ctx: ToolContext, path: str, content: str, encoding: str, create_dirs: bool,
                overwrite: bool) -> dict[str, Any]:
    data = _encode(content, encoding, "content")
    if len(data) > MAX_WRITE_BYTES:
        raise ResourceExhausted(f"content is {len(data)} bytes, more than the {MAX_WRITE_BYTES}-byte limit of "
                                "write_file; write it in parts with append_file", details={"limit": MAX_WRITE_BYTES})
    target = checked(ctx, path, write=True)
    existed = target.exists()
    if existed:
        if target.is_dir():
            raise InvalidArgument(f"cannot write {target}: it is a directory; give a file path inside it",
                                  details={"path": str(target)})
        if not overwrite:
            raise Conflict(f"{target} already exists; pass overwrite=true to replace it",
                           details={"path": str(target)})
        _need_regular_file(target, "write")
    parent = target.parent
    if not parent.is_dir():
        if lexists(parent) and not parent.is_dir():
            raise InvalidArgument(f"cannot write {target}: {parent} is a file, not a directory",
                                  details={"path": str(target)})
        if not create_dirs:
            raise NotFound(f"cannot write {target}: directory {parent} does not exist; pass create_dirs=true "
                           "or create it with make_directory", details={"path": str(parent)})
        with _guarded("create directory", parent):
            parent.mkdir(parents=True, exist_ok=True)
    with _guarded("write", target):
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
    return await _run("write", path, _write_file, ctx, path, content, encoding, create_dirs, overwrite)


# ----------------------------------------------------------------------------- append_file
def _append_file(ctx: ToolContext, path: str, content: str, encoding: str, create_dirs: bool) -> dict[str, Any]:
    data = _encode(content, encoding, "content")
    if len(data) > MAX_WRITE_BYTES:
        raise ResourceExhausted(f"content is {len(data)} bytes, more than the {MAX_WRITE_BYTES}-byte limit; "
                                "append it in parts", details={"limit": MAX_WRITE_BYTES})
    target = checked(ctx, path, write=True)
    existed = target.exists()
    if existed:
        _need_regular_file(target, "append to")
    elif not target.parent.is_dir():
        if not create_dirs:
            raise NotFound(f"cannot append to {target}: directory {target.parent} does not exist; pass "
                           "create_dirs=true or create it with make_directory", details={"path": str(target.parent)})
        with _guarded("create directory", target.parent):
            target.parent.mkdir(parents=True, exist_ok=True)
    with _guarded("append to", target), open(target, "ab") as fh:
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
    return await _run("append to", path, _append_file, ctx, path, content, encoding, create_dirs)


# ----------------------------------------------------------------------------- list_directory
def _walk_entries(top: Path, recursive: bool, include_hidden: bool) -> Iterator[tuple[Path, str, os.stat_result]]:
    """(path, name relative to top, lstat) in sorted depth-first order; symlinks are not followed."""
    stack: list[tuple[Path, str]] = [(top, "")]
    while stack:
        directory, prefix = stack.pop()
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            if directory == top:
                raise os_error(exc, "list", directory) from None
            continue  # an unreadable subdirectory is skipped, not fatal
        subdirs: list[tuple[Path, str]] = []
        for entry in entries:
            if not include_hidden and entry.name.startswith("."):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            name = prefix + entry.name
            path = Path(entry.path)
            yield path, name, st
            if recursive and stat.S_ISDIR(st.st_mode):
                subdirs.append((path, name + "/"))
        stack.extend(reversed(subdirs))


def _list_directory(ctx: ToolContext, path: str, recursive: bool, include_hidden: bool,
                    max_entries: int) -> dict[str, Any]:
    _bounded("max_entries", max_entries, 1, MAX_ENTRIES)
    top = checked(ctx, path)
    st = _lstat(top, "list")
    if not stat.S_ISDIR(st.st_mode):
        raise InvalidArgument(f"cannot list {top}: it is a {kind_of(st.st_mode)}, not a directory "
                              "(file_stat describes a single file)", details={"path": str(top)})
    entries: list[dict[str, Any]] = []
    truncated = False
    for entry_path, name, entry_st in _walk_entries(top, recursive, include_hidden):
        if len(entries) >= max_entries:
            truncated = True
            break
        entries.append(_entry_info(entry_path, name, entry_st))
    return {"path": str(top), "entries": entries, "count": len(entries), "truncated": truncated}


@tool(category=CATEGORY, security="read", examples=[
    {"args": {"path": "."},
     "result": {"path": "/home/me/project", "count": 1, "truncated": False, "entries": [
         {"name": "README.md", "path": "/home/me/project/README.md", "type": "file", "size": 120,
          "modified": "2024-05-01T12:00:00Z"}]}},
])
@none_means_default
async def list_directory(ctx: ToolContext, path: str = ".", recursive: bool = False, include_hidden: bool = False,
                         max_entries: int = 1000) -> dict[str, Any]:
    """List the entries of a directory, optionally recursively.

    Entries are sorted by name (depth-first when recursive); symlinks are reported as type
    "symlink" with their link_target and are never followed.

    Args:
        path: The directory to list, relative to the working directory or absolute, inside the allowed paths.
        recursive: Also list the contents of subdirectories (names are then relative paths like "src/main.lua").
        include_hidden: Include names starting with a dot (and, when recursive, descend into such directories).
        max_entries: Stop after this many entries (1 to 100000) and set truncated = true.

    Returns:
        {path, entries, count, truncated}; each entry has name, path, type (file, directory, symlink, other), size (null for directories) and modified (ISO 8601 UTC).
    """
    return await _run("list", path, _list_directory, ctx, path, recursive, include_hidden, max_entries)


# ----------------------------------------------------------------------------- file_search
def _file_search(ctx: ToolContext, pattern: str, root: str, max_results: int) -> dict[str, Any]:
    _bounded("max_results", max_results, 1, MAX_ENTRIES)
    if not pattern.strip():
        raise InvalidArgument("pattern is empty; pass a glob such as '*.py' or '**/*.md'")
    if os.path.isabs(pattern) or pattern.startswith("~"):
        raise InvalidArgument(f"pattern {pattern!r} is absolute; pass the directory as root and a relative "
                              "pattern, e.g. root='/data', pattern='**/*.csv'", details={"pattern": pattern})
    if ".." in re.split(r"[\\/]", pattern):
        raise InvalidArgument(f"pattern {pattern!r} contains '..'; pass the directory to search as root instead, "
                              "e.g. root='..', pattern='*.txt'", details={"pattern": pattern})
    base = checked(ctx, root)
    if not base.is_dir():
        raise (NotFound if not lexists(base) else InvalidArgument)(
            f"root {base} is not a directory; pass the directory to search in", details={"path": str(base)})
    matches: list[dict[str, Any]] = []
    skipped = 0
    truncated = False
    try:
        found = base.glob(pattern)
        for match in found:
            try:
                ctx.policy.check_path(match)
            except (PermissionDenied, RuntimeError, OSError):
                skipped += 1  # a symlink or ".." leading outside the allowed paths
                continue
            if len(matches) >= max_results:
                truncated = True
                break
            try:
                st = match.lstat()
            except OSError:
                continue
            matches.append({"name": os.path.relpath(match, base).replace(os.sep, "/"), "path": str(match),
                            "type": kind_of(st.st_mode),
                            "size": None if stat.S_ISDIR(st.st_mode) else st.st_size})
    except (ValueError, NotImplementedError) as exc:
        raise InvalidArgument(f"invalid glob pattern {pattern!r}: {exc}; '**' must be a whole path "
                              "component, as in '**/*.py'", details={"pattern": pattern}) from None
    except OSError as exc:
        raise os_error(exc, "search", base) from None
    matches.sort(key=lambda m: m["name"])
    return {"root": str(base), "pattern": pattern, "matches": matches, "count": len(matches),
            "truncated": truncated, "skipped_outside": skipped}


@tool(category=CATEGORY, security="read", examples=[
    {"args": {"pattern": "**/*.lua", "root": "examples"},
     "result": {"root": "/home/me/project/examples", "pattern": "**/*.lua", "count": 1, "truncated": False,
                "skipped_outside": 0, "matches": [
                    {"name": "hello.lua", "path": "/home/me/project/examples/hello.lua", "type": "file",
                     "size": 42}]}},
])
@none_means_default
async def file_search(ctx: ToolContext, pattern: str, root: str = ".", max_results: int = 1000) -> dict[str, Any]:
    """Find files and directories whose path matches a glob pattern.

    Patterns use glob syntax: "*" matches within one path component, "**" any number of
    directories, "?" one character, "[abc]" a set. Matches that resolve outside the allowed
    paths (through symlinks) are left out and counted in skipped_outside; ".." is not allowed
    in the pattern (use root to search elsewhere).

    Args:
        pattern: Glob pattern relative to root, e.g. "*.txt" or "**/*.py".
        root: The directory to search from, inside the allowed paths.
        max_results: Stop after this many matches (1 to 100000) and set truncated = true.

    Returns:
        {root, pattern, matches, count, truncated, skipped_outside}; each match has name (relative to root), path, type and size.
    """
    return await _run("search", root, _file_search, ctx, pattern, root, max_results)


# ----------------------------------------------------------------------------- grep
def _grep_files(ctx: ToolContext, top: Path, glob: str, stats: dict[str, int]) -> Iterator[tuple[Path, str]]:
    if not top.is_dir():
        yield top, top.name
        return
    by_path = "/" in glob
    for path, name, st in _walk_entries(top, recursive=True, include_hidden=True):
        if stat.S_ISDIR(st.st_mode):
            continue
        if not fnmatch.fnmatchcase(name if by_path else path.name, glob):
            continue
        if stat.S_ISLNK(st.st_mode):
            try:
                real = ctx.policy.check_path(path)
            except (PermissionDenied, RuntimeError, OSError):
                stats["skipped_outside"] += 1
                continue
            if not real.is_file():
                continue
        elif not stat.S_ISREG(st.st_mode):
            continue
        yield path, name


def _grep(ctx: ToolContext, pattern: str, path: str, glob: str, regex: bool, ignore_case: bool,
          max_matches: int) -> dict[str, Any]:
    _bounded("max_matches", max_matches, 1, MAX_ENTRIES)
    if pattern == "":
        raise InvalidArgument("pattern is empty; pass the text (or regular expression) to search for")
    if not glob:
        raise InvalidArgument("glob is empty; pass '*' to search every file")
    try:
        rx = re.compile(pattern if regex else re.escape(pattern), re.IGNORECASE if ignore_case else 0)
    except re.error as exc:
        raise InvalidArgument(f"invalid regular expression {pattern!r}: {exc}; escape special characters or "
                              "pass regex=false to search for the literal text", details={"pattern": pattern}) from None
    top = checked(ctx, path)
    if not lexists(top):
        raise NotFound(f"cannot search {top}: no such file or directory", details={"path": str(top)})
    if not top.is_dir():
        _need_regular_file(top, "search")
    stats = {"files_searched": 0, "skipped_binary": 0, "skipped_large": 0, "skipped_outside": 0}
    matches: list[dict[str, Any]] = []
    truncated = False
    for file, name in _grep_files(ctx, top, glob, stats):
        if truncated:
            break
        try:
            with open(file, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                if size > GREP_FILE_LIMIT:
                    stats["skipped_large"] += 1
                    continue
                if b"\0" in fh.read(BINARY_SNIFF):
                    stats["skipped_binary"] += 1
                    continue
                fh.seek(0)
                stats["files_searched"] += 1
                for number, raw in enumerate(fh, 1):
                    line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                    found = rx.search(line)
                    if found is None:
                        continue
                    if len(matches) >= max_matches:
                        truncated = True
                        break
                    text = line if len(line) <= MAX_LINE_CHARS else line[:MAX_LINE_CHARS] + "..."
                    matches.append({"file": name, "path": str(file), "line": number,
                                    "column": found.start() + 1, "text": text})
        except OSError as exc:
            if file == top:
                raise os_error(exc, "search", file) from None
            continue  # an unreadable file in a tree is skipped
    return {"pattern": pattern, "path": str(top), "matches": matches, "count": len(matches),
            "truncated": truncated, **stats}


@tool(category=CATEGORY, security="read", examples=[
    {"args": {"pattern": "TODO", "path": "src", "glob": "*.py", "regex": False},
     "result": {"pattern": "TODO", "path": "/home/me/project/src", "count": 1, "truncated": False,
                "files_searched": 3, "skipped_binary": 0, "skipped_large": 0, "skipped_outside": 0,
                "matches": [{"file": "app.py", "path": "/home/me/project/src/app.py", "line": 12, "column": 7,
                             "text": "    # TODO: retry"}]}},
])
@none_means_default
async def grep(ctx: ToolContext, pattern: str, path: str = ".", glob: str = "*", regex: bool = True,
               ignore_case: bool = False, max_matches: int = 500) -> dict[str, Any]:
    """Search file contents for lines matching a regular expression or literal text.

    Searches one file, or every file under a directory whose name matches glob (a glob with a
    "/" matches the path relative to the directory). Binary files (containing NUL bytes) and
    files over 100 MiB are skipped and counted; symlinks leading outside the allowed paths are
    skipped. Lines longer than 1000 characters are cut.

    Args:
        pattern: The regular expression (Python syntax) or, with regex = false, the literal text to find.
        path: A file or directory to search, inside the allowed paths.
        glob: Only search files whose name matches this glob, e.g. "*.py".
        regex: Treat pattern as a regular expression; false searches for the literal text.
        ignore_case: Match letters regardless of case.
        max_matches: Stop after this many matching lines (1 to 100000) and set truncated = true.

    Returns:
        {pattern, path, matches, count, truncated, files_searched, skipped_binary, skipped_large, skipped_outside}; each match has file (relative to path), path, line, column (1-based) and text.
    """
    return await _run("search", path, _grep, ctx, pattern, path, glob, regex, ignore_case, max_matches)


# ----------------------------------------------------------------------------- copy / move targets
def _final_target(ctx: ToolContext, source: Path, destination: str) -> Path:
    """Where ``source`` lands: ``destination`` itself, or ``destination/<source name>`` when
    ``destination`` is an existing directory (like ``cp`` and ``mv``)."""
    dest = checked(ctx, destination, write=True)
    if dest.is_dir() and dest != source:
        dest = checked(ctx, dest / source.name, write=True)
    return dest


def _check_target(source: Path, source_is_dir: bool, target: Path, overwrite: bool, verb: str) -> bool:
    """Validate a copy/move target; True when something exists there (and overwrite allows it)."""
    if target == source:
        raise InvalidArgument(f"cannot {verb} {source} onto itself; choose a different destination",
                              details={"path": str(source)})
    if source_is_dir and target.is_relative_to(source):
        raise InvalidArgument(f"cannot {verb} directory {source} into itself ({target}); choose a destination "
                              "outside it", details={"source": str(source), "destination": str(target)})
    if not lexists(target):
        if not target.parent.is_dir():
            raise NotFound(f"cannot {verb} to {target}: directory {target.parent} does not exist; create it with "
                           "make_directory", details={"path": str(target.parent)})
        return False
    if not overwrite:
        raise Conflict(f"{target} already exists; pass overwrite=true to replace it (or choose another destination)",
                       details={"path": str(target)})
    target_is_dir = target.is_dir() and not target.is_symlink()
    if target_is_dir != source_is_dir:
        what, other = ("a directory", "a file") if target_is_dir else ("a file", "a directory")
        raise Conflict(f"cannot {verb} {source} to {target}: the destination is {what} but the source is {other}; "
                       "delete the destination first or choose another one", details={"path": str(target)})
    return True


def _copy_tree(source: Path, target: Path, merge: bool) -> tuple[int, int]:
    counts = [0, 0]

    def copy(src: str, dst: str) -> str:
        result = shutil.copy2(src, dst)
        counts[0] += 1
        counts[1] += os.path.getsize(dst)
        return result

    shutil.copytree(source, target, symlinks=True, copy_function=copy, dirs_exist_ok=merge)
    return counts[0], counts[1]


# ----------------------------------------------------------------------------- copy_file
def _copy_file(ctx: ToolContext, source: str, destination: str, overwrite: bool) -> dict[str, Any]:
    src = checked(ctx, source)
    if not src.exists():
        raise NotFound(f"cannot copy {src}: no such file or directory", details={"path": str(src)})
    is_dir = src.is_dir()
    if not is_dir:
        _need_regular_file(src, "copy")
    target = _final_target(ctx, src, destination)
    exists = _check_target(src, is_dir, target, overwrite, "copy")
    with _guarded("copy", src):
        if is_dir:
            files, size = _copy_tree(src, target, merge=exists)
        else:
            with open(src, "rb") as fh:
                size = atomic_write(target, iter(lambda: fh.read(MiB), b""), mode=stat.S_IMODE(os.stat(src).st_mode))
            shutil.copystat(src, target)
            files = 1
    return {"source": str(src), "destination": str(target), "type": "directory" if is_dir else "file",
            "files": files, "bytes": size, "replaced": exists}


@tool(category=CATEGORY, security="write", examples=[
    {"args": {"source": "data.csv", "destination": "backup/data.csv"},
     "result": {"source": "/home/me/project/data.csv", "destination": "/home/me/project/backup/data.csv",
                "type": "file", "files": 1, "bytes": 2048, "replaced": False}},
])
@none_means_default
async def copy_file(ctx: ToolContext, source: str, destination: str, overwrite: bool = False) -> dict[str, Any]:
    """Copy a file or a whole directory.

    When destination is an existing directory the source is copied into it under its own
    name (like cp). Symlinks inside a copied directory are copied as symlinks, never followed.
    With overwrite a file is replaced atomically and a directory is merged into the existing one.

    Args:
        source: The file or directory to copy, inside the allowed paths.
        destination: The new path, or an existing directory to copy into, inside the allowed paths.
        overwrite: Replace (or, for directories, merge into) an existing destination; when false it is a conflict error.

    Returns:
        {source, destination, type, files, bytes, replaced}; destination is the final path, files and bytes count what was copied.
    """
    return await _run("copy", source, _copy_file, ctx, source, destination, overwrite)


# ----------------------------------------------------------------------------- move_file
def _move_file(ctx: ToolContext, source: str, destination: str, overwrite: bool) -> dict[str, Any]:
    _, src = checked_entry(ctx, source, write=True)
    if not lexists(src):
        raise NotFound(f"cannot move {src}: no such file or directory", details={"path": str(src)})
    root = is_protected(ctx, src)
    if root is not None:
        raise PermissionDenied(f"refusing to move {src}: it is (or contains) the allowed root {root}",
                               details={"rule": "protected_root", "path": str(src)})
    is_dir = src.is_dir() and not src.is_symlink()
    target = _final_target(ctx, src, destination)
    exists = _check_target(src, is_dir, target, overwrite, "move")
    if exists and is_dir:
        protected = is_protected(ctx, target)
        if protected is not None:
            raise PermissionDenied(f"refusing to replace {target}: it is (or contains) the allowed root {protected}",
                                   details={"rule": "protected_root", "path": str(target)})
    with _guarded("move", src):
        if exists and is_dir:
            shutil.rmtree(target)
        try:
            os.replace(src, target)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            if exists and not is_dir:
                os.unlink(target)
            shutil.move(os.fspath(src), os.fspath(target))
        fsync_dir(target.parent)
        if src.parent != target.parent:
            fsync_dir(src.parent)
    return {"source": str(src), "destination": str(target), "type": "directory" if is_dir else
            ("symlink" if target.is_symlink() else "file"), "replaced": exists}


@tool(category=CATEGORY, security="write", examples=[
    {"args": {"source": "draft.md", "destination": "docs/final.md"},
     "result": {"source": "/home/me/project/draft.md", "destination": "/home/me/project/docs/final.md",
                "type": "file", "replaced": False}},
])
@none_means_default
async def move_file(ctx: ToolContext, source: str, destination: str, overwrite: bool = False) -> dict[str, Any]:
    """Move or rename a file or directory.

    When destination is an existing directory the source moves into it under its own name
    (like mv). A symlink is moved as the link itself. An allowed root cannot be moved.

    Args:
        source: The file, directory or symlink to move, inside the allowed paths.
        destination: The new path, or an existing directory to move into, inside the allowed paths.
        overwrite: Replace an existing destination of the same type; when false it is a conflict error.

    Returns:
        {source, destination, type, replaced}; destination is the final path.
    """
    return await _run("move", source, _move_file, ctx, source, destination, overwrite)


# ----------------------------------------------------------------------------- delete_file
def _delete_file(ctx: ToolContext, path: str, recursive: bool) -> dict[str, Any]:
    _, entry = checked_entry(ctx, path, write=True)
    if not lexists(entry):
        raise NotFound(f"cannot delete {entry}: no such file or directory", details={"path": str(entry)})
    root = is_protected(ctx, entry)
    if root is not None:
        raise PermissionDenied(f"refusing to delete {entry}: it is (or contains) the allowed root {root}; "
                               "delete the files inside it instead", details={"rule": "protected_root", "path": str(entry)})
    st = _lstat(entry, "delete")
    kind = kind_of(st.st_mode)
    files = directories = 0
    with _guarded("delete", entry):
        if kind == "directory":
            if recursive:
                for _, dirnames, filenames in os.walk(entry):
                    directories += len(dirnames)
                    files += len(filenames)
                directories += 1
                shutil.rmtree(entry)
            else:
                try:
                    entry.rmdir()
                except OSError as exc:
                    if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                        count = sum(1 for _ in os.scandir(entry))
                        raise InvalidArgument(f"cannot delete {entry}: the directory is not empty ({count} entries); "
                                              "pass recursive=true to delete it and everything in it",
                                              details={"path": str(entry), "entries": count}) from None
                    raise
                directories = 1
        else:
            entry.unlink()
            files = 1
        fsync_dir(entry.parent)
    return {"path": str(entry), "type": kind, "deleted": True, "files": files, "directories": directories}


@tool(category=CATEGORY, security="write", examples=[
    {"args": {"path": "tmp/build", "recursive": True},
     "result": {"path": "/home/me/project/tmp/build", "type": "directory", "deleted": True, "files": 12,
                "directories": 3}},
])
@none_means_default
async def delete_file(ctx: ToolContext, path: str, recursive: bool = False) -> dict[str, Any]:
    """Delete a file, a symlink (not its target) or a directory.

    A non-empty directory needs recursive = true. An allowed root (the working directory, the
    data directory) and any directory containing one cannot be deleted.

    Args:
        path: The file, symlink or directory to delete, inside the allowed paths.
        recursive: Delete a directory together with everything in it.

    Returns:
        {path, type, deleted, files, directories}; files and directories count what was removed.
    """
    return await _run("delete", path, _delete_file, ctx, path, recursive)


# ----------------------------------------------------------------------------- file_stat
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(MiB), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _file_stat(ctx: ToolContext, path: str) -> dict[str, Any]:
    resolved, entry = checked_entry(ctx, path)
    lst = _lstat(entry, "stat")
    is_link = stat.S_ISLNK(lst.st_mode)
    try:
        st = os.stat(resolved) if is_link else lst
    except OSError:
        st = None  # a dangling symlink
    info: dict[str, Any] = {"path": str(entry), "name": entry.name, "is_symlink": is_link,
                            "link_target": os.readlink(entry) if is_link else None}
    if st is None:
        info.update({"type": "symlink", "exists": False, "size": None, "mode": oct(stat.S_IMODE(lst.st_mode)),
                     "permissions": stat.filemode(lst.st_mode), "modified": iso_time(lst.st_mtime),
                     "created": None, "accessed": None, "sha256": None})
        return info
    kind = kind_of(st.st_mode)
    created = getattr(st, "st_birthtime", None)
    info.update({
        "type": kind, "exists": True, "size": st.st_size, "mode": oct(stat.S_IMODE(st.st_mode)),
        "permissions": stat.filemode(st.st_mode), "modified": iso_time(st.st_mtime),
        "created": iso_time(created if created is not None else st.st_ctime), "accessed": iso_time(st.st_atime),
        "resolved_path": str(resolved), "sha256": None,
    })
    if kind == "file":
        if st.st_size <= HASH_LIMIT:
            with _guarded("hash", resolved):
                info["sha256"] = _sha256(resolved)
        else:
            info["sha256_skipped"] = f"file larger than {HASH_LIMIT} bytes"
    return info


@tool(category=CATEGORY, security="read", examples=[
    {"args": {"path": "notes.txt"},
     "result": {"path": "/home/me/project/notes.txt", "name": "notes.txt", "type": "file", "exists": True,
                "size": 6, "mode": "0o644", "permissions": "-rw-r--r--", "modified": "2024-05-01T12:00:00Z",
                "created": "2024-05-01T12:00:00Z", "accessed": "2024-05-01T12:00:00Z", "is_symlink": False,
                "link_target": None, "resolved_path": "/home/me/project/notes.txt",
                "sha256": "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"}},
])
@none_means_default
async def file_stat(ctx: ToolContext, path: str) -> dict[str, Any]:
    """Describe a file, directory or symlink: type, size, permissions, times and a SHA-256.

    For a symlink, is_symlink is true, link_target is what it points to and the other fields
    describe the target. The sha256 of files up to 100 MiB is computed; larger files get null.
    "created" is the birth time where the system records it, else the last status change.

    Args:
        path: The file, directory or symlink to describe, inside the allowed paths.

    Returns:
        {path, name, type, exists, size, mode, permissions, modified, created, accessed, is_symlink, link_target, resolved_path, sha256}; times are ISO 8601 UTC.
    """
    return await _run("stat", path, _file_stat, ctx, path)


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
    codec = _text_codec(encoding)
    if codec == "base64":
        raise InvalidArgument("edit_file works on text; pass a text encoding such as 'utf-8'")
    target = checked(ctx, path, write=True)
    st = _need_regular_file(target, "edit")
    if st.st_size > MAX_EDIT_BYTES:
        raise ResourceExhausted(f"{target} is {st.st_size} bytes, more than edit_file's {MAX_EDIT_BYTES}-byte "
                                "limit; edit a smaller file", details={"limit": MAX_EDIT_BYTES})
    with _guarded("read", target):
        data = target.read_bytes()
    text = _decode(data, codec, target)
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
    payload = _encode(updated, codec, "the edited text")
    with _guarded("write", target):
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
        {path, replacements, first_line, size}; first_line is the line of the first replacement, size the new file size in bytes.
    """
    return await _run("edit", path, _edit_file, ctx, path, old, new, count, encoding)


# ----------------------------------------------------------------------------- make_directory
def _make_directory(ctx: ToolContext, path: str, parents: bool) -> dict[str, Any]:
    target = checked(ctx, path, write=True)
    if lexists(target):
        if target.is_dir():
            return {"path": str(target), "created": False}
        raise Conflict(f"cannot create directory {target}: a file with that name exists; choose another name "
                       "or delete the file first", details={"path": str(target)})
    try:
        target.mkdir(parents=parents)
    except FileNotFoundError:
        raise NotFound(f"cannot create directory {target}: its parent {target.parent} does not exist; pass "
                       "parents=true to create it too", details={"path": str(target.parent)}) from None
    except FileExistsError:
        if not target.is_dir():
            raise Conflict(f"cannot create directory {target}: a file with that name exists",
                           details={"path": str(target)}) from None
        return {"path": str(target), "created": False}
    except OSError as exc:
        raise os_error(exc, "create directory", target) from None
    fsync_dir(target.parent)
    return {"path": str(target), "created": True}


@tool(category=CATEGORY, security="write", examples=[
    {"args": {"path": "out/charts"}, "result": {"path": "/home/me/project/out/charts", "created": True}},
])
@none_means_default
async def make_directory(ctx: ToolContext, path: str, parents: bool = True) -> dict[str, Any]:
    """Create a directory (and its missing parents).

    An existing directory is not an error (created is then false); an existing file is.

    Args:
        path: The directory to create, inside the allowed paths.
        parents: Also create missing parent directories; when false a missing parent is an error.

    Returns:
        {path, created}; created is false when the directory already existed.
    """
    return await _run("create directory", path, _make_directory, ctx, path, parents)


TOOLS: list[Tool] = [
    read_file, write_file, append_file, list_directory, file_search, grep, copy_file, move_file, delete_file,
    file_stat, edit_file, make_directory,
]
