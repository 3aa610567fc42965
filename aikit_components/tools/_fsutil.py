"""Helpers shared by the file-touching tool modules (``filesystem``, ``archives``): policy-checked
path resolution, OSError -> aikit error translation, atomic durable writes, JSON-friendly stat
fields. Private: not part of the public tools API."""

from __future__ import annotations

import errno
import functools
import inspect
import os
import stat
import tempfile
from collections.abc import Awaitable, Callable, Iterable
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import AikitError, Conflict, InvalidArgument, IOFailure, NotFound, PermissionDenied, ResourceExhausted
from .base import ToolContext

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


def _read_umask() -> int:
    """The process umask without the set-and-restore race of ``os.umask`` (Linux: /proc)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


UMASK = _read_umask()


# ----------------------------------------------------------------------------- errors
def os_error(exc: OSError, action: str, path: object) -> AikitError:
    """An aikit error for an OSError raised while trying to ``action`` ``path``."""
    name = str(path)
    details = {"path": name, "errno": exc.errno}
    if isinstance(exc, FileNotFoundError):
        return NotFound(f"cannot {action} {name}: no such file or directory; check the path "
                        "(list_directory shows what exists)", details=details)
    if isinstance(exc, IsADirectoryError):
        return InvalidArgument(f"cannot {action} {name}: it is a directory", details=details)
    if isinstance(exc, NotADirectoryError):
        return InvalidArgument(f"cannot {action} {name}: a part of the path is a file, not a directory",
                               details=details)
    if isinstance(exc, FileExistsError):
        return Conflict(f"cannot {action} {name}: it already exists", details=details)
    if isinstance(exc, PermissionError):
        return PermissionDenied(f"the operating system refused to {action} {name} ({exc.strerror}); "
                                "check the file's owner and permissions", details={**details, "rule": "os_permissions"})
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return ResourceExhausted(f"cannot {action} {name}: the disk is full (or the quota is used up); "
                                 "free some space and retry", details=details)
    if exc.errno == errno.ENOTEMPTY:
        return InvalidArgument(f"cannot {action} {name}: the directory is not empty", details=details)
    if exc.errno == errno.ENAMETOOLONG:
        return InvalidArgument(f"cannot {action} {name}: the file name is too long", details=details)
    if exc.errno == errno.ELOOP:
        return InvalidArgument(f"cannot {action} {name}: too many levels of symbolic links (a symlink loop?)",
                               details=details)
    return IOFailure(f"cannot {action} {name}: {exc.strerror or exc}", details=details)


# ----------------------------------------------------------------------------- paths
def checked(ctx: ToolContext, path: str | os.PathLike[str], *, write: bool = False) -> Path:
    """``ctx.policy.check_path`` with the rough edges turned into aikit errors: an empty path is
    refused, a symlink loop is an InvalidArgument instead of a RuntimeError."""
    if isinstance(path, str) and not path.strip():
        raise InvalidArgument("path is empty; pass a file or directory path (relative paths start at the "
                              "working directory)")
    try:
        return ctx.policy.check_path(path, write=write)
    except AikitError:
        raise
    except RuntimeError as exc:  # pathlib: "Symlink loop from ..."
        raise InvalidArgument(f"cannot resolve {str(path)!r}: {exc}; remove or fix the looping symlink",
                              details={"path": str(path)}) from None
    except OSError as exc:
        raise os_error(exc, "resolve", path) from None
    except ValueError as exc:  # e.g. embedded NUL in an os.PathLike
        raise InvalidArgument(f"invalid path {str(path)!r}: {exc}") from None


def checked_entry(ctx: ToolContext, path: str, *, write: bool = False) -> tuple[Path, Path]:
    """(resolved target, the directory entry ``path`` names). They differ only when the last
    component of ``path`` is a symlink: then the entry is the link itself (what delete, move and
    stat act on). Both the target and the link's location must lie inside the allowed paths."""
    resolved = checked(ctx, path, write=write)
    lexical = Path(path).expanduser()
    if not lexical.is_absolute():
        lexical = Path.cwd() / lexical
    if lexical.name in ("", ".", ".."):
        return resolved, resolved
    try:
        parent = lexical.parent.resolve()
    except (RuntimeError, OSError):
        return resolved, resolved
    entry = parent / lexical.name
    if entry != resolved and entry.is_symlink():
        checked(ctx, parent, write=write)
        return resolved, entry
    return resolved, resolved


def is_protected(ctx: ToolContext, path: Path) -> Path | None:
    """The allowed root that ``path`` is, or contains (deleting or moving it would remove a root)."""
    for root in ctx.policy.allowed_paths:
        if root == path or root.is_relative_to(path):
            return root
    return None


def lexists(path: Path) -> bool:
    return os.path.lexists(path)


# ----------------------------------------------------------------------------- stat helpers
def iso_time(ts: float) -> str:
    """A POSIX timestamp as ISO 8601 UTC (``2024-05-01T12:00:00Z``)."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def kind_of(mode: int) -> str:
    """file | directory | symlink | other, from an ``st_mode``."""
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISREG(mode):
        return "file"
    return "other"


# ----------------------------------------------------------------------------- writing
def fsync_dir(directory: Path) -> None:
    """Make a rename or creation in ``directory`` durable (best effort)."""
    with suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(target: Path, chunks: Iterable[bytes], mode: int | None = None) -> int:
    """Write ``chunks`` to a temporary file beside ``target``, fsync it and ``os.replace`` it
    over ``target``; a crash leaves either the old file or the new one. Returns the byte count.
    ``mode`` defaults to the existing file's permissions, or 0o666 minus the umask."""
    if mode is None:
        try:
            mode = stat.S_IMODE(os.stat(target).st_mode)
        except OSError:
            mode = 0o666 & ~UMASK
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    written = 0
    try:
        with os.fdopen(fd, "wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
                written += len(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(target.parent)
    return written



# ----------------------------------------------------------------------------- arguments
def none_means_default(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Let an explicit null for an optional parameter mean "use the default".

    The registry's validator lets ``None`` through for optional parameters and ``bind_args``
    only fills in parameters that are absent, so ``{"max_bytes": null}`` (common in LLM tool
    calls) would reach the function as ``None``. Wrapped under ``@tool``, this keeps the schema
    (``functools.wraps`` exposes the original signature, hints and docstring)."""
    sig = inspect.signature(fn)
    defaults = {name: p.default for name, p in sig.parameters.items()
                if p.default is not inspect.Parameter.empty and p.default is not None}

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        for name, value in kwargs.items():
            if value is None and name in defaults:
                kwargs[name] = defaults[name]
        return await fn(*args, **kwargs)

    return wrapper
