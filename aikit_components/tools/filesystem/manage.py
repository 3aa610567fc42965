"""Managing files as wholes: copy_file, move_file, delete_file, file_stat, make_directory."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
from pathlib import Path
from typing import Any

from ...errors import Conflict, InvalidArgument, NotFound, PermissionDenied
from .._fsutil import (
    MiB,
    atomic_write,
    checked,
    checked_entry,
    fsync_dir,
    is_protected,
    iso_time,
    kind_of,
    lexists,
    none_means_default,
    os_error,
)
from ..base import ToolContext, tool
from .common import CATEGORY, HASH_LIMIT, checked_lstat, guarded, need_regular_file, run_blocking


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
        need_regular_file(src, "copy")
    target = _final_target(ctx, src, destination)
    exists = _check_target(src, is_dir, target, overwrite, "copy")
    with guarded("copy", src):
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
        {source, destination, type, files, bytes, replaced}; destination is the final path, files and bytes
        count what was copied.
    """
    return await run_blocking("copy", source, _copy_file, ctx, source, destination, overwrite)


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
    with guarded("move", src):
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
    return await run_blocking("move", source, _move_file, ctx, source, destination, overwrite)


# ----------------------------------------------------------------------------- delete_file
def _delete_file(ctx: ToolContext, path: str, recursive: bool) -> dict[str, Any]:
    _, entry = checked_entry(ctx, path, write=True)
    if not lexists(entry):
        raise NotFound(f"cannot delete {entry}: no such file or directory", details={"path": str(entry)})
    root = is_protected(ctx, entry)
    if root is not None:
        raise PermissionDenied(f"refusing to delete {entry}: it is (or contains) the allowed root {root}; "
                               "delete the files inside it instead", details={"rule": "protected_root", "path": str(entry)})
    st = checked_lstat(entry, "delete")
    kind = kind_of(st.st_mode)
    files = directories = 0
    with guarded("delete", entry):
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
    return await run_blocking("delete", path, _delete_file, ctx, path, recursive)


# ----------------------------------------------------------------------------- file_stat
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(MiB), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _file_stat(ctx: ToolContext, path: str) -> dict[str, Any]:
    resolved, entry = checked_entry(ctx, path)
    lst = checked_lstat(entry, "stat")
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
            with guarded("hash", resolved):
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
        {path, name, type, exists, size, mode, permissions, modified, created, accessed, is_symlink,
        link_target, resolved_path, sha256}; times are ISO 8601 UTC.
    """
    return await run_blocking("stat", path, _file_stat, ctx, path)


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
    return await run_blocking("create directory", path, _make_directory, ctx, path, parents)
