"""The audit ledger: an append-only, hash-chained record of what a process did.

Each entry is ``{at, type, session, data}``; its hash is SHA-256 over the previous entry's hash
and the entry's canonical JSON (sorted keys, no spaces), so changing, removing or reordering an
entry breaks the chain from there on. The newest hash and entry count (the *head*) are written in
the same transaction as the entry, so removing entries at the end (truncation) is seen as well.
One SQLite file in the data directory (``audit.sqlite``, WAL). An entry is stored before
:meth:`AuditLedger.record` returns, so before the operation it records is acknowledged to its
caller, whatever the operation. How far depends on what the operation did: an entry for an
operation with effects outside the process is committed and fsynced (``synchronous=FULL``: it
survives a power loss); the entry of an operation with no such effect of its own (a ``safe``
tool's call, a workflow step, an agent run: their effects are their own recorded operations) is
copied into a tail file of the process (:mod:`.ledger_tail`: it survives ``kill -9`` of aikit, not
a crash of the machine) and chained in batches shortly after. Threads that record at the same
time share one transaction and one fsync (group commit); coroutines' entries are committed the
same way by a writer thread (:class:`~.group_commit.GroupCommit`), the loop going on meanwhile.
Several processes may append to one ledger: each append reads the head inside an immediate
transaction.

What is recorded, and by whom, is :mod:`.audit_entries`'s: the pipeline's audited operations
(tool calls, file writes and deletes, processes, HTTP requests, agent runs, model calls, workflow
steps, their permission denials and budget stops), approvals, budget stops and kill-switch use
published on the event bus, session starts and configuration changes. Verifying
(:meth:`AuditLedger.verify`) names the first entry that was altered, removed or reordered.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import logging
import operator
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import AikitError, IOFailure
from ..jsontext import dumps_with
from ..sessions import os_error
from ..storage.sqlite import translate_error
from .group_commit import GroupCommit
from .ledger_tail import CHUNK, META_PREFIX, TailFile, line_head, line_with_head, orphans, read_entries

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
GENESIS = "0" * 64
FILE_NAME = "audit.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    type TEXT NOT NULL,
    session TEXT,
    data TEXT NOT NULL,
    prev TEXT NOT NULL,
    hash TEXT NOT NULL
);
"""


class LedgerError(AikitError):
    """The ledger cannot be used (a newer schema, a damaged file)."""

    code = "ledger_error"


#: A JSON string literal of a ``str``, non-ASCII as is (C-accelerated).
json_string: Callable[[str], str] = json.encoder.encode_basestring  # type: ignore[attr-defined]
#: The canonical JSON text of a value: sorted keys, no spaces, UTF-8 as is (what entries hold and
#: hashes cover). A function made once (see jsontext.dumps_with), not a wrapper: entries of tool
#: calls are made with it on every call.
canonical: Callable[[Any], str] = dumps_with(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def digest(value: Any) -> str:
    """A short SHA-256 digest of ``value``'s canonical JSON (arguments are recorded as this, never
    as themselves: they may hold secrets or whole files)."""
    return "sha256:" + hashlib.sha256(canonical(value).encode()).hexdigest()[:32]


def chain_hash(prev: str, at: float, type_: str, session: str | None, data_text: str, at_text: str | None = None) -> str:
    """The hash of one entry: SHA-256 over the previous hash and the canonical JSON of
    ``{at, data, session, type}`` (``data_text``: the canonical JSON of ``data``, as stored;
    ``at_text``: ``repr(at)`` when the caller has it, which saves formatting the float again)."""
    return _hash(prev, at_text or repr(float(at)), data_text, _hashed_end(type_, session))


def _hashed_end(type_: str, session: str | None) -> str:
    """The end of an entry's hashed text, after its data (the same for many entries)."""
    return f',"session":{"null" if session is None else json_string(session)},"type":{json_string(type_)}}}'


def _hash(prev: str, at_text: str, data_text: str, end: str) -> str:
    return hashlib.sha256(f'{prev}{{"at":{at_text},"data":{data_text}{end}'.encode()).hexdigest()


def now() -> tuple[float, str]:
    """The time of an entry made now, to the microsecond, and its ``repr`` (the text the hash and
    the tail file use). ``time_ns() // 1000 / 1e6`` is the float nearest that many microseconds,
    as ``round(time.time(), 6)`` is, without the decimal rounding that makes ``round`` slow."""
    micros = time.time_ns() // 1000
    at = micros / 1e6
    return at, time_text(micros, at)


#: Microseconds since the epoch between which :func:`time_text` writes the digits itself
#: (2001-09-09 to 2096-10-02): there a float's spacing (under 2**-21 s) is less than half a
#: microsecond, so the decimal of ``micros`` is the only shortest text that reads back as
#: ``micros / 1e6``, hence its ``repr``.
_DIGITS_FROM, _DIGITS_TO = 10**15, 4 * 10**15


def time_text(micros: int, at: float) -> str:
    """``repr(at)`` for ``at = micros / 1e6``: the digits of ``micros`` with the point before the
    last six, trailing zeros dropped (one kept after the point), a third cheaper than ``repr``."""
    if not _DIGITS_FROM <= micros < _DIGITS_TO:
        return repr(at)
    digits = str(micros)
    text = f"{digits[:-6]}.{digits[-6:]}".rstrip("0")
    return text + "0" if text[-1] == "." else text


@dataclass(frozen=True, slots=True)
class Entry:
    """One ledger entry as stored."""

    seq: int
    at: float
    type: str
    session: str | None
    data: dict[str, Any]
    prev: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "at": self.at, "type": self.type, "session": self.session, "data": self.data,
                "prev": self.prev, "hash": self.hash}


@dataclass(frozen=True, slots=True)
class Verification:
    """What :meth:`AuditLedger.verify` found: ``ok``, how many entries, and the first problem."""

    ok: bool
    entries: int
    head: str
    problem: str = ""
    seq: int | None = None  # the first entry that is wrong (or missing)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "entries": self.entries, "head": self.head, "problem": self.problem, "seq": self.seq}


def chain_rows(newest: tuple[Any, ...] | None,
               batch: Sequence[_Pending | _TailRun]) -> tuple[list[tuple[Any, ...]], int, str]:
    """The rows ``(seq, at, type, session, data, prev, hash)`` that append the entries of
    ``batch`` after the newest stored ``(seq, hash)`` (None: an empty ledger), with the new
    head's count and hash."""
    seq, prev = (int(newest[0]), str(newest[1])) if newest is not None else (0, GENESIS)
    rows = []
    # (chain_hash's, with the end of the hashed text formatted once per type and session: a
    # batch's entries mostly share them)
    ends: dict[tuple[str, str | None], str] = {}
    sha256, append = hashlib.sha256, rows.append
    for item in batch:
        for at, at_text, type_, session, data_text in item.entries:
            seq += 1
            end = ends.get((type_, session))
            if end is None:
                end = ends[type_, session] = _hashed_end(type_, session)
            digest_ = sha256(f'{prev}{{"at":{at_text},"data":{data_text}{end}'.encode()).hexdigest()  # _hash's
            append((seq, at, type_, session, data_text, prev, digest_))
            prev = digest_
    return rows, seq, prev


#: An entry as chained: ``(at, repr(at), type, session, canonical data)``.
EntryFields = tuple[float, str, str, str | None, str]


@dataclass(slots=True)
class _Pending:
    """An entry on its way to the chain. An fsynced entry's recorder waits until the writer sets
    ``done`` (and ``error`` when the transaction failed); a tail entry (``tail``: its file's name
    and the file's size after it) is acknowledged once written there, and nobody waits for it."""

    at: float
    at_text: str  # repr(at)
    type: str
    session: str | None
    data_text: str
    fsync: bool = True
    done: bool = False
    error: AikitError | None = None
    tail: tuple[str, int] | None = None

    @property
    def entries(self) -> tuple[EntryFields]:
        """This entry, as :func:`chain_rows` reads the items of a batch."""
        return ((self.at, self.at_text, self.type, self.session, self.data_text),)


@dataclass(slots=True)
class _TailRun:
    """Tail entries copied one after another into the tail file ``name`` and queued together
    (an object per run rather than per entry: every trivial tool call makes an entry), with the
    file's size after the last (``end``). Acknowledged once written there; ``done`` and ``error`` as a
    :class:`_Pending`'s, for whoever commits through them (flush, a recorder folding in line)."""

    name: str
    end: int
    entries: list[EntryFields]
    done: bool = False
    error: AikitError | None = None
    fsync: bool = False  # (never: read with the pending entries' by _commit)

    @property
    def tail(self) -> tuple[str, int]:
        """The file and its size after these entries, as a tail entry's :attr:`_Pending.tail`."""
        return self.name, self.end


_FSYNC, _TAIL = operator.attrgetter("fsync"), operator.attrgetter("tail")

#: How long the folder lets tail entries gather before it chains them in one transaction.
FOLD_DELAY = 0.05
#: How long the folder waits before trying again after a fold failed (a full disk, a lock).
FOLD_RETRY = 1.0
#: Tail entries queued at which the thread recording one chains them itself (not on an event
#: loop). The folder thread contends for the GIL with a thread making tool calls from Lua (lupa
#: lets go of it at every crossing): folding there cost each call twice what folding in line does.
FOLD_INLINE_AT = 500


class AuditLedger:
    """The ledger file ``path`` (created on first use). Thread-safe; several processes may share it."""

    #: Whether entries of pure computations go to a tail file first (see :mod:`.ledger_tail`).
    uses_tail = True

    def __init__(self, path: str | os.PathLike[str], *, session: str | None = None) -> None:
        self._start(Path(path), session)
        self._fsync = True  # the connection's synchronous setting: FULL (True) or NORMAL
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(str(self.path), timeout=10.0, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA busy_timeout = 10000")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = FULL")
            self._conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise IOFailure(f"cannot open the audit ledger {self.path}: {exc}", details={"path": str(self.path)}) from None
        except OSError as exc:
            raise IOFailure(f"cannot open the audit ledger {self.path}: {exc.strerror or exc}",
                            details={"path": str(self.path)}) from None
        self._check_version()
        self._fold_orphans()

    def _start(self, where: Any, session: str | None) -> None:
        """The state every ledger keeps, whatever stores its rows (``where`` is named in messages)."""
        self.path = where
        self.session = session
        self._queue: list[_Pending | _TailRun] = []  # entries waiting for the writer (see record())
        self._writing = False
        # with self._lock (a C context manager) where nothing waits: Condition's is Python code
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._db_lock = threading.Lock()  # the store: one user at a time
        self._closed = False
        self._tail: TailFile | None = None  # created on the first tail entry
        self._line_heads: dict[tuple[str, str | None], str] = {}  # (type, session) -> line_head()
        self._retired: list[TailFile] = []  # full tail files not yet chained to their end
        self._spare: TailFile | None = None  # a chained one emptied, to be the next (see _next_tail)
        self._folder: threading.Thread | None = None
        self._fold_now = threading.Event()  # cuts the folder's wait short (close)
        self._fold_failure: str | None = None  # the last fold error logged (logged once)
        self._committer = GroupCommit(self._commit_queued, "aikit-audit")  # fsynced entries of coroutines

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    @classmethod
    def in_dir(cls, data_dir: str | os.PathLike[str], **kwargs: Any) -> AuditLedger:
        """The ledger of a data directory."""
        return cls(Path(data_dir) / FILE_NAME, **kwargs)

    def _check_version(self) -> None:
        with self._db_lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                self._conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                                   (str(SCHEMA_VERSION),))
                return
        try:
            version = int(row[0])
        except ValueError:
            version = -1
        if version > SCHEMA_VERSION:
            raise LedgerError(f"the audit ledger {self.path} was written by a newer aikit (schema version {version}; "
                              f"this aikit reads version {SCHEMA_VERSION}): upgrade aikit to read it, or move the "
                              "file away to start a new ledger (nothing in it was changed)",
                              details={"path": str(self.path), "version": version, "supported": SCHEMA_VERSION})
        if version < 1:
            raise LedgerError(f"the audit ledger {self.path} has an unreadable schema version {row[0]!r}; move the "
                              "file away to start a new ledger", details={"path": str(self.path)})

    # -- writing -------------------------------------------------------------------------------
    def record(self, type_: str, data: dict[str, Any], *, session: str | None = None, fsync: bool = True) -> None:
        """Append one entry. With ``fsync`` (the default) it is chained and fsynced
        (``synchronous=FULL``) when this returns, so before the operation it records is
        acknowledged; entries of threads that record at the same time share one transaction
        (group commit: the first becomes the writer and commits every entry queued until then,
        the others wait for that commit). With ``fsync=False`` (no outside effect) it is written
        to this process's tail file when this returns, where it survives the process being
        killed (not the machine), and chained with the next batch (within :data:`FOLD_DELAY`,
        before any later fsynced entry, and at :meth:`close`; see :mod:`.ledger_tail`)."""
        self.record_canonical(type_, canonical(data), session=session, fsync=fsync)

    def record_canonical(self, type_: str, data_text: str, *, session: str | None = None, fsync: bool = True) -> None:
        """:meth:`record` of an entry whose data is given as its canonical JSON text."""
        micros = time.time_ns() // 1000  # now(), inlined: every audited operation comes here
        at = micros / 1e6
        if micros % 10 and _DIGITS_FROM <= micros < _DIGITS_TO:  # time_text's, inlined: no trailing zero to drop
            digits = str(micros)
            at_text = f"{digits[:-6]}.{digits[-6:]}"
        else:
            at_text = time_text(micros, at)
        if session is None:
            session = self.session
        # acquire and release, not `with`: half the instructions, and every audited operation comes here
        lock = self._lock
        lock.acquire()
        try:
            if self._closed:
                self._check_open()
            if not fsync and self.uses_tail:
                # into the tail file (its order is the queue's), then queued for the folder
                # (_append_to_tail's, inlined for an entry that fits in the current file)
                tail = self._tail
                head = self._line_heads.get((type_, session))
                size = tail.append_entry(at_text, head, data_text) if tail is not None and head is not None else None
                if size is None:
                    run = self._append_to_tail(_Pending(at, at_text, type_, session, data_text, False))
                else:  # (_queue_tail_entry's, in line for an entry that joins the last queued run)
                    queue = self._queue
                    run = queue[-1] if queue else None
                    if type(run) is _TailRun and run.name == tail.name:  # type: ignore[union-attr]
                        run.entries.append((at, at_text, type_, session, data_text))
                        run.end = size
                    else:
                        run = self._queue_tail_entry(tail.name, size,  # type: ignore[union-attr]
                                                     (at, at_text, type_, session, data_text))
                if (run is not None and len(run.entries) >= FOLD_INLINE_AT and not self._writing
                        and self._fold_failure is None
                        and asyncio.events._get_running_loop() is None):  # public (asyncio.events.__all__)
                    self._commit_through(run)  # acknowledged already: a failure leaves it queued, for the folder
                return
            item = _Pending(at, at_text, type_, session, data_text, fsync)
            self._queue.append(item)
            self._commit_through(item)
        finally:
            lock.release()
        if item.error is not None:
            raise item.error

    async def arecord_canonical(self, type_: str, data_text: str, *, session: str | None = None,
                                fsync: bool = True) -> None:
        """:meth:`record_canonical` for coroutines, which the I/O loop keeps serving meanwhile: a
        tail entry is written right here; an fsynced one takes its place in the queue now and is
        committed by a writer thread with the entries queued with it (the loop is woken once per
        commit, not once per entry)."""
        if not fsync and self.uses_tail:
            self.record_canonical(type_, data_text, session=session, fsync=False)
            return
        item = self._new_entry(type_, data_text, session, fsync)
        with self._lock:
            self._check_open()
            self._queue.append(item)
        await self._committer.aput(item)

    def _new_entry(self, type_: str, data_text: str, session: str | None, fsync: bool) -> _Pending:
        at, at_text = now()
        return _Pending(at, at_text, type_, session if session is not None else self.session, data_text, fsync)

    def _check_open(self) -> None:
        if self._closed:
            raise IOFailure(f"the audit ledger {self.path} has been closed", details={"path": str(self.path)})

    def _commit_queued(self, batch: list[_Pending]) -> None:
        """The committer's commit (:class:`~.group_commit.GroupCommit`): the queue up to the last
        entry of ``batch`` (with whatever other callers queued between them); raises the error of
        an entry of ``batch`` that failed (the committer then asks for each entry alone, which
        raises that entry's own error)."""
        with self._lock:
            for item in batch:
                self._commit_through(item)
        for item in batch:
            if item.error is not None:
                raise item.error

    def _append_to_tail(self, item: _Pending) -> _TailRun | None:
        """Copy ``item`` into the tail file (the caller holds ``_cond``: the file's order is the
        queue's) and queue it for the folder; the run it is queued in (None: a huge entry, chained
        at once)."""
        head = self._line_heads.get((item.type, item.session))
        if head is None:
            if len(self._line_heads) >= 64:
                self._line_heads.clear()
            head = self._line_heads[item.type, item.session] = line_head(item.type, item.session)
        tail = self._tail
        size = tail.append_entry(item.at_text, head, item.data_text) if tail is not None else None
        if size is None:
            tail, size = self._into_next_tail(item, head)
            if tail is None:
                return None
        (entry,) = item.entries
        return self._queue_tail_entry(tail.name, size, entry)

    def _queue_tail_entry(self, name: str, end: int, entry: EntryFields) -> _TailRun:
        """Queue ``entry``, copied into the tail file ``name`` (``end``: the file's size after
        it), for the folder (the caller holds ``_cond``): in the last queued run when that is of
        the same file, else in a new run. Its run."""
        queue = self._queue
        run = queue[-1] if queue else None
        if type(run) is _TailRun and run.name == name:
            run.entries.append(entry)
            run.end = end
            return run
        if not queue:
            self._cond.notify_all()  # the folder waits for a first entry
        run = _TailRun(name, end, [entry])
        queue.append(run)
        return run

    def _into_next_tail(self, item: _Pending, head: str) -> tuple[TailFile | None, int]:
        """:meth:`_append_to_tail` of an entry that the current file has no room for (or before
        the first file): into a new file, or straight into the chain when it is huge (no file then)."""
        line = line_with_head(item.at_text, head, item.data_text)
        if len(line) > CHUNK // 4:  # a huge entry: straight into the chain, as an fsynced one goes
            self._queue.append(item)
            self._commit_through(item)
            if item.error is not None:
                raise item.error
            return None, 0
        tail = self._next_tail()
        size = tail.append_entry(item.at_text, head, item.data_text)
        assert size is not None
        return tail, size

    def _next_tail(self) -> TailFile:
        """Start a tail file (the first, or the next when one is full: the spare, if any)."""
        tail, self._spare = self._spare, None
        if tail is None:
            try:
                tail = TailFile(self.path)
            except OSError as exc:
                raise os_error(exc, "could not write to the audit ledger (its tail file)", self.path.parent) from None
        if self._tail is not None:
            self._retired.append(self._tail)  # removed once its entries are chained
        self._tail = tail
        if self._folder is None:
            self._folder = threading.Thread(target=self._fold_loop, name="aikit-audit-folder", daemon=True)
            self._folder.start()
        return tail

    def _remove_folded_tails(self) -> None:
        """Remove the full tail files whose entries are all chained (the caller holds ``_cond``),
        but one, emptied to be the next file (:meth:`.TailFile.reuse`)."""
        waiting = {item.tail[0] for item in self._queue if item.tail is not None}
        for tail in [t for t in self._retired if t.name not in waiting]:
            self._retired.remove(tail)
            name = tail.name
            if self._spare is None and tail.reuse(self.path):
                self._spare = tail
            else:
                tail.remove()
            self._forget_tail(name)

    def _commit_through(self, item: _Pending | _TailRun) -> None:
        """Commit the queue up to ``item`` (the caller holds ``_cond``, and has queued ``item``):
        become the writer of everything queued, or wait for the writer that is at it."""
        while not item.done:
            if self._writing:
                self._cond.wait()
                continue
            batch, self._queue, self._writing = self._queue, [], True
            self._cond.release()
            try:
                error = self._commit(batch)
            finally:
                self._cond.acquire()
                self._writing = False
                self._cond.notify_all()
            if error is not None and (kept := [p for p in batch if p.tail is not None]):
                # a tail entry is acknowledged: it stays queued (and in its file) for the next fold
                self._queue[:0] = kept
                self._note_fold_failure(error)
                batch = [p for p in batch if p.tail is None]
                if item.tail is not None:
                    item.error = error  # flush() reports it; the entry stays queued
                    for pending in batch:
                        pending.done, pending.error = True, error
                    return
            for pending in batch:
                pending.done, pending.error = True, error
            if error is None:
                self._fold_failure = None  # the next failure is logged again
                if self._retired:
                    self._remove_folded_tails()

    def flush(self) -> None:
        """Chain every tail entry recorded so far (readers of this process see them then).
        Raises when they cannot be written now; they stay in the tail file, folded later."""
        with self._cond:
            if not self._queue:
                return
            last = self._queue[-1]
            self._commit_through(last)
            if last.tail is None or last.error is None:
                return  # an fsynced entry's error is its recorder's to raise
            error, last.error = last.error, None
        raise error

    def _fold_loop(self) -> None:
        """The folder thread: chain tail entries in batches, :data:`FOLD_DELAY` after the first."""
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return  # close() folds what is left
            self._fold_now.wait(FOLD_DELAY)
            try:
                self.flush()
            except AikitError:
                self._fold_now.wait(FOLD_RETRY)

    def _note_fold_failure(self, error: AikitError) -> None:
        if error.message != self._fold_failure:
            self._fold_failure = error.message
            log.warning("audit entries stay in %s until they can be chained: %s",
                        self._tail.path if self._tail else self.path, error.message)

    def _fold_orphans(self) -> None:
        """Chain what the tails of processes that are gone still hold, and remove those files."""
        for orphan in orphans(self.path):
            try:
                start = int((self._fetchone("SELECT value FROM meta WHERE key = ?", (META_PREFIX + orphan.name,))
                             or (0,))[0])
                batch = [_Pending(at, repr(at), type_, session, canonical(data), False, tail=(orphan.name, end))
                         for at, type_, session, data, end in read_entries(orphan.fd, start)]
                error = self._commit(batch) if batch else None
            except BaseException:
                os.close(orphan.fd)
                raise
            if error is not None:
                os.close(orphan.fd)
                raise error
            orphan.remove()
            self._forget_tail(orphan.name)

    def _forget_tail(self, name: str) -> None:
        """Drop the fold mark of a tail file that was removed (best effort: a stale mark is harmless)."""
        with self._db_lock:
            try:
                self._conn.execute("DELETE FROM meta WHERE key = ?", (META_PREFIX + name,))
            except sqlite3.Error:
                pass

    def _commit(self, batch: list[_Pending | _TailRun]) -> AikitError | None:
        """Chain and write ``batch`` in one transaction (only the writer thread is here); the
        error to raise in each of its recorders, if it failed. Another store overrides this, the
        two readers below and :meth:`_close_connection` (control/pg_audit.py)."""
        with self._db_lock:
            conn = self._conn
            try:
                fsync = any(map(_FSYNC, batch))  # C loops over the batch here and below: they run per entry
                if fsync != self._fsync:
                    conn.execute(f"PRAGMA synchronous = {'FULL' if fsync else 'NORMAL'}")
                    self._fsync = fsync
                conn.execute("BEGIN IMMEDIATE")
                try:
                    row = conn.execute("SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
                    rows, seq, prev = chain_rows(row, batch)
                    _insert_entries(conn, rows)
                    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('head', ?)", (f"{seq} {prev}",))
                    folded = dict(filter(None, map(_TAIL, batch)))  # each file's last entry's end
                    if folded:
                        conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                                         [(META_PREFIX + name, str(end)) for name, end in folded.items()])
                    conn.execute("COMMIT")
                except BaseException:
                    # SQLite may have rolled back already (a full disk does): a second ROLLBACK
                    # would raise "no transaction is active" in place of the real error
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                return translate_error(exc, self.path, "write to the audit ledger", what="audit ledger")
        return None

    # -- reading -------------------------------------------------------------------------------
    # The statements name the tables ``entries`` and ``meta`` with ``?`` placeholders; another
    # store (control/pg_audit.py) overrides these two, _commit and _close_connection.
    def _fetchall(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self._conn.execute(sql, params).fetchall()

    def _fetchone(self, sql: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        return self._conn.execute(sql, params).fetchone()

    def entries(self, since: float | None = None, types: tuple[str, ...] = ()) -> Iterator[Entry]:
        """Entries in order (``since``: a Unix time; ``types``: only these types or type prefixes)."""
        self._flush_for_reading()
        with self._db_lock:
            rows = self._fetchall("SELECT seq, at, type, session, data, prev, hash FROM entries "
                                  "WHERE at >= ? ORDER BY seq", (since if since is not None else 0.0,))
        for seq, at, type_, session, data, prev, hash_ in rows:
            if types and not any(type_ == t or type_.startswith(t + ".") for t in types):
                continue
            try:
                parsed = json.loads(data)
            except ValueError:
                parsed = {"unreadable": data}
            yield Entry(seq, at, type_, session, parsed, prev, hash_)

    def newest(self, type_: str) -> Entry | None:
        """The newest entry of ``type_``, if any."""
        self._flush_for_reading()
        with self._db_lock:
            row = self._fetchone("SELECT seq, at, type, session, data, prev, hash FROM entries WHERE type = ? "
                                 "ORDER BY seq DESC LIMIT 1", (type_,))
        if row is None:
            return None
        try:
            data = json.loads(row[4])
        except ValueError:
            data = {}
        return Entry(row[0], row[1], row[2], row[3], data if isinstance(data, dict) else {}, row[5], row[6])

    def head(self) -> tuple[int, str]:
        """The count and hash of the newest entry, as written with it."""
        self._flush_for_reading()
        with self._db_lock:
            row = self._fetchone("SELECT value FROM meta WHERE key = 'head'")
        if row is None:
            return 0, GENESIS
        count, _, hash_ = str(row[0]).partition(" ")
        return int(count), hash_

    def verify(self) -> Verification:
        """Walk the chain; the first entry altered, removed or reordered, if any."""
        self._flush_for_reading()
        with self._db_lock:
            rows = self._fetchall("SELECT seq, at, type, session, data, prev, hash FROM entries ORDER BY seq")
            head_row = self._fetchone("SELECT value FROM meta WHERE key = 'head'")
        by_hash = {row[6]: row[0] for row in rows}
        prev, expected = GENESIS, 1
        for seq, at, type_, session, data, prev_stored, hash_ in rows:
            if prev_stored != prev:
                problem = self._chain_problem(seq, expected, prev_stored, by_hash)
                return Verification(False, len(rows), prev, problem, expected if seq != expected else seq)
            actual = chain_hash(prev, at, type_, session, data)
            if actual != hash_:
                return Verification(False, len(rows), prev, f"entry {seq} was altered: its content does not match "
                                    "its hash", seq)
            if seq != expected:  # renumbered by hand, the chain intact
                return Verification(False, len(rows), prev, f"entry {seq} should be entry {expected}: the entries "
                                    "were renumbered", seq)
            prev, expected = hash_, expected + 1
        count = len(rows)
        if head_row is None:
            if count:
                return Verification(False, count, prev, "the ledger's head record is missing: it was edited by hand",
                                    None)
            return Verification(True, 0, GENESIS)
        head_count, _, head_hash = str(head_row[0]).partition(" ")
        if head_count != str(count) or head_hash != prev:
            return Verification(False, count, prev,
                                f"entries after entry {count} were removed: the ledger was truncated (its head says "
                                f"{head_count} entries were written)", count + 1)
        return Verification(True, count, prev)

    @staticmethod
    def _chain_problem(seq: int, expected: int, prev_stored: str, by_hash: dict[str, int]) -> str:
        follows = by_hash.get(prev_stored)
        if seq != expected and (follows is None or follows == expected - 1):
            return (f"entry {expected} was removed: entry {seq} follows entry {expected - 1}" if expected > 1
                    else f"entry {expected} was removed: the ledger starts at entry {seq}")
        if follows is not None and follows != seq - 1:
            return f"entry {seq} is out of order: it was written after entry {follows}, not after entry {seq - 1}"
        return (f"entry {seq} does not follow entry {seq - 1}: an entry before it was removed, altered "
                "or reordered")

    def _flush_for_reading(self) -> None:
        if self._queue:
            try:
                self.flush()
            except AikitError:
                pass  # logged by the folder; read what is chained

    def close(self) -> None:
        """Close the file once the entries being written are committed (a later record fails).
        Tail entries that cannot be chained now stay in their file for the next process."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()  # the folder stops
        self._committer.close()  # the entries coroutines wait for are committed
        self._fold_now.set()
        if self._folder is not None:
            self._folder.join()
        try:
            self.flush()
        except AikitError:
            pass  # logged; the tail file keeps them
        with self._cond:
            while self._writing:
                self._cond.wait()
            tails = [*self._retired, *([self._tail] if self._tail is not None else [])]
            spare, self._tail, self._retired, self._spare = self._spare, None, [], None
            leftover = bool(self._queue)
        if spare is not None:
            spare.remove()  # empty, and its name has no fold mark
        for tail in tails:
            if leftover:
                tail.release()
            else:
                tail.remove()
                self._forget_tail(tail.name)
        with self._db_lock:
            self._close_connection()

    def _close_connection(self) -> None:
        self._conn.close()


_INSERT = "INSERT INTO entries (seq, at, type, session, data, prev, hash) VALUES "
_ROW = "(?, ?, ?, ?, ?, ?, ?)"
#: Rows per INSERT statement when chaining a batch. sqlite3 lets other threads take the GIL while
#: each statement runs: with a row per statement (executemany), the folder and a thread making
#: tool calls handed the GIL back and forth for every entry, which cost more than the entry.
ROWS_PER_INSERT = 100
_INSERT_MANY = _INSERT + ", ".join([_ROW] * ROWS_PER_INSERT)


def _insert_entries(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    """Insert the ``(seq, at, type, session, data, prev, hash)`` rows, a hundred per statement
    (the rest in one more: a batch is usually a few dozen entries, which executemany wrote a row
    per statement, each handing the GIL over and back)."""
    full = len(rows) - len(rows) % ROWS_PER_INSERT
    for start in range(0, full, ROWS_PER_INSERT):
        conn.execute(_INSERT_MANY, [*itertools.chain.from_iterable(rows[start:start + ROWS_PER_INSERT])])
    if full < len(rows):
        rest = rows[full:]
        conn.execute(_INSERT + ", ".join([_ROW] * len(rest)), [*itertools.chain.from_iterable(rest)])
