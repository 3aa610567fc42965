"""Which run an operation belongs to, and the durable state of agent runs.

:data:`CURRENT_RUN` is set (a context variable, so concurrent tool calls of one run and nested
runs each see their own) while an agent run or a workflow step runs: the approval interceptor reads
the run's own approval rules and the decisions already given for it, the effect journal its id.
:data:`CURRENT_CALL` names the tool call being made inside the run (its place in the run), the key
of its journal entry.

:class:`AgentRunStore` keeps an agent run's state in State (scope ``agent:~runs``, one key per run):
the conversation so far, the step, the calls waiting for a decision, the status. A paused run
(``needs_approval``) or one whose process died (``running`` in a process that is gone) is resumed
from it, in any process.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from ..codec import Encoded, encoded, lua_type_name
from ..errors import AikitError, InvalidArgument, IOFailure, NotFound
from ..jsontext import dumps_with
from ..liveness import process_alive
from .group_commit import GroupCommit

RUNS_SCOPE = "agent:~runs"
RESUMABLE = ("needs_approval", "running", "interrupted")
#: Runs this process is running now.
ACTIVE_RUNS: set[str] = set()

_RECORD_JSON = dumps_with(default=str)  # a run record as stored: what JSON cannot hold, as text
# The same, written as State writes it (codec.dumps), so that text can be stored as it is.
_RECORD_TEXT = dumps_with(ensure_ascii=False, separators=(",", ":"), default=str)


@dataclass
class RunControl:
    """What the control interceptors know about the run an operation belongs to."""

    run_id: str
    kind: str  # "agent" | "workflow"
    name: str
    #: Tool-name patterns (``fnmatch``) whose calls need a person's approval in this run.
    approve: tuple[str, ...] = ()
    #: Decisions given for this run's pending calls (resume): the call's approval key -> decision
    #: ("approved" | "denied"), reason and who decided.
    decisions: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: Whether a person may be asked now (False: a call needing approval pauses the run).
    interactive: bool = True
    #: Run again every in-doubt call (a workflow resumed with ``approve_in_doubt``).
    retry_in_doubt: bool = False
    #: A run this process started (not a resume): the effect journal holds nothing of it but the
    #: calls this process journaled, listed in ``journaled`` (so the others need no lookup).
    fresh: bool = False
    journaled: set[str] = field(default_factory=set)

    @classmethod
    def resumed(cls, record: dict[str, Any], decisions: dict[str, tuple[str, ...]] | None, kind: str, name: str,
                approve: tuple[str, ...] = ()) -> RunControl:
        """The control of stored run ``record`` resumed with ``decisions`` (over those stored with it)."""
        given = {k: tuple(v) for k, v in (record.get("decisions") or {}).items()}
        given.update(decisions or {})
        return cls(record["run_id"], kind, name, approve, decisions=given)


CURRENT_RUN: ContextVar[RunControl | None] = ContextVar("aikit_current_run", default=None)


class CallScope:
    """The place in a run of the tool calls made inside one block: each journaled call takes the
    next number (a workflow step that calls several tools, in order)."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.count = 0

    def next_key(self) -> str:
        key = f"{self.key}#{self.count}"
        self.count += 1
        return key


CURRENT_CALL: ContextVar[CallScope | None] = ContextVar("aikit_current_call", default=None)


@contextmanager
def in_run(run: RunControl) -> Iterator[RunControl]:
    """Operations inside this block belong to ``run``."""
    token = CURRENT_RUN.set(run)
    try:
        yield run
    finally:
        CURRENT_RUN.reset(token)


@contextmanager
def in_call(key: str) -> Iterator[CallScope]:
    """Tool calls made inside this block are the run's calls ``key#0``, ``key#1``, ... (their
    journal entries)."""
    token = CURRENT_CALL.set(scope := CallScope(key))
    try:
        yield scope
    finally:
        CURRENT_CALL.reset(token)


def new_run_id() -> str:
    return "run-" + uuid.uuid4().hex[:12]


_owner: dict[str, Any] | None = None  # this process's host and pid, asked once per process (not at every save)


def _forget_owner() -> None:
    global _owner
    _owner = None


os.register_at_fork(after_in_child=_forget_owner)  # a forked child is another process


def owner() -> dict[str, Any]:
    """Who is running a run: this process (host and pid)."""
    global _owner
    if _owner is None:
        _owner = {"host": socket.gethostname(), "pid": os.getpid()}
    return dict(_owner)


def owner_alive(who: Any, run_id: str) -> bool:
    """Whether the process that ran run ``run_id`` still runs it (a process on another host is
    assumed to)."""
    if not isinstance(who, dict):
        return False
    if who.get("host") != socket.gethostname():
        return True
    pid = who.get("pid")
    if not isinstance(pid, int):
        return False
    if pid == os.getpid():
        return run_id in ACTIVE_RUNS
    return process_alive(pid, zombie_is_dead=True)


class AgentRunStore:
    """Agent runs' state in State's store (see the module docstring), written past State's hooks
    and events (bookkeeping, not a user's write). Each write is durable before it returns
    (State's SQLite is WAL with ``synchronous=FULL``); :meth:`asave` waits for it without holding
    the event loop, in one transaction with the saves of other runs made at the same time."""

    def __init__(self, state: Any) -> None:
        self.backend = state.backend
        self._stores_encoded = bool(getattr(self.backend, "stores_encoded", False))
        self._writer: GroupCommit[tuple[str, Any]] | None = None  # its store's (see _writer), once asked

    def save(self, record: dict[str, Any]) -> None:
        record["updated_at"] = time.time()
        self.backend.set(RUNS_SCOPE, record["run_id"], record)

    def asave(self, record: dict[str, Any]) -> Coroutine[Any, Any, None]:
        """:meth:`save` for coroutines, to await. ``record`` is encoded at once (what JSON cannot
        hold, as text): the run may change it meanwhile, and the writer thread stores the text as
        it is."""
        record["updated_at"] = time.time()
        value = stored_record(record)
        if isinstance(value, Encoded) and not self._stores_encoded:
            value = json.loads(value.text)  # a store of another kind gets the plain value
        writer = self._writer
        if writer is None:
            writer = self._writer = _writer(self.backend)
        return writer.aput((record["run_id"], value))

    def get(self, run_id: str) -> dict[str, Any] | None:
        found, record = self.backend.get(RUNS_SCOPE, run_id)
        return record if found and isinstance(record, dict) else None

    def load_resumable(self, run_id: Any) -> dict[str, Any]:
        """The stored run ``run_id`` if it can be resumed, else a clear error (unknown, finished,
        or still running in a live process)."""
        if not isinstance(run_id, str) or not run_id:
            raise InvalidArgument("Agent.resume: the run id must be a non-empty string, got "
                                  + lua_type_name(run_id, article=True))
        record = self.get(run_id)
        if record is None:
            known = self.ids()[-5:]
            hint = f"; known runs: {', '.join(known)}" if known else "; no agent run is stored"
            raise NotFound(f"no agent run {run_id!r} to resume{hint} (`aikit approvals list` shows paused runs)",
                           details={"run_id": run_id})
        status = record.get("status")
        if status not in RESUMABLE:
            raise AikitError(f"agent run {run_id!r} is {status}: only a run that needs approval or was cut off "
                             "(its process died) can be resumed", code="not_resumable",
                             details={"run_id": run_id, "status": status})
        if status == "running" and owner_alive(record.get("owner"), run_id):
            raise AikitError(f"agent run {run_id!r} is still running in process {record.get('owner', {}).get('pid')}; "
                             "resume it once it has paused or its process has ended", code="not_resumable",
                             details={"run_id": run_id, "status": status})
        return record

    def ids(self) -> list[str]:
        return sorted(self.backend.keys(RUNS_SCOPE), key=lambda k: (self.get(k) or {}).get("updated_at", 0))

    def list(self, status: str | None = None) -> list[dict[str, Any]]:
        """Stored runs (oldest first), optionally only those with ``status``."""
        runs = [r for k in self.backend.keys(RUNS_SCOPE) if (r := self.get(k)) is not None]
        runs.sort(key=lambda r: r.get("updated_at", 0))
        return [r for r in runs if status is None or r.get("status") == status]


_writers: weakref.WeakKeyDictionary[Any, GroupCommit[tuple[str, Any]]] = weakref.WeakKeyDictionary()
_writers_lock = threading.Lock()


def _writer(backend: Any) -> GroupCommit[tuple[str, Any]]:
    """The group-commit writer of ``backend``'s run records (one per store: all its agents share it)."""
    with _writers_lock:
        writer = _writers.get(backend)
        if writer is None:
            store = weakref.ref(backend)  # not a strong reference: the writer must not keep its store alive

            def commit(batch: list[tuple[str, Any]]) -> None:
                target = store()
                if target is None:
                    raise IOFailure("the store of agent runs has been closed")
                if hasattr(target, "set_many"):  # one transaction
                    target.set_many(RUNS_SCOPE, batch)
                else:
                    for run_id, record in batch:
                        target.set(RUNS_SCOPE, run_id, record)

            writer = _writers[backend] = GroupCommit(commit, "aikit-runs")
        return writer


def stored_record(record: dict[str, Any]) -> Any:
    """``record`` as :meth:`AgentRunStore.save` stores it (what JSON cannot hold, as text),
    encoded now: a :class:`~aikit_components.codec.Encoded` State stores without encoding it
    again (one encoding instead of three: to text, back, and to text in the writer thread)."""
    return encoded(_RECORD_TEXT(record))


class AgentRuns:
    """One agent's runs in an :class:`AgentRunStore` (or nowhere: ``store`` None): what the agent
    stores as it goes, and the status a run is left with when it ends otherwise than by
    finishing. ``publish(topic, payload)`` reports a run that could not be stored."""

    def __init__(self, store: AgentRunStore | None, agent: str, spec: Callable[[], dict[str, Any]],
                 publish: Callable[[str, dict[str, Any]], None]) -> None:
        self.store = store
        self.agent = agent
        self.spec = spec
        self.publish = publish

    def save(self, run: RunControl, status: str, **fields: Any) -> None:
        """The run's state, durable before the run goes on."""
        if self.store is None:
            return
        try:
            self.store.save(self._record(run, status, fields))
        except AikitError as exc:  # a run that cannot be stored still runs; it just cannot resume
            self._persist_failed(run, exc)

    async def asave(self, run: RunControl, status: str, **fields: Any) -> None:
        """:meth:`save` for coroutines: the event loop serves others while the record is committed."""
        if self.store is None:
            return
        try:
            await self.store.asave(self._fields(run, status, fields))  # encoded there, once
        except AikitError as exc:
            self._persist_failed(run, exc)

    def _record(self, run: RunControl, status: str, fields: dict[str, Any]) -> dict[str, Any]:
        return json.loads(_RECORD_JSON(self._fields(run, status, fields)))  # what State cannot store, as text

    def _fields(self, run: RunControl, status: str, fields: dict[str, Any]) -> dict[str, Any]:
        return {"run_id": run.run_id, "agent": self.agent, "spec": self.spec(), "status": status, "owner": owner(),
                "decisions": {k: list(v) for k, v in run.decisions.items()}, **fields}

    def _persist_failed(self, run: RunControl, exc: AikitError) -> None:
        self.publish("agent.persist_failed", {"agent": self.agent, "run_id": run.run_id, "code": exc.code,
                                              "message": exc.message})

    def mark(self, run: RunControl, status: str, **fields: Any) -> None:
        """Set the stored run's status (its state otherwise as last saved)."""
        if self.store is None:
            return
        try:
            record = self.store.get(run.run_id)
            if record is not None:
                record.update(status=status, **fields)
                self.store.save(record)
        except Exception:  # noqa: BLE001 - the run's own error is what the caller must see
            pass

    @contextmanager
    def running(self, run: RunControl, resumed: dict[str, Any] | None, meter: Any = None) -> Iterator[RunControl]:
        """Operations inside belong to ``run``, which this process runs; when the block raises,
        the stored run is left ``failed`` (an error), ``interrupted`` (a cancellation, a kill),
        or as it was (``resumed``: a corrupt journal, resumable once it is repaired), with its
        ``meter``'s use against each budget when it has one."""
        ACTIVE_RUNS.add(run.run_id)
        try:
            with in_run(run):
                yield run
        except AikitError as exc:
            if exc.code == "journal_corrupted":
                before = resumed or {}
                self.mark(run, str(before.get("status") or "interrupted"), pending=before.get("pending") or [])
            else:
                self.mark(run, "failed", error=exc.to_dict(), **_use(meter))
            raise
        except BaseException:
            self.mark(run, "interrupted", **_use(meter))
            raise
        finally:
            ACTIVE_RUNS.discard(run.run_id)


def _use(meter: Any) -> dict[str, Any]:
    return {"budget": meter.report()} if meter is not None else {}
