"""Run a plan: every task through its agent, in parallel, with one evidence log per task and a
``run.json`` summary.

Semantics:

- Tasks start in document order (queue by queue, task by task) on at most ``max_workers``
  workers; as in the task-exec-kit, queues do not wait for each other. A task with
  ``depends_on`` starts only after those tasks finished; when one of them did not succeed the
  task is ``blocked`` (not run).
- A task checked in the SOT (``[x]``) is ``skipped`` unless ``include_done`` is set.
- The agent is the task's ``agent`` annotation, else ``shell`` when a hook maps commands to the
  task (by id) or its queue (by name), else ``noop``.
- Statuses: ``ok`` (commands succeeded), ``noop`` (evidence stub), ``skipped``, ``error`` (a command
  failed, was refused or timed out), ``blocked``, ``cancelled`` (interrupted). The run's status is
  ``ok`` when no task is error/blocked/cancelled, ``interrupted`` after Ctrl-C, else ``error``.
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
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import IOFailure, ValidationError
from ..operations import Pipeline
from ..security import SecurityPolicy
from .agents import AgentRegistry, AgentResult, ExecutionContext
from .hooks import Hook, Hooks
from .model import Plan, Queue, Task, utc_now

DEFAULT_MAX_WORKERS = 4
DEFAULT_TIMEOUT_S = 300.0
DEFAULT_MAX_OUTPUT_BYTES = 1024 * 1024
SUMMARY_VERSION = 1
SUCCESS = ("ok", "noop", "skipped")
FAILURE = ("error", "blocked", "cancelled")
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


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
    """A task with its queue, its agent, its hook and why it is skipped (if it is)."""

    queue: Queue
    task: Task
    agent: str
    hook: Hook | None
    skip_reason: str | None = None


@dataclass
class TaskResult:
    task: str
    title: str
    queue: str
    layer: str
    agent: str
    status: str
    started: str | None = None
    ended: str | None = None
    duration_s: float | None = None
    evidence: str | None = None
    message: str = ""
    error: str | None = None
    depends_on: list[str] = field(default_factory=list)
    commands: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "title": self.title, "queue": self.queue, "layer": self.layer,
                "agent": self.agent, "status": self.status, "started": self.started, "ended": self.ended,
                "duration_s": self.duration_s, "evidence": self.evidence, "message": self.message,
                "error": self.error, "depends_on": self.depends_on, "commands": self.commands}


@dataclass
class RunSummary:
    """The outcome of a run (``run.json``)."""

    run_id: str
    run_dir: Path
    plan: str
    source: str
    status: str
    max_workers: int
    started: str
    ended: str | None = None
    duration_s: float | None = None
    peak_workers: int = 0
    hooks: str | None = None
    results: list[TaskResult] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        counts = {s: 0 for s in (*SUCCESS, *FAILURE)}
        for r in self.results:
            counts[r.status] = counts.get(r.status, 0) + 1
        return {"total": len(self.results), **counts}

    @property
    def exit_code(self) -> int:
        if self.status == "interrupted":
            return EXIT_INTERRUPTED
        return EXIT_OK if self.status == "ok" else EXIT_FAILED

    def to_dict(self) -> dict[str, Any]:
        return {"version": SUMMARY_VERSION, "run_id": self.run_id, "status": self.status, "dry_run": False,
                "plan": self.plan, "source": self.source, "hooks": self.hooks, "run_dir": str(self.run_dir),
                "max_workers": self.max_workers, "peak_workers": self.peak_workers, "started": self.started,
                "ended": self.ended, "duration_s": self.duration_s, "counts": self.counts,
                "results": [r.to_dict() for r in self.results]}


@dataclass
class DryRunEntry:
    queue: str
    task: Task
    agent: str
    actions: list[str] = field(default_factory=list)
    problem: str | None = None
    skip_reason: str | None = None


@dataclass
class DryRunReport:
    """What a run would do; nothing was executed or written."""

    plan: Plan
    entries: list[DryRunEntry]
    max_workers: int
    runs_dir: Path
    hooks: Path | None = None

    @property
    def problems(self) -> list[DryRunEntry]:
        return [e for e in self.entries if e.problem]

    @property
    def exit_code(self) -> int:
        return EXIT_FAILED if self.problems else EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        return {"dry_run": True, "plan": str(self.plan.path or ""), "source": self.plan.source,
                "max_workers": self.max_workers, "hooks": str(self.hooks) if self.hooks else None,
                "runs_dir": str(self.runs_dir),
                "tasks": [{"task": e.task.id, "title": e.task.title, "queue": e.queue, "agent": e.agent,
                           "status": "skip" if e.skip_reason else ("refused" if e.problem else "run"),
                           "actions": e.actions, "problem": e.problem, "skip_reason": e.skip_reason,
                           "depends_on": e.task.depends_on} for e in self.entries]}

    def render(self) -> str:
        n_tasks = len(self.entries)
        lines = [f"Dry run of {self.plan.path or 'the plan'} (source {self.plan.source}): {len(self.plan.queues)} "
                 f"queue(s), {n_tasks} task(s), at most {self.max_workers} worker(s). "
                 "Nothing is executed and nothing is written.",
                 f"Hooks: {self.hooks}" if self.hooks else "Hooks: none (every task without an agent annotation is a noop)"]
        current = None
        for e in self.entries:
            if e.queue != current:
                current = e.queue
                lines += ["", f"## {e.queue}"]
            label = "skip" if e.skip_reason else e.agent
            after = f"  [after {', '.join(e.task.depends_on)}]" if e.task.depends_on else ""
            lines.append(f"  {e.task.id:<9} {label:<6} {e.task.title}{after}")
            if e.skip_reason:
                lines.append(f"            skipped: {e.skip_reason}")
                continue
            lines += [f"            {a}" for a in e.actions]
            if e.problem:
                lines.append(f"            REFUSED: {e.problem}")
        lines += ["", f"A real run writes one evidence log per task to {self.runs_dir}{os.sep}<run-id>{os.sep}logs{os.sep} "
                      f"and its summary to {self.runs_dir}{os.sep}<run-id>{os.sep}run.json."]
        problems = self.problems
        if problems:
            lines.append(f"{len(problems)} task(s) would fail: " + ", ".join(e.task.id for e in problems) + ".")
        return "\n".join(lines)


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


def render_evidence(result: TaskResult, task: Task, run_id: str, log: list[str]) -> str:
    """The text of a task's evidence log."""
    lines = [f"task: {task.id}", f"title: {task.title}", f"queue: {result.queue}", f"layer: {task.layer}",
             f"agent: {result.agent}", f"status: {result.status}", f"run: {run_id}",
             f"started: {result.started or '-'}", f"ended: {result.ended or '-'}",
             f"duration_s: {result.duration_s if result.duration_s is not None else '-'}"]
    if task.depends_on:
        lines.append(f"depends_on: {', '.join(task.depends_on)}")
    if result.message and result.message != result.error:
        lines.append(f"message: {result.message}")
    if result.error:
        lines.append(f"error: {result.error}")
    if log:
        lines += [""] + log
    for i, c in enumerate(result.commands, start=1):
        lines += ["", f"--- command {i}: {c['status']} ---", "$ " + " ".join(_quote(a) for a in c["cmd"]),
                  f"cwd: {c['cwd']}"]
        if c.get("program"):
            lines.append(f"program: {c['program']}")
        if c["status"] == "not_run":
            lines.append("not run: an earlier command of this task did not succeed")
            continue
        if c.get("error"):
            lines.append(f"error: {c['error'].get('code')}: {c['error'].get('message')}")
        if c["status"] in ("refused", "error"):  # never started: no exit code, no output
            continue
        lines += [f"exit_code: {c['exit_code'] if c['exit_code'] is not None else '-'}",
                  f"duration_ms: {c['duration_ms'] if c['duration_ms'] is not None else '-'}",
                  f"timeout_s: {c['timeout_s'] if c['timeout_s'] is not None else '-'}"]
        if c.get("truncated"):
            lines.append("truncated: true (output capped)")
        for stream in ("stdout", "stderr"):
            text = c.get(stream) or ""
            lines.append(f"[{stream}]")
            lines.append(text.rstrip("\n") if text else "(empty)")
    return "\n".join(lines) + "\n"


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


class PlanRunner:
    """Runs (or dry-runs) a plan with the given hooks, policy and options."""

    def __init__(self, plan: Plan, *, hooks: Hooks | None = None, policy: SecurityPolicy | None = None,
                 options: RunOptions | None = None, agents: AgentRegistry | None = None,
                 base_env: dict[str, str] | None = None,
                 on_event: Callable[[str, Any], None] | None = None, pipeline: Pipeline | None = None) -> None:
        self.plan = plan
        self.hooks = hooks or Hooks()
        self.policy = policy or SecurityPolicy.default()
        self.options = options or RunOptions()
        if self.options.max_workers < 1:
            raise ValidationError("invalid run options:", [f"max_workers must be at least 1, got {self.options.max_workers}"])
        if self.options.timeout_s <= 0:
            raise ValidationError("invalid run options:", [f"timeout_s must be greater than 0, got {self.options.timeout_s}"])
        self.agents = agents or AgentRegistry.default()
        self.base_env = base_env if base_env is not None else child_base_env(self.policy)
        self.on_event = on_event
        self.pipeline = pipeline  # the operation pipeline commands launch through (None: directly)
        self.assignments = self._assign()

    @property
    def runs_dir(self) -> Path:
        if self.options.runs_dir is not None:
            return Path(self.options.runs_dir)
        return (self.plan.path.parent if self.plan.path else Path.cwd()) / "runs"

    def _assign(self) -> list[Assignment]:
        problems: list[str] = []
        out: list[Assignment] = []
        for queue, task in self.plan.tasks():
            hook = self.hooks.for_task(task, queue)
            agent = task.agent or ("shell" if hook is not None and hook.commands else "noop")
            if agent not in self.agents:
                problems.append(f"{task.id}: unknown agent {agent!r} (known: {', '.join(self.agents.names())})")
            skip = None
            if task.checked and not self.options.include_done:
                skip = "already checked ([x]) in the SOT; run it anyway with --include-done"
            out.append(Assignment(queue, task, agent, hook, skip))
        if problems:
            raise ValidationError("the plan cannot run:", problems)
        return out

    def _context(self, run_id: str = "", run_dir: Path | None = None) -> ExecutionContext:
        return ExecutionContext(policy=self.policy, run_id=run_id, run_dir=run_dir, timeout_s=self.options.timeout_s,
                                max_output_bytes=self.options.max_output_bytes, base_env=self.base_env,
                                dry_run=self.options.dry_run, pipeline=self.pipeline)

    def _emit(self, kind: str, payload: Any) -> None:
        if self.on_event is not None:
            self.on_event(kind, payload)

    # ------------------------------------------------------------------ dry run
    def dry_run(self) -> DryRunReport:
        """Describe what a run would do; execute nothing, write nothing."""
        context = self._context()
        entries = []
        for a in self.assignments:
            entry = DryRunEntry(queue=a.queue.name, task=a.task, agent=a.agent, skip_reason=a.skip_reason)
            if a.skip_reason is None:
                described = self.agents.get(a.agent).describe(a.task, a.queue, a.hook, context)
                entry.actions, entry.problem = described.actions, described.problem
            entries.append(entry)
        return DryRunReport(self.plan, entries, self.options.max_workers, self.runs_dir,
                            self.hooks.path)

    # ------------------------------------------------------------------ run
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
                             hooks=str(self.hooks.path) if self.hooks.path else None)
        try:
            _write_json(run_dir / "run.json", summary.to_dict())
        except OSError as exc:
            raise IOFailure(f"cannot write {run_dir / 'run.json'}: {exc.strerror or exc}") from None
        t0 = time.monotonic()
        sem = asyncio.Semaphore(self.options.max_workers)
        finished = {a.task.id: asyncio.Event() for a in self.assignments}
        results: dict[str, TaskResult] = {}
        active = 0

        def base_result(a: Assignment, status: str) -> TaskResult:
            return TaskResult(task=a.task.id, title=a.task.title, queue=a.queue.name, layer=a.task.layer,
                              agent=a.agent, status=status, depends_on=a.task.depends_on)

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

        async def one(a: Assignment) -> None:
            nonlocal active
            result: TaskResult | None = None
            try:
                if a.skip_reason is not None:
                    result = base_result(a, "skipped")
                    result.message = a.skip_reason
                    record(a, result, [f"SKIPPED: {a.skip_reason}"])
                    return
                for dep in a.task.depends_on:
                    await finished[dep].wait()
                failed = [d for d in a.task.depends_on if results[d].status not in SUCCESS]
                if failed:
                    result = base_result(a, "blocked")
                    result.message = "not run: " + ", ".join(f"{d} ended {results[d].status}" for d in failed)
                    result.error = result.message
                    record(a, result, [f"BLOCKED: {result.message}"])
                    return
                async with sem:
                    active += 1
                    summary.peak_workers = max(summary.peak_workers, active)
                    result = base_result(a, "running")
                    result.started = utc_now()
                    started = time.monotonic()
                    self._emit("task_started", result)
                    try:
                        outcome = await self.agents.get(a.agent).execute(a.task, a.queue, a.hook, context)
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:  # an agent's bug must not take the run down
                        outcome = AgentResult(status="error", message=f"agent {a.agent!r} raised {exc!r}",
                                              error=f"agent {a.agent!r} raised {type(exc).__name__}: {exc}")
                    finally:
                        active -= 1
                        result.ended = utc_now()
                        result.duration_s = round(time.monotonic() - started, 3)
                result.status = outcome.status if outcome.status in (*SUCCESS, *FAILURE) else "error"
                result.message, result.error = outcome.message, outcome.error
                result.commands = [c.to_dict() for c in outcome.commands]
                record(a, result, outcome.log)
            except asyncio.CancelledError:
                if a.task.id not in results:
                    cancelled = result or base_result(a, "cancelled")
                    cancelled.status = "cancelled"
                    cancelled.ended = cancelled.ended or utc_now()
                    cancelled.message = cancelled.error = "interrupted before the task finished"
                    record(a, cancelled, ["CANCELLED: the run was interrupted"])
                raise
            finally:
                finished[a.task.id].set()

        tasks = [asyncio.create_task(one(a), name=a.task.id) for a in self.assignments]
        interrupted = False
        try:
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        except asyncio.CancelledError:
            interrupted = True
            for t in tasks:
                t.cancel()
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        for a, outcome in zip(self.assignments, outcomes):
            if isinstance(outcome, BaseException) and a.task.id not in results:  # pragma: no cover - a bug
                crashed = base_result(a, "cancelled" if isinstance(outcome, asyncio.CancelledError) else "error")
                crashed.error = f"{type(outcome).__name__}: {outcome}"
                results[a.task.id] = crashed
        summary.results = [results[a.task.id] for a in self.assignments if a.task.id in results]
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


def run_plan(plan: Plan, *, hooks: Hooks | None = None, policy: SecurityPolicy | None = None,
             options: RunOptions | None = None, **kwargs: Any) -> RunSummary | DryRunReport:
    """Run ``plan`` (or, with ``options.dry_run``, describe it): a :class:`RunSummary` or :class:`DryRunReport`."""
    runner = PlanRunner(plan, hooks=hooks, policy=policy, options=options, **kwargs)
    return runner.dry_run() if runner.options.dry_run else runner.run()
