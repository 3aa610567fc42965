"""The effect journal: resumes that never repeat a side effect.

For each tool call made inside an agent run or a workflow step (:data:`~.runs.CURRENT_RUN` and
:data:`~.runs.CURRENT_CALL` set), :class:`JournalInterceptor` (order ``JOURNAL``, 700, next to the
handler) writes "started" before the tool runs and "finished" with its outcome (result or error)
after, each on disk (SQLite WAL, ``synchronous=FULL``) before the call goes on or its result is
handed back (from async callers, the write is awaited in a thread: the event loop goes on
serving others, and the entries written at the same time share one transaction and one fsync).
When the run is resumed (after a crash, a ``kill -9``, a kernel restart) and makes the
same call again:

- a finished call is replayed from the journal: its stored result comes back and the tool does not
  run (a call that failed leaves no entry: it runs again);
- a call started but never finished is **in doubt**: it ran, or not, or half. It runs again only if
  its tool is idempotent (``Tool.define{idempotent = true}``; the read-only built-ins are);
  otherwise it raises :class:`~.approvals.ApprovalRequired` with ``in_doubt = true``, so the run
  pauses and a person decides (approve runs it again, deny tells the model it did not run).

A journal entry is keyed by the run id and the call's place in the run (agent: ``<step>.<call>#0``;
workflow: ``<step id>@<attempt>#<n>``), and
holds the tool's name and the digest of its arguments: a different call in that place (a workflow
edited before its resume) is a new call. A run this process started (``RunControl.fresh``: an
agent run with a new id) is looked up only for the calls it journaled itself: nothing else of it
can be there, and the read it saves is one per call.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import AikitError
from ..operations import JOURNAL, Decision, Interceptor, Operation, OperationKind
from ..storage.sqlite import translate_error
from .approvals import ApprovalDenied, ApprovalRequest, ApprovalRequired, digest, operation_args
from .group_commit import GroupCommit
from .runs import CURRENT_CALL, CURRENT_RUN, CallScope, RunControl

SCHEMA = """
CREATE TABLE IF NOT EXISTS effects (
    run_id TEXT NOT NULL,
    call_key TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    args_digest TEXT NOT NULL,
    status TEXT NOT NULL,
    outcome TEXT,
    started_at REAL NOT NULL,
    finished_at REAL,
    PRIMARY KEY (run_id, call_key)
) WITHOUT ROWID;
"""
STATUSES = ("started", "finished")


class JournalCorrupted(AikitError):
    """The journal cannot be read: a resume cannot know what already ran."""

    code = "journal_corrupted"


@dataclass(frozen=True)
class Entry:
    """One journaled call."""

    run_id: str
    call_key: str
    kind: str
    name: str
    args_digest: str
    status: str  # started | finished
    outcome: dict[str, Any] | None  # {"result": ...} or {"error": {code, message, details}}

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "call_key": self.call_key, "kind": self.kind, "name": self.name,
                "args_digest": self.args_digest, "status": self.status, "outcome": self.outcome}


class EffectJournal:
    """The journal file (``<data_dir>/journal.sqlite``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()  # the writing connection (the group-commit writer's)
        self._conn: sqlite3.Connection | None = None
        # Reads have their own connection: a read never waits for a commit in flight (WAL: it sees
        # the last one), so the I/O loop may read.
        self._read_lock = threading.Lock()
        self._read_conn: sqlite3.Connection | None = None
        self._writes: GroupCommit[tuple[str, tuple[Any, ...]]] = GroupCommit(self._commit, "aikit-journal")

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                conn.executescript(SCHEMA)
            except sqlite3.DatabaseError as exc:
                raise self._failed(exc, "open the effect journal") from None
            self._conn = conn
        return self._conn

    def _failed(self, exc: sqlite3.DatabaseError, action: str, run_id: str | None = None) -> AikitError:
        """The error for a failed SQLite call: corruption is :class:`JournalCorrupted`; a full
        disk, a lock held too long, a read-only file are what they are (the journal is intact)."""
        code = getattr(exc, "sqlite_errorcode", None)
        if isinstance(code, int) and code & 0xFF not in (11, 26):  # not SQLITE_CORRUPT / SQLITE_NOTADB
            return translate_error(exc, self.path, action, what="effect journal")
        return self._corrupted(str(exc), run_id)

    def _corrupted(self, what: str, run_id: str | None = None) -> JournalCorrupted:
        return JournalCorrupted(
            f"the effect journal {self.path} is corrupt: {what}. Nothing was run or deleted; move the file "
            "aside (the run then cannot know which of its calls already ran) or restore it from a backup",
            details={"path": str(self.path), "run_id": run_id})

    def _reader(self) -> sqlite3.Connection:
        if self._read_conn is None:
            with self._lock:  # the file and its schema exist first
                self._db()
            try:
                self._read_conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
            except sqlite3.DatabaseError as exc:
                raise self._failed(exc, "open the effect journal") from None
        return self._read_conn

    def get(self, run_id: str, call_key: str) -> Entry | None:
        with self._read_lock:
            try:
                row = self._reader().execute(
                    "SELECT kind, name, args_digest, status, outcome FROM effects WHERE run_id = ? AND call_key = ?",
                    (run_id, call_key)).fetchone()
            except sqlite3.DatabaseError as exc:
                raise self._failed(exc, "read the effect journal", run_id) from None
        if row is None:
            return None
        return self._entry(run_id, call_key, row)

    def _entry(self, run_id: str, call_key: str, row: tuple[Any, ...]) -> Entry:
        kind, name, args_digest, status, outcome = row
        if status not in STATUSES:
            raise self._corrupted(f"call {call_key!r} of run {run_id!r} has status {status!r}", run_id)
        parsed = None
        if status == "finished":
            try:
                parsed = json.loads(outcome)
            except (TypeError, ValueError):
                parsed = None
            if not isinstance(parsed, dict) or not ({"result", "error"} & set(parsed)):
                raise self._corrupted(f"the stored outcome of call {call_key!r} ({name!r}) of run {run_id!r} "
                                      "is not readable", run_id)
        return Entry(run_id, call_key, kind, name, args_digest, status, parsed)

    def entries(self, run_id: str) -> list[Entry]:
        with self._read_lock:
            try:
                rows = self._reader().execute(
                    "SELECT call_key, kind, name, args_digest, status, outcome FROM effects WHERE run_id = ? "
                    "ORDER BY started_at", (run_id,)).fetchall()
            except sqlite3.DatabaseError as exc:
                raise self._failed(exc, "read the effect journal", run_id) from None
        return [self._entry(run_id, row[0], row[1:]) for row in rows]

    def started(self, run_id: str, call_key: str, kind: str, name: str, args_digest: str) -> None:
        self._write(*start_statement(run_id, call_key, kind, name, args_digest))

    def astarted(self, run_id: str, call_key: str, kind: str, name: str, args_digest: str) -> Coroutine[Any, Any, None]:
        """:meth:`started` for coroutines, to await (queued then: the commits keep the calls' order)."""
        return self._writes.aput(start_statement(run_id, call_key, kind, name, args_digest))

    def finished(self, run_id: str, call_key: str, outcome: dict[str, Any]) -> None:
        self._write(*finish_statement(run_id, call_key, outcome))

    def afinished(self, run_id: str, call_key: str, outcome: dict[str, Any]) -> Coroutine[Any, Any, None]:
        """:meth:`finished` for coroutines, to await (the loop is free while the write is committed)."""
        return self._writes.aput(finish_statement(run_id, call_key, outcome))

    def forget(self, run_id: str, call_key: str) -> None:
        """Drop a call's entry: it ended without an effect to remember (it failed)."""
        self._write(*forget_statement(run_id, call_key))

    def aforget(self, run_id: str, call_key: str) -> Coroutine[Any, Any, None]:
        """:meth:`forget` for coroutines, to await."""
        return self._writes.aput(forget_statement(run_id, call_key))

    def forget_place(self, run_id: str, prefix: str) -> None:
        """Drop the entries of the calls whose key starts with ``prefix`` (a workflow step that
        failed: a resume runs it again, calls and all)."""
        pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        self._write("DELETE FROM effects WHERE run_id = ? AND call_key LIKE ? ESCAPE '\\'", (run_id, pattern))

    def _write(self, sql: str, params: tuple[Any, ...]) -> None:
        """On disk (WAL fsynced) when it returns, in one transaction with the writes of others."""
        self._writes.put((sql, params))

    def _commit(self, batch: list[tuple[str, tuple[Any, ...]]]) -> None:
        """Write ``batch`` in one transaction (the group-commit writer calls this)."""
        with self._lock:
            conn = self._db()
            try:
                if len(batch) == 1:
                    conn.execute(*batch[0])  # autocommit
                    return
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for sql, params in merged_statements(batch):
                        conn.execute(sql, params)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:  # a full disk may have rolled it back already
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.DatabaseError as exc:
                raise self._failed(exc, "write to the effect journal") from None

    def close(self) -> None:
        self._writes.close()  # what is queued is written first
        self._writes = GroupCommit(self._commit, "aikit-journal")  # the journal reopens on its next use
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        with self._read_lock:
            if self._read_conn is not None:
                self._read_conn.close()
                self._read_conn = None


_START_HEAD = "INSERT INTO effects (run_id, call_key, kind, name, args_digest, status, outcome, started_at) VALUES "
_START_ROW = "(?, ?, ?, ?, ?, 'started', NULL, ?)"
_START_TAIL = (" ON CONFLICT (run_id, call_key) DO UPDATE SET status = 'started', outcome = NULL, "
               "started_at = excluded.started_at, args_digest = excluded.args_digest")
_START = _START_HEAD + _START_ROW + _START_TAIL
_FINISH = "UPDATE effects SET status = 'finished', outcome = ?, finished_at = ? WHERE run_id = ? AND call_key = ?"
# Several calls' finishes in one statement: (outcome, finished_at, run_id, call_key) rows.
_FINISH_MANY_HEAD = "UPDATE effects SET status = 'finished', outcome = v.column1, finished_at = v.column2 FROM (VALUES "
_FINISH_MANY_ROW = "(?, ?, ?, ?)"
_FINISH_MANY_TAIL = ") AS v WHERE effects.run_id = v.column3 AND effects.call_key = v.column4"
_FORGET = "DELETE FROM effects WHERE run_id = ? AND call_key = ?"
#: Where the call's (run_id, call_key) is among the parameters of each statement about one call.
_KEY_AT = {_START: 0, _FINISH: 2, _FORGET: 0}
#: Calls per merged statement (bounded by SQLite's limit on parameters: 6 per start).
ROWS_PER_STATEMENT = 100
#: UPDATE ... FROM, which merges finishes, is SQLite 3.33 or later.
_UPDATE_FROM = sqlite3.sqlite_version_info >= (3, 33, 0)


def start_statement(run_id: str, call_key: str, kind: str, name: str, args_digest: str) -> tuple[str, tuple[Any, ...]]:
    """The write (SQL, parameters) that a call started (its time: now)."""
    return _START, (run_id, call_key, kind, name, args_digest, time.time())


def finish_statement(run_id: str, call_key: str, outcome: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    """The write (SQL, parameters) that a call finished with ``outcome``."""
    text = json.dumps(outcome, ensure_ascii=False, default=str)
    return _FINISH, (text, time.time(), run_id, call_key)


def forget_statement(run_id: str, call_key: str) -> tuple[str, tuple[Any, ...]]:
    """The write (SQL, parameters) that drops a call's entry."""
    return _FORGET, (run_id, call_key)


def merged_statements(batch: list[tuple[str, tuple[Any, ...]]]) -> list[tuple[str, list[Any]]]:
    """The statements that write ``batch`` as its statements one after another would, with the
    starts of different calls made one statement, and so their finishes: sqlite3 lets other
    threads take the GIL while each statement runs, and each time it is taken back the thread that
    had it (the I/O loop, the agent runs) gives it up and waits for it again.

    Statements about different calls commute, those about one call keep their order: the batch
    is cut into layers (a call's first statement in the first, its second in the next, ...), run
    in order, each layer's statements grouped by kind. A statement about no single call (a place's
    calls forgotten) is run where it stands, between what comes before and after it."""
    out: list[tuple[str, list[Any]]] = []
    segment: list[tuple[str, tuple[Any, ...]]] = []
    for sql, params in batch:
        if sql in _KEY_AT:
            segment.append((sql, params))
        else:
            out.extend(_layered(segment))
            segment = []
            out.append((sql, list(params)))
    out.extend(_layered(segment))
    return out


def _layered(segment: list[tuple[str, tuple[Any, ...]]]) -> list[tuple[str, list[Any]]]:
    seen: dict[tuple[Any, Any], int] = {}
    layers: list[dict[str, list[tuple[Any, ...]]]] = []
    for sql, params in segment:
        at = _KEY_AT[sql]
        key = (params[at], params[at + 1])
        layer = seen.get(key, 0)
        seen[key] = layer + 1
        if layer == len(layers):
            layers.append({})
        layers[layer].setdefault(sql, []).append(params)
    out: list[tuple[str, list[Any]]] = []
    for layer_statements in layers:
        for sql, rows in layer_statements.items():
            for start in range(0, len(rows), ROWS_PER_STATEMENT):
                chunk = rows[start:start + ROWS_PER_STATEMENT]
                if len(chunk) > 1 and sql == _START:
                    out.append((_START_HEAD + ", ".join([_START_ROW] * len(chunk)) + _START_TAIL,
                                [*itertools.chain.from_iterable(chunk)]))
                elif len(chunk) > 1 and sql == _FINISH and _UPDATE_FROM:
                    out.append((_FINISH_MANY_HEAD + ", ".join([_FINISH_MANY_ROW] * len(chunk)) + _FINISH_MANY_TAIL,
                                [*itertools.chain.from_iterable(chunk)]))
                else:
                    out.extend((sql, list(params)) for params in chunk)
    return out


class JournalInterceptor(Interceptor):
    """Journals the tool calls of runs and replays finished ones (see the module docstring)."""

    order = JOURNAL
    name = "journal"

    def __init__(self, journal: EffectJournal) -> None:
        self.journal = journal

    def wants_kind(self, kind: OperationKind) -> bool | None:
        return None if kind.name == "tool" else False

    def wants(self, op: Operation) -> bool:
        return CURRENT_RUN.get() is not None and CURRENT_CALL.get() is not None

    def before(self, op: Operation) -> Decision | None:
        started = self._to_start(op)
        if started is None or isinstance(started, Decision):
            return started
        self.journal.started(*started)
        op.meta["journal.run"] = started[0]
        return None

    async def abefore(self, op: Operation) -> Decision | None:
        """:meth:`before`, awaiting the commit of the "started" entry. The entries are queued here,
        in the order the calls are made, and the calls go on in that order once committed (the
        parallel calls of one answer reach a tool that runs one call at a time in the model's order)."""
        started = self._to_start(op)
        if started is None or isinstance(started, Decision):
            return started
        await self.journal.astarted(*started)
        op.meta["journal.run"] = started[0]
        return None

    def _to_start(self, op: Operation) -> Decision | tuple[str, str, str, str, str] | None:
        """None when ``op`` is not a call of a journaled run; a decision replaying its stored
        outcome; or the "started" entry to write before it runs (run id, key, kind, name, digest)."""
        run, scope = CURRENT_RUN.get(), CURRENT_CALL.get()
        if run is None or scope is None:
            return None
        key = _key(op, scope)
        checked = self._check(op, run, key)
        if isinstance(checked, Decision):
            return checked
        run.journaled.add(key)
        return run.run_id, key, op.kind.name, op.name, checked

    def _check(self, op: Operation, run: RunControl, key: str) -> Decision | str:
        """What the journal says of call ``key`` of ``run``: a decision replaying its stored
        outcome, or (to run it) the digest of its arguments; raises when it is in doubt."""
        args = operation_args(op)
        args_digest = digest(args)
        entry = None if run.fresh and key not in run.journaled else self.journal.get(run.run_id, key)
        if entry is not None and (entry.name != op.name or entry.args_digest != args_digest):
            entry = None  # another call in that place now (the workflow was edited): not this one's entry
        if entry is not None and entry.status == "finished":
            op.meta["journal.replayed"] = True
            outcome = entry.outcome or {}
            if "error" in outcome:
                error = outcome["error"] if isinstance(outcome["error"], dict) else {}
                raise AikitError(str(error.get("message", "the call failed")), code=str(error.get("code", "error")),
                                 details={**(error.get("details") or {}), "replayed": True})
            return Decision.replace(outcome.get("result"))
        if entry is not None and entry.status == "started" and not _idempotent(op) and not run.retry_in_doubt:
            request = ApprovalRequest("tool", op.name, args,
                                      f"the call of {op.name!r} was started but its end was never recorded (the run "
                                      "stopped during it): it may have run, or not, or half; its tool is not "
                                      "idempotent, so it runs again only if approved", run.run_id, in_doubt=True)
            shown = {**request.to_dict(), "call_id": key}  # a workflow's call is named by its place
            if run.decisions.get(request.key, ("",))[0] != "approved":
                if request.key in run.decisions:  # denied: the model learns it did not run again
                    reason = run.decisions[request.key][1]
                    raise ApprovalDenied(f"the in-doubt call of {op.name!r} was not run again"
                                         + (f": {reason}" if reason else ""), details={"request": shown})
                how = (f"Agent.resume({run.run_id!r}, {{approve = {{{op.name!r}}}}}) runs it again, deny does not"
                       if run.kind == "agent" else
                       f"decide it and resume: wf:resume({run.run_id!r}, {{approve = {{{key!r}}}}}) or `aikit mission "
                       f"resume {run.run_id} --approve {key}` runs it again, --deny {key} does not "
                       "(--approve-in-doubt: every in-doubt call of the run)")
                raise ApprovalRequired(f"tool {op.name!r} is in doubt in run {run.run_id!r}: {request.why}; {how}",
                                       details={"request": shown})
        return args_digest

    def finished(self, op: Operation, result: Any) -> None:
        run_id = op.meta.get("journal.run")
        if run_id is not None and not op.meta.get("journal.replayed"):
            self.journal.finished(run_id, op.meta["journal.key"], {"result": _storable(result)})

    async def afinished(self, op: Operation, result: Any) -> None:
        run_id = op.meta.get("journal.run")
        if run_id is not None and not op.meta.get("journal.replayed"):
            await self.journal.afinished(run_id, op.meta["journal.key"], {"result": _storable(result)})

    def failed(self, op: Operation, error: AikitError) -> None:
        if _forgets(op, error):
            self.journal.forget(op.meta["journal.run"], op.meta["journal.key"])

    async def afailed(self, op: Operation, error: AikitError) -> None:
        if _forgets(op, error):
            await self.journal.aforget(op.meta["journal.run"], op.meta["journal.key"])


def _key(op: Operation, scope: CallScope) -> str:
    """The journal key of ``op``: the next place in ``scope`` (a retry of it keeps its key)."""
    key = op.meta.get("journal.key")
    if key is None:
        key = op.meta["journal.key"] = scope.next_key()
    return key


def _forgets(op: Operation, error: AikitError) -> bool:
    """Whether the failed call ``op`` leaves no entry. A call that failed runs again on a resume
    (what "re-run what did not succeed" means); one that asked for approval never ran past the
    question; an interrupted one may have run, or not, or half: it is left in doubt."""
    if op.meta.get("journal.run") is None or op.meta.get("journal.replayed"):
        return False
    return error.code != "interrupted"


def _idempotent(op: Operation) -> bool:
    tool = op.meta.get("tool")
    check = getattr(tool, "is_idempotent", None)
    return bool(check()) if callable(check) else False


def _storable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        to_dict = getattr(value, "to_dict", None)
        if callable(to_dict):
            return to_dict()
        return json.loads(json.dumps(value, default=str))
