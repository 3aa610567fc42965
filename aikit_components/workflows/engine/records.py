"""Run records in State: loading a stored run (record merged with its journal) and the
writes that keep it current while the run goes (full record, journal, fallbacks)."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping
from typing import Any

from ...errors import AikitError, error_from_exception
from ..model import RunRecord
from ..validation import run_scope
from .events import RunEvents

# One logger for the whole engine, named as before it became a package.
log = logging.getLogger(__package__)

PERSIST_INTERVAL_S = 0.25


def journal_key(index: int) -> str:
    """The State key of journal segment ``index``: ``journal``, ``journal.1``, ``journal.2``, ..."""
    return "journal" if index == 0 else f"journal.{index}"


def load_run(components: Any, run_id: str) -> RunRecord | None:
    """The stored record of run ``run_id`` (the full record merged with its journal), or None."""
    state = components.state
    scope = run_scope(run_id)
    data = state.get(scope, "run")
    if not isinstance(data, dict):
        return None
    base = data.get("persist_seq")
    merged: dict[str, Any] | None = None
    index = 0
    while True:  # the segments written since the full record, in order (an older one ends them)
        journal = state.get(scope, journal_key(index))
        if not (isinstance(journal, dict) and journal.get("base") == base and isinstance(journal.get("steps"), dict)):
            break
        if merged is None:
            merged = dict(data.get("steps") or {})
        merged.update(journal["steps"])
        index += 1
    if merged is not None:
        data["steps"] = merged
    return RunRecord.from_dict(data)


class RunRecorder:
    """Keeps one run's record in State: the full record at the start and the end, and each
    finished step either soon (durable) or on the ``interval`` schedule, through the journal:
    each write adds a segment (key :func:`journal_key`) holding only the steps changed since the
    last write, until there are ``max(32, sqrt(steps))`` segments; then the full record is
    rewritten and the segments start again. (One journal key rewritten whole at every write made
    each write cost as much as all the steps since the last full record, and the full record,
    which costs as much as every step, was rewritten every 32 steps: with 1,000 agent steps
    finishing over a few seconds, that was a fifth of the event loop's time.)

    Writes go through :meth:`State.aset <aikit_components.state.State.aset>`: the record is
    encoded on the loop, committed (with its fsync) in the store's writer thread, and the loop
    serves the run's other steps meanwhile. One write is in flight at a time, so the writes land
    in order and the changes made during a commit go together into the next write. A durable
    change is committed before any step that starts after it: a starting step awaits
    :meth:`barrier`."""

    def __init__(self, state: Any, record: RunRecord, events: RunEvents, interval: float,
                 durable_steps: bool) -> None:
        self._state = state
        self._record = record
        self._events = events
        self._scope = run_scope(record.run_id)
        self.interval = interval
        self.durable_steps = durable_steps
        self._dirty: set[str] = set()
        self._segments = 0  # journal segments written since the full record
        self._segment_limit = max(32, math.isqrt(max(1, len(record.steps))))
        self._seq = 0
        self._last_write = 0.0
        self._last_cost = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._held = False
        self._failed = False
        self._writer: asyncio.Task[None] | None = None  # writes the changes, one write at a time
        self._wanted = False  # a write of the changes is asked for
        self._full_due = False  # the next write is the full record
        self._final = False  # the run ended: the full record is the last write
        self._pending: asyncio.Future[None] | None = None  # durable changes no write has taken yet
        self._inflight: asyncio.Future[None] | None = None  # durable changes in the write in flight

    def changed(self, sid: str) -> None:
        """Step ``sid`` changed: the next write includes it."""
        self._dirty.add(sid)

    def start(self) -> None:
        """The run starts: write the whole record, durably before any step starts."""
        if self._state is None:
            return
        self._full_due = True
        self.schedule(True)

    def schedule(self, durable: bool) -> None:
        """Write the changes soon: before the next step starts (``durable``) or on the interval."""
        if self._state is None:
            return
        if durable:
            if self._pending is None:
                self._pending = asyncio.get_running_loop().create_future()
            self._request()
        elif self._timer is None and not self._wanted:
            gap = max(self.interval, 5 * self._last_cost)
            wait = max(0.0, self._last_write + gap - time.monotonic())
            self._timer = asyncio.get_running_loop().call_later(wait, self._request)

    def barrier(self) -> asyncio.Future[None] | None:
        """Done once every durable change made so far is committed (None when it is already): a
        step that starts now awaits it first (through :func:`asyncio.shield`: others share it)."""
        future = self._pending or self._inflight
        return future if future is not None and not future.done() else None

    def hold(self) -> None:
        """The run is tearing down: no step writes until :meth:`finish`."""
        self._held = True

    async def finish(self) -> None:
        """The run ended: write the whole record, and nothing after it; returns once it is
        committed. (Cancelled meanwhile, the write still completes: it is a task of its own.)"""
        self._held = True
        self._final = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._state is None:
            return
        await asyncio.shield(self._writing())

    def _request(self) -> None:
        """Ask for a write of the changes (a durable change, the interval's timer)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._held:
            return
        self._wanted = True
        self._writing()

    def _writing(self) -> asyncio.Task[None]:
        """The writer task, started when none is running."""
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_changes(),
                                                                  name=f"workflow-record:{self._record.run_id}")
        return self._writer

    async def _write_changes(self) -> None:
        """The writer: one write at a time while writes are asked for; the final full record."""
        try:
            while True:
                if self._final:
                    self._inflight, self._pending = self._pending, None
                    await self._write_full()
                    return
                if not self._wanted or self._held:
                    return
                self._wanted = False
                self._inflight, self._pending = self._pending, None
                await self._write_once()
                _settle(self._inflight)
                self._inflight = None
        finally:
            self._writer = None
            _settle(self._inflight)
            self._inflight = None
            if self._final or self._held:  # nothing will take these changes now: nobody may wait for them
                _settle(self._pending)
                self._pending = None

    async def _write_once(self) -> None:
        if self._full_due or self._segments >= self._segment_limit:
            await self._write_full()
            return
        if not self._dirty:
            return
        started = time.monotonic()
        steps = {sid: self._record.steps[sid].to_dict() for sid in self._dirty}
        self._dirty.clear()
        if await self._write(journal_key(self._segments), {"base": self._seq, "steps": steps}):
            self._segments += 1
        else:  # a segment missing would hide the ones after it: the next write is the full record
            self._segments = self._segment_limit
        self._last_write = time.monotonic()
        self._last_cost = self._last_write - started

    async def _write_full(self) -> None:
        """Write the whole record (steps still pending left out) and start a new journal."""
        started = time.monotonic()
        self._full_due = False
        self._seq = max(self._seq + 1, time.time_ns())
        record = self._record
        data = {"run_id": record.run_id, "workflow": record.workflow, "status": record.status,
                "inputs": record.inputs, "error": record.error, "started_at": record.started_at,
                "ended_at": record.ended_at, "duration_s": record.duration_s, "source": record.source,
                "steps": {sid: r.to_dict() for sid, r in record.steps.items() if r.status != "pending"},
                "persist_seq": self._seq}
        if record.budget is not None:
            data["budget"] = record.budget_report()
        self._segments = 0
        self._dirty.clear()
        await self._write("run", data)
        self._last_write = time.monotonic()
        self._last_cost = self._last_write - started

    async def _write(self, key: str, value: Any) -> bool:
        """Store ``value`` at ``key`` of the run's scope; False when it could not be stored."""
        try:
            await self._state.aset(self._scope, key, value)
            return True
        except AikitError as exc:
            first = exc
        except Exception as exc:  # noqa: BLE001 - persistence must never break the run
            first = error_from_exception(exc)
        try:  # an output State cannot store (a Python object from a function step): store its text
            await self._state.aset(self._scope, key, _storable(value))
            return True
        except Exception as exc:  # noqa: BLE001
            first = error_from_exception(exc) if not isinstance(exc, AikitError) else exc
        if not self._failed:
            self._failed = True
            log.warning("could not store workflow run %s: %s", self._record.run_id, first)
            self._events.publish("workflow.persist_failed", {"workflow": self._record.workflow,
                                                             "run_id": self._record.run_id,
                                                             "code": first.code, "message": first.message})
        return False


def _settle(future: asyncio.Future[None] | None) -> None:
    """The changes ``future`` stands for are committed (or will not be): wake who waits for them."""
    if future is not None and not future.done():
        future.set_result(None)


def _storable(value: Any) -> Any:
    """``value`` with anything State cannot store replaced by its text."""
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    if isinstance(value, Mapping):
        return {(k if isinstance(k, (str, int, float, bool)) else str(k)): _storable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_storable(v) for v in value]
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        try:
            return _storable(to_dict())
        except Exception:  # noqa: BLE001
            pass
    return repr(value)
