"""One step from ready to finished: its hooks, its attempts with retries and backoff, and the
per-attempt timeout."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ...errors import Cancelled, error_from_exception
from ...hooks import MAX_HOOK_RETRIES
from ..templates import TemplateError
from ..validation import _Node

_BEFORE, _AFTER, _ERROR = "workflow.step.before", "workflow.step.after", "workflow.step.error"


class _StepTimeout(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error["message"])
        self.error = error


def _err(exc: BaseException) -> dict[str, Any]:
    return error_from_exception(exc).to_dict()


class _Attempts:
    """Running one step: hooks, retries, the per-attempt timeout.

    A part of the run's scheduler (``runner._Runner`` mixes it in); it uses the run's state set up
    in ``_Runner.__init__``."""

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
                    elif outcome.cancelled:
                        reason = outcome.reason or "no reason given"
                        return "failed", None, Cancelled(f"step {sid!r} output rejected by a hook: {reason}",
                                                         details={"step": sid, "reason": reason}).to_dict()
                    elif outcome.retry and hook_retries < MAX_HOOK_RETRIES:
                        hook_retries += 1  # run the step again, whatever its own retry budget
                        max_attempts = attempt + 1
                        if outcome.delay:
                            await asyncio.sleep(outcome.delay)
                        continue
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
