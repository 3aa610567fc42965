"""The kill switch: stop every running agent, workflow, mission and tool of a process.

:class:`StopSwitch` is an observing interceptor (order ``STOP``, outside everything that decides):
each operation that runs in an asyncio task (agent runs, model calls, tool calls, program launches,
HTTP requests, workflow steps, RAG work) registers its task while it runs, and workflow runs register
theirs (:meth:`StopSwitch.tracking`). :meth:`StopSwitch.stop` cancels every registered task: the
cancellation reaches what each is waiting on, so model streams are closed, programs are killed
with their process group (``run_argv``), HTTP requests are abandoned, workflow steps are recorded
``cancelled``. Operations that run synchronously on the Lua thread are stopped by the kernel's
interrupt instead (see ``on_stop``).

Ways in: ``Event.publish("aikit.stop")`` (any publisher on the process's bus), ``aikit stop`` (the
kernel's control channel, message ``aikit_stop_request``), and a notebook interrupt, which stops
what the current cell started (:meth:`StopSwitch.stop_cell`). Each use publishes
``aikit.stopped`` ``{by, cancelled}``, which the audit ledger records.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import AikitError
from ..operations.interceptor import Interceptor
from ..operations.operation import Operation, OperationKind

log = logging.getLogger(__name__)

#: Outside tracing (100): the switch must see every operation, rejected ones included.
STOP = 50
STOP_TOPIC = "aikit.stop"
STOPPED_TOPIC = "aikit.stopped"
#: Kinds whose operations may run in a task of their own worth stopping.
STOPPABLE_KINDS = frozenset({"agent", "llm", "tool", "process", "http", "workflow.step", "rag.ingest", "rag.search"})


def _current_task() -> asyncio.Task[Any] | None:
    loop = asyncio.events._get_running_loop()  # public (in asyncio.events.__all__); no exception when None
    if loop is None:  # no running loop in this thread (the Lua thread): nothing to cancel
        return None
    return asyncio.current_task(loop)


class StopSwitch(Interceptor):
    """Tracks the tasks of running operations and cancels them on :meth:`stop` (see the module
    docstring). ``events``: the bus to listen on for ``aikit.stop`` and to announce stops on."""

    order = STOP
    name = "stop"
    decides = False

    def __init__(self, events: Any = None) -> None:
        self.events = events
        self._lock = threading.Lock()
        # task -> [how many registrations, the cell generation it started in]
        self._tasks: dict[asyncio.Task[Any], list[int]] = {}
        self.generation = 0  # counts cells: work is tagged with the cell that started it
        #: Called with ``by`` on every stop (the kernel interrupts the running cell from here).
        self.on_stop: list[Callable[[str], None]] = []
        if events is not None:
            events.subscribe(STOP_TOPIC, self._on_event)

    # -- tracking --------------------------------------------------------------------------------
    def wants_kind(self, kind: OperationKind) -> bool | None:
        if kind.name == "cell":
            return True
        return None if kind.name in STOPPABLE_KINDS else False

    def wants(self, op: Operation) -> bool:
        # An operation run outside an event loop (a tool called from the Lua thread) has no task
        # to register: the switch has nothing to do for it (the kernel's interrupt stops it).
        return asyncio.events._get_running_loop() is not None  # public (in asyncio.events.__all__)

    def started(self, op: Operation) -> None:
        if op.kind.name == "cell":
            self.generation += 1
            return
        if "stop_task" in op.meta:  # a retried attempt: already registered
            return
        task = _current_task()
        if task is not None:
            self._add(task)
            op.meta["stop_task"] = task

    def finished(self, op: Operation, result: Any) -> None:
        self._release(op)

    def failed(self, op: Operation, error: AikitError) -> None:
        self._release(op)

    def _add(self, task: asyncio.Task[Any]) -> None:
        with self._lock:
            entry = self._tasks.get(task)
            if entry is None:
                self._tasks[task] = [1, self.generation]
            else:
                entry[0] += 1

    def _remove(self, task: asyncio.Task[Any]) -> None:
        with self._lock:
            entry = self._tasks.get(task)
            if entry is not None:
                entry[0] -= 1
                if entry[0] <= 0:
                    del self._tasks[task]

    def _release(self, op: Operation) -> None:
        task = op.meta.pop("stop_task", None)
        if task is not None:
            self._remove(task)

    @contextlib.contextmanager
    def tracking(self) -> Iterator[None]:
        """Register the current task while the block runs (a workflow run: cancelling it records
        its running steps ``cancelled`` and starts no more)."""
        task = _current_task()
        if task is None:
            yield
            return
        self._add(task)
        try:
            yield
        finally:
            self._remove(task)

    def running(self) -> int:
        """How many tasks are registered (running operations and workflow runs)."""
        with self._lock:
            return sum(1 for task in self._tasks if not task.done())

    # -- stopping --------------------------------------------------------------------------------
    def stop(self, by: str = "api", *, generation: int | None = None, interrupt: bool = True) -> int:
        """Cancel every tracked task (only those started during cell ``generation`` when given)
        and call :attr:`on_stop` (with ``interrupt``); announce it on ``aikit.stopped``. Returns
        how many tasks were cancelled. Thread-safe; returns without waiting for them to end."""
        with self._lock:
            tasks = [task for task, (_, gen) in self._tasks.items()
                     if not task.done() and (generation is None or gen == generation)]
        for task in tasks:
            try:
                task.get_loop().call_soon_threadsafe(task.cancel, f"stopped by {by}")
            except RuntimeError:  # its loop is closed: nothing left to stop there
                pass
        if interrupt:
            for callback in list(self.on_stop):
                try:
                    callback(by)
                except Exception:
                    log.exception("a stop callback failed")
        if self.events is not None:
            self.events.publish(STOPPED_TOPIC, {"by": by, "cancelled": len(tasks)}, source="control")
        return len(tasks)

    def stop_cell(self) -> int:
        """Stop what the current (or last) cell started, its background work included (the
        notebook interrupt; the cell itself is interrupted by the kernel)."""
        return self.stop("interrupt", generation=self.generation, interrupt=False)

    def _on_event(self, event: Any) -> None:
        payload = event.payload if isinstance(event.payload, dict) else {}
        by = str(payload.get("by") or event.source or "event")
        # a cell that publishes aikit.stop goes on: it stops the work, not itself
        self.stop(by, interrupt=event.source != "lua")
