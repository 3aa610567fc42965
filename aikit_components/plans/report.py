"""What a plan run reports: one :class:`TaskResult` per task, the :class:`RunSummary`
(``run.json``), the text of each task's evidence log, and the :class:`DryRunReport`."""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .model import Plan, Task

SUMMARY_VERSION = 1
SUCCESS = ("ok", "noop", "skipped")
FAILURE = ("error", "blocked", "cancelled")
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


@dataclass
class TaskResult:
    """How one task ended (an entry of ``run.json``'s ``results``)."""

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
    manifest: str | None = None
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
                "plan": self.plan, "source": self.source, "hooks": self.hooks,
                "manifest": self.manifest, "run_dir": str(self.run_dir),
                "max_workers": self.max_workers, "peak_workers": self.peak_workers, "started": self.started,
                "ended": self.ended, "duration_s": self.duration_s, "counts": self.counts,
                "results": [r.to_dict() for r in self.results]}


@dataclass
class DryRunEntry:
    """One task of a dry run."""

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
    manifest: Path | None = None

    @property
    def problems(self) -> list[DryRunEntry]:
        return [e for e in self.entries if e.problem]

    @property
    def exit_code(self) -> int:
        return EXIT_FAILED if self.problems else EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        return {"dry_run": True, "plan": str(self.plan.path or ""), "source": self.plan.source,
                "max_workers": self.max_workers, "hooks": str(self.hooks) if self.hooks else None,
                "manifest": str(self.manifest) if self.manifest else None,
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
                 f"Hooks: {self.hooks}" if self.hooks else "Hooks: none (no task has commands)",
                 f"Manifest: {self.manifest}" if self.manifest else "Manifest: none (agents: noop, shell)"]
        current = None
        width = max([6, *(len(e.agent) for e in self.entries)])
        for e in self.entries:
            if e.queue != current:
                current = e.queue
                lines += ["", f"## {e.queue}"]
            label = "skip" if e.skip_reason else e.agent
            after = f"  [after {', '.join(e.task.depends_on)}]" if e.task.depends_on else ""
            lines.append(f"  {e.task.id:<9} {label:<{width}} {e.task.title}{after}")
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
        lines += ["", f"--- command {i}: {c['status']} ---", "$ " + shlex.join(c["cmd"]),
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
