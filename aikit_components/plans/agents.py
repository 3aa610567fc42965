"""Agents execute one task of a plan: ``noop`` (an evidence stub) and ``shell`` (the task's
hooks.json commands, through the security policy).

An agent subclasses :class:`Agent` and implements ``execute(task, queue, hook, context)``
(async, returning an :class:`AgentResult`) and ``describe(...)`` (what a dry run would do).
The runner writes the evidence file from the result, so every task gets one even when an agent
raises. Register extra agents with ``AgentRegistry.register``; a task selects one with the
``(agent: NAME)`` annotation of the SOT.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import AikitError, InvalidArgument, NotFound, Timeout
from ..operations import Pipeline
from ..security import SecurityPolicy
from .hooks import CommandSpec, Hook
from .model import Queue, Task


@dataclass
class ExecutionContext:
    """What agents may use: the security policy, limits, the child environment and the run."""

    policy: SecurityPolicy
    run_id: str = ""
    run_dir: Path | None = None
    timeout_s: float = 300.0
    max_output_bytes: int = 1024 * 1024
    base_env: dict[str, str] = field(default_factory=dict)
    dry_run: bool = False
    pipeline: Pipeline | None = None  # the operation pipeline each command launch runs through (None: directly)


@dataclass
class CommandRecord:
    """What happened to one command: status is ok, failed (non-zero exit), refused (security
    policy or a bad cwd), timeout, error (could not start) or not_run (an earlier one failed)."""

    cmd: list[str]
    cwd: str
    status: str
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    duration_ms: float | None = None
    truncated: bool = False
    timeout_s: float | None = None
    program: str | None = None
    error: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"cmd": self.cmd, "cwd": self.cwd, "status": self.status, "exit_code": self.exit_code,
                "stdout": self.stdout, "stderr": self.stderr, "duration_ms": self.duration_ms,
                "truncated": self.truncated, "timeout_s": self.timeout_s, "program": self.program,
                "error": self.error}


@dataclass
class AgentResult:
    """An agent's outcome: ``status`` is ok, noop or error; ``log`` lines go into the evidence."""

    status: str
    message: str = ""
    commands: list[CommandRecord] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class DryRunAction:
    """What a dry run reports for a task: the actions it would take, or the problem it would hit."""

    actions: list[str] = field(default_factory=list)
    problem: str | None = None


class Agent:
    """Base class of plan agents."""

    name = "agent"

    async def execute(self, task: Task, queue: Queue, hook: Hook | None, context: ExecutionContext) -> AgentResult:
        raise NotImplementedError

    def describe(self, task: Task, queue: Queue, hook: Hook | None, context: ExecutionContext) -> DryRunAction:
        return DryRunAction([f"would run agent {self.name!r}"])


class NoopAgent(Agent):
    """Executes nothing: the evidence file records that the task was visited (an evidence stub)."""

    name = "noop"

    async def execute(self, task: Task, queue: Queue, hook: Hook | None, context: ExecutionContext) -> AgentResult:
        log = [f"NOOP: {task.id} in {queue.name}: nothing was executed (no command is mapped to this task)."]
        if hook is not None:
            log = [f"NOOP: {task.id} in {queue.name}: the task selects the noop agent, so the "
                   f"{len(hook.commands)} command(s) mapped to {hook.key!r} were not run."]
        return AgentResult(status="noop", message="evidence stub written", log=log)

    def describe(self, task: Task, queue: Queue, hook: Hook | None, context: ExecutionContext) -> DryRunAction:
        return DryRunAction(["would write an evidence stub (no command)"])


class ShellAgent(Agent):
    """Runs the hook's commands one after the other, stopping at the first that does not succeed.

    No shell: each command is an argv list. Before it runs, ``SecurityPolicy.check_command``
    allows the program (it must be in ``security.allowed_commands``) and its path-like arguments
    (inside the allowed paths), and ``check_path`` allows the working directory; a refusal is recorded and fails the task. Each command has a timeout after
    which it is killed with everything it started (its process group). The child sees only the
    allowlisted environment variables plus PATH, the hook's ``env`` and ``AIKIT_TASK_ID``,
    ``AIKIT_TASK_TITLE``, ``AIKIT_QUEUE`` and ``AIKIT_RUN_DIR``.
    """

    name = "shell"

    @staticmethod
    def prepare(spec: CommandSpec, context: ExecutionContext) -> tuple[list[str], Path]:
        """Check ``spec`` against the policy: return (argv with the program's absolute path, cwd)."""
        workdir = context.policy.check_path(spec.cwd if spec.cwd is not None else Path.cwd())
        if not workdir.exists():
            raise NotFound(f"working directory {workdir} does not exist", details={"cwd": str(workdir)})
        if not workdir.is_dir():
            raise InvalidArgument(f"working directory {workdir} is not a directory", details={"cwd": str(workdir)})
        argv = context.policy.check_command(spec.argv, workdir)
        return argv, workdir

    def timeout_for(self, spec: CommandSpec, context: ExecutionContext) -> float:
        timeout = spec.timeout_s if spec.timeout_s is not None else context.timeout_s
        cap = context.policy.max_wall_time_s
        return min(timeout, float(cap)) if cap else timeout

    def describe(self, task: Task, queue: Queue, hook: Hook | None, context: ExecutionContext) -> DryRunAction:
        if hook is None or not hook.commands:
            return DryRunAction(problem=f"no command is mapped to {task.id} (or its queue) in hooks.json")
        actions = []
        for spec in hook.commands:
            cwd = spec.cwd if spec.cwd is not None else Path.cwd()
            try:
                self.prepare(spec, context)
            except AikitError as exc:
                return DryRunAction(actions, problem=f"would refuse `{spec.display}`: {exc.code}: {exc.message}")
            actions.append(f"would run: {spec.display}  (cwd {cwd}, timeout {self.timeout_for(spec, context):g}s)")
        return DryRunAction(actions)

    async def execute(self, task: Task, queue: Queue, hook: Hook | None, context: ExecutionContext) -> AgentResult:
        from ..tools.system import run_argv  # the tools' runner: process groups, capped output, timeouts

        if hook is None or not hook.commands:
            message = f"no command is mapped to {task.id} (or its queue {queue.name!r}) in hooks.json"
            return AgentResult(status="error", message=message, error=message)
        records: list[CommandRecord] = []
        failure: str | None = None
        for spec in hook.commands:
            cwd_text = str(spec.cwd if spec.cwd is not None else Path.cwd())
            if failure is not None:
                records.append(CommandRecord(cmd=spec.argv, cwd=cwd_text, status="not_run"))
                continue
            timeout = self.timeout_for(spec, context)
            try:
                argv, workdir = self.prepare(spec, context)
            except AikitError as exc:
                records.append(CommandRecord(cmd=spec.argv, cwd=cwd_text, status="refused", timeout_s=timeout,
                                             error=exc.to_dict()))
                failure = f"command `{spec.display}` was refused: {exc.code}: {exc.message}"
                continue
            env = {**context.base_env, **spec.env, "AIKIT_TASK_ID": task.id, "AIKIT_TASK_TITLE": task.title,
                   "AIKIT_QUEUE": queue.name}
            if context.run_dir is not None:
                env["AIKIT_RUN_DIR"] = str(context.run_dir)
            started = time.monotonic()
            try:
                out = await run_argv(argv, cwd=workdir, env=env, stdin=None, timeout_s=timeout,
                                     max_output_bytes=context.max_output_bytes, what=os.path.basename(spec.argv[0]),
                                     pipeline=context.pipeline, context=context)
            except Timeout as exc:
                records.append(CommandRecord(
                    cmd=spec.argv, cwd=str(workdir), status="timeout", stdout=str(exc.details.get("stdout", "")),
                    stderr=str(exc.details.get("stderr", "")), timeout_s=timeout, program=argv[0],
                    duration_ms=round((time.monotonic() - started) * 1000, 1),
                    error={"code": exc.code, "message": f"killed after {timeout:g} s (timeout)"}))
                failure = f"command `{spec.display}` timed out after {timeout:g} s and was killed"
                continue
            except AikitError as exc:
                records.append(CommandRecord(cmd=spec.argv, cwd=str(workdir), status="error", timeout_s=timeout,
                                             program=argv[0], error=exc.to_dict()))
                failure = f"command `{spec.display}` could not be started: {exc.code}: {exc.message}"
                continue
            ok = out.exit_code == 0
            records.append(CommandRecord(cmd=spec.argv, cwd=str(workdir), status="ok" if ok else "failed",
                                         exit_code=out.exit_code, stdout=out.text("stdout"), stderr=out.text("stderr"),
                                         duration_ms=out.duration_ms, truncated=out.truncated, timeout_s=timeout,
                                         program=argv[0]))
            if not ok:
                failure = f"command `{spec.display}` exited with status {out.exit_code}"
        if failure is not None:
            return AgentResult(status="error", message=failure, commands=records, error=failure)
        return AgentResult(status="ok", message=f"{len(records)} command(s) succeeded", commands=records)


class AgentRegistry:
    """Agents by name; ``default()`` has ``noop`` and ``shell``."""

    def __init__(self) -> None:
        self._agents: dict[str, Agent] = {}

    @classmethod
    def default(cls) -> "AgentRegistry":
        registry = cls()
        registry.register(NoopAgent())
        registry.register(ShellAgent())
        return registry

    def register(self, agent: Agent, name: str | None = None) -> None:
        self._agents[name or agent.name] = agent

    def get(self, name: str) -> Agent:
        try:
            return self._agents[name]
        except KeyError:
            raise NotFound(f"unknown agent {name!r} (known: {', '.join(sorted(self._agents))})") from None

    def __contains__(self, name: object) -> bool:
        return name in self._agents

    def names(self) -> list[str]:
        return sorted(self._agents)
