"""Plans: a source-of-truth markdown file of queues and tasks, turned into ``plan.json`` and run
by agents in parallel, with one evidence log per task and a summary (the task-exec-kit model).

- :func:`parse_sot` / :func:`parse_sot_file` — markdown -> :class:`Plan` plus line-numbered problems.
- :func:`load_plan` / :func:`save_plan` / :func:`plan_from_dict` — the ``plan.json`` file.
- :func:`load_hooks` — ``hooks.json``: the commands the shell agent runs per task id or queue.
- :class:`PlanRunner` / :func:`run_plan` — run or dry-run a plan; :class:`RunOptions`.
- :class:`NoopAgent`, :class:`ShellAgent`, :class:`AgentRegistry` — the agents.

The format and the run semantics are documented in ``docs/plans.md``.
"""

from __future__ import annotations

from .agents import Agent, AgentRegistry, AgentResult, CommandRecord, DryRunAction, ExecutionContext, NoopAgent, ShellAgent
from .hooks import CommandSpec, Hook, Hooks, find_hooks_file, hooks_from_dict, load_hooks
from .model import (DEFAULT_LAYER, PLAN_VERSION, TASK_ID_PATTERN, Plan, Queue, Task, is_task_id, load_plan,
                    plan_from_dict, save_plan)
from .runner import (DEFAULT_MAX_WORKERS, DEFAULT_TIMEOUT_S, DryRunReport, PlanRunner, RunOptions, RunSummary,
                     TaskResult, child_base_env, run_plan)
from .sot import SotProblem, SotResult, parse_sot, parse_sot_file

__all__ = [
    "DEFAULT_LAYER", "DEFAULT_MAX_WORKERS", "DEFAULT_TIMEOUT_S", "PLAN_VERSION", "TASK_ID_PATTERN",
    "Agent", "AgentRegistry", "AgentResult", "CommandRecord", "CommandSpec", "DryRunAction", "DryRunReport",
    "ExecutionContext", "Hook", "Hooks", "NoopAgent", "Plan", "PlanRunner", "Queue", "RunOptions", "RunSummary",
    "ShellAgent", "SotProblem", "SotResult", "Task", "TaskResult", "child_base_env", "find_hooks_file",
    "hooks_from_dict", "is_task_id", "load_hooks", "load_plan", "parse_sot", "parse_sot_file", "plan_from_dict",
    "run_plan", "save_plan",
]
