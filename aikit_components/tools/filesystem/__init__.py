"""Filesystem tools: read, write, list, search and change files inside the allowed paths.

Every path goes through ``ctx.policy.check_path`` (symlinks and ``..`` are resolved first, so
neither leaves an allowed root). The blocking work runs in a worker thread
(``asyncio.to_thread``), so a call never stalls the I/O loop. Writes are atomic (temporary file +
``os.replace``) and fsynced before the tool returns. Paths in results are absolute.

Modules: ``common`` (limits and shared helpers), ``read_write`` (file contents), ``search``
(listing, finding, grep), ``manage`` (copy, move, delete, stat, make_directory).
"""

from __future__ import annotations

from ..base import Tool
from .manage import copy_file, delete_file, file_stat, make_directory, move_file
from .read_write import append_file, edit_file, read_file, write_file
from .search import file_search, grep, list_directory

__all__ = ["TOOLS"]

TOOLS: list[Tool] = [
    read_file, write_file, append_file, list_directory, file_search, grep, copy_file, move_file, delete_file,
    file_stat, edit_file, make_directory,
]
