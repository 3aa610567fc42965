"""What the filesystem tools share: their limits, argument checks, text encoding and decoding,
stat helpers and the worker-thread runner that turns OSErrors into aikit errors."""

from __future__ import annotations

import asyncio
import base64
import binascii
import codecs
import os
import shutil
import stat
from pathlib import Path
from typing import Any

from ...errors import AikitError, InvalidArgument, IOFailure
from .._fsutil import (
    MiB,
    iso_time,
    kind_of,
    os_error,
)

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
def bounded(name: str, value: int, low: int, high: int) -> int:
    """``value`` when ``low <= value <= high``; an InvalidArgument naming the parameter otherwise."""
    if value < low or value > high:
        raise InvalidArgument(f"{name} must be between {low} and {high}, got {value}",
                              details={"parameter": name, "minimum": low, "maximum": high})
    return value


def text_codec(encoding: str) -> str:
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


def encode_text(content: str, encoding: str, what: str) -> bytes:
    """``content`` as bytes in ``encoding`` (``base64``: decoded from base64); InvalidArgument when it cannot be."""
    codec = text_codec(encoding)
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


def decode_text(data: bytes, encoding: str, path: Path, final: bool = True) -> str:
    """``data`` read from ``path`` as text in ``encoding`` (``base64``: encoded as base64)."""
    codec = text_codec(encoding)
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


def checked_lstat(path: Path, action: str) -> os.stat_result:
    """``os.lstat(path)``, its OSError turned into the aikit error for ``action``."""
    try:
        return os.lstat(path)
    except OSError as exc:
        raise os_error(exc, action, path) from None


def need_regular_file(path: Path, action: str) -> os.stat_result:
    """The stat of ``path`` (symlinks followed); InvalidArgument unless it is a regular file."""
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


def entry_info(path: Path, name: str, st: os.stat_result) -> dict[str, Any]:
    """A directory entry as a JSON-like dict: name, path, type, size, modified time (and link target)."""
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


class guarded:
    """``with guarded("copy", path):`` turns a stray OSError into an aikit error."""

    def __init__(self, action: str, path: object) -> None:
        self.action, self.path = action, path

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> bool:
        error = _translate(exc, self.action, self.path) if exc is not None else None
        if error is not None:
            raise error from None
        return False


async def run_blocking(action: str, path: object, fn: Any, *args: Any) -> Any:
    """Run the blocking ``fn(*args)`` in a worker thread; no raw OSError escapes."""
    try:
        return await asyncio.to_thread(fn, *args)
    except OSError as exc:
        error = _translate(exc, action, path)
        raise (error or exc) from None
