"""The audit ledger: an append-only, hash-chained record of what a process did.

Each entry is ``{at, type, session, data}``; its hash is SHA-256 over the previous entry's hash
and the entry's canonical JSON (sorted keys, no spaces), so changing, removing or reordering an
entry breaks the chain from there on. The newest hash and entry count (the *head*) are written in
the same transaction as the entry, so removing entries at the end (truncation) is seen as well.
One SQLite file in the data directory (``audit.sqlite``, WAL, ``synchronous=FULL``): an entry is
on disk before :meth:`AuditLedger.record` returns, so before the operation it records is
acknowledged to its caller. Several processes may append to one ledger: each append reads the
head inside an immediate transaction.

What is recorded, and by whom: :class:`AuditInterceptor` (order ``AUDIT``) records tool calls,
file writes and deletes, processes, HTTP requests, agent runs, model calls and workflow steps, and
their permission denials and budget stops; :func:`watch_events` records approvals and denials,
budget stops and kill-switch use published on the event bus; :class:`~aikit_components.components.
Components` records session starts and configuration changes. Verifying (:meth:`AuditLedger.verify`)
names the first entry that was altered, removed or reordered.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import AikitError, IOFailure
from ..operations.interceptor import AUDIT, Interceptor
from ..operations.operation import Operation, OperationKind

SCHEMA_VERSION = 1
GENESIS = "0" * 64
FILE_NAME = "audit.sqlite"
#: Entries that need no fsync of their own (safe tool calls) wait in memory for at most this many
#: entries or seconds.
BATCH_MAX = 100
BATCH_DELAY_S = 1.0

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


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode
_STRING = json.encoder.encode_basestring  # a JSON string literal, non-ASCII as is (C-accelerated)


def canonical(value: Any) -> str:
    """The canonical JSON text of ``value``: sorted keys, no spaces, UTF-8 as is."""
    return _CANONICAL(value)


def digest(value: Any) -> str:
    """A short SHA-256 digest of ``value``'s canonical JSON (arguments are recorded as this, never
    as themselves: they may hold secrets or whole files)."""
    return "sha256:" + hashlib.sha256(canonical(value).encode()).hexdigest()[:32]


def chain_hash(prev: str, at: float, type_: str, session: str | None, data_text: str) -> str:
    """The hash of one entry: SHA-256 over the previous hash and the canonical JSON of
    ``{at, data, session, type}`` (``data_text``: the canonical JSON of ``data``, as stored)."""
    session_text = "null" if session is None else _STRING(session)
    body = f'{{"at":{float(at)!r},"data":{data_text},"session":{session_text},"type":{_STRING(type_)}}}'

    return hashlib.sha256((prev + body).encode()).hexdigest()


def chain_rows(newest: tuple[Any, ...] | None, items: list[tuple[float, str, str | None, str]]
               ) -> tuple[list[tuple[Any, ...]], int, str]:
    """The rows ``(seq, at, type, session, data, prev, hash)`` that append ``items`` after the
    newest stored ``(seq, hash)`` (None: an empty ledger), with the new head's count and hash."""
    seq, prev = (int(newest[0]), str(newest[1])) if newest is not None else (0, GENESIS)
    rows = []
    for at, type_, session, data_text in items:
        seq += 1
        digest_ = chain_hash(prev, at, type_, session, data_text)
        rows.append((seq, at, type_, session, data_text, prev, digest_))
        prev = digest_
    return rows, seq, prev


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


class AuditLedger:
    """The ledger file ``path`` (created on first use). Thread-safe; several processes may share it."""

    def __init__(self, path: str | os.PathLike[str], *, session: str | None = None) -> None:
        self.path = Path(path)
        self.session = session
        self._synced = True
        self._pending: list[tuple[float, str, str | None, str]] = []
        self._pending_since = 0.0
        self._lock = threading.Lock()
        self._closed = False
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

    @classmethod
    def in_dir(cls, data_dir: str | os.PathLike[str], **kwargs: Any) -> AuditLedger:
        """The ledger of a data directory."""
        return cls(Path(data_dir) / FILE_NAME, **kwargs)

    def _check_version(self) -> None:
        with self._lock:
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
    def record(self, type_: str, data: dict[str, Any], *, session: str | None = None, sync: bool = True) -> None:
        """Append one entry; it is durable when this returns. ``sync=False`` (an operation with
        no side effect: a ``safe`` tool's call) may wait in memory and be written with the next
        entry, at most :data:`BATCH_MAX` of them or :data:`BATCH_DELAY_S` later (and when the
        ledger is read or closed): nothing outside the process changed, so nothing is
        acknowledged that the ledger could miss, and a call costs microseconds, not an fsync."""
        at = round(time.time(), 6)
        session = session if session is not None else self.session
        data_text = canonical(data)
        with self._lock:
            if self._closed:
                raise IOFailure(f"the audit ledger {self.path} has been closed", details={"path": str(self.path)})
            if not self._pending:
                self._pending_since = time.monotonic()
            self._pending.append((at, type_, session, data_text))
            if sync or len(self._pending) >= BATCH_MAX or time.monotonic() - self._pending_since >= BATCH_DELAY_S:
                self._write_pending(sync)

    def flush(self) -> None:
        """Write the entries waiting in memory (durably)."""
        with self._lock:
            if self._pending and not self._closed:
                self._write_pending(True)

    def _write_pending(self, sync: bool) -> None:
        """Chain and write the waiting entries in one transaction (the lock is held)."""
        conn, items = self._conn, self._pending
        try:
            if sync != self._synced:
                conn.execute(f"PRAGMA synchronous = {'FULL' if sync else 'NORMAL'}")
                self._synced = sync
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute("SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
                rows, seq, prev = chain_rows(row, items)
                conn.executemany("INSERT INTO entries (seq, at, type, session, data, prev, hash) "
                                 "VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
                conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('head', ?)", (f"{seq} {prev}",))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise IOFailure(f"could not write to the audit ledger {self.path}: {exc}",
                            details={"path": str(self.path)}) from None
        self._pending = []

    # -- reading -------------------------------------------------------------------------------
    # The statements name the tables ``entries`` and ``meta`` with ``?`` placeholders; another
    # backend (control/pg_audit.py) overrides these two and the writing in _write_pending.
    def _fetchall(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self._conn.execute(sql, params).fetchall()

    def _fetchone(self, sql: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        return self._conn.execute(sql, params).fetchone()

    def entries(self, since: float | None = None, types: tuple[str, ...] = ()) -> Iterator[Entry]:
        """Entries in order (``since``: a Unix time; ``types``: only these types or type prefixes)."""
        self.flush()
        with self._lock:
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
        self.flush()
        with self._lock:
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
        self.flush()
        with self._lock:
            row = self._fetchone("SELECT value FROM meta WHERE key = 'head'")
        if row is None:
            return 0, GENESIS
        count, _, hash_ = str(row[0]).partition(" ")
        return int(count), hash_

    def verify(self) -> Verification:
        """Walk the chain; the first entry altered, removed or reordered, if any."""
        self.flush()
        with self._lock:
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

    def close(self) -> None:
        """Write what waits in memory and close the file."""
        with self._lock:
            if not self._closed:
                try:
                    if self._pending:
                        self._write_pending(True)
                finally:
                    self._closed = True
                    self._close_connection()

    def _close_connection(self) -> None:
        self._conn.close()


# -- what the pipeline's operations become ---------------------------------------------------------
#: Operation kinds the interceptor records (State writes and cells are not: State is durable
#: itself, and a cell is the user typing).
AUDITED_KINDS = frozenset({"tool", "process", "http", "agent", "llm", "workflow.step"})
_PATH_ARGS = ("path", "dest", "destination", "target", "src", "source")


def _status(error: AikitError | None) -> str:
    if error is None:
        return "ok"
    if error.code == "permission_denied":
        return "denied"
    if error.code in ("cancelled", "interrupted"):
        return "cancelled"
    return "error"


def _operation_entry(op: Operation, result: Any, error: AikitError | None) -> tuple[str, dict[str, Any]]:
    """The type and data of the entry for ``op``'s outcome."""
    kind = op.kind.name
    data: dict[str, Any] = {"name": op.name, "status": _status(error)}
    caller = getattr(op.context, "caller", None)
    if caller:
        data["caller"] = caller
    if kind == "tool":
        args = op.payload.get("args")
        data["args_digest"] = digest(args)
        tool = op.meta.get("tool")
        if getattr(tool, "security", None) == "write" and isinstance(args, dict):
            paths = [str(args[k]) for k in _PATH_ARGS if isinstance(args.get(k), str)]
            if paths:
                data["paths"] = paths
            type_ = "file.delete" if "delete" in op.name or "remove" in op.name else "file.write"
        else:
            type_ = "tool"
    elif kind == "process":
        type_ = "process"
        data["argv"] = list(op.payload.get("argv") or [])
        if error is None:
            data["exit_code"] = getattr(result, "exit_code", None)
    elif kind == "http":
        type_ = "http"
        method, _, host = op.name.partition(" ")
        data.update(method=method, host=host)
        if error is None:
            data["http_status"] = getattr(result, "status_code", None)
    else:
        type_ = kind
    if error is not None:
        data["code"] = error.code
        data["message"] = error.message[:500]
        if error.code == "permission_denied":
            type_ = "permission.denied"
            data["operation"] = kind
        elif error.code == "budget_exceeded":
            type_ = "budget.exceeded"
            data["operation"] = kind
            data["details"] = {k: v for k, v in (error.details or {}).items() if k in ("budget", "limit", "used", "rule")}
    return type_, data


class AuditInterceptor(Interceptor):
    """Records each audited operation's outcome (see :data:`AUDITED_KINDS`) in ``ledger``, before
    the caller gets it: ``finished`` and ``failed`` run before the result or error is returned."""

    order = AUDIT
    name = "audit"
    decides = False

    def __init__(self, ledger: AuditLedger, kinds: frozenset[str] = AUDITED_KINDS) -> None:
        self.ledger = ledger
        self.kinds = kinds

    def wants_kind(self, kind: OperationKind) -> bool:
        return kind.name in self.kinds

    def wants(self, op: Operation) -> bool:
        return op.kind.name in self.kinds

    def finished(self, op: Operation, result: Any) -> None:
        type_, data = _operation_entry(op, result, None)
        self.ledger.record(type_, data, sync=not _pure(op))

    def failed(self, op: Operation, error: AikitError) -> None:
        type_, data = _operation_entry(op, None, error)
        self.ledger.record(type_, data, sync=not _pure(op))


def _pure(op: Operation) -> bool:
    """A call of a ``safe`` tool (pure computation: nothing outside the process changed)."""
    return op.kind.name == "tool" and getattr(op.meta.get("tool"), "security", None) == "safe"


#: Event topics recorded as they are published (approvals and denials, budget stops published by
#: agents and workflows, the kill switch).
AUDITED_TOPICS = ("approval.requested", "approval.decided", "budget.exceeded", "aikit.stop", "aikit.stopped")


def watch_events(ledger: AuditLedger, events: Any) -> list[Any]:
    """Subscribe ``ledger`` to the audited topics of ``events``; returns the subscriptions."""
    def record(event: Any) -> None:
        payload = event.payload if isinstance(event.payload, dict) else {"value": event.payload}
        ledger.record(event.topic, {**payload, "source": event.source} if event.source else dict(payload))

    return [events.subscribe(topic, record) for topic in AUDITED_TOPICS]


def config_digests(config: Any) -> dict[str, str]:
    """A digest per configuration section (values themselves are not recorded: they may be secret)."""
    data = config.to_dict() if hasattr(config, "to_dict") else dict(config or {})
    return {str(section): digest(value) for section, value in sorted(data.items())}


def record_session_start(ledger: AuditLedger, session_id: str, config: Any, **fields: Any) -> None:
    """Record a session start, and a configuration change when the configuration's digests differ
    from the ones the previous session start recorded."""
    digests = config_digests(config)
    last = ledger.newest("session.start")
    previous = last.data.get("config") if last is not None else None
    if previous is not None and previous != digests:
        changed = sorted(k for k in set(previous) | set(digests) if previous.get(k) != digests.get(k))
        ledger.record("config.changed", {"sections": changed}, session=session_id)
    ledger.record("session.start", {"session": session_id, "pid": os.getpid(), "config": digests, **fields},
                  session=session_id)
