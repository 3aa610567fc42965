"""What the plan agents do with one task: ``noop`` (an evidence stub), ``shell`` (the task's
hooks.json commands, through the security policy) and ``llm`` (an aikit agent asked to carry the
task out). Which agents exist, and their settings, is the :class:`~.manifest.Manifest`.

:func:`execute` runs a task and returns a :class:`TaskOutcome` (the runner writes the evidence
from it, so every task gets one even when execution raises); :func:`describe` says what a dry
run would do.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import AikitError, InvalidArgument, NotFound, Timeout
from ..security import SecurityPolicy
from .commands import CommandSpec, TaskCommands
from .manifest import AgentConfig
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
    #: aikit's components (models, tools, hooks, events, the operation pipeline each command launch
    #: runs through); needed by ``llm`` agents only (without them, commands run directly).
    components: Any = None


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
class TaskOutcome:
    """What executing a task gave: ``status`` is ok, noop or error; ``log`` lines go into the evidence."""

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


async def execute(agent: AgentConfig, task: Task, queue: Queue, commands: TaskCommands | None,
                  context: ExecutionContext) -> TaskOutcome:
    """Carry out ``task`` with ``agent``."""
    if agent.kind == "shell":
        return await run_shell(agent, task, queue, commands, context)
    if agent.kind == "llm":
        return await run_llm(agent, task, queue, context)
    return run_noop(agent, task, queue, commands)


def describe(agent: AgentConfig, task: Task, queue: Queue, commands: TaskCommands | None,
             context: ExecutionContext) -> DryRunAction:
    """What :func:`execute` would do, without doing it."""
    if agent.kind == "shell":
        return describe_shell(agent, task, commands, context)
    if agent.kind == "llm":
        spec = agent.spec
        model = spec.model if spec is not None else "default"
        return DryRunAction([f"would ask the llm agent {agent.name!r} (model {model}) to carry out the task"])
    return DryRunAction(["would write an evidence stub (no command)"])


# ---------------------------------------------------------------------------------- noop
def run_noop(agent: AgentConfig, task: Task, queue: Queue, commands: TaskCommands | None) -> TaskOutcome:
    """Execute nothing: the evidence file records that the task was visited (an evidence stub)."""
    log = [f"NOOP: {task.id} in {queue.name}: nothing was executed (no command is mapped to this task)."]
    if commands is not None:
        log = [f"NOOP: {task.id} in {queue.name}: the task selects the {agent.name} agent, so the "
               f"{len(commands.commands)} command(s) mapped to {commands.key!r} were not run."]
    return TaskOutcome(status="noop", message="evidence stub written", log=log)


# ---------------------------------------------------------------------------------- shell
def prepare_command(spec: CommandSpec, context: ExecutionContext) -> tuple[list[str], Path]:
    """Check ``spec`` against the policy: return (argv with the program's absolute path, cwd).

    ``SecurityPolicy.check_command`` allows the program (it must be in
    ``security.allowed_commands``) and its path-like arguments (inside the allowed paths), and
    ``check_path`` allows the working directory."""
    workdir = context.policy.check_path(spec.cwd if spec.cwd is not None else Path.cwd())
    if not workdir.exists():
        raise NotFound(f"working directory {workdir} does not exist", details={"cwd": str(workdir)})
    if not workdir.is_dir():
        raise InvalidArgument(f"working directory {workdir} is not a directory", details={"cwd": str(workdir)})
    argv = context.policy.check_command(spec.argv, workdir)
    return argv, workdir


def command_timeout(spec: CommandSpec, agent: AgentConfig, context: ExecutionContext) -> float:
    """The command's ``timeout_s``, else the agent's, else the run's; capped by ``security.max_wall_time_s``."""
    timeout = spec.timeout_s if spec.timeout_s is not None else (
        agent.timeout_s if agent.timeout_s is not None else context.timeout_s)
    cap = context.policy.max_wall_time_s
    return min(timeout, float(cap)) if cap else timeout


def describe_shell(agent: AgentConfig, task: Task, commands: TaskCommands | None,
                   context: ExecutionContext) -> DryRunAction:
    if commands is None or not commands.commands:
        return DryRunAction(problem=f"no command is mapped to {task.id} (or its queue) in hooks.json")
    actions = []
    for spec in commands.commands:
        cwd = spec.cwd if spec.cwd is not None else Path.cwd()
        try:
            prepare_command(spec, context)
        except AikitError as exc:
            return DryRunAction(actions, problem=f"would refuse `{spec.display}`: {exc.code}: {exc.message}")
        actions.append(f"would run: {spec.display}  (cwd {cwd}, timeout {command_timeout(spec, agent, context):g}s)")
    return DryRunAction(actions)


async def run_shell(agent: AgentConfig, task: Task, queue: Queue, commands: TaskCommands | None,
                    context: ExecutionContext) -> TaskOutcome:
    """Run the task's commands one after the other, stopping at the first that does not succeed.

    No shell: each command is an argv list, checked by :func:`prepare_command` before it runs; a
    refusal is recorded and fails the task. Each command has a timeout after which it is killed
    with everything it started (its process group). The child sees only the allowlisted
    environment variables plus PATH, the agent's and the command's ``env`` and ``AIKIT_TASK_ID``,
    ``AIKIT_TASK_TITLE``, ``AIKIT_QUEUE`` and ``AIKIT_RUN_DIR``.
    """
    from ..tools.system import run_argv  # the tools' runner: process groups, capped output, timeouts

    if commands is None or not commands.commands:
        message = f"no command is mapped to {task.id} (or its queue {queue.name!r}) in hooks.json"
        return TaskOutcome(status="error", message=message, error=message)
    records: list[CommandRecord] = []
    failure: str | None = None
    for spec in commands.commands:
        cwd_text = str(spec.cwd if spec.cwd is not None else Path.cwd())
        if failure is not None:
            records.append(CommandRecord(cmd=spec.argv, cwd=cwd_text, status="not_run"))
            continue
        timeout = command_timeout(spec, agent, context)
        try:
            argv, workdir = prepare_command(spec, context)
        except AikitError as exc:
            records.append(CommandRecord(cmd=spec.argv, cwd=cwd_text, status="refused", timeout_s=timeout,
                                         error=exc.to_dict()))
            failure = f"command `{spec.display}` was refused: {exc.code}: {exc.message}"
            continue
        env = {**context.base_env, **agent.env, **spec.env, "AIKIT_TASK_ID": task.id, "AIKIT_TASK_TITLE": task.title,
               "AIKIT_QUEUE": queue.name}
        if context.run_dir is not None:
            env["AIKIT_RUN_DIR"] = str(context.run_dir)
        started = time.monotonic()
        try:
            out = await run_argv(argv, cwd=workdir, env=env, stdin=None, timeout_s=timeout,
                                 max_output_bytes=context.max_output_bytes, what=os.path.basename(spec.argv[0]),
                                 pipeline=getattr(context.components, "pipeline", None), context=context)
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
        return TaskOutcome(status="error", message=failure, commands=records, error=failure)
    return TaskOutcome(status="ok", message=f"{len(records)} command(s) succeeded", commands=records)


# ---------------------------------------------------------------------------------- llm
def task_prompt(task: Task, queue: Queue) -> str:
    """What an ``llm`` agent is asked: the task, where it sits in the plan, and its notes."""
    lines = [f"Task {task.id}: {task.title}", f"Queue: {queue.name}", f"Layer: {task.layer}"]
    if task.depends_on:
        lines.append(f"Done before it: {', '.join(task.depends_on)}")
    notes = task.metadata.get("notes") or []
    if notes:
        lines += ["Notes:"] + [f"- {n}" for n in notes]
    lines += ["", "Carry out this task and report what you did."]
    return "\n".join(lines)


async def run_llm(agent: AgentConfig, task: Task, queue: Queue, context: ExecutionContext) -> TaskOutcome:
    """Ask an aikit agent (``components.new_agent``) to carry out the task; its answer is the evidence.
    The task fails when the agent stops for another reason than having answered."""
    if context.components is None or agent.spec is None:
        message = f"the llm agent {agent.name!r} needs aikit's components (models and tools) to run"
        return TaskOutcome(status="error", message=message, error=message)
    await context.components.tools.aresolve_missing(agent.spec.tools)  # MCP servers of aikit.toml, on first use
    result = await context.components.new_agent(agent.spec).run(task_prompt(task, queue))
    log = [f"LLM: agent {agent.name!r}, model {result.model or agent.spec.model}, {result.steps} step(s), "
           f"{len(result.tool_calls)} tool call(s), stop_reason {result.stop_reason}", "", "[answer]",
           result.text.rstrip("\n") or "(empty)"]
    if result.stop_reason != "end":
        message = f"agent {agent.name!r} stopped without finishing: {result.stop_reason}"
        if result.refusal:
            message += f" ({result.refusal})"
        return TaskOutcome(status="error", message=message, error=message, log=log)
    return TaskOutcome(status="ok", message=f"agent {agent.name!r} answered", log=log)
