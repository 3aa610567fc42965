"""Running a workflow: :func:`run` and the scheduler (start, ready queue, concurrency limit,
completion, failures, teardown, nested runs)."""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from ...errors import AikitError, InvalidArgument, NotFound, ValidationError
from ..model import RunRecord, StepRecord, Workflow
from ..templates import TemplateContext, TemplateError
from ..validation import _analyze, _Node, _Plan, run_scope
from .attempts import _AFTER, _BEFORE, _ERROR, _Attempts, _err
from .conditions import _Loops
from .context import StepContext
from .events import _Events
from .executors import _Executors
from .records import _OK, PERSIST_INTERVAL_S, _Persistence, load_run

# One logger for the whole engine, named as before it became a package.
log = logging.getLogger(__package__)

INLINE_SLICE = 512  # inline (noop) steps run between two yields to the loop


async def run(workflow: Workflow, *, components: Any, inputs: Mapping[str, Any] | None = None,
              run_id: str | None = None, resume: RunRecord | str | None = None,
              on_event: Callable[[str, str | None, Any], Any] | None = None,
              tool_context: Any = None, persist_interval_s: float = PERSIST_INTERVAL_S,
              durable_steps: bool = True) -> RunRecord:
    """Validate and run ``workflow`` on the current loop; return its record (also stored in State,
    see the package docstring). Raises ValidationError (listing every problem) before anything
    runs. ``resume`` (a RunRecord or a run id) reuses the finished steps of an earlier run.
    ``tool_context`` (default: a new one, caller ``workflow:<name>``) carries the budget of the
    run's tool calls. ``durable_steps=False`` stores every step on the ``persist_interval_s``
    schedule, as noops are (a durable write costs an fsync, about 2-4 ms); failures are still
    written at once. A cancelled run
    records ``cancelled`` and re-raises the cancellation."""
    previous: RunRecord | None = None
    if resume is not None:
        if isinstance(resume, RunRecord):
            previous = resume
        else:
            previous = load_run(components, str(resume))
            if previous is None:
                raise NotFound(f"no stored run {str(resume)!r} to resume (scope {run_scope(str(resume))!r})",
                               details={"run_id": str(resume)})
        if previous.workflow != workflow.name:
            raise InvalidArgument(f"run {previous.run_id!r} belongs to workflow {previous.workflow!r}, "
                                  f"not {workflow.name!r}", details={"run_id": previous.run_id})
        run_id = previous.run_id
        if inputs is None:
            inputs = previous.inputs
    given = dict(inputs or {})
    plan = _analyze(workflow, components, given)
    if plan.problems:
        raise ValidationError(f"workflow {workflow.name!r} is invalid:", plan.problems,
                              details={"workflow": workflow.name})
    merged = {**(workflow.inputs or {}), **given}
    runner = _Runner(plan, components, merged, run_id or uuid.uuid4().hex[:16], previous, on_event,
                     tool_context, persist_interval_s, durable_steps)
    return await runner.execute()


class _Runner(_Attempts, _Loops, _Executors, _Events, _Persistence):
    """One run: the scheduler state, event-driven (no per-step scans of the whole graph)."""

    def __init__(self, plan: _Plan, components: Any, inputs: dict[str, Any], run_id: str,
                 previous: RunRecord | None, on_event: Callable[..., Any] | None, tool_context: Any,
                 persist_interval_s: float, durable_steps: bool = True) -> None:
        wf = plan.workflow
        self.plan = plan
        self.wf = wf
        self.nodes = plan.nodes
        self.components = components
        self.inputs = inputs
        self.on_event = on_event
        self.events = getattr(components, "events", None)
        self.hooks = getattr(components, "hooks", None)
        self.state = getattr(components, "state", None)
        self._tool_ctx = tool_context
        self.previous = previous
        self.records: dict[str, StepRecord] = {sid: StepRecord(sid) for sid in plan.order}
        self.record = RunRecord(run_id, wf.name, "pending", self.records, inputs, source=wf.source)
        self.tctx = TemplateContext(inputs, self.records, getattr(components, "policy", None),
                                    getattr(components, "config", None), state=getattr(components, "state", None))
        self.remaining = {sid: len(self.nodes[sid].deps) for sid in plan.order}
        self.ready: deque[str] = deque()
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.active = 0
        self.limit = wf.max_concurrency
        self.stopping = False
        self.halt: str | None = None  # "timeout" | "cancelled" while tearing down
        self.failures: list[str] = []
        self.pump_scheduled = False
        self.finished: asyncio.Future[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        # persistence
        self.scope = run_scope(run_id)
        self.interval = persist_interval_s
        self.durable_steps = durable_steps
        self.dirty: set[str] = set()
        self.journal: dict[str, Any] = {}
        self.journal_limit = max(32, math.isqrt(max(1, len(plan.order))))
        self.persist_seq = 0
        self.last_write = 0.0
        self.last_cost = 0.0
        self.flush_soon = False
        self.flush_timer: asyncio.TimerHandle | None = None
        self.persist_failed = False

    # ------------------------------------------------------------------ lifecycle
    @property
    def tool_ctx(self) -> Any:
        if self._tool_ctx is None:
            self._tool_ctx = self.components.tool_context(caller=f"workflow:{self.wf.name}")
        return self._tool_ctx

    async def execute(self) -> RunRecord:
        self.loop = asyncio.get_running_loop()
        self.finished = self.loop.create_future()
        record = self.record
        record.status = "running"
        record.started_at = time.time()
        started = time.monotonic()
        self._publish("workflow.started", {"workflow": self.wf.name, "run_id": record.run_id,
                                           "steps": len(self.records), "resumed": self.previous is not None})
        self._notify("run.started", None, record)
        self._seed()
        self._persist_full()
        self._pump()
        try:
            timeout = self.wf.timeout_s
            if timeout is None:
                await asyncio.wait((self.finished,))
            else:
                await asyncio.wait((self.finished,), timeout=max(0.0, timeout - (time.monotonic() - started)))
                if not self.finished.done():
                    await self._halt("timeout")
        except asyncio.CancelledError:
            await self._halt("cancelled")
            self._finalize()
            raise
        self._finalize()
        return record

    def _seed(self) -> None:
        """Reuse finished steps of the run being resumed, then queue the steps ready to start."""
        previous = self.previous
        reused: set[str] = set()
        if previous is not None and self.plan.layers is not None:
            for layer in self.plan.layers:
                for sid in layer:
                    old = previous.steps.get(sid)
                    if old is not None and old.status in _OK and all(d in reused for d in self.nodes[sid].deps):
                        reused.add(sid)
                        self.records[sid] = StepRecord.from_dict(old.to_dict())
            for sid in reused:
                for dep in self.nodes[sid].dependents:
                    self.remaining[dep] -= 1
        self.ready.extend(sid for sid in self.plan.order if sid not in reused and self.remaining[sid] == 0)

    async def _halt(self, reason: str) -> None:
        """Cancel every running step (global timeout or the run itself cancelled) and wait for them."""
        self.stopping = True
        self.halt = reason
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _finalize(self) -> None:
        record = self.record
        now = time.time()
        if self.halt == "timeout":
            why = f"not started: the workflow's timeout ({self.wf.timeout_s:g} s) expired"
        elif self.halt == "cancelled":
            why = "not started: the run was cancelled"
        elif self.failures:
            why = f"not started: the run stopped scheduling after step {self.failures[0]!r} failed (fail_fast)"
        else:
            why = "not started: its dependencies never finished"
        for sid, rec in self.records.items():
            if rec.status in ("pending", "running"):
                rec.status = "cancelled"
                rec.error = {"code": "cancelled", "message": why, "details": {}}
                rec.started_at = rec.started_at or now
                rec.ended_at = now
                self._announce(sid, rec)
        if self.halt == "timeout":
            record.status = "timed_out"
            record.error = {"code": "timeout", "message": f"workflow {self.wf.name!r} did not finish within "
                            f"{self.wf.timeout_s:g} s; running steps were cancelled", "details": {"timeout_s": self.wf.timeout_s}}
        elif self.halt == "cancelled":
            record.status = "cancelled"
            record.error = {"code": "cancelled", "message": f"workflow {self.wf.name!r} was cancelled", "details": {}}
        elif self.failures:
            first = self.records[self.failures[0]]
            message = (first.error or {}).get("message", "")
            record.status = "failed"
            record.error = {"code": "step_failed", "message": f"step {first.id!r} {first.status}: {message}",
                            "details": {"failed_steps": list(self.failures)}}
        else:
            record.status = "succeeded"
        record.ended_at = now
        if self.flush_timer is not None:
            self.flush_timer.cancel()
            self.flush_timer = None
        self._persist_full()
        self._publish("workflow.finished", {"workflow": self.wf.name, "run_id": record.run_id, "status": record.status,
                                            "duration_ms": round((record.duration_s or 0.0) * 1000, 3),
                                            "error": record.error})
        self._notify("run.finished", None, record)

    # ------------------------------------------------------------------ scheduling
    def _hooked(self) -> bool:
        hooks = self.hooks
        return hooks is not None and (hooks.has(_BEFORE) or hooks.has(_AFTER) or hooks.has(_ERROR))

    def _pump(self) -> None:
        """Start ready steps while the concurrency limit allows (inline for plain noops)."""
        self.pump_scheduled = False
        ready, records, nodes = self.ready, self.records, self.nodes
        budget = INLINE_SLICE
        hooked = self._hooked()
        while ready and not self.stopping:
            if self.limit is not None and self.active >= self.limit:
                break
            sid = ready.popleft()
            if records[sid].status != "pending":
                continue
            node = nodes[sid]
            if node.inline and not hooked:
                self._run_inline(sid, node)
                budget -= 1
                if budget == 0 and ready:
                    self.pump_scheduled = True
                    self.loop.call_soon(self._pump)  # type: ignore[union-attr]
                    return
            else:
                self.active += 1
                self.tasks[sid] = self.loop.create_task(self._run_step(sid, node),  # type: ignore[union-attr]
                                                        name=f"workflow:{self.wf.name}:{sid}")
        if (self.active == 0 and not self.pump_scheduled and (not ready or self.stopping)
                and self.finished is not None and not self.finished.done()):
            self.finished.set_result(None)

    def _run_inline(self, sid: str, node: _Node) -> None:
        """A noop without a predicate function: no await needed, so no task."""
        step = node.step
        rec = self.records[sid]
        if step.when is not None:
            try:
                ok = self._declarative(step.when, node.when_ref, node.when_value, sid, None)
            except Exception as exc:
                self._complete(sid, "failed", None, _err(exc))
                return
            if not ok:
                self._complete(sid, "skipped", None, None)
                return
        rec.status = "running"
        rec.started_at = time.time()
        rec.attempts = 1
        self._started(sid, step)
        try:
            params = node.params.resolve(self.tctx, sid)  # type: ignore[union-attr]
        except TemplateError as exc:
            self._complete(sid, "failed", None, exc.to_dict())
            return
        self._complete(sid, "succeeded", dict(params) if isinstance(params, dict) else params, None)

    async def _run_step(self, sid: str, node: _Node) -> None:
        status, output, error = "failed", None, None
        try:
            status, output, error = await self._execute(sid, node)
        except asyncio.CancelledError:
            if self.halt is None:  # not ours: pass it on after recording
                self.active -= 1
                self.tasks.pop(sid, None)
                self._complete(sid, "cancelled", None, {"code": "cancelled", "message": "the step was cancelled",
                                                        "details": {}})
                raise
            status = "timed_out" if self.halt == "timeout" else "cancelled"
            message = (f"cancelled when the workflow's timeout ({self.wf.timeout_s:g} s) expired"
                       if self.halt == "timeout" else "cancelled with the run")
            error = {"code": "timeout" if self.halt == "timeout" else "cancelled", "message": message, "details": {}}
        except Exception as exc:  # a bug in the engine itself: record it rather than hang the run
            log.exception("workflow engine error in step %s", sid)
            error = _err(exc)
        self.active -= 1
        self.tasks.pop(sid, None)
        self._complete(sid, status, output, error)
        self._pump()

    def _complete(self, sid: str, status: str, output: Any, error: dict[str, Any] | None) -> None:
        """Record how a step ended and release (or fail) its dependents."""
        rec = self.records[sid]
        rec.status = status
        rec.output = output
        rec.error = error
        rec.ended_at = now = time.time()
        if rec.started_at is None:
            rec.started_at = now
        self._announce(sid, rec)
        node = self.nodes[sid]
        if self.halt is not None:
            return  # tearing down: _finalize marks the rest and writes the record
        durable = self.durable_steps and node.step.kind != "noop"  # failures are always written at once
        if status in _OK or (node.step.continue_on_error and status in ("failed", "timed_out")):
            records, remaining, ready = self.records, self.remaining, self.ready
            for dep in node.dependents:
                remaining[dep] -= 1
                if remaining[dep] == 0 and records[dep].status == "pending":
                    ready.append(dep)
            if status not in _OK:
                durable = True
        else:
            durable = True
            if status in ("failed", "timed_out"):
                self.failures.append(sid)
                if self.wf.fail_fast:
                    self.stopping = True
            self._upstream_failed(sid, status, now)
        self.dirty.add(sid)
        self._schedule_persist(durable)

    def _upstream_failed(self, sid: str, status: str, now: float) -> None:
        records = self.records
        stack = list(self.nodes[sid].dependents)
        while stack:
            dep = stack.pop()
            rec = records[dep]
            if rec.status != "pending":
                continue
            rec.status = "upstream_failed"
            rec.error = {"code": "upstream_failed", "message": f"not run: upstream step {sid!r} {status}",
                         "details": {"upstream": sid}}
            rec.started_at = rec.ended_at = now
            self.dirty.add(dep)
            self._announce(dep, rec)
            stack.extend(self.nodes[dep].dependents)

    def _context(self, sid: str, attempt: int, frame: dict[str, Any] | None) -> StepContext:
        return StepContext(self.record.run_id, self.wf.name, sid, attempt, self.inputs, frame, self.components,
                           self.records)

    async def _nested(self, node: _Node, params: Any, frame: dict[str, Any] | None, attempt: int) -> Any:
        step = node.step
        nested: Workflow = step.workflow  # type: ignore[assignment]
        run_id = f"{self.record.run_id}.{step.id}" + (f".{frame['index']}" if frame is not None else "")
        resume = None
        if self.previous is not None or attempt > 1:
            stored = load_run(self.components, run_id)
            if stored is not None and stored.workflow == nested.name:
                resume = stored
        result = await run(nested, components=self.components, inputs=dict(params or {}), run_id=run_id,
                           resume=resume, tool_context=self.tool_ctx, persist_interval_s=self.interval,
                           durable_steps=self.durable_steps)
        out = result.to_dict()
        if result.status != "succeeded":
            message = (result.error or {}).get("message", "")
            raise AikitError(f"nested workflow {nested.name!r} {result.status}: {message}", code="workflow_failed",
                             details={"run_id": run_id, "status": result.status})
        return out
