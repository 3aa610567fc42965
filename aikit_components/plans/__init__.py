"""Plans: a source-of-truth markdown file of queues and tasks, turned into ``plan.json`` and run
on the workflow engine by the plan agents, in parallel, with one evidence log per task and a
summary (the task-exec-kit model).

- :func:`parse_sot` / :func:`parse_sot_file` — markdown -> :class:`Plan` plus line-numbered problems.
- :func:`load_plan` / :func:`save_plan` / :func:`plan_from_dict` — the ``plan.json`` file.
- :func:`load_hooks` — ``hooks.json``: the commands the shell agent runs per task id or queue
  (a :class:`CommandMap`).
- :func:`load_manifest` — ``manifest.json``: the agents (noop, shell, llm) and layers
  (a :class:`Manifest`).
- :class:`PlanRunner` / :func:`run_plan` — run or dry-run a plan; :class:`RunOptions`. Each task is
  a step of a workflow (``..workflows``); ``progress`` turns finished steps into evidence.

The formats and the run semantics are documented in ``docs/plans.md``.
"""

from __future__ import annotations

from .commands import CommandMap, CommandSpec, TaskCommands, find_hooks_file, hooks_from_dict, load_hooks
from .execution import CommandRecord, DryRunAction, ExecutionContext, TaskOutcome
from .manifest import (
    AGENT_KINDS,
    BUILTIN_AGENTS,
    AgentConfig,
    LayerConfig,
    Manifest,
    find_manifest_file,
    load_manifest,
    manifest_from_dict,
)
from .model import (
    DEFAULT_LAYER,
    PLAN_VERSION,
    TASK_ID_PATTERN,
    Plan,
    Queue,
    Task,
    is_task_id,
    load_plan,
    plan_from_dict,
    save_plan,
)
from .report import DryRunReport, RunSummary, TaskResult
from .runner import DEFAULT_MAX_WORKERS, DEFAULT_TIMEOUT_S, PlanRunner, RunOptions, child_base_env, run_plan
from .sot import SotProblem, SotResult, parse_sot, parse_sot_file

__all__ = [
    "AGENT_KINDS", "BUILTIN_AGENTS", "DEFAULT_LAYER", "DEFAULT_MAX_WORKERS", "DEFAULT_TIMEOUT_S", "PLAN_VERSION",
    "TASK_ID_PATTERN", "AgentConfig", "CommandMap", "CommandRecord", "CommandSpec", "DryRunAction", "DryRunReport",
    "ExecutionContext", "LayerConfig", "Manifest", "Plan", "PlanRunner", "Queue", "RunOptions", "RunSummary",
    "SotProblem", "SotResult", "Task", "TaskCommands", "TaskOutcome", "TaskResult", "child_base_env",
    "find_hooks_file", "find_manifest_file", "hooks_from_dict", "is_task_id", "load_hooks", "load_manifest",
    "load_plan", "manifest_from_dict", "parse_sot", "parse_sot_file", "plan_from_dict", "run_plan", "save_plan",
]
