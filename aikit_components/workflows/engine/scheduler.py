"""The DAG scheduler of one run: the ready queue, the concurrency limit, completion, failures
and teardown, event-driven (no per-step scans of the whole graph)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

from ..model import PASSING_STATUSES, RunRecord, StepRecord, Workflow
from ..validation import StepNode, WorkflowPlan
from .events import RunEvents
from .records import RunRecorder
from .steps import StepOutcome, StepRunner, error_dict

# One logger for the whole engine, named as before it became a package.
log = logging.getLogger(__package__)

INLINE_SLICE = 512  # inline (noop) steps run between two yields to the loop


class RunScheduler:
    """Schedules the steps of one run of ``plan`` on the running loop: each step starts when its
    dependencies are done, ``steps`` runs it, ``recorder`` stores what happened and ``events``
    tells the world. ``previous`` (a run being resumed) gives the steps to reuse."""

    def __init__(self, plan: WorkflowPlan, record: RunRecord, steps: StepRunner, recorder: RunRecorder,
                 events: RunEvents, previous: RunRecord | None) -> None:
        self._wf: Workflow = plan.workflow
        self._plan = plan
        self._nodes = plan.nodes
        self._record = record
        self._records: dict[str, StepRecord] = record.steps
        self._steps = steps
        self._recorder = recorder
        self._events = events
        self._previous = previous
        self._remaining = {sid: len(self._nodes[sid].deps) for sid in plan.order}
        self._ready: deque[str] = deque()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._active = 0
        self._limit = self._wf.max_concurrency
        self._stopping = False
        self._halt: str | None = None  # "timeout" | "cancelled" while tearing down
        self._failures: list[str] = []
        self._pump_scheduled = False
        self._finished: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def budget_meter(self, meter: Any) -> None:
        """Show ``meter``'s use against the run's budgets in the record (control/budgets.py)."""
        self._record.budget = meter

    async def execute(self) -> RunRecord:
        """Run every step; return the record (the run's cancellation is recorded, then re-raised)."""
        self._loop = asyncio.get_running_loop()
        self._finished = self._loop.create_future()
        record = self._record
        record.status = "running"
        record.started_at = time.time()
        started = time.monotonic()
        self._events.run_started(record, resumed=self._previous is not None)
        self._seed()
        self._recorder.start()
        self._pump()
        try:
            timeout = self._wf.timeout_s
            if timeout is None:
                await asyncio.wait((self._finished,))
            else:
                await asyncio.wait((self._finished,), timeout=max(0.0, timeout - (time.monotonic() - started)))
                if not self._finished.done():
                    await self._stop("timeout")
        except asyncio.CancelledError:
            await self._stop("cancelled")
            await self._finalize()
            raise
        await self._finalize()
        return record

    def _seed(self) -> None:
        """Reuse finished steps of the run being resumed, then queue the steps ready to start."""
        previous = self._previous
        reused: set[str] = set()
        if previous is not None and self._plan.layers is not None:
            for layer in self._plan.layers:
                for sid in layer:
                    old = previous.steps.get(sid)
                    if (old is not None and old.status in PASSING_STATUSES
                            and all(d in reused for d in self._nodes[sid].deps)):
                        reused.add(sid)
                        self._records[sid] = StepRecord.from_dict(old.to_dict())
            for sid in reused:
                for dep in self._nodes[sid].dependents:
                    self._remaining[dep] -= 1
        self._ready.extend(sid for sid in self._plan.order if sid not in reused and self._remaining[sid] == 0)

    async def _stop(self, reason: str) -> None:
        """Cancel every running step (global timeout or the run itself cancelled) and wait for them."""
        self._stopping = True
        self._halt = reason
        self._recorder.hold()
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        pending = set(tasks)
        while pending:
            try:
                _, pending = await asyncio.wait(pending)
            except asyncio.CancelledError:
                # cancelled again while tearing down (the kill switch and an interrupt both cancel
                # the run): the teardown still ends, so the run and its steps are recorded
                for task in pending:
                    task.cancel()

    async def _finalize(self) -> None:
        record, wf = self._record, self._wf
        now = time.time()
        if self._halt == "timeout":
            why = f"not started: the workflow's timeout ({wf.timeout_s:g} s) expired"
        elif self._halt == "cancelled":
            why = "not started: the run was cancelled"
        elif self._failures:
            why = f"not started: the run stopped scheduling after step {self._failures[0]!r} failed (fail_fast)"
        else:
            why = "not started: its dependencies never finished"
        for sid, rec in self._records.items():
            if rec.status in ("pending", "running"):
                rec.status = "cancelled"
                rec.error = {"code": "cancelled", "message": why, "details": {}}
                rec.started_at = rec.started_at or now
                rec.ended_at = now
                self._events.step_ended(sid, rec)
        if self._halt == "timeout":
            record.status = "timed_out"
            record.error = {"code": "timeout", "message": f"workflow {wf.name!r} did not finish within "
                            f"{wf.timeout_s:g} s; running steps were cancelled", "details": {"timeout_s": wf.timeout_s}}
        elif self._halt == "cancelled":
            record.status = "cancelled"
            record.error = {"code": "cancelled", "message": f"workflow {wf.name!r} was cancelled", "details": {}}
        elif self._failures and all((self._records[sid].error or {}).get("code") == "needs_approval"
                                    for sid in self._failures):
            # only waiting for decisions (in-doubt calls, approvals nobody could give): it pauses
            record.status = "needs_approval"
            record.error = {"code": "needs_approval", "message": f"step(s) {', '.join(self._failures)} wait for a "
                            "decision on a call; decide it and resume the run (`aikit approvals list` shows them)",
                            "details": {"waiting_steps": list(self._failures)}}
        elif self._failures:
            first = self._records[self._failures[0]]
            message = (first.error or {}).get("message", "")
            record.status = "failed"
            record.error = {"code": "step_failed", "message": f"step {first.id!r} {first.status}: {message}",
                            "details": {"failed_steps": list(self._failures)}}
        else:
            record.status = "succeeded"
        record.ended_at = now
        try:
            await self._recorder.finish()
        finally:  # cancelled again meanwhile (the write goes on in its own task): still told
            self._events.run_finished(record)

    def _pump(self) -> None:
        """Start ready steps while the concurrency limit allows (inline for plain noops)."""
        self._pump_scheduled = False
        ready, records, nodes = self._ready, self._records, self._nodes
        budget = INLINE_SLICE
        hooked = self._steps.hooked
        while ready and not self._stopping:
            if self._limit is not None and self._active >= self._limit:
                break
            sid = ready.popleft()
            if records[sid].status != "pending":
                continue
            node = nodes[sid]
            if node.inline and not hooked:
                self._complete(sid, self._steps.run_inline(sid, node))
                budget -= 1
                if budget == 0 and ready:
                    self._pump_scheduled = True
                    self._loop.call_soon(self._pump)  # type: ignore[union-attr]
                    return
            else:
                if node.step.kind != "approval":  # waiting for a person takes no slot of the limit
                    self._active += 1
                self._tasks[sid] = self._loop.create_task(self._run_step(sid, node),  # type: ignore[union-attr]
                                                          name=f"workflow:{self._wf.name}:{sid}")
        if (self._active == 0 and not self._tasks and not self._pump_scheduled and (not ready or self._stopping)
                and self._finished is not None and not self._finished.done()):
            self._finished.set_result(None)

    async def _run_step(self, sid: str, node: StepNode) -> None:
        outcome = StepOutcome("failed")
        try:
            barrier = self._recorder.barrier()
            if barrier is not None:  # the records of durable steps that ended before this one starts
                await asyncio.shield(barrier)
            outcome = await self._steps.run(sid, node)
        except asyncio.CancelledError:
            if self._halt is None:  # not ours: pass it on after recording
                self._active -= node.step.kind != "approval"
                self._tasks.pop(sid, None)
                self._complete(sid, StepOutcome("cancelled", None, {"code": "cancelled",
                                                                    "message": "the step was cancelled", "details": {}}))
                raise
            timed_out = self._halt == "timeout"
            message = (f"cancelled when the workflow's timeout ({self._wf.timeout_s:g} s) expired"
                       if timed_out else "cancelled with the run")
            outcome = StepOutcome("timed_out" if timed_out else "cancelled", None,
                                  {"code": "timeout" if timed_out else "cancelled", "message": message, "details": {}})
        except Exception as exc:  # a bug in the engine itself: record it rather than hang the run
            log.exception("workflow engine error in step %s", sid)
            outcome = StepOutcome("failed", None, error_dict(exc))
        self._active -= node.step.kind != "approval"
        self._tasks.pop(sid, None)
        self._complete(sid, outcome)
        self._pump()

    def _complete(self, sid: str, outcome: StepOutcome) -> None:
        """Record how a step ended and release (or fail) its dependents."""
        status = outcome.status
        rec = self._records[sid]
        rec.status = status
        rec.output = outcome.output
        rec.error = outcome.error
        rec.ended_at = now = time.time()
        if rec.started_at is None:
            rec.started_at = now
        self._events.step_ended(sid, rec)
        node = self._nodes[sid]
        if self._halt is not None:
            return  # tearing down: _finalize marks the rest and writes the record
        durable = self._recorder.durable_steps and node.step.kind != "noop"  # failures are always written at once
        if status in PASSING_STATUSES or (node.step.continue_on_error and status in ("failed", "timed_out")):
            records, remaining, ready = self._records, self._remaining, self._ready
            for dep in node.dependents:
                remaining[dep] -= 1
                if remaining[dep] == 0 and records[dep].status == "pending":
                    ready.append(dep)
            if status not in PASSING_STATUSES:
                durable = True
        else:
            durable = True
            if status in ("failed", "timed_out"):
                self._failures.append(sid)
                if self._wf.fail_fast:
                    self._stopping = True
            self._upstream_failed(sid, status, now)
        self._recorder.changed(sid)
        self._recorder.schedule(durable)

    def _upstream_failed(self, sid: str, status: str, now: float) -> None:
        records = self._records
        stack = list(self._nodes[sid].dependents)
        while stack:
            dep = stack.pop()
            rec = records[dep]
            if rec.status != "pending":
                continue
            rec.status = "upstream_failed"
            rec.error = {"code": "upstream_failed", "message": f"not run: upstream step {sid!r} {status}",
                         "details": {"upstream": sid}}
            rec.started_at = rec.ended_at = now
            self._recorder.changed(dep)
            self._events.step_ended(dep, rec)
            stack.extend(self._nodes[dep].dependents)
