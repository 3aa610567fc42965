"""The workflow engine: validate a :class:`~.model.Workflow`, then run it on the current asyncio
loop and record what happened in a :class:`~.model.RunRecord` stored in State.

```python
problems = validate(wf, components=c, inputs={"city": "Oslo"})   # every problem at once
record = await run(wf, components=c, inputs={"city": "Oslo"})
record.status, record.steps["fetch"].output
```

Scheduling (the same rules as Airflow and Argo)
-----------------------------------------------

- **Dependencies.** ``mode="dag"``: a step starts when every step in its ``depends_on`` has
  finished. ``"sequential"``: each step also depends on the one declared before it.
  ``"parallel"``: only explicit ``depends_on`` (usually none). Ready steps start in declaration
  order; at most ``Workflow.max_concurrency`` run at once (None: unbounded).
- **Conditions** (``Step.when``) are checked when the step becomes ready. False -> the step is
  ``skipped`` and its dependents still run (a skipped step's ``{{steps.ID.output...}}`` is None).
  Only failures propagate.
- **Failures.** A step that fails (or times out) marks every step downstream of it
  ``upstream_failed`` (they never run), and the run ends ``failed``. With ``fail_fast`` (the
  default) no new step starts after a failure; steps already running finish, and steps that
  never started are ``cancelled``. Without it, independent branches go on.
- **continue_on_error.** The step is recorded ``failed`` (or ``timed_out``) but counts as done
  for scheduling: its dependents run and see its output as None, fail_fast is not triggered, and
  the run can still succeed.
- **Retries.** ``Step.retries`` (default ``Workflow.retry_attempts``) more attempts after a
  failure or a per-step timeout, waiting ``retry_delay_s * backoff ** (n - 1)`` before retry n.
  Not retried: a hook's cancel and unresolvable templates. ``StepRecord.attempts`` counts tries.
  A looping step is retried as a whole.
- **Timeouts.** ``Step.timeout_s`` bounds each attempt: the attempt's task is cancelled, and the
  cancellation reaches the tool call (``run_process`` kills the program's process group), and a
  ``function`` step must stop when cancelled (the Lua binding stops Lua code even mid-computation)
  -> ``timed_out``. ``Workflow.timeout_s`` bounds the run: running steps are cancelled and marked
  ``timed_out``, steps not started ``cancelled``, and the run ends ``timed_out``.
- **Loops** (``Step.loop``) run iterations one after another inside the step; the output is the
  list of iteration outputs. ``range`` is inclusive (``[1, 3]`` -> 1, 2, 3), ``over`` a list (a
  map iterates ``{key, value}`` pairs), ``while_`` a condition checked before each iteration.
  An iteration output ``{"break": true, ...}`` ends the loop. ``max_iterations`` caps every
  form: a longer ``over``/``range`` is an error; a ``while_`` loop just stops there.
  ``{{loop.item}}``, ``{{loop.index}}`` (0-based), ``{{loop.previous}}`` resolve per iteration.

Step kinds
----------

``tool`` -> ``components.tools.acall(target, params)``; ``command`` -> the ``run_process`` tool
(``params.command`` an argv list or a string split like a shell; a non-zero exit fails the step
unless ``params.check`` is false); ``agent`` -> ``components.new_agent(spec).run(params.input)``
(``target``: an AgentSpec, a dict of its fields, or the name of an ``[agents.NAME]`` config
table; output ``AgentResult.to_dict()``); ``llm`` -> one completion of ``params.prompt`` (with
``system``, ``model`` (default "default"), ``temperature``, ``max_tokens``), output ``{text, model,
usage, stop_reason}``; ``workflow`` -> a nested run (inputs = params, run id
``<run_id>.<step>``), output its record as a dict; ``function`` -> ``fn(params, ctx)`` with a
:class:`StepContext` (sync functions run in the loop's thread; async ones are awaited);
``noop`` -> its params.

Hooks and events
----------------

Hook ``workflow.step.before`` (payload ``{workflow, run_id, step, kind, params}``): cancel -> the
step fails with code ``cancelled``; replace -> the step succeeds with that output without
running; changing ``payload["params"]`` changes the arguments (for looping steps the params are
still templates). ``workflow.step.after`` (``output``): replace -> a different output.
``workflow.step.error`` (``error``, after the last attempt): replace -> the step succeeds with
that output; retry -> one more attempt (at most 3 such). Events: ``workflow.started``,
``workflow.finished``, ``workflow.step.started``, ``workflow.step.finished`` (succeeded or
skipped), ``workflow.step.failed`` (any other final status), ``workflow.step.retrying``.
``on_event(kind, step_id, record)`` is called (in the loop's thread; keep it short) with kind
``run.started`` / ``run.finished`` (step_id None, the RunRecord) and ``step.started`` /
``step.finished`` (the StepRecord; its status says how it ended).

Persistence and resume
----------------------

The record lives in State, scope ``workflow:<run_id>``: key ``run`` holds the whole record
(steps still pending are left out until they change) and key ``journal`` the steps finished since
the last full write. Writes: at the start; after a step of any kind other than ``noop`` finishes
or any step fails (before the next step starts: one write covers every step that finished in the
same loop iteration); for ``noop`` and skipped steps at most every ``persist_interval_s``
(0.25 s, longer when writing the record costs more than a fifth of that time); and at the end.
``run(..., durable_steps=False)`` puts every successful step on that interval schedule (a
durable write costs an fsync, 2-4 ms, which dominates runs of many trivial steps).
Small writes go to the journal; the full record is rewritten when the journal holds more than
``max(32, sqrt(steps))`` steps, so a big run does not rewrite everything after every step.
:func:`load_run` merges both. A crash can thus lose at most the last ``persist_interval_s`` of
noop steps, which simply run again.

``run(..., resume=record_or_run_id)`` reuses every step that ``succeeded`` (or was ``skipped``)
whose upstream steps are all reused too, with their outputs, and runs the rest under the same
run id. Nested workflows resume from their own records.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import math
import shlex
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import AikitError, Cancelled, InvalidArgument, NotFound, ValidationError, error_from_exception
from ..hooks import MAX_HOOK_RETRIES
from .model import Condition, RunRecord, Step, StepRecord, Workflow
from .templates import Template, TemplateContext, TemplateError

__all__ = ["CONDITION_OPS", "MODES", "PERSIST_INTERVAL_S", "StepContext", "layers", "load_run", "run", "run_scope",
           "validate"]

log = logging.getLogger(__name__)

PERSIST_INTERVAL_S = 0.25
INLINE_SLICE = 512  # inline (noop) steps run between two yields to the loop
_BEFORE, _AFTER, _ERROR = "workflow.step.before", "workflow.step.after", "workflow.step.error"
_OK = frozenset({"succeeded", "skipped"})


from .validation import (  # the analysis half of the engine
    CONDITION_OPS,
    MODES,
    _Node,
    _Plan,
    _agent_spec,
    _analyze,
    _range_items,
    layers,
    run_scope,
    validate,
)


class StepContext:
    """What a ``function`` step (and a ``Condition.fn``) receives as ``ctx``."""

    __slots__ = ("run_id", "workflow", "step", "attempt", "inputs", "loop", "components", "_records")

    def __init__(self, run_id: str, workflow: str, step: str, attempt: int, inputs: dict[str, Any],
                 loop: dict[str, Any] | None, components: Any, records: dict[str, StepRecord]) -> None:
        self.run_id = run_id
        self.workflow = workflow
        self.step = step
        self.attempt = attempt
        self.inputs = inputs
        self.loop = loop
        self.components = components
        self._records = records

    def output(self, step_id: str) -> Any:
        """The output of a finished step (None if it has not produced one)."""
        record = self._records.get(step_id)
        return record.output if record is not None else None

    def status(self, step_id: str) -> str | None:
        record = self._records.get(step_id)
        return record.status if record is not None else None

    @property
    def outputs(self) -> dict[str, Any]:
        """Outputs of every finished step, by id."""
        return {sid: r.output for sid, r in self._records.items() if r.status not in ("pending", "running")}

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "workflow": self.workflow, "step": self.step, "attempt": self.attempt,
                "inputs": self.inputs, "loop": self.loop,
                "steps": {sid: {"status": r.status, "output": r.output} for sid, r in self._records.items()
                          if r.status not in ("pending", "running")}}

    def __repr__(self) -> str:
        return f"StepContext(run_id={self.run_id!r}, step={self.step!r}, attempt={self.attempt})"


class _StepTimeout(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error["message"])
        self.error = error


def _err(exc: BaseException) -> dict[str, Any]:
    return error_from_exception(exc).to_dict()


def _compare(op: str, left: Any, right: Any) -> bool:
    try:
        if op == "truthy":
            return bool(left)
        if op == "falsy":
            return not left
        if op == "eq":
            return left == right
        if op == "ne":
            return left != right
        if op == "lt":
            return left < right
        if op == "le":
            return left <= right
        if op == "gt":
            return left > right
        if op == "ge":
            return left >= right
        if op == "in":
            return right is not None and left in right
        if op == "contains":
            return left is not None and right in left
    except TypeError as exc:
        raise InvalidArgument(f"condition {op}: cannot compare {left!r} with {right!r} ({exc})") from None
    raise InvalidArgument(f"unknown condition op {op!r}; ops: {', '.join(CONDITION_OPS)}")


def _is_break(output: Any) -> bool:
    return isinstance(output, Mapping) and output.get("break") is True


def load_run(components: Any, run_id: str) -> RunRecord | None:
    """The stored record of run ``run_id`` (the full record merged with its journal), or None."""
    state = components.state
    scope = run_scope(run_id)
    data = state.get(scope, "run")
    if not isinstance(data, dict):
        return None
    journal = state.get(scope, "journal")
    if isinstance(journal, dict) and journal.get("base") == data.get("persist_seq") and isinstance(journal.get("steps"), dict):
        data["steps"] = {**(data.get("steps") or {}), **journal["steps"]}
    return RunRecord.from_dict(data)


async def run(workflow: Workflow, *, components: Any, inputs: Mapping[str, Any] | None = None,
              run_id: str | None = None, resume: RunRecord | str | None = None,
              on_event: Callable[[str, str | None, Any], Any] | None = None,
              tool_context: Any = None, persist_interval_s: float = PERSIST_INTERVAL_S,
              durable_steps: bool = True) -> RunRecord:
    """Validate and run ``workflow`` on the current loop; return its record (also stored in State,
    see the module docstring). Raises ValidationError (listing every problem) before anything
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


class _Runner:
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

    # ------------------------------------------------------------------ one step
    async def _execute(self, sid: str, node: _Node) -> tuple[str, Any, dict[str, Any] | None]:
        step = node.step
        rec = self.records[sid]
        if step.when is not None:
            try:
                ok = await self._condition(step.when, node.when_ref, node.when_value, sid, None)
            except Exception as exc:
                return "failed", None, _err(exc)
            if not ok:
                return "skipped", None, None
        rec.status = "running"
        rec.started_at = time.time()
        self._started(sid, step)
        try:
            params = node.params.resolve(self.tctx, sid) if step.loop is None else step.params  # type: ignore[union-attr]
        except TemplateError as exc:
            return "failed", None, exc.to_dict()
        hooks = self.hooks
        base = {"workflow": self.wf.name, "run_id": self.record.run_id, "step": sid, "kind": step.kind}
        if hooks is not None and hooks.has(_BEFORE):
            outcome = await hooks.arun(_BEFORE, {**base, "params": params})
            if outcome.cancelled:
                reason = outcome.reason or "no reason given"
                return "failed", None, Cancelled(f"step {sid!r} cancelled by a hook: {reason}",
                                                 details={"step": sid, "reason": reason}).to_dict()
            if outcome.replaced:
                return "succeeded", outcome.value, None
            params = outcome.payload.get("params", params)
        retries = step.retries if step.retries is not None else self.wf.retry_attempts
        delay = step.retry_delay_s if step.retry_delay_s is not None else self.wf.retry_delay_s
        max_attempts = 1 + retries
        hook_retries = 0
        attempt = 0
        while True:
            attempt += 1
            rec.attempts = attempt
            retryable = True
            try:
                output = await self._attempt(node, params, attempt, max_attempts)
            except _StepTimeout as exc:
                status, error = "timed_out", exc.error
            except (Cancelled, TemplateError) as exc:
                status, error, retryable = "failed", exc.to_dict(), False
            except Exception as exc:
                status, error = "failed", _err(exc)
            else:
                if hooks is not None and hooks.has(_AFTER):
                    outcome = await hooks.arun(_AFTER, {**base, "output": output, "attempt": attempt})
                    if outcome.replaced:
                        output = outcome.value
                return "succeeded", output, None
            if retryable and attempt < max_attempts:
                wait = delay * step.backoff ** (attempt - 1) if delay else 0.0
                self._publish("workflow.step.retrying", {**base, "attempt": attempt, "delay_s": wait,
                                                         "code": error.get("code"), "message": error.get("message")})
                if wait > 0:
                    await asyncio.sleep(wait)
                continue
            if hooks is not None and hooks.has(_ERROR):
                outcome = await hooks.arun(_ERROR, {**base, "error": error, "attempts": attempt})
                if outcome.replaced:
                    return "succeeded", outcome.value, None
                if outcome.retry and hook_retries < MAX_HOOK_RETRIES:
                    hook_retries += 1
                    max_attempts = attempt + 1
                    if outcome.delay:
                        await asyncio.sleep(outcome.delay)
                    continue
            return status, None, error

    async def _attempt(self, node: _Node, params: Any, attempt: int, max_attempts: int) -> Any:
        timeout = node.step.timeout_s
        if timeout is None:
            return await self._work(node, params, attempt)
        scope = asyncio.timeout(timeout)
        try:
            async with scope:
                return await self._work(node, params, attempt)
        except TimeoutError:
            if not scope.expired():
                raise
            sid = node.step.id
            raise _StepTimeout({"code": "timeout", "message": f"step {sid!r} did not finish within {timeout:g} s "
                                f"(attempt {attempt} of {max_attempts}) and was cancelled",
                                "details": {"timeout_s": timeout, "attempt": attempt}}) from None

    async def _work(self, node: _Node, params: Any, attempt: int) -> Any:
        step = node.step
        loop = step.loop
        if loop is None:
            return await self._dispatch(node, params, None, attempt)
        sid = step.id
        outputs: list[Any] = []
        previous: Any = None
        if loop.while_ is not None:
            index = 0
            while index < loop.max_iterations:
                frame = {"item": None, "index": index, "previous": previous}
                if not await self._condition(loop.while_, node.while_ref, node.while_value, sid, frame):
                    break
                previous = await self._iteration(node, frame, attempt)
                outputs.append(previous)
                index += 1
                if _is_break(previous):
                    break
            return outputs
        if loop.range is not None:
            items: Any = _range_items(loop.range)
        elif node.over is not None:
            items = node.over.resolve(self.tctx, sid)
        else:
            items = loop.over
        if isinstance(items, Mapping):
            items = [{"key": k, "value": v} for k, v in items.items()]
        if not isinstance(items, (list, tuple, range)):
            raise InvalidArgument(f"step {sid!r}: loop.over must give a list, got {type(items).__name__}",
                                  details={"step": sid})
        if len(items) > loop.max_iterations:
            raise InvalidArgument(f"step {sid!r}: loop over {len(items)} items exceeds max_iterations "
                                  f"({loop.max_iterations})", details={"step": sid})
        for index, item in enumerate(items):
            frame = {"item": item, "index": index, "previous": previous}
            previous = await self._iteration(node, frame, attempt)
            outputs.append(previous)
            if _is_break(previous):
                break
        return outputs

    async def _iteration(self, node: _Node, frame: dict[str, Any], attempt: int) -> Any:
        ctx = dataclasses.replace(self.tctx, loop=frame)
        params = node.params.resolve(ctx, node.step.id)  # type: ignore[union-attr]
        return await self._dispatch(node, params, frame, attempt)

    async def _condition(self, cond: Condition, ref: Template | None, value: Template | None, sid: str,
                         frame: dict[str, Any] | None) -> bool:
        if cond.fn is not None:
            result = cond.fn(self._context(sid, 0, frame))
            if inspect.isawaitable(result):
                result = await result
            return bool(result)
        return self._declarative(cond, ref, value, sid, frame)

    def _declarative(self, cond: Condition, ref: Template | None, value: Template | None, sid: str,
                     frame: dict[str, Any] | None) -> bool:
        ctx = self.tctx if frame is None else dataclasses.replace(self.tctx, loop=frame)
        left = ref.resolve(ctx, sid) if ref is not None else None
        right = value.resolve(ctx, sid) if value is not None else cond.value
        return _compare(cond.op, left, right)

    def _context(self, sid: str, attempt: int, frame: dict[str, Any] | None) -> StepContext:
        return StepContext(self.record.run_id, self.wf.name, sid, attempt, self.inputs, frame, self.components,
                           self.records)

    async def _dispatch(self, node: _Node, params: Any, frame: dict[str, Any] | None, attempt: int) -> Any:
        step = node.step
        kind = step.kind
        if kind == "noop":
            return dict(params) if isinstance(params, dict) else params
        if kind == "tool":
            return await self.components.tools.acall(step.target, params, self.tool_ctx)
        if kind == "function":
            result = step.fn(params, self._context(step.id, attempt, frame))  # type: ignore[misc]
            if inspect.isawaitable(result):
                result = await result
            return result
        if kind == "command":
            return await self._command(step, params)
        if kind == "llm":
            return await self._llm(step, params)
        if kind == "agent":
            spec = _agent_spec(step.target, getattr(self.components, "config", None))
            text = params.get("input") if isinstance(params, Mapping) else params
            agent = self.components.new_agent(spec)
            result = await agent.run(text if isinstance(text, str) else _text(text))
            return result.to_dict()
        if kind == "workflow":
            return await self._nested(node, params, frame, attempt)
        raise InvalidArgument(f"step {step.id!r}: unknown kind {kind!r}")

    async def _command(self, step: Step, params: Any) -> Any:
        args = dict(params)
        check = args.pop("check", True)
        command = args.get("command")
        if isinstance(command, str):
            args["command"] = command = shlex.split(command)
        elif isinstance(command, list):  # a whole-string template keeps its type: argv needs text
            args["command"] = command = [
                ("true" if a else "false") if isinstance(a, bool) else str(a) if isinstance(a, (int, float)) else a
                for a in command]
        if step.timeout_s is not None and args.get("timeout_s") is None:
            args["timeout_s"] = step.timeout_s + 5  # the step's own timeout cancels (and kills) first
        result = await self.components.tools.acall("run_process", args, self.tool_ctx)
        code = result.get("exit_code") if isinstance(result, Mapping) else None
        if check and code != 0:
            stderr = (result.get("stderr") or "").strip()[-500:]
            program = command[0] if command else "?"
            raise AikitError(f"command {program!r} exited with code {code}" + (f": {stderr}" if stderr else "")
                             + " (set params.check = false to accept non-zero exits)",
                             code="command_failed", details={"result": result})
        return result

    async def _llm(self, step: Step, params: Any) -> Any:
        from ..providers.messages import Message, Request

        prompt = params.get("prompt")
        if not isinstance(prompt, str):
            prompt = _text(prompt)
        provider, model_name, full = self.components.models.resolve(params.get("model") or "default")
        messages = [Message.system(str(params["system"]))] if params.get("system") else []
        messages.append(Message.user(prompt))
        request = Request(model=model_name, messages=messages, temperature=params.get("temperature"),
                          max_tokens=params.get("max_tokens"), json_schema=params.get("json_schema"))
        completion = await provider.complete(request)
        answered = completion.model or full
        ledger = getattr(self.components, "ledger", None)
        if ledger is not None:
            ledger.record(f"workflow:{self.wf.name}", answered, completion.usage)
        return {"text": completion.text, "model": answered, "usage": completion.usage.to_dict(),
                "stop_reason": completion.stop_reason}

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

    # ------------------------------------------------------------------ events
    def _publish(self, topic: str, payload: dict[str, Any]) -> None:
        if self.events is not None:
            self.events.publish(topic, payload, source="workflow")

    def _notify(self, kind: str, sid: str | None, record: Any) -> None:
        if self.on_event is not None:
            try:
                self.on_event(kind, sid, record)
            except Exception:
                log.exception("workflow on_event callback failed on %s %s", kind, sid)

    def _started(self, sid: str, step: Step) -> None:
        if self.events is not None:
            self.events.publish("workflow.step.started", {"workflow": self.wf.name, "run_id": self.record.run_id,
                                                          "step": sid, "kind": step.kind}, source="workflow")
        if self.on_event is not None:
            self._notify("step.started", sid, self.records[sid])

    def _announce(self, sid: str, rec: StepRecord) -> None:
        if self.events is not None:
            payload: dict[str, Any] = {"workflow": self.wf.name, "run_id": self.record.run_id, "step": sid,
                                       "status": rec.status, "attempts": rec.attempts,
                                       "duration_ms": round(((rec.ended_at or 0) - (rec.started_at or 0)) * 1000, 3)}
            if rec.status in _OK:
                self.events.publish("workflow.step.finished", payload, source="workflow")
            else:
                error = rec.error or {}
                payload["code"], payload["message"] = error.get("code"), error.get("message")
                self.events.publish("workflow.step.failed", payload, source="workflow")
        if self.on_event is not None:
            self._notify("step.finished", sid, rec)

    # ------------------------------------------------------------------ persistence
    def _schedule_persist(self, durable: bool) -> None:
        if self.state is None:
            return
        loop = self.loop
        if durable:
            if not self.flush_soon:
                self.flush_soon = True
                loop.call_soon(self._flush)  # type: ignore[union-attr]
        elif self.flush_timer is None and not self.flush_soon:
            gap = max(self.interval, 5 * self.last_cost)
            wait = max(0.0, self.last_write + gap - time.monotonic())
            self.flush_timer = loop.call_later(wait, self._flush)  # type: ignore[union-attr]

    def _flush(self) -> None:
        self.flush_soon = False
        if self.flush_timer is not None:
            self.flush_timer.cancel()
            self.flush_timer = None
        if not self.dirty or self.halt is not None or self.record.ended_at is not None:
            return
        if len(self.journal) + len(self.dirty) > self.journal_limit:
            self._persist_full()
            return
        started = time.monotonic()
        for sid in self.dirty:
            self.journal[sid] = self.records[sid].to_dict()
        self.dirty.clear()
        self._write("journal", {"base": self.persist_seq, "steps": self.journal})
        self.last_write = time.monotonic()
        self.last_cost = self.last_write - started

    def _persist_full(self) -> None:
        if self.state is None:
            return
        started = time.monotonic()
        self.persist_seq = max(self.persist_seq + 1, time.time_ns())
        record = self.record
        data = {"run_id": record.run_id, "workflow": record.workflow, "status": record.status,
                "inputs": record.inputs, "error": record.error, "started_at": record.started_at,
                "ended_at": record.ended_at, "duration_s": record.duration_s, "source": record.source,
                "steps": {sid: r.to_dict() for sid, r in self.records.items() if r.status != "pending"},
                "persist_seq": self.persist_seq}
        self.journal = {}
        self.dirty.clear()
        self._write("run", data)
        self.last_write = time.monotonic()
        self.last_cost = self.last_write - started

    def _write(self, key: str, value: Any) -> None:
        try:
            self.state.set(self.scope, key, value)
            return
        except AikitError as exc:
            first = exc
        except Exception as exc:  # noqa: BLE001 - persistence must never break the run
            first = error_from_exception(exc)
        try:  # an output State cannot store (a Python object from a function step): store its text
            self.state.set(self.scope, key, _storable(value))
            return
        except Exception as exc:  # noqa: BLE001
            first = error_from_exception(exc) if not isinstance(exc, AikitError) else exc
        if not self.persist_failed:
            self.persist_failed = True
            log.warning("could not store workflow run %s: %s", self.record.run_id, first)
            self._publish("workflow.persist_failed", {"workflow": self.wf.name, "run_id": self.record.run_id,
                                                      "code": first.code, "message": first.message})


def _text(value: Any) -> str:
    from .templates import format_value

    return format_value(value)


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
