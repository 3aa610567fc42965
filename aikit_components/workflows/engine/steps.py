"""One step from ready to finished: its condition, its hooks, its attempts with retries and
backoff, and the per-attempt timeout."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from ...errors import Cancelled, error_from_exception
from ...hooks import MAX_HOOK_RETRIES
from ..model import StepRecord, Workflow
from ..templates import TemplateContext, TemplateError
from ..validation import StepNode
from .conditions import ConditionEvaluator
from .events import RunEvents

BEFORE, AFTER, ERROR = "workflow.step.before", "workflow.step.after", "workflow.step.error"


class StepOutcome(NamedTuple):
    """How a step ended: its final status, output and error (a table, None when it succeeded)."""

    status: str
    output: Any = None
    error: dict[str, Any] | None = None


def error_dict(exc: BaseException) -> dict[str, Any]:
    """``exc`` as a step's error table."""
    return error_from_exception(exc).to_dict()


class _StepTimeout(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error["message"])
        self.error = error


Work = Callable[[StepNode, Any, int], Awaitable[Any]]  # (node, params, attempt) -> output


class StepRunner:
    """Runs one step of a run: checks its ``when``, marks it running, resolves its params, fires
    its ``workflow.step.*`` hooks and makes its attempts (``work`` does each one's work) with the
    step's retries, backoff and per-attempt timeout."""

    def __init__(self, workflow: Workflow, run_id: str, records: dict[str, StepRecord], templates: TemplateContext,
                 conditions: ConditionEvaluator, work: Work, events: RunEvents, hooks: Any) -> None:
        self._workflow = workflow
        self._run_id = run_id
        self._records = records
        self._templates = templates
        self._conditions = conditions
        self._work = work
        self._events = events
        self._hooks = hooks

    @property
    def hooked(self) -> bool:
        """Whether any ``workflow.step.*`` hook is registered (steps then never run inline)."""
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
        rec.status = "running"
        rec.started_at = time.time()
        rec.attempts = 1
        self._events.step_started(sid, step.kind, rec)
        try:
            params = node.params.resolve(self._templates, sid)  # type: ignore[union-attr]
        except TemplateError as exc:
            return StepOutcome("failed", None, exc.to_dict())
        return StepOutcome("succeeded", dict(params) if isinstance(params, dict) else params)

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
        rec.status = "running"
        rec.started_at = time.time()
        self._events.step_started(sid, step.kind, rec)
        try:
            params = node.params.resolve(self._templates, sid) if step.loop is None else step.params  # type: ignore[union-attr]
        except TemplateError as exc:
            return StepOutcome("failed", None, exc.to_dict())
        hooks = self._hooks
        base = {"workflow": self._workflow.name, "run_id": self._run_id, "step": sid, "kind": step.kind}
        if hooks is not None and hooks.has(BEFORE):
            outcome = await hooks.arun(BEFORE, {**base, "params": params})
            if outcome.cancelled:
                reason = outcome.reason or "no reason given"
                return StepOutcome("failed", None, Cancelled(f"step {sid!r} cancelled by a hook: {reason}",
                                                             details={"step": sid, "reason": reason}).to_dict())
            if outcome.replaced:
                return StepOutcome("succeeded", outcome.value)
            params = outcome.payload.get("params", params)
        wf = self._workflow
        retries = step.retries if step.retries is not None else wf.retry_attempts
        delay = step.retry_delay_s if step.retry_delay_s is not None else wf.retry_delay_s
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
                status, error = "failed", error_dict(exc)
            else:
                if hooks is not None and hooks.has(AFTER):
                    outcome = await hooks.arun(AFTER, {**base, "output": output, "attempt": attempt})
                    if outcome.replaced:
                        output = outcome.value
                    elif outcome.cancelled:
                        reason = outcome.reason or "no reason given"
                        return StepOutcome("failed", None, Cancelled(
                            f"step {sid!r} output rejected by a hook: {reason}",
                            details={"step": sid, "reason": reason}).to_dict())
                    elif outcome.retry and hook_retries < MAX_HOOK_RETRIES:
                        hook_retries += 1  # run the step again, whatever its own retry budget
                        max_attempts = attempt + 1
                        if outcome.delay:
                            await asyncio.sleep(outcome.delay)
                        continue
                return StepOutcome("succeeded", output)
            if retryable and attempt < max_attempts:
                wait = delay * step.backoff ** (attempt - 1) if delay else 0.0
                self._events.step_retrying(sid, step.kind, attempt, wait, error)
                if wait > 0:
                    await asyncio.sleep(wait)
                continue
            if hooks is not None and hooks.has(ERROR):
                outcome = await hooks.arun(ERROR, {**base, "error": error, "attempts": attempt})
                if outcome.replaced:
                    return StepOutcome("succeeded", outcome.value)
                if outcome.retry and hook_retries < MAX_HOOK_RETRIES:
                    hook_retries += 1
                    max_attempts = attempt + 1
                    if outcome.delay:
                        await asyncio.sleep(outcome.delay)
                    continue
            return StepOutcome(status, None, error)

    async def _attempt(self, node: StepNode, params: Any, attempt: int, max_attempts: int) -> Any:
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
