"""One plan run in progress, between the workflow engine and the evidence: the function each
task's step runs (its agent, through :func:`~.execution.execute`) and the turning of each
finished step into the task's :class:`~.report.TaskResult` and evidence log."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import AikitError
from ..workflows import StepRecord
from .commands import TaskCommands
from .execution import ExecutionContext, TaskOutcome, execute
from .manifest import AgentConfig
from .model import Queue, Task, utc_now
from .report import FAILURE, SUCCESS, RunSummary, TaskResult, render_evidence

#: How an engine step status maps to a task status when the task's own outcome is unknown
#: (the step never ran its agent: blocked upstream, cancelled, or decided by an aikit hook).
_FROM_ENGINE = {"succeeded": "ok", "skipped": "skipped", "failed": "error", "timed_out": "error",
                "upstream_failed": "blocked", "cancelled": "cancelled"}


@dataclass
class Assignment:
    """A task with its queue, its agent, its commands and why it is skipped (if it is)."""

    queue: Queue
    task: Task
    agent: AgentConfig
    commands: TaskCommands | None
    skip_reason: str | None = None


class TaskFailed(AikitError):
    """A task's agent did not succeed (the engine marks the tasks depending on it upstream_failed)."""

    code = "task_failed"


class RunProgress:
    """The state of one run: which tasks are running, their outcomes and their results.

    :meth:`step_function` gives the engine each task's step function; :meth:`on_engine_event`
    receives the engine's ``on_event`` calls and writes a task's evidence as soon as its step
    finishes (whether its agent ran, a dependency failed, the run was interrupted or an aikit
    hook decided)."""

    def __init__(self, assignments: list[Assignment], summary: RunSummary, context: ExecutionContext,
                 emit: Callable[[str, TaskResult], None]) -> None:
        self.assignments = assignments
        self.by_id = {a.task.id: a for a in assignments}
        self.summary = summary
        self.context = context
        self.emit = emit
        self.finished: dict[str, TaskResult] = {}
        self.running: dict[str, tuple[TaskResult, float]] = {}  # started, not finished
        self.outcomes: dict[str, TaskOutcome] = {}
        self.engine_steps: dict[str, StepRecord] = {}
        self.active = 0

    def base_result(self, a: Assignment, status: str) -> TaskResult:
        return TaskResult(task=a.task.id, title=a.task.title, queue=a.queue.name, layer=a.task.layer,
                          agent=a.agent.name, status=status, depends_on=a.task.depends_on)

    def step_function(self, a: Assignment) -> Callable[..., Any]:
        """The engine's ``function`` step for task ``a``: run its agent, remember the outcome, and
        raise :class:`TaskFailed` when it did not succeed (so its dependents are not run)."""
        async def carry_out(params: Any, ctx: Any) -> dict[str, Any]:
            if a.skip_reason is not None:
                self.outcomes[a.task.id] = TaskOutcome(status="skipped", message=a.skip_reason,
                                                       log=[f"SKIPPED: {a.skip_reason}"])
                return {"status": "skipped"}
            self.active += 1
            self.summary.peak_workers = max(self.summary.peak_workers, self.active)
            result = self.base_result(a, "running")
            result.started = utc_now()
            self.running[a.task.id] = (result, time.monotonic())
            self.emit("task_started", result)
            try:
                outcome = await execute(a.agent, a.task, a.queue, a.commands, self.context)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # an agent's failure must not take the run down
                outcome = TaskOutcome(status="error", message=f"agent {a.agent.name!r} raised {exc!r}",
                                      error=f"agent {a.agent.name!r} raised {type(exc).__name__}: {exc}")
            finally:
                self.active -= 1
            self.outcomes[a.task.id] = outcome
            if outcome.status not in SUCCESS:
                raise TaskFailed(outcome.error or outcome.message or f"{a.task.id} failed")
            return {"status": outcome.status}
        return carry_out

    def on_engine_event(self, kind: str, sid: str | None, rec: Any) -> None:
        """The engine's ``on_event``: remember the run's step records; record each finished task."""
        if kind == "run.started":
            self.engine_steps = rec.steps
        elif kind == "step.finished" and sid is not None:
            self.step_finished(sid, rec)

    def step_finished(self, sid: str, rec: StepRecord) -> None:
        """Turn the engine's record of step ``sid`` into the task's result and evidence."""
        a = self.by_id[sid]
        outcome = self.outcomes.pop(sid, None)
        result, started = self.running.pop(sid, (None, None))
        if result is None:
            result = self.base_result(a, "")
        if started is not None:
            result.ended = utc_now()
            result.duration_s = round(time.monotonic() - started, 3)
        if outcome is not None and rec.status in ("succeeded", "failed"):
            result.status = outcome.status if outcome.status in (*SUCCESS, *FAILURE) else "error"
            result.message, result.error = outcome.message, outcome.error
            result.commands = [c.to_dict() for c in outcome.commands]
            self.record(a, result, outcome.log)
            return
        result.status = _FROM_ENGINE.get(rec.status, "error")
        engine_error = (rec.error or {}).get("message") or f"step {sid} {rec.status}"
        if result.status == "blocked":
            failed = [f"{d} ended {self.status_of(d)}" for d in a.task.depends_on if self.status_of(d) in FAILURE]
            result.message = result.error = "not run: " + (", ".join(failed) or engine_error)
            log = [f"BLOCKED: {result.message}"]
        elif result.status == "cancelled":
            result.ended = result.ended or utc_now()
            result.message = result.error = "interrupted before the task finished"
            log = ["CANCELLED: the run was interrupted"]
        elif result.status == "error":
            result.message = result.error = engine_error
            log = [f"ERROR: {result.error}"]
        else:  # an aikit hook decided the step's outcome without running the agent
            result.message = f"decided by a workflow.step hook without running the agent ({rec.status})"
            log = [f"HOOK: {result.message}"]
        self.record(a, result, log)

    def status_of(self, task_id: str) -> str | None:
        """A task's status so far: its result's, else ``blocked`` when the engine already marked it
        upstream_failed (the engine marks a whole branch before reporting it step by step)."""
        if task_id in self.finished:
            return self.finished[task_id].status
        rec = self.engine_steps.get(task_id)
        return "blocked" if rec is not None and rec.status == "upstream_failed" else None

    def record(self, a: Assignment, result: TaskResult, log: list[str]) -> None:
        """Write the task's evidence log and publish its result."""
        run_dir = self.summary.run_dir
        path = run_dir / "logs" / f"{a.task.id}.log"
        try:
            path.write_text(render_evidence(result, a.task, self.summary.run_id, log), encoding="utf-8")
            result.evidence = str(path.relative_to(run_dir))
        except OSError as exc:
            result.status = "error"
            result.error = f"cannot write the evidence log {path}: {exc.strerror or exc}"
        self.finished[a.task.id] = result
        self.emit("task_finished", result)

    def results(self, interrupted: bool) -> list[TaskResult]:
        """Every task's result in plan order."""
        out = []
        for a in self.assignments:
            result = self.finished.get(a.task.id)
            if result is None:  # pragma: no cover - the engine reports every step
                result = self.base_result(a, "cancelled" if interrupted else "error")
                result.error = "the workflow engine did not report this task"
            out.append(result)
        return out
