"""Filesystem tools: read, write, list, search and change files inside the allowed paths.

Every path goes through ``ctx.policy.check_path`` (symlinks and ``..`` are resolved first, so
neither leaves an allowed root). The blocking work runs in a worker thread
(``asyncio.to_thread``), so a call never stalls the I/O loop. Writes are atomic (temporary file +
``os.replace``) and fsynced before the tool returns. Paths in results are absolute.
"""

from __future__ import annotations

from ..base import Tool
from .common import (
    BINARY_SNIFF,
    CATEGORY,
    DEFAULT_READ_BYTES,
    GREP_FILE_LIMIT,
    HASH_LIMIT,
    MAX_EDIT_BYTES,
    MAX_ENTRIES,
    MAX_LINE_CHARS,
    MAX_READ_BYTES,
    MAX_WRITE_BYTES,
)
from .manage import copy_file, delete_file, file_stat, make_directory, move_file
from .read_write import append_file, edit_file, read_file, write_file
from .search import file_search, grep, list_directory

__all__ = [
    "BINARY_SNIFF", "CATEGORY", "DEFAULT_READ_BYTES", "GREP_FILE_LIMIT", "HASH_LIMIT", "MAX_EDIT_BYTES",
    "MAX_ENTRIES", "MAX_LINE_CHARS", "MAX_READ_BYTES", "MAX_WRITE_BYTES", "TOOLS", "append_file", "copy_file",
    "delete_file", "edit_file", "file_search", "file_stat", "grep", "list_directory", "make_directory",
    "move_file", "read_file", "write_file",
]

TOOLS: list[Tool] = [
    read_file, write_file, append_file, list_directory, file_search, grep, copy_file, move_file, delete_file,
    file_stat, edit_file, make_directory,
]
