"""The ledger's tail: entries of pure computations, stored in a file of this process before they
are acknowledged, and moved into the hash-chained ledger in batches shortly after.

Why: committing an SQLite transaction costs about 60 µs of CPU even without an fsync, ten times a
trivial tool call. An entry copied into a shared memory map of a file is in the operating
system's page cache, where it survives ``kill -9`` of the process (not a power loss: the same
guarantee as a WAL commit with ``synchronous=NORMAL``), for well under a microsecond.

Each :class:`TailFile` is ``<ledger>-tail-<pid>-<random>`` next to the ledger, one line per entry
(``[at, type, session, data]``), held under an exclusive ``flock`` while its process uses it.
The ledger folds the file's entries into the chain, recording in the same transaction how far
the file is folded (meta key ``tail:<file name>``), so an entry is chained exactly once whatever
moment the process dies at. A full file whose entries are all chained is removed, or emptied and
renamed to be the process's next one (:meth:`TailFile.reuse`: a file's pages cost more to fault in
than the entries cost to copy). A file whose lock can be taken has no owner any more: the next
process that opens the ledger folds what is left of it (:func:`orphans`, :func:`read_entries`)
and removes it.
"""

from __future__ import annotations

import fcntl
import json
import mmap
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

META_PREFIX = "tail:"


def tail_glob(ledger: Path) -> str:
    """The file-name pattern of the tails of ``ledger``."""
    return f"{ledger.name}-tail-*"


_STRING = json.encoder.encode_basestring_ascii


def entry_line(at_text: str, type_: str, session: str | None, data_text: str) -> bytes:
    """One entry as a line of its tail (``at_text``: ``repr`` of its time; ``data_text``: its
    canonical JSON data)."""
    return line_with_head(at_text, line_head(type_, session), data_text)


def line_with_head(at_text: str, head: str, data_text: str) -> bytes:
    """:func:`entry_line` given the entry's :func:`line_head` (which a writer may keep)."""
    return f"[{at_text},{head}{data_text}]\n".encode()


def line_head(type_: str, session: str | None) -> str:
    """What an entry's line holds between its time and its data: ``"type","session",`` (the same
    for many entries: a writer may keep it)."""
    return f"{_STRING(type_)},{'null' if session is None else _STRING(session)},"


#: The size of a tail file, allocated when it is created. A process that fills one starts the
#: next; a file is removed once every entry in it is chained, or emptied to be the next one
#: (:meth:`TailFile.reuse`).
CHUNK = 1 << 20

#: How many new names a process tries for its next tail file (see :meth:`TailFile._create`).
CREATE_ATTEMPTS = 100


def _tail_path(ledger: Path) -> Path:
    """A new name for a tail of ``ledger`` of this process."""
    return ledger.with_name(f"{ledger.name}-tail-{os.getpid()}-{secrets.token_hex(4)}")


class TailFile:
    """A tail of ``ledger`` for this process: created, allocated, mapped and locked.

    Entries are copied into a shared memory map of the file rather than written with ``write``:
    the copy is the page cache itself (it survives the process), costs no system call, and does
    not release the GIL (a ``write`` lets another thread take it, and taking it back costs more
    than the write). The file's blocks are allocated up front (``posix_fallocate``), so a full
    disk is an error when a file is created, never a fault while copying into the map."""

    def __init__(self, ledger: Path) -> None:
        self.path, self.fd = self._create(ledger)
        self.name = self.path.name
        self.size = 0
        try:
            os.posix_fallocate(self.fd, 0, CHUNK)
            self._map = mmap.mmap(self.fd, CHUNK, mmap.MAP_SHARED, mmap.PROT_WRITE | mmap.PROT_READ)
        except BaseException:
            self.path.unlink(missing_ok=True)
            os.close(self.fd)
            raise

    @staticmethod
    def _create(ledger: Path) -> tuple[Path, int]:
        """A new tail file of ``ledger``, locked by this process: its path and descriptor.

        Between creating a file and locking it, another process opening the ledger can find it
        unlocked, take it for the tail of a process that is gone (:func:`orphans`) and remove it:
        this process would then fail to lock it, or lock a file that no longer has a name, whose
        entries would not survive ``kill -9``. Such a file is left to that process and another
        name is tried."""
        for _ in range(CREATE_ATTEMPTS):
            path = _tail_path(ledger)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # taken for an orphan's: its taker removes it
                os.close(fd)
                continue
            except BaseException:
                path.unlink(missing_ok=True)
                os.close(fd)
                raise
            if os.fstat(fd).st_nlink:
                return path, fd
            os.close(fd)  # taken for an orphan's and removed before this process locked it
        raise BlockingIOError(f"no tail file of {ledger} stayed this process's in {CREATE_ATTEMPTS} attempts")

    def append_entry(self, at_text: str, head: str, data_text: str) -> int | None:
        """Copy in the line of an entry (:func:`line_with_head`'s, formatted here: one call per
        entry, which every tool call makes); the file's used size after it, or None when it does
        not fit (the caller starts the next file)."""
        line = f"[{at_text},{head}{data_text}]\n".encode()  # line_with_head's
        end = self.size + len(line)
        if end > CHUNK:
            return None
        self._map[self.size:end] = line
        self.size = end
        return end

    def reuse(self, ledger: Path) -> bool:
        """Empty the file (every entry in it is chained) under a new name, to be the next tail:
        its pages are in memory and writable already, where a new file's are faulted in one by
        one as entries are copied (that cost more than the copies). Whether it could be renamed
        (False: a file system without hard links; the caller removes it).

        The used part is zeroed before the rename, so a death at any moment leaves nothing to
        chain twice: under the old name the file's fold mark is past everything it held, and
        under the new name (no mark: read from the start) it holds nothing."""
        self._map[:self.size] = bytes(self.size)
        while True:
            path = _tail_path(ledger)
            try:
                os.link(self.path, path)  # not rename: that would replace a file of that name
            except FileExistsError:
                continue
            except OSError:
                return False
            break
        try:  # (a death in between leaves two names of one empty file: nothing to chain)
            self.path.unlink(missing_ok=True)
        except OSError:  # two names would each be read from their own mark: not written to again
            try:
                path.unlink(missing_ok=True)
            except OSError:
                pass
            return False
        self.path, self.name, self.size = path, path.name, 0
        return True

    def remove(self) -> None:
        """Delete the file (every entry in it is chained) and release it."""
        try:
            self.path.unlink(missing_ok=True)
        finally:
            self.release()

    def release(self) -> None:
        """Unmap and close the file, leaving it for the next process to fold."""
        if self.fd >= 0:
            self._map.close()
            os.close(self.fd)
            self.fd = -1


class Orphan:
    """The tail of a process that is gone, locked by this process while it is folded."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd

    @property
    def name(self) -> str:
        return self.path.name

    def remove(self) -> None:
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self.fd)


def orphans(ledger: Path) -> Iterator[Orphan]:
    """The tails of ``ledger`` that no process holds, each locked for the caller (who folds and
    removes it, or closes its ``fd`` to leave it)."""
    for path in sorted(ledger.parent.glob(tail_glob(ledger))):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # folded by another process meanwhile
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # removed by the process that folded it just before we got the lock: nothing to do
            if os.fstat(fd).st_nlink == 0 or os.stat(path).st_ino != os.fstat(fd).st_ino:
                raise FileNotFoundError(path)
        except OSError:  # BlockingIOError: its process (or another ledger here) still holds it
            os.close(fd)
            continue
        yield Orphan(path, fd)


def read_entries(fd: int, start: int) -> list[tuple[float, str, str | None, Any, int]]:
    """The complete, readable entries of a tail from byte ``start``: ``(at, type, session, data,
    end offset)``. Reading stops at the unused (zeroed) rest of the file, or at a partial or
    unreadable line (a copy cut short by the process's death was never acknowledged)."""
    size = os.fstat(fd).st_size
    if size <= start:
        return []
    chunk = os.pread(fd, size - start, start)
    unused = chunk.find(b"\0")
    if unused >= 0:
        chunk = chunk[:unused]
    entries = []
    offset = start
    for line in chunk.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        try:
            at, type_, session, data = json.loads(line)
        except (ValueError, TypeError):
            break
        offset += len(line)
        entries.append((float(at), str(type_), session, data, offset))
    return entries
