"""The ``ray`` placement of the workflow engine: each attempt of a tool, command, LLM, agent or
function step is a Ray task (:func:`.worker.execute_step`); noops, nested workflows, conditions
and loops stay in this process, as do scheduling, retries, timeouts, hooks, events and the run
record, so they keep their meaning.

- Ray's own retries are off (``max_retries=0``): the step's ``retries`` decide. A worker lost
  mid-step is an attempt that failed with code ``worker_lost``, retried as any failure.
- A cancelled attempt (a step or run timeout, an interrupt, a cancelled run) cancels its task
  with ``ray.cancel``; a task still running :data:`CANCEL_GRACE_S` later has its worker killed
  (``force=True``).
- Each finished attempt publishes ``workflow.step.remote`` ``{workflow, run_id, step, attempt,
  executor, pid, ok, seconds}`` (``pid``: the worker process).
- A ``tool`` or ``command`` step's call is journaled here, in the driver, as the effect journal
  journals a local step's call (control/journal.py): "started" before the task is sent, "finished"
  with its result after; a resume replays a finished call and holds a call in doubt (started,
  never finished) instead of running it again. The worker runs the tool outside any run.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from ..control.journal import JournalInterceptor
from ..errors import AikitError
from ..operations.operation import Operation
from ..tools.registry import TOOL_CALL
from ..workflows.engine.executors import StepCall, StepExecutors
from ..workflows.engine.placement import RunPlacement
from .cluster import connect
from .shipping import REMOTE_KINDS, ship_payloads
from .tracing import current_carrier
from .worker import ShippedConfig, StepEnvelope, execute_step

log = logging.getLogger(__name__)

CANCEL_GRACE_S = 3.0
_tasks: dict[int, Any] = {}  # the remote version of execute_step, per ray module


def remote_execute_step(ray: Any) -> Any:
    """:func:`execute_step` as a Ray remote function (made once per process)."""
    remote = _tasks.get(id(ray))
    if remote is None:
        remote = _tasks[id(ray)] = ray.remote(max_retries=0)(execute_step)
    return remote


class RayStepExecutors(StepExecutors):
    """Runs a run's remote step kinds as Ray tasks and the others with ``local`` (see the module)."""

    def __init__(self, local: StepExecutors, run: RunPlacement) -> None:
        super().__init__({})
        workflow = run.plan.workflow
        self._local = local
        self._run = run
        self._workflow = workflow.name
        self._payloads = ship_payloads(workflow, run.components)  # every unshippable step, before connecting
        config = run.components.config
        self._ray = connect(config.get("ray.address", "") or None)
        self._config_ref = self._ray.put(ShippedConfig.of(run.components))
        self._task = remote_execute_step(self._ray)
        self._events = getattr(run.components, "events", None)
        journal = getattr(run.components, "journal", None)
        self._journal = JournalInterceptor(journal) if journal is not None else None

    async def run(self, call: StepCall) -> Any:
        step = call.node.step
        if step.kind not in REMOTE_KINDS:
            return await self._local.run(call)
        if step.kind in ("tool", "command") and self._journal is not None:
            return await self._journaled(call, "run_process" if step.kind == "command" else str(step.target))
        return await self._remote(call)

    async def _journaled(self, call: StepCall, tool_name: str) -> Any:
        """The remote attempt of a tool or command step as a journaled tool call of this run."""
        tools = getattr(self._run.components, "tools", None)
        tool = tools.get(tool_name) if tools is not None and tool_name in tools else None
        op = Operation(TOOL_CALL, tool_name, {"name": tool_name, "args": dict(call.params)}, None,
                       meta={"tool": tool} if tool is not None else {})
        decision = self._journal.before(op)  # raises for a replayed failure or a call in doubt
        if decision is not None and decision.action == "replace":
            return decision.value  # finished before the run stopped: replayed, not run again
        try:
            result = await self._remote(call)
        except AikitError as exc:
            self._journal.failed(op, exc)
            raise
        except BaseException:
            self._journal.failed(op, AikitError(f"{tool_name} was interrupted", code="interrupted"))
            raise
        self._journal.finished(op, result)
        return result

    async def _remote(self, call: StepCall) -> Any:
        step = call.node.step
        context = None
        if step.kind == "function":
            context = self._run.contexts(step.id, call.attempt, call.loop).to_dict()
        shipped = _shippable_step(step)
        envelope = StepEnvelope(self._workflow, self._run.run_id, shipped, call.params, call.loop, call.attempt,
                                context, self._payloads.get(step.id), current_carrier())
        ref = self._task.remote(envelope, self._config_ref)
        try:
            reply = await ref
        except asyncio.CancelledError:
            self._cancel(ref)
            raise
        except self._ray.exceptions.RayError as exc:
            raise remote_failure(self._ray, step.id, exc) from None
        self._publish(call, reply)
        if not reply["ok"]:
            error = reply["error"]
            raise AikitError(error.get("message", ""), code=error.get("code"),
                             details={**(error.get("details") or {}), "worker_pid": reply.get("pid")})
        return reply["output"]

    def _cancel(self, ref: Any) -> None:
        ray = self._ray
        try:
            ray.cancel(ref, force=False)
        except Exception as exc:  # already finished, or the cluster went away
            log.debug("ray.cancel: %s", exc)
            return

        def force() -> None:
            try:
                ready, _ = ray.wait([ref], timeout=0)
                if not ready:
                    ray.cancel(ref, force=True)
            except Exception as exc:
                log.debug("ray.cancel(force=True): %s", exc)

        timer = threading.Timer(CANCEL_GRACE_S, force)
        timer.daemon = True
        timer.start()

    def _publish(self, call: StepCall, reply: dict[str, Any]) -> None:
        if self._events is None:
            return
        self._events.publish("workflow.step.remote", {
            "workflow": self._workflow, "run_id": self._run.run_id, "step": call.node.step.id,
            "attempt": call.attempt, "executor": "ray", "pid": reply.get("pid"), "ok": reply.get("ok"),
            "seconds": reply.get("seconds")}, source="workflow")


def _shippable_step(step: Any) -> Any:
    """``step`` without what stays in this process (condition, loop, function, nested workflow)."""
    import dataclasses

    return dataclasses.replace(step, when=None, loop=None, fn=None, workflow=None)


def remote_failure(ray: Any, step_id: str, exc: BaseException) -> AikitError:
    """A Ray error of a step's task as the step's error."""
    exceptions = ray.exceptions
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, exceptions.WorkerCrashedError | exceptions.NodeDiedError
                  | getattr(exceptions, "LocalRayletDiedError", exceptions.NodeDiedError)):
        return AikitError(f"step {step_id!r}: the Ray worker running it was lost ({first}); the step is retried "
                          "when it has retries left (set retries on the step)", code="worker_lost",
                          details={"ray_error": type(exc).__name__})
    if isinstance(exc, exceptions.TaskCancelledError):
        return AikitError(f"step {step_id!r}: its Ray task was cancelled outside this run", code="cancelled",
                          details={"ray_error": type(exc).__name__})
    cause = getattr(exc, "cause", None)
    if isinstance(cause, ModuleNotFoundError | ImportError):
        return AikitError(f"step {step_id!r}: the Ray worker cannot import {getattr(cause, 'name', None) or cause}: "
                          "install aikit on every worker (pip install 'aikit[ray]') with the same version as here",
                          code="worker_setup", details={"ray_error": type(exc).__name__})
    if cause is not None:
        first = f"{type(cause).__name__}: {cause}"
    return AikitError(f"step {step_id!r}: the Ray task failed: {first}", code="remote_error",
                      details={"ray_error": type(exc).__name__})
