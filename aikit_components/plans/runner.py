"""Run a plan on the workflow engine: every task becomes a step of a :class:`Workflow`, so the
engine schedules them (order, dependencies, the worker limit, cancellation) and fires aikit's
hooks (``workflow.step.before/after/error``) and events (``workflow.*``) for them; this module
adds what plans mean on top: agents, evidence logs and the ``run.json`` summary.

Semantics:

- Tasks start in document order (queue by queue, task by task) on at most ``max_workers``
  workers; as in the task-exec-kit, queues do not wait for each other. A task with
  ``depends_on`` starts only after those tasks finished; when one of them did not succeed the
  task is ``blocked`` (not run).
- A task checked in the SOT (``[x]``) is ``skipped`` unless ``include_done`` is set.
- The agent is the task's ``agent`` annotation, else its layer's agent in the manifest, else
  ``shell`` when hooks.json maps commands to the task (by id) or its queue (by name), else ``noop``.
- Statuses: ``ok`` (the agent succeeded), ``noop`` (evidence stub), ``skipped``, ``error`` (a
  command failed, was refused or timed out; an agent failed), ``blocked``, ``cancelled``
  (interrupted). The run's status is ``ok`` when no task is error/blocked/cancelled,
  ``interrupted`` after Ctrl-C, else ``error``.
- Evidence: ``<runs_dir>/<run_id>/logs/<TASK-ID>.log`` (text) for every task, and
  ``<runs_dir>/<run_id>/run.json`` (the summary; written as ``running`` first, then final).
- A dry run executes nothing and writes nothing: :meth:`PlanRunner.dry_run` reports what would
  run and what the security policy would refuse.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import AikitError, IOFailure, ValidationError
from ..events import EventBus
from ..hooks import HookRegistry
from ..security import SecurityPolicy
from ..workflows import Step, StepRecord, Workflow
from ..workflows import run as run_workflow
from .commands import CommandMap, TaskCommands
from .execution import ExecutionContext, TaskOutcome, describe, execute
from .manifest import AgentConfig, Manifest
from .model import Plan, Queue, Task, utc_now
from .report import FAILURE, SUCCESS, DryRunEntry, DryRunReport, RunSummary, TaskResult, render_evidence

DEFAULT_MAX_WORKERS = 4
DEFAULT_TIMEOUT_S = 300.0
DEFAULT_MAX_OUTPUT_BYTES = 1024 * 1024
#: How an engine step status maps to a task status when the task's own outcome is unknown
#: (the step never ran its agent: blocked upstream, cancelled, or decided by an aikit hook).
_FROM_ENGINE = {"succeeded": "ok", "skipped": "skipped", "failed": "error", "timed_out": "error",
                "upstream_failed": "blocked", "cancelled": "cancelled"}


@dataclass
class RunOptions:
    """How to run a plan."""

    max_workers: int = DEFAULT_MAX_WORKERS
    dry_run: bool = False
    runs_dir: Path | None = None  # default: "runs" next to the plan file
    timeout_s: float = DEFAULT_TIMEOUT_S
    include_done: bool = False
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES


@dataclass
class Assignment:
    """A task with its queue, its agent, its commands and why it is skipped (if it is)."""

    queue: Queue
    task: Task
    agent: AgentConfig
    commands: TaskCommands | None
    skip_reason: str | None = None


@dataclass
class PlanComponents:
    """What the engine needs when the caller gives no aikit ``Components``: the policy, and an
    event bus and hook registry of the run's own (no State: the run is not persisted there)."""

    policy: SecurityPolicy
    events: EventBus
    hooks: HookRegistry
    config: Any = None
    state: Any = None


class TaskFailed(AikitError):
    """A task's agent did not succeed (the engine marks the tasks depending on it upstream_failed)."""

    code = "task_failed"


def child_base_env(policy: SecurityPolicy, inherit: bool = False) -> dict[str, str]:
    """The environment commands start from: the allowlisted variables plus PATH (or everything)."""
    if inherit:
        return dict(os.environ)
    env = {name: os.environ[name] for name in policy.env_allowlist if name in os.environ}
    env["PATH"] = os.environ.get("PATH", os.defpath)
    return env


def _new_run_dir(runs_dir: Path) -> tuple[str, Path]:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise IOFailure(f"cannot create the runs directory {runs_dir}: {exc.strerror or exc}") from None
    for n in range(1, 1000):
        run_id = stamp if n == 1 else f"{stamp}-{n}"
        path = runs_dir / run_id
        try:
            path.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise IOFailure(f"cannot create the run directory {path}: {exc.strerror or exc}") from None
        return run_id, path
    raise IOFailure(f"cannot find a free run directory name in {runs_dir}")  # pragma: no cover


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


class PlanRunner:
    """Runs (or dry-runs) a plan with the given commands (hooks.json), manifest, policy and options.

    ``components`` (aikit's ``Components``) gives the engine its hooks, event bus and State, and
    ``llm`` agents their models and tools; without it the run has a hook registry and an event bus
    of its own (:attr:`hooks`, :attr:`events`) and ``llm`` agents cannot run.
    ``on_event(kind, TaskResult)`` is called with ``task_started`` and ``task_finished``."""

    def __init__(self, plan: Plan, *, commands: CommandMap | None = None, manifest: Manifest | None = None,
                 policy: SecurityPolicy | None = None, options: RunOptions | None = None,
                 components: Any = None, base_env: dict[str, str] | None = None,
                 on_event: Callable[[str, Any], None] | None = None) -> None:
        self.plan = plan
        self.commands = commands or CommandMap()
        self.manifest = manifest or Manifest()
        self.policy = policy or getattr(components, "policy", None) or SecurityPolicy.default()
        self.options = options or RunOptions()
        if self.options.max_workers < 1:
            raise ValidationError("invalid run options:", [f"max_workers must be at least 1, got {self.options.max_workers}"])
        if self.options.timeout_s <= 0:
            raise ValidationError("invalid run options:", [f"timeout_s must be greater than 0, got {self.options.timeout_s}"])
        self.components = components if components is not None else PlanComponents(
            policy=self.policy, events=EventBus(), hooks=HookRegistry())
        self.base_env = base_env if base_env is not None else child_base_env(self.policy)
        self.on_event = on_event
        self.assignments = self._assign()

    @property
    def hooks(self) -> HookRegistry:
        """aikit's hook registry the run fires ``workflow.step.*`` on (one step per task)."""
        return self.components.hooks

    @property
    def events(self) -> EventBus:
        """aikit's event bus the run publishes ``workflow.*`` and ``plan.task.*`` on."""
        return self.components.events

    @property
    def runs_dir(self) -> Path:
        if self.options.runs_dir is not None:
            return Path(self.options.runs_dir)
        return (self.plan.path.parent if self.plan.path else Path.cwd()) / "runs"

    def _assign(self) -> list[Assignment]:
        problems: list[str] = list(self.manifest.plan_problems(self.plan))
        out: list[Assignment] = []
        needs_models = []
        for queue, task in self.plan.tasks():
            commands = self.commands.for_task(task, queue)
            name = task.agent or self.manifest.layer_agent(task.layer) \
                or ("shell" if commands is not None and commands.commands else "noop")
            if name not in self.manifest.agents:
                problems.append(f"{task.id}: unknown agent {name!r} (known: {', '.join(sorted(self.manifest.agents))}); "
                                f"define it under \"agents\" in {self.manifest.where} or fix the annotation")
                continue
            agent = self.manifest.agents[name]
            skip = None
            if task.checked and not self.options.include_done:
                skip = "already checked ([x]) in the SOT; run it anyway with --include-done"
            elif agent.kind == "llm":
                needs_models.append(task.id)
            out.append(Assignment(queue, task, agent, commands, skip))
        if needs_models and not self.options.dry_run and not hasattr(self.components, "new_agent"):
            problems.append(f"{', '.join(needs_models)}: llm agents need aikit's components; "
                            "pass components=Components.open() to PlanRunner")
        if problems:
            raise ValidationError("the plan cannot run:", problems)
        return out

    def _context(self, run_id: str = "", run_dir: Path | None = None) -> ExecutionContext:
        return ExecutionContext(policy=self.policy, run_id=run_id, run_dir=run_dir, timeout_s=self.options.timeout_s,
                                max_output_bytes=self.options.max_output_bytes, base_env=self.base_env,
                                dry_run=self.options.dry_run, components=self.components)

    def _emit(self, kind: str, payload: TaskResult) -> None:
        events = getattr(self.components, "events", None)
        if events is not None:
            events.publish(f"plan.{kind.replace('_', '.')}", payload.to_dict(), source="plan")
        if self.on_event is not None:
            self.on_event(kind, payload)

    # ------------------------------------------------------------------ dry run
    def dry_run(self) -> DryRunReport:
        """Describe what a run would do; execute nothing, write nothing."""
        context = self._context()
        entries = []
        for a in self.assignments:
            entry = DryRunEntry(queue=a.queue.name, task=a.task, agent=a.agent.name, skip_reason=a.skip_reason)
            if a.skip_reason is None:
                described = describe(a.agent, a.task, a.queue, a.commands, context)
                entry.actions, entry.problem = described.actions, described.problem
            entries.append(entry)
        return DryRunReport(self.plan, entries, self.options.max_workers, self.runs_dir, self.commands.path,
                            self.manifest.path)

    # ------------------------------------------------------------------ run
    def workflow(self, step: Callable[[Assignment], Callable[..., Any]]) -> Workflow:
        """The plan as a workflow: one ``function`` step per task (``step(assignment)`` gives its
        function), depending on the task's ``depends_on``, at most ``max_workers`` at once, and
        independent branches going on after a failure."""
        steps = [Step(id=a.task.id, kind="function", name=a.task.title, fn=step(a), depends_on=a.task.depends_on,
                      source_line=a.task.line) for a in self.assignments]
        return Workflow(name=f"plan:{self.plan.source or 'plan'}", steps=steps, mode="dag",
                        max_concurrency=self.options.max_workers, fail_fast=False,
                        source=str(self.plan.path) if self.plan.path else None)

    def run(self) -> RunSummary:
        """Run the plan (blocking); Ctrl-C cancels running commands, writes the summary and
        raises KeyboardInterrupt."""
        return asyncio.run(self.arun())

    async def arun(self) -> RunSummary:
        run_id, run_dir = _new_run_dir(self.runs_dir)
        logs_dir = run_dir / "logs"
        logs_dir.mkdir()
        context = self._context(run_id, run_dir)
        summary = RunSummary(run_id=run_id, run_dir=run_dir, plan=str(self.plan.path or ""), source=self.plan.source,
                             status="running", max_workers=self.options.max_workers, started=utc_now(),
                             hooks=str(self.commands.path) if self.commands.path else None,
                             manifest=str(self.manifest.path) if self.manifest.path else None)
        try:
            _write_json(run_dir / "run.json", summary.to_dict())
        except OSError as exc:
            raise IOFailure(f"cannot write {run_dir / 'run.json'}: {exc.strerror or exc}") from None
        t0 = time.monotonic()
        by_id = {a.task.id: a for a in self.assignments}
        results: dict[str, TaskResult] = {}
        running: dict[str, tuple[TaskResult, float]] = {}  # started, not finished: for the engine's record
        outcomes: dict[str, TaskOutcome] = {}
        engine_steps: dict[str, StepRecord] = {}
        active = 0

        def base_result(a: Assignment, status: str) -> TaskResult:
            return TaskResult(task=a.task.id, title=a.task.title, queue=a.queue.name, layer=a.task.layer,
                              agent=a.agent.name, status=status, depends_on=a.task.depends_on)

        def record(a: Assignment, result: TaskResult, log: list[str]) -> None:
            path = logs_dir / f"{a.task.id}.log"
            try:
                path.write_text(render_evidence(result, a.task, run_id, log), encoding="utf-8")
                result.evidence = str(path.relative_to(run_dir))
            except OSError as exc:
                result.status = "error"
                result.error = f"cannot write the evidence log {path}: {exc.strerror or exc}"
            results[a.task.id] = result
            self._emit("task_finished", result)

        def step(a: Assignment) -> Callable[..., Any]:
            async def carry_out(params: Any, ctx: Any) -> dict[str, Any]:
                nonlocal active
                if a.skip_reason is not None:
                    outcomes[a.task.id] = TaskOutcome(status="skipped", message=a.skip_reason,
                                                      log=[f"SKIPPED: {a.skip_reason}"])
                    return {"status": "skipped"}
                active += 1
                summary.peak_workers = max(summary.peak_workers, active)
                result = base_result(a, "running")
                result.started = utc_now()
                running[a.task.id] = (result, time.monotonic())
                self._emit("task_started", result)
                try:
                    outcome = await execute(a.agent, a.task, a.queue, a.commands, context)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # an agent's failure must not take the run down
                    outcome = TaskOutcome(status="error", message=f"agent {a.agent.name!r} raised {exc!r}",
                                          error=f"agent {a.agent.name!r} raised {type(exc).__name__}: {exc}")
                finally:
                    active -= 1
                outcomes[a.task.id] = outcome
                if outcome.status not in SUCCESS:
                    raise TaskFailed(outcome.error or outcome.message or f"{a.task.id} failed")
                return {"status": outcome.status}
            return carry_out

        def finished(sid: str, rec: StepRecord) -> None:
            """The engine finished step ``sid``: turn it into the task's result and evidence."""
            a = by_id[sid]
            outcome = outcomes.pop(sid, None)
            result, started = running.pop(sid, (None, None))
            if result is None:
                result = base_result(a, "")
            if started is not None:
                result.ended = utc_now()
                result.duration_s = round(time.monotonic() - started, 3)
            if outcome is not None and rec.status in ("succeeded", "failed"):
                result.status = outcome.status if outcome.status in (*SUCCESS, *FAILURE) else "error"
                result.message, result.error = outcome.message, outcome.error
                result.commands = [c.to_dict() for c in outcome.commands]
                record(a, result, outcome.log)
                return
            result.status = _FROM_ENGINE.get(rec.status, "error")
            engine_error = (rec.error or {}).get("message") or ""
            if result.status == "blocked":
                failed = [d for d in a.task.depends_on if d in results and results[d].status not in SUCCESS
                          or d not in results and engine_steps.get(d) is not None
                          and engine_steps[d].status == "upstream_failed"]
                result.message = result.error = "not run: " + ", ".join(
                    f"{d} ended {results[d].status if d in results else 'blocked'}" for d in failed)
                log = [f"BLOCKED: {result.message}"]
            elif result.status == "cancelled":
                result.ended = result.ended or utc_now()
                result.message = result.error = "interrupted before the task finished"
                log = ["CANCELLED: the run was interrupted"]
            elif result.status == "error":
                result.message = result.error = engine_error or f"step {sid} {rec.status}"
                log = [f"ERROR: {result.error}"]
            else:  # an aikit hook decided the step's outcome without running the agent
                result.message = f"decided by a workflow.step hook without running the agent ({rec.status})"
                log = [f"HOOK: {result.message}"]
            record(a, result, log)

        def on_engine_event(kind: str, sid: str | None, rec: Any) -> None:
            if kind == "run.started":
                engine_steps.update(rec.steps)
            elif kind == "step.finished" and sid is not None:
                finished(sid, rec)

        interrupted = False
        try:
            await run_workflow(self.workflow(step), components=self.components, on_event=on_engine_event,
                               durable_steps=False)
        except asyncio.CancelledError:
            interrupted = True
        for a in self.assignments:
            if a.task.id not in results:  # pragma: no cover - the engine reports every step
                crashed = base_result(a, "cancelled" if interrupted else "error")
                crashed.error = "the workflow engine did not report this task"
                results[a.task.id] = crashed
        summary.results = [results[a.task.id] for a in self.assignments]
        summary.ended = utc_now()
        summary.duration_s = round(time.monotonic() - t0, 3)
        if interrupted:
            summary.status = "interrupted"
        else:
            summary.status = "ok" if all(r.status in SUCCESS for r in summary.results) else "error"
        try:
            _write_json(run_dir / "run.json", summary.to_dict())
        except OSError as exc:
            raise IOFailure(f"cannot write {run_dir / 'run.json'}: {exc.strerror or exc}") from None
        if interrupted:
            raise asyncio.CancelledError
        return summary


def run_plan(plan: Plan, *, commands: CommandMap | None = None, manifest: Manifest | None = None,
             policy: SecurityPolicy | None = None, options: RunOptions | None = None,
             **kwargs: Any) -> RunSummary | DryRunReport:
    """Run ``plan`` (or, with ``options.dry_run``, describe it): a :class:`RunSummary` or :class:`DryRunReport`."""
    runner = PlanRunner(plan, commands=commands, manifest=manifest, policy=policy, options=options, **kwargs)
    return runner.dry_run() if runner.options.dry_run else runner.run()
