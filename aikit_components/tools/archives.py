"""Archive tools: create, list and safely extract zip and tar (plain, gzip, bzip2, xz) archives.

Extraction checks every member before writing anything: absolute names, ``..`` components,
symlinks or hard links leading outside the destination and device/FIFO members are refused with
PermissionDenied naming the member; the total uncompressed size and the member count are capped
(zip-bomb guard, ResourceExhausted). While writing, each target is resolved again so a symlink
created earlier (or already present) cannot redirect a write outside the destination, and the
bytes actually written are counted against the cap. Each symlink is checked on disk as it is made
(the whole chain, through links the archive made earlier) and all of them again after the last
member, so ``a -> .`` followed by ``b -> a/a/../../x`` (inside when read as text, outside on
disk) is refused. A failed extraction removes what it wrote.
"""

from __future__ import annotations

import asyncio
import calendar
import lzma
import os
import posixpath
import re
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..errors import AikitError, Conflict, InvalidArgument, NotFound, PermissionDenied, ResourceExhausted
from ._fsutil import UMASK, GiB, MiB, checked, fsync_dir, iso_time, lexists, none_means_default, os_error
from .base import Tool, ToolContext, tool

CATEGORY = "archives"

Format = Literal["zip", "tar", "tar.gz", "tar.bz2", "tar.xz"]
FormatOrAuto = Literal["auto", "zip", "tar", "tar.gz", "tar.bz2", "tar.xz"]

DEFAULT_MAX_TOTAL_BYTES = 1 * GiB
DEFAULT_MAX_MEMBERS = 10_000
HARD_MAX_MEMBERS = 1_000_000
MAX_LIST_ENTRIES = 100_000
MAX_SYMLINK_TARGET = 4096

_TAR_MODES = {"tar": "", "tar.gz": "gz", "tar.bz2": "bz2", "tar.xz": "xz"}
_SUFFIXES = (
    (".tar.gz", "tar.gz"), (".tgz", "tar.gz"), (".tar.bz2", "tar.bz2"), (".tbz2", "tar.bz2"), (".tbz", "tar.bz2"),
    (".tar.xz", "tar.xz"), (".txz", "tar.xz"), (".tar", "tar"), (".zip", "zip"),
)
_CORRUPT = (zipfile.BadZipFile, zipfile.LargeZipFile, tarfile.TarError, EOFError, zlib.error, lzma.LZMAError)
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")


def _format_from_name(name: str) -> str | None:
    lower = name.lower()
    for suffix, fmt in _SUFFIXES:
        if lower.endswith(suffix):
            return fmt
    return None


def _corrupt(archive: Path, fmt: str, exc: BaseException) -> InvalidArgument:
    return InvalidArgument(f"{archive} is not a readable {fmt} archive ({type(exc).__name__}: {exc}); check the file, "
                           "or pass format='auto' to detect the format from its content",
                           details={"path": str(archive), "format": fmt})


# ----------------------------------------------------------------------------- reading archives
@dataclass
class _Member:
    name: str            # as stored in the archive
    kind: str            # file | directory | symlink | hardlink | device | fifo | other
    size: int
    mode: int | None
    mtime: float | None
    link: str | None = None         # symlink / hard link target as stored
    compressed: int | None = None   # zip only
    ref: Any = None                 # ZipInfo / TarInfo
    encrypted: bool = False


def _detect(archive: Path) -> str:
    with open(archive, "rb") as fh:
        head = fh.read(6)
    if zipfile.is_zipfile(archive):
        return "zip"
    if head.startswith(b"\x1f\x8b"):
        return "tar.gz"
    if head.startswith(b"BZh"):
        return "tar.bz2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "tar.xz"
    if tarfile.is_tarfile(archive):
        return "tar"
    raise InvalidArgument(f"{archive} is not a zip or tar archive (its content matches neither); pass the right "
                          "file, or name the format explicitly", details={"path": str(archive)})


def _zip_members(zf: zipfile.ZipFile) -> Iterator[_Member]:
    for info in zf.infolist():
        mode = (info.external_attr >> 16) & 0xFFFF if info.create_system == 3 else 0  # 3: Unix attributes
        ftype = stat.S_IFMT(mode)
        if info.is_dir():
            kind = "directory"
        elif ftype == stat.S_IFLNK:
            kind = "symlink"
        elif ftype in (stat.S_IFCHR, stat.S_IFBLK):
            kind = "device"
        elif ftype == stat.S_IFIFO:
            kind = "fifo"
        elif ftype in (0, stat.S_IFREG):
            kind = "file"
        else:
            kind = "other"
        link = None
        if kind == "symlink" and info.file_size <= MAX_SYMLINK_TARGET and not info.flag_bits & 0x1:
            link = zf.read(info).decode("utf-8", errors="replace")
        try:
            mtime = float(calendar.timegm((*info.date_time, 0, 0, 0)))
        except (ValueError, OverflowError):
            mtime = None
        yield _Member(info.filename, kind, info.file_size, stat.S_IMODE(mode) or None, mtime, link,
                      info.compress_size, info, bool(info.flag_bits & 0x1))


def _tar_members(tf: tarfile.TarFile) -> Iterator[_Member]:
    for info in tf:
        if info.isdir():
            kind = "directory"
        elif info.issym():
            kind = "symlink"
        elif info.islnk():
            kind = "hardlink"
        elif info.isreg():
            kind = "file"
        elif info.ischr() or info.isblk():
            kind = "device"
        elif info.isfifo():
            kind = "fifo"
        else:
            kind = "other"
        yield _Member(info.name, kind, info.size if kind == "file" else 0, info.mode, float(info.mtime),
                      info.linkname or None, None, info)


class _Reader:
    """An open archive of either kind with a uniform member list."""

    def __init__(self, archive: Path, fmt: str) -> None:
        self.archive, self.format = archive, fmt
        self._zip: zipfile.ZipFile | None = None
        self._tar: tarfile.TarFile | None = None
        try:
            if fmt == "zip":
                self._zip = zipfile.ZipFile(archive)
            else:
                self._tar = tarfile.open(archive, "r:" + _TAR_MODES[fmt])  # noqa: SIM115 - closed by close()
        except _CORRUPT as exc:
            raise _corrupt(archive, fmt, exc) from None
        except OSError as exc:
            if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
                raise os_error(exc, "open", archive) from None
            raise _corrupt(archive, fmt, exc) from None  # gzip.BadGzipFile and friends

    def __enter__(self) -> _Reader:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._zip is not None:
            self._zip.close()
        if self._tar is not None:
            self._tar.close()

    def members(self, limit: int | None = None) -> list[_Member]:
        """Every member; with ``limit``, stop reading after limit + 1 (the caller reports the excess)."""
        source = _zip_members(self._zip) if self._zip is not None else _tar_members(self._tar)  # type: ignore[arg-type]
        found: list[_Member] = []
        try:
            for member in source:
                found.append(member)
                if limit is not None and len(found) > limit:
                    break
        except _CORRUPT as exc:
            raise _corrupt(self.archive, self.format, exc) from None
        except OSError as exc:
            raise _corrupt(self.archive, self.format, exc) from None
        return found

    def open_member(self, member: _Member) -> Any:
        if self._zip is not None:
            return self._zip.open(member.ref)
        handle = self._tar.extractfile(member.ref)  # type: ignore[union-attr]
        if handle is None:
            raise InvalidArgument(f"cannot read member {member.name!r} of {self.archive}")
        return handle


def _open_archive(ctx: ToolContext, archive: str, format: str) -> tuple[Path, str]:
    path = checked(ctx, archive)
    if not path.exists():
        raise NotFound(f"archive {path} does not exist; check the path (list_directory shows what exists)",
                       details={"path": str(path)})
    if not path.is_file():
        raise InvalidArgument(f"{path} is not a file; pass the archive file's path", details={"path": str(path)})
    try:
        fmt = _detect(path) if format == "auto" else format
    except OSError as exc:
        raise os_error(exc, "read", path) from None
    return path, fmt


# ----------------------------------------------------------------------------- member safety
def _split(name: str) -> list[str]:
    return [part for part in re.split(r"[\\/]", name) if part not in ("", ".")]


def _unsafe_reason(member: _Member, file_names: set[str]) -> str | None:
    """Why extracting ``member`` would be unsafe (None: it is safe)."""
    name = member.name
    if name.startswith(("/", "\\")) or _WINDOWS_DRIVE.match(name):
        return "absolute path"
    parts = _split(name)
    if ".." in parts:
        return "path contains '..' (it would land outside the destination)"
    if "\x00" in name:
        return "name contains a NUL byte"
    if member.kind in ("device", "fifo", "other"):
        return f"{member.kind} member (only files, directories and links can be extracted)"
    if member.encrypted:
        return None  # reported as InvalidArgument, not a security issue
    if member.kind == "symlink":
        target = member.link
        if target is None or target == "":
            return "symlink without a readable target"
        if target.startswith(("/", "\\")) or _WINDOWS_DRIVE.match(target):
            return f"symlink to the absolute path {target!r}"
        base = posixpath.dirname("/".join(parts))
        joined = posixpath.normpath(posixpath.join(base, "/".join(re.split(r"[\\/]", target))))
        if joined == ".." or joined.startswith("../") or joined.startswith("/"):
            return f"symlink to {target!r}, which points outside the destination"
    if member.kind == "hardlink":
        target = member.link or ""
        if target.startswith(("/", "\\")) or _WINDOWS_DRIVE.match(target):
            return f"hard link to the absolute path {target!r}"
        tparts = _split(target)
        if not tparts or ".." in tparts:
            return f"hard link to {target!r}, which points outside the destination"
        if "/".join(tparts) not in file_names:
            return f"hard link to {target!r}, which is not a file stored earlier in the archive"
    return None


def _validate(archive: Path, members: list[_Member], max_total_bytes: int, max_members: int) -> int:
    """Check every member before anything is written; return the declared total size."""
    if len(members) > max_members:
        raise ResourceExhausted(
            f"{archive} has more than {max_members} members; extraction refused (zip-bomb guard). Pass a larger "
            "max_members if you trust this archive", details={"path": str(archive), "limit": max_members})
    total = 0
    file_names: set[str] = set()
    for member in members:
        reason = _unsafe_reason(member, file_names)
        if reason is not None:
            raise PermissionDenied(
                f"refusing to extract {archive}: member {member.name!r} is unsafe ({reason}); nothing was extracted",
                details={"rule": "archive_member", "member": member.name, "reason": reason, "path": str(archive)})
        if member.encrypted:
            raise InvalidArgument(f"member {member.name!r} of {archive} is encrypted; encrypted archives are not "
                                  "supported", details={"member": member.name})
        if member.kind == "file":
            file_names.add("/".join(_split(member.name)))
            total += member.size
        if total > max_total_bytes:
            raise ResourceExhausted(
                f"{archive} would unpack to more than {max_total_bytes} bytes; extraction refused (zip-bomb guard). "
                "Pass a larger max_total_bytes if you trust this archive",
                details={"path": str(archive), "limit": max_total_bytes, "member": member.name})
    return total


# ----------------------------------------------------------------------------- compress
def _compress(ctx: ToolContext, source: str, destination: str, format: str, overwrite: bool) -> dict[str, Any]:
    src = checked(ctx, source)
    if not lexists(src):
        raise NotFound(f"cannot compress {src}: no such file or directory", details={"path": str(src)})
    dest = checked(ctx, destination, write=True)
    if dest.is_dir():
        raise InvalidArgument(f"destination {dest} is a directory; pass the archive's file path, e.g. "
                              f"{str(Path(destination) / (src.name + '.' + format))!r}", details={"path": str(dest)})
    named = _format_from_name(dest.name)
    if named is not None and named != format:
        raise InvalidArgument(f"destination {dest.name!r} looks like a {named} archive but format is {format!r}; "
                              f"pass format={named!r} or rename the destination", details={"format": format})
    if lexists(dest) and not overwrite:
        raise Conflict(f"{dest} already exists; pass overwrite=true to replace it", details={"path": str(dest)})
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise os_error(exc, "create directory", dest.parent) from None

    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    skip = {tmp, dest}
    counts = {"files": 0, "directories": 0, "symlinks": 0, "uncompressed_bytes": 0}
    try:
        entries = list(_tree(src, src.name, skip))
        if format == "zip":
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, strict_timestamps=False) as zf:
                for path, arcname, kind in entries:
                    if kind == "directory":
                        zf.write(path, arcname + "/")
                        counts["directories"] += 1
                        continue
                    real = path
                    if kind == "symlink":
                        real = checked(ctx, path)  # zip stores content: the target must be allowed
                        if real.is_dir():
                            counts["symlinks"] += 1
                            continue  # a symlinked directory is not followed
                        if not real.is_file():
                            continue  # dangling
                    zf.write(real, arcname)
                    counts["files"] += 1
                    counts["uncompressed_bytes"] += real.stat().st_size
        else:
            with tarfile.open(tmp, "w:" + _TAR_MODES[format]) as tf:
                for path, arcname, kind in entries:
                    tf.add(path, arcname, recursive=False)  # symlinks are stored as links, not followed
                    if kind == "directory":
                        counts["directories"] += 1
                    elif kind == "symlink":
                        counts["symlinks"] += 1
                    else:
                        counts["files"] += 1
                        counts["uncompressed_bytes"] += path.lstat().st_size
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~UMASK)
        os.replace(tmp, dest)
    except BaseException as exc:
        with suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError):
            raise os_error(exc, "compress", getattr(exc, "filename", None) or src) from None
        raise
    fsync_dir(dest.parent)
    return {"archive": str(dest), "format": format, "source": str(src), **counts, "bytes": dest.stat().st_size}


def _tree(src: Path, arcname: str, skip: set[Path]) -> Iterator[tuple[Path, str, str]]:
    """(path, archive name, kind) for ``src`` and everything under it, symlinks not followed."""
    st = src.lstat()
    if stat.S_ISLNK(st.st_mode):
        yield src, arcname, "symlink"
        return
    if not stat.S_ISDIR(st.st_mode):
        if stat.S_ISREG(st.st_mode):
            yield src, arcname, "file"
        return
    yield src, arcname, "directory"
    for entry in sorted(os.scandir(src), key=lambda e: e.name):
        path = Path(entry.path)
        if path in skip:
            continue
        yield from _tree(path, f"{arcname}/{entry.name}", skip)


@tool(category=CATEGORY, security="write", examples=[
    {"args": {"source": "reports", "destination": "reports.zip"},
     "result": {"archive": "/home/me/project/reports.zip", "format": "zip", "source": "/home/me/project/reports",
                "files": 3, "directories": 1, "symlinks": 0, "uncompressed_bytes": 18000, "bytes": 5200}},
])
@none_means_default
async def compress(ctx: ToolContext, source: str, destination: str, format: Format = "zip",
                   overwrite: bool = False) -> dict[str, Any]:
    """Pack a file or a directory into a zip or tar archive.

    A directory is stored under its own name (reports/... for source "reports"). The archive is
    written to a temporary file and renamed into place when complete. Tar formats store
    symlinks as links; zip stores the content of symlinked files (their targets must be inside
    the allowed paths) and skips symlinked directories.

    Args:
        source: The file or directory to pack, inside the allowed paths.
        destination: The archive file to create, inside the allowed paths; its extension must agree with format.
        format: Archive format: "zip", "tar", "tar.gz", "tar.bz2" or "tar.xz".
        overwrite: Replace an existing archive; when false an existing file is a conflict error.

    Returns:
        {archive, format, source, files, directories, symlinks, uncompressed_bytes, bytes}; bytes is the archive's size.
    """
    return await _run("compress", source, _compress, ctx, source, destination, format, overwrite)


# ----------------------------------------------------------------------------- extract
class _Extraction:
    """Writes validated members below ``dest``, tracking what it created for cleanup."""

    def __init__(self, ctx: ToolContext, reader: _Reader, dest: Path, max_total_bytes: int) -> None:
        self.ctx, self.reader, self.dest, self.limit = ctx, reader, dest, max_total_bytes
        self.created: list[Path] = []
        self.written = 0
        self.counts = {"files": 0, "directories": 0, "symlinks": 0}

    def target(self, member: _Member) -> Path:
        """The member's path, resolved again now: earlier symlinks cannot redirect it outside."""
        lexical = self.dest / "/".join(_split(member.name))
        parent = self.inside(lexical.parent, member)
        return parent / lexical.name

    def inside(self, directory: Path, member: _Member) -> Path:
        """``directory`` resolved; PermissionDenied when a symlink takes it outside the destination."""
        real = directory.resolve()
        if not (real == self.dest or real.is_relative_to(self.dest)):
            raise PermissionDenied(
                f"refusing to extract member {member.name!r}: its directory resolves to {real}, outside the "
                "destination (through a symlink); nothing outside was written",
                details={"rule": "archive_member", "member": member.name})
        return checked(self.ctx, real, write=True)

    def make_dirs(self, directory: Path, member: _Member) -> None:
        missing: list[Path] = []
        probe = directory
        while not lexists(probe) and probe != self.dest:
            missing.append(probe)
            probe = probe.parent
        self.inside(probe, member)  # the deepest existing ancestor must not lead outside
        for path in reversed(missing):
            path.mkdir()
            self.created.append(path)

    def clear(self, target: Path, member: _Member) -> None:
        if target.is_symlink() or (lexists(target) and not target.is_dir()):
            target.unlink()
        elif target.is_dir():
            raise Conflict(f"cannot extract {member.name!r}: {target} is a directory; delete it first or extract "
                           "elsewhere", details={"member": member.name, "path": str(target)})

    def run(self, members: list[_Member]) -> None:
        for member in members:
            if not _split(member.name):
                continue  # the archive's own root entry
            self.make_dirs(self.dest / posixpath.dirname("/".join(_split(member.name))), member)
            target = self.target(member)
            if member.kind == "directory":
                if not target.is_dir():
                    if lexists(target):
                        self.clear(target, member)
                    target.mkdir()
                    self.created.append(target)
                self.counts["directories"] += 1
            elif member.kind == "symlink":
                self.clear(target, member)
                os.symlink("/".join(re.split(r"[\\/]", member.link or "")), target)
                self.created.append(target)
                self.check_link(target, member)
                self.counts["symlinks"] += 1
            elif member.kind == "hardlink":
                source = self.dest / "/".join(_split(member.link or ""))
                real = source.resolve()
                if not real.is_relative_to(self.dest) or not real.is_file():
                    raise PermissionDenied(
                        f"refusing to extract hard link {member.name!r}: its target {member.link!r} is not a file "
                        "extracted inside the destination", details={"rule": "archive_member", "member": member.name})
                self.clear(target, member)
                self.copy_stream(member, open(real, "rb"), target)  # noqa: SIM115 - copy_stream closes it
            else:
                self.clear(target, member)
                self.copy_stream(member, self.reader.open_member(member), target)

    def check_link(self, link: Path, member: _Member) -> None:
        """The whole chain from ``link`` (through links created earlier in this archive, or that were
        already there) must end inside the destination: ``a -> .`` then ``b -> a/a/../../x`` looks
        inside when read as text but is not on disk."""
        try:
            real = link.resolve()
        except (RuntimeError, OSError):  # a loop: harmless for the paths, but refused all the same
            real = None
        if real is None or not (real == self.dest or real.is_relative_to(self.dest)):
            where = f"resolves to {real}" if real is not None else "is a symlink loop"
            raise PermissionDenied(
                f"refusing to extract {self.reader.archive}: the symlink {member.name!r} -> {member.link!r} {where}, "
                "outside the destination (following the links the archive creates); nothing was extracted. Extract "
                "only archives whose links stay inside them",
                details={"rule": "archive_member", "member": member.name, "reason": "symlink chain leaves the "
                         "destination", "resolved": str(real) if real is not None else None})

    def check_all_links(self) -> None:
        """After the last member: a later member may have replaced a link an earlier one goes through."""
        for path in self.created:
            if path.is_symlink():
                self.check_link(path, _Member(name=os.path.relpath(path, self.dest), kind="symlink", size=0,
                                              mode=None, mtime=None, link=os.readlink(path)))

    def copy_stream(self, member: _Member, handle: Any, target: Path) -> None:
        self.created.append(target)
        with handle, open(target, "xb") as out:
            while True:
                try:
                    chunk = handle.read(MiB)
                except _CORRUPT as exc:
                    raise _corrupt(self.reader.archive, self.reader.format, exc) from None
                if not chunk:
                    break
                self.written += len(chunk)
                if self.written > self.limit:
                    raise ResourceExhausted(
                        f"extracting {self.reader.archive} wrote more than {self.limit} bytes (at member "
                        f"{member.name!r}); stopped and removed the partial output (zip-bomb guard)",
                        details={"limit": self.limit, "member": member.name})
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        mode = member.mode if member.mode is not None else 0o644
        os.chmod(target, (mode & 0o755) | 0o600)
        if member.mtime is not None:
            with suppress(OSError, OverflowError, ValueError):
                os.utime(target, (member.mtime, member.mtime))
        self.counts["files"] += 1

    def rollback(self) -> None:
        for path in reversed(self.created):
            with suppress(OSError):
                if path.is_symlink() or not path.is_dir():
                    path.unlink()
                else:
                    path.rmdir()


def _extract(ctx: ToolContext, archive: str, destination: str, format: str, overwrite: bool,
             max_total_bytes: int, max_members: int) -> dict[str, Any]:
    if max_total_bytes < 1:
        raise InvalidArgument(f"max_total_bytes must be at least 1, got {max_total_bytes}")
    if not 1 <= max_members <= HARD_MAX_MEMBERS:
        raise InvalidArgument(f"max_members must be between 1 and {HARD_MAX_MEMBERS}, got {max_members}")
    path, fmt = _open_archive(ctx, archive, format)
    dest = checked(ctx, destination, write=True)
    if lexists(dest) and not dest.is_dir():
        raise InvalidArgument(f"destination {dest} is a file; pass a directory to extract into",
                              details={"path": str(dest)})
    with _Reader(path, fmt) as reader:
        members = reader.members(limit=max_members)
        declared = _validate(path, members, max_total_bytes, max_members)
        conflicts = [m.name for m in members if _split(m.name) and m.kind != "directory"
                     and lexists(dest / "/".join(_split(m.name)))]
        if conflicts and not overwrite:
            more = f" and {len(conflicts) - 5} more" if len(conflicts) > 5 else ""
            shown = ", ".join(repr(n) for n in conflicts[:5]) + more
            raise Conflict(f"extracting {path} would overwrite existing files in {dest} ({shown}); pass "
                           "overwrite=true to replace them, or extract into an empty directory",
                           details={"path": str(dest), "conflicts": conflicts[:100]})
        created_dest = not lexists(dest)
        dest.mkdir(parents=True, exist_ok=True)
        job = _Extraction(ctx, reader, dest.resolve(), max_total_bytes)
        try:
            job.run(members)
            job.check_all_links()
        except BaseException:
            job.rollback()
            if created_dest:
                with suppress(OSError):
                    dest.rmdir()
            raise
    fsync_dir(dest)
    return {"archive": str(path), "destination": str(dest), "format": fmt, **job.counts,
            "bytes": job.written, "declared_bytes": declared}


@tool(category=CATEGORY, security="write", examples=[
    {"args": {"archive": "data.tar.gz", "destination": "data"},
     "result": {"archive": "/home/me/project/data.tar.gz", "destination": "/home/me/project/data",
                "format": "tar.gz", "files": 2, "directories": 1, "symlinks": 0, "bytes": 4096,
                "declared_bytes": 4096}},
])
@none_means_default
async def extract(ctx: ToolContext, archive: str, destination: str, format: FormatOrAuto = "auto",
                  overwrite: bool = False, max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
                  max_members: int = DEFAULT_MAX_MEMBERS) -> dict[str, Any]:
    """Unpack a zip or tar archive into a directory, refusing unsafe members.

    Every member is checked before anything is written: absolute paths, ".." components,
    symlinks or hard links pointing outside the destination and device or FIFO members make
    the whole extraction fail with permission_denied naming the member. Archives that would
    unpack to more than max_total_bytes or hold more than max_members entries are refused
    (zip-bomb guard). Hard links are extracted as copies. On failure, what was written is removed.

    Args:
        archive: The archive file, inside the allowed paths.
        destination: The directory to extract into (created when missing), inside the allowed paths.
        format: "auto" detects the format from the file's content; or "zip", "tar", "tar.gz", "tar.bz2", "tar.xz".
        overwrite: Replace existing files in the destination; when false any existing file is a conflict error.
        max_total_bytes: The most bytes the extracted files may add up to (default 1 GiB).
        max_members: The most entries the archive may hold (1 to 1000000, default 10000).

    Returns:
        {archive, destination, format, files, directories, symlinks, bytes, declared_bytes}; bytes were actually written.
    """
    return await _run("extract", archive, _extract, ctx, archive, destination, format, overwrite,
                      max_total_bytes, max_members)


# ----------------------------------------------------------------------------- list_archive
def _list_archive(ctx: ToolContext, archive: str, format: str, max_entries: int) -> dict[str, Any]:
    if not 1 <= max_entries <= MAX_LIST_ENTRIES:
        raise InvalidArgument(f"max_entries must be between 1 and {MAX_LIST_ENTRIES}, got {max_entries}")
    path, fmt = _open_archive(ctx, archive, format)
    with _Reader(path, fmt) as reader:
        members = reader.members(limit=max_entries)
    truncated = len(members) > max_entries
    members = members[:max_entries]
    entries: list[dict[str, Any]] = []
    unsafe: list[dict[str, str]] = []
    file_names: set[str] = set()
    total = 0
    for member in members:
        entry: dict[str, Any] = {"name": member.name, "type": member.kind, "size": member.size,
                                 "modified": iso_time(member.mtime) if member.mtime is not None else None}
        if member.compressed is not None:
            entry["compressed_size"] = member.compressed
        if member.link is not None:
            entry["link_target"] = member.link
        if member.encrypted:
            entry["encrypted"] = True
        reason = _unsafe_reason(member, file_names)
        if reason is not None:
            unsafe.append({"name": member.name, "reason": reason})
        if member.kind == "file":
            file_names.add("/".join(_split(member.name)))
            total += member.size
        entries.append(entry)
    return {"archive": str(path), "format": fmt, "entries": entries, "count": len(entries), "total_size": total,
            "truncated": truncated, "unsafe": unsafe}


@tool(category=CATEGORY, security="read", examples=[
    {"args": {"archive": "reports.zip"},
     "result": {"archive": "/home/me/project/reports.zip", "format": "zip", "count": 1, "total_size": 6000,
                "truncated": False, "unsafe": [], "entries": [
                    {"name": "reports/q1.csv", "type": "file", "size": 6000, "compressed_size": 1800,
                     "modified": "2024-05-01T12:00:00Z"}]}},
])
@none_means_default
async def list_archive(ctx: ToolContext, archive: str, format: FormatOrAuto = "auto",
                       max_entries: int = 10_000) -> dict[str, Any]:
    """List the members of a zip or tar archive without extracting it.

    Members that extract would refuse (absolute paths, "..", links leading outside, devices)
    are listed in unsafe with the reason.

    Args:
        archive: The archive file, inside the allowed paths.
        format: "auto" detects the format from the file's content; or "zip", "tar", "tar.gz", "tar.bz2", "tar.xz".
        max_entries: List at most this many members (1 to 100000) and set truncated = true beyond.

    Returns:
        {archive, format, entries, count, total_size, truncated, unsafe}; each entry has name, type, size,
        modified and, where relevant, compressed_size and link_target.
    """
    return await _run("list", archive, _list_archive, ctx, archive, format, max_entries)


# ----------------------------------------------------------------------------- plumbing
async def _run(action: str, path: object, fn: Any, *args: Any) -> Any:
    """Run the blocking ``fn(*args)`` in a worker thread; no raw OSError escapes."""
    try:
        return await asyncio.to_thread(fn, *args)
    except AikitError:
        raise
    except OSError as exc:
        raise os_error(exc, action, getattr(exc, "filename", None) or path) from None
    except _CORRUPT as exc:
        raise InvalidArgument(f"cannot {action} {path}: the archive is corrupt ({type(exc).__name__}: {exc})") from None


TOOLS: list[Tool] = [compress, extract, list_archive]
