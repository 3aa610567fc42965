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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import IOFailure, ValidationError
from ..events import EventBus
from ..hooks import HookRegistry
from ..interrupts import run_interruptible
from ..security import SecurityPolicy
from ..workflows import Step, Workflow
from ..workflows import run as run_workflow
from .commands import CommandMap
from .execution import ExecutionContext, describe
from .manifest import Manifest
from .model import Plan, utc_now
from .progress import Assignment, RunProgress
from .report import SUCCESS, DryRunEntry, DryRunReport, RunSummary, TaskResult

DEFAULT_MAX_WORKERS = 4
DEFAULT_TIMEOUT_S = 300.0
DEFAULT_MAX_OUTPUT_BYTES = 1024 * 1024


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
class PlanComponents:
    """What the engine needs when the caller gives no aikit ``Components``: the policy, and an
    event bus and hook registry of the run's own (no State: the run is not persisted there)."""

    policy: SecurityPolicy
    events: EventBus
    hooks: HookRegistry
    config: Any = None
    state: Any = None


def child_base_env(policy: SecurityPolicy, inherit: bool = False) -> dict[str, str]:
    """The environment commands start from: the allowlisted variables plus PATH (or everything)."""
    if inherit:
        return dict(os.environ)
    env = {name: os.environ[name] for name in policy.env_allowlist if name in os.environ}
    env["PATH"] = os.environ.get("PATH", os.defpath)
    return env


def _new_run_dir(runs_dir: Path) -> tuple[str, Path]:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
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


def _write_summary(summary: RunSummary) -> None:
    """Write ``run.json`` atomically (a temporary file renamed into place)."""
    path = summary.run_dir / "run.json"
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(json.dumps(summary.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise IOFailure(f"cannot write {path}: {exc.strerror or exc}") from None


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
            raise ValidationError("invalid run options:",
                                  [f"max_workers must be at least 1, got {self.options.max_workers}"])
        if self.options.timeout_s <= 0:
            raise ValidationError("invalid run options:",
                                  [f"timeout_s must be greater than 0, got {self.options.timeout_s}"])
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
        return run_interruptible(self.arun())

    async def arun(self) -> RunSummary:
        run_id, run_dir = _new_run_dir(self.runs_dir)
        (run_dir / "logs").mkdir()
        summary = RunSummary(run_id=run_id, run_dir=run_dir, plan=str(self.plan.path or ""), source=self.plan.source,
                             status="running", max_workers=self.options.max_workers, started=utc_now(),
                             hooks=str(self.commands.path) if self.commands.path else None,
                             manifest=str(self.manifest.path) if self.manifest.path else None)
        _write_summary(summary)
        progress = RunProgress(self.assignments, summary, self._context(run_id, run_dir), self._emit)
        t0 = time.monotonic()
        interrupted = False
        try:
            await run_workflow(self.workflow(progress.step_function), components=self.components,
                               on_event=progress.on_engine_event, durable_steps=False)
        except asyncio.CancelledError:
            interrupted = True
        summary.results = progress.results(interrupted)
        summary.ended = utc_now()
        summary.duration_s = round(time.monotonic() - t0, 3)
        if interrupted:
            summary.status = "interrupted"
        else:
            summary.status = "ok" if all(r.status in SUCCESS for r in summary.results) else "error"
        _write_summary(summary)
        if interrupted:
            raise asyncio.CancelledError
        return summary


def run_plan(plan: Plan, *, commands: CommandMap | None = None, manifest: Manifest | None = None,
             policy: SecurityPolicy | None = None, options: RunOptions | None = None,
             **kwargs: Any) -> RunSummary | DryRunReport:
    """Run ``plan`` (or, with ``options.dry_run``, describe it): a :class:`RunSummary` or :class:`DryRunReport`."""
    runner = PlanRunner(plan, commands=commands, manifest=manifest, policy=policy, options=options, **kwargs)
    return runner.dry_run() if runner.options.dry_run else runner.run()
