"""One step from ready to finished: its condition, then its work as an operation of kind
:data:`WORKFLOW_STEP` through the operation pipeline (which fires the ``workflow.step.*`` hooks and
publishes ``workflow.step.started``), made of attempts with the step's own retries, backoff and
per-attempt timeout."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from ...control.runs import RunControl, in_call, in_run
from ...control.step_approval import wait_for_decision
from ...errors import AikitError, Cancelled, InvalidArgument, error_from_exception
from ...operations import Operation, OperationKind, Pipeline, honours
from ..model import StepRecord, Workflow
from ..templates import TemplateContext, TemplateError
from ..validation import StepNode
from .conditions import ConditionEvaluator
from .events import RunEvents


def _identity(op: Operation) -> dict[str, Any]:
    return dict(op.meta["identity"])


WORKFLOW_STEP = OperationKind(
    "workflow.step",
    hook_prefix="workflow.step",
    honours=honours(before="cancel replace", after="cancel retry replace", error="retry replace"),
    # finished / failed are the step's final status in the run (skipped, upstream_failed and
    # cancelled steps never run as an operation), published by the engine once per step
    topics=("workflow.step.started", None, None),
    source="workflow",
    describe=lambda op: f"step {op.name!r}",
    event_fields=_identity,
    after_payload=lambda op, result: {**op.meta["identity"], "output": result,
                                      "attempt": op.meta["record"].attempts},
    error_payload=lambda op, error: {**op.meta["identity"], "error": error.to_dict(),
                                     "attempts": op.meta["record"].attempts},
)
BEFORE, AFTER, ERROR = WORKFLOW_STEP.points  # type: ignore[misc]


class StepOutcome(NamedTuple):
    """How a step ended: its final status, output and error (a table, None when it succeeded)."""

    status: str
    output: Any = None
    error: dict[str, Any] | None = None


def error_dict(exc: BaseException) -> dict[str, Any]:
    """``exc`` as a step's error table."""
    return error_from_exception(exc).to_dict()


class StepFailed(AikitError):
    """A step's attempts ended in failure: ``status`` is ``failed`` or ``timed_out``; the error
    is the step's (``to_dict()`` gives its table)."""

    def __init__(self, status: str, error: dict[str, Any]) -> None:
        super().__init__(str(error.get("message", "")), details=error.get("details"), code=error.get("code"))
        self.status = status


class _StepTimeout(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error["message"])
        self.error = error


#: Error codes of a step held by a person's decision (or refused by one) rather than failed.
HELD = ("needs_approval", "approval_denied")

Work = Callable[[StepNode, Any, int], Awaitable[Any]]  # (node, params, attempt) -> output


class StepRunner:
    """Runs one step of a run: checks its ``when``, marks it running, resolves its params, then
    runs it through ``pipeline`` as a :data:`WORKFLOW_STEP` operation whose handler makes the
    attempts (``work`` does each one's work) with the step's retries, backoff and per-attempt
    timeout. A hook's retry runs one more attempt, whatever the step's own retries."""

    def __init__(self, workflow: Workflow, run_id: str, records: dict[str, StepRecord], templates: TemplateContext,
                 conditions: ConditionEvaluator, work: Work, events: RunEvents, pipeline: Pipeline,
                 hooks: Any, components: Any = None, retry_in_doubt: bool = False,
                 decisions: dict[str, tuple[str, ...]] | None = None) -> None:
        self._workflow = workflow
        self._run_id = run_id
        self._records = records
        self._templates = templates
        self._conditions = conditions
        self._work = work
        self._events = events
        self._pipeline = pipeline
        self._hooks = hooks
        self._components = components
        self._retry_in_doubt = retry_in_doubt
        self._decisions = dict(decisions or {})  # the run's decisions on held calls (control/workflow_decisions.py)
        approvals = getattr(components, "approvals", None)
        if approvals is not None and any(step.approval for step in workflow.steps):
            approvals.watch_steps()

    @property
    def hooked(self) -> bool:
        """Whether any ``workflow.step.*`` hook is registered: steps then never run inline (a hook
        may have to be awaited)."""
        hooks = self._hooks
        return hooks is not None and (hooks.has(BEFORE) or hooks.has(AFTER) or hooks.has(ERROR))

    def run_inline(self, sid: str, node: StepNode) -> StepOutcome:
        """A noop without a predicate function and without hooks: no await needed, so no task."""
        step = node.step
        rec = self._records[sid]
        if step.when is not None:
            try:
                ok = self._conditions.check_declarative(step.when, node.when_ref, node.when_value, sid, None)
            except Exception as exc:
                return StepOutcome("failed", None, error_dict(exc))
            if not ok:
                return StepOutcome("skipped")
        rec.attempts = 1
        self._begin(sid, rec)
        try:
            params = node.params.resolve(self._templates, sid)  # type: ignore[union-attr]
        except TemplateError as exc:
            return StepOutcome("failed", None, exc.to_dict())
        if not self._pipeline.watches(WORKFLOW_STEP):  # nobody intercepts or listens: no operation to build
            return StepOutcome("succeeded", noop_output(params))
        try:
            output = self._pipeline.run(self._operation(node, rec, params), _noop_step)
        except Exception as exc:  # an interceptor rejected it
            return StepOutcome("failed", None, error_dict(exc))
        return StepOutcome("succeeded", output)

    def _begin(self, sid: str, rec: StepRecord) -> None:
        rec.status = "running"
        rec.started_at = time.time()
        self._events.step_started(sid, rec)

    def _operation(self, node: StepNode, rec: StepRecord, params: Any) -> Operation:
        step = node.step
        identity = {"workflow": self._workflow.name, "run_id": self._run_id, "step": step.id, "kind": step.kind}
        return Operation(WORKFLOW_STEP, step.id, {**identity, "params": params},
                         meta={"identity": identity, "record": rec, "node": node, "params": params})

    async def run(self, sid: str, node: StepNode) -> StepOutcome:
        """Run step ``sid`` to its end (a cancellation of the calling task passes through)."""
        step = node.step
        rec = self._records[sid]
        if step.when is not None:
            try:
                ok = await self._conditions.check(step.when, node.when_ref, node.when_value, sid, None)
            except Exception as exc:
                return StepOutcome("failed", None, error_dict(exc))
            if not ok:
                return StepOutcome("skipped")
        self._begin(sid, rec)
        try:
            params = node.params.resolve(self._templates, sid) if step.loop is None else step.params  # type: ignore[union-attr]
        except TemplateError as exc:
            return StepOutcome("failed", None, exc.to_dict())
        op = self._operation(node, rec, params)
        if step.approval:
            op.meta["approval"] = True
            op.meta["approval_wait"] = self._approval_wait
        try:
            with in_run(RunControl(self._run_id, "workflow", self._workflow.name, decisions=self._decisions,
                                   retry_in_doubt=self._retry_in_doubt)):
                output = await self._pipeline.arun(op, self._attempts)
        except StepFailed as exc:
            error = exc.to_dict()
            self._forget_calls(sid, error)
            return StepOutcome(exc.status, None, error)
        except Exception as exc:  # a hook cancelled it or rejected its output, or an interceptor refused it
            error = error_dict(exc)
            self._forget_calls(sid, error)
            return StepOutcome("failed", None, error)
        return StepOutcome("succeeded", output)

    def _forget_calls(self, sid: str, error: dict[str, Any]) -> None:
        """A failed step runs again, calls and all, when its run is resumed: its journal entries go;
        unless it waits for (or was refused) a person's decision on a call: a call in doubt stays
        in doubt, and the calls it finished before are replayed, until the decision lets it go on."""
        if error.get("code") in HELD:
            return
        journal = getattr(self._components, "journal", None)
        if journal is not None:
            try:
                journal.forget_place(self._run_id, f"{sid}@")
            except AikitError:  # a journal that cannot be written: the resume will say so
                pass

    async def _attempts(self, op: Operation) -> Any:
        """The operation's handler: attempts until one succeeds or the step's retries are used up
        (a hook's retry, ``op.attempt`` > 1, makes exactly one more); raises :class:`StepFailed`."""
        node: StepNode = op.meta["node"]
        rec: StepRecord = op.meta["record"]
        step = node.step
        params = op.payload.get("params", op.meta["params"])  # a before-hook may have changed them
        wf = self._workflow
        own_retries = step.retries if step.retries is not None else wf.retry_attempts
        retries = own_retries if op.attempt == 1 else 0  # after a hook's retry: one attempt
        delay = step.retry_delay_s if step.retry_delay_s is not None else wf.retry_delay_s
        last = rec.attempts + 1 + retries
        while True:
            rec.attempts += 1
            attempt = rec.attempts
            retryable = True
            try:
                return await self._attempt(node, params, attempt, last)
            except _StepTimeout as exc:
                status, error = "timed_out", exc.error
            except (Cancelled, TemplateError) as exc:
                status, error, retryable = "failed", exc.to_dict(), False
            except Exception as exc:
                status, error = "failed", error_dict(exc)
                # a wrong argument stays wrong however often it is tried
                retryable = (not isinstance(exc, InvalidArgument) and error.get("code") != "invalid_argument"
                             and error.get("code") not in HELD)  # a decision is not made by trying again
            if not (retryable and attempt < last):
                raise StepFailed(status, error)
            wait = delay * step.backoff ** (attempt - 1) if delay else 0.0
            self._events.step_retrying(step.id, step.kind, attempt, wait, error)
            if wait > 0:
                await asyncio.sleep(wait)

    async def _attempt(self, node: StepNode, params: Any, attempt: int, max_attempts: int) -> Any:
        timeout = node.step.timeout_s
        with in_call(f"{node.step.id}@{attempt}"):  # the tool calls of this attempt: their journal entries
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

    async def _approval_wait(self, request: Any) -> Any:
        """A step declared with ``approval = true`` and nobody to ask: wait for a stored decision."""
        return await wait_for_decision(self._components, request)


def noop_output(params: Any) -> Any:
    """A noop step's output: its parameters."""
    return dict(params) if isinstance(params, dict) else params


def _noop_step(op: Operation) -> Any:
    return noop_output(op.payload.get("params", op.meta["params"]))
