"""Finding files and text: list_directory, file_search (names by glob), grep (contents)."""

from __future__ import annotations

import fnmatch
import os
import re
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ...errors import InvalidArgument, NotFound, PermissionDenied, Timeout
from .._fsutil import (
    checked,
    kind_of,
    lexists,
    none_means_default,
    os_error,
)
from ..base import ToolContext, tool
from .common import (
    BINARY_SNIFF,
    CATEGORY,
    GREP_FILE_LIMIT,
    MAX_ENTRIES,
    MAX_LINE_CHARS,
    bounded,
    checked_lstat,
    entry_info,
    need_regular_file,
    run_blocking,
)

try:  # a backtracking engine with a timeout (the same one the regex tool uses)
    import regex as _re_engine

    _HAS_TIMEOUT = True
except ImportError:  # pragma: no cover - without it, a pattern is bounded only by the line length cap
    _re_engine = re  # type: ignore[assignment]
    _HAS_TIMEOUT = False

GREP_TIMEOUT_S = 30.0  # the whole search
GREP_LINE_TIMEOUT_S = 2.0  # one line (as the regex tool): more is catastrophic backtracking, not a big file


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
    bounded("max_entries", max_entries, 1, MAX_ENTRIES)
    top = checked(ctx, path)
    st = checked_lstat(top, "list")
    if not stat.S_ISDIR(st.st_mode):
        raise InvalidArgument(f"cannot list {top}: it is a {kind_of(st.st_mode)}, not a directory "
                              "(file_stat describes a single file)", details={"path": str(top)})
    entries: list[dict[str, Any]] = []
    truncated = False
    for entry_path, name, entry_st in _walk_entries(top, recursive, include_hidden):
        if len(entries) >= max_entries:
            truncated = True
            break
        entries.append(entry_info(entry_path, name, entry_st))
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
        {path, entries, count, truncated}; each entry has name, path, type (file, directory, symlink, other),
        size (null for directories) and modified (ISO 8601 UTC).
    """
    return await run_blocking("list", path, _list_directory, ctx, path, recursive, include_hidden, max_entries)


# ----------------------------------------------------------------------------- file_search
def _file_search(ctx: ToolContext, pattern: str, root: str, max_results: int) -> dict[str, Any]:
    bounded("max_results", max_results, 1, MAX_ENTRIES)
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
        {root, pattern, matches, count, truncated, skipped_outside}; each match has name (relative to root),
        path, type and size.
    """
    return await run_blocking("search", root, _file_search, ctx, pattern, root, max_results)


# ----------------------------------------------------------------------------- grep
def _grep_files(ctx: ToolContext, top: Path, glob: str, stats: dict[str, int]) -> Iterator[tuple[Path, str]]:
    """(file to open, name relative to top): directories are walked without following symlinks;
    a symlinked file is searched only when it resolves inside the allowed paths, and then its
    resolved path is what is opened (the link cannot be swapped for another between check and open)."""
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
            yield real, name
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        yield path, name


def _search(rx: Any, line: str, deadline: float, pattern: str) -> Any:
    """``rx.search(line)`` within what is left of the grep's time budget (a pattern with
    catastrophic backtracking, such as ``(a+)+$``, cannot hang the call)."""
    left = min(deadline - time.monotonic(), GREP_LINE_TIMEOUT_S)
    try:
        if left <= 0:
            raise TimeoutError
        return rx.search(line, timeout=left) if _HAS_TIMEOUT else rx.search(line)
    except TimeoutError:
        raise Timeout(f"grep ran longer than its time budget ({GREP_LINE_TIMEOUT_S:g} s a line, {GREP_TIMEOUT_S:g} s in "
                      f"all; catastrophic backtracking in {pattern!r}?); avoid "
                      "nested quantifiers such as (a+)+, anchor the pattern, pass regex=false for literal text or "
                      "search fewer files", details={"pattern": pattern, "timeout_s": GREP_TIMEOUT_S}) from None


def _grep(ctx: ToolContext, pattern: str, path: str, glob: str, regex: bool, ignore_case: bool,
          max_matches: int) -> dict[str, Any]:
    bounded("max_matches", max_matches, 1, MAX_ENTRIES)
    if pattern == "":
        raise InvalidArgument("pattern is empty; pass the text (or regular expression) to search for")
    if not glob:
        raise InvalidArgument("glob is empty; pass '*' to search every file")
    try:
        rx = _re_engine.compile(pattern if regex else re.escape(pattern), _re_engine.IGNORECASE if ignore_case else 0)
    except _re_engine.error as exc:
        raise InvalidArgument(f"invalid regular expression {pattern!r}: {exc}; escape special characters or "
                              "pass regex=false to search for the literal text", details={"pattern": pattern}) from None
    top = checked(ctx, path)
    if not lexists(top):
        raise NotFound(f"cannot search {top}: no such file or directory", details={"path": str(top)})
    if not top.is_dir():
        need_regular_file(top, "search")
    stats = {"files_searched": 0, "skipped_binary": 0, "skipped_large": 0, "skipped_outside": 0}
    matches: list[dict[str, Any]] = []
    truncated = False
    deadline = time.monotonic() + GREP_TIMEOUT_S
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
                    found = _search(rx, line, deadline, pattern)
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
        {pattern, path, matches, count, truncated, files_searched, skipped_binary, skipped_large,
        skipped_outside}; each match has file (relative to path), path, line, column (1-based) and text.
    """
    return await run_blocking("search", path, _grep, ctx, pattern, path, glob, regex, ignore_case, max_matches)
