"""The mission, config and step fields: their names and the checks of the scalar ones
(numbers, ``config``, ``when``, ``loop``)."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

from ...control.budgets import BudgetLimits
from ...errors import InvalidArgument
from ..model import EXECUTORS, Condition, Loop, Workflow
from ..validation import CONDITION_OPS
from .loader import MissionProblems, key_line, node_line

MISSION_FIELDS = ("version", "name", "description", "config", "steps", "inputs")
CONFIG_FIELDS = ("timeout_seconds", "fail_fast", "max_concurrent_steps", "retry_attempts", "retry_delay_ms", "budget",
                 "executor")
STEP_FIELDS = ("id", "name", "step_type", "depends_on", "timeout_seconds", "continue_on_error", "parameters",
               # aikit extensions
               "description", "retry_attempts", "retry_delay_ms", "when", "loop", "approval")


def number_problem(value: Any, *, integer: bool = False, minimum: float = 0, exclusive: bool = False) -> str | None:
    """A problem with a numeric field, or None."""
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if not ok_type or isinstance(value, bool):
        return f"expected {'an integer' if integer else 'a number'}, got {value!r}"
    if value < minimum or (exclusive and value == minimum):
        return f"must be {'greater than' if exclusive else 'at least'} {minimum:g}, got {value!r}"
    return None


def unknown_field(what: str, key: Any, known: tuple[str, ...]) -> str:
    """The problem for an unknown field ``key``, with the closest known name."""
    close = difflib.get_close_matches(str(key), known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown {what} {key!r} ({hint}known: {', '.join(known)})"


def parse_config(config: Any, node: Any, workflow: Workflow, problems: MissionProblems) -> None:
    """Apply a mission's ``config`` table to ``workflow``, reporting bad fields."""
    if config is None:
        return
    if not isinstance(config, dict):
        problems.add(node_line(node), f"config: expected a table ({', '.join(CONFIG_FIELDS)})")
        return
    for key, value in config.items():
        line = key_line(node, str(key))
        if key not in CONFIG_FIELDS:
            problems.add(line, unknown_field("config field", key, CONFIG_FIELDS))
            continue
        if value is None:
            continue
        if key == "budget":  # aikit extension: {tokens, cost, tool_calls, wall_time_s, per_tool}
            try:
                workflow.budget = BudgetLimits.parse(value, "config.budget")
            except InvalidArgument as exc:
                problems.add(line, exc.message)
            continue
        if key == "executor":
            if value in EXECUTORS:
                workflow.executor = value
            else:
                problems.add(line, f"config.executor: expected one of {', '.join(EXECUTORS)}, got {value!r}")
            continue
        if key == "fail_fast":
            if isinstance(value, bool):
                workflow.fail_fast = value
            else:
                problems.add(line, f"config.fail_fast: expected true or false, got {value!r}")
            continue
        integer = key in ("max_concurrent_steps", "retry_attempts")
        minimum = 1 if key == "max_concurrent_steps" else 0
        problem = number_problem(value, integer=integer, minimum=minimum, exclusive=key == "timeout_seconds")
        if problem:
            problems.add(line, f"config.{key}: {problem}")
        elif key == "timeout_seconds":
            workflow.timeout_s = float(value)
        elif key == "max_concurrent_steps":
            workflow.max_concurrency = int(value)
        elif key == "retry_attempts":
            workflow.retry_attempts = int(value)
        else:
            workflow.retry_delay_s = value / 1000.0


def parse_when(value: Any, report: Callable[[str], None]) -> Condition | None:
    """A step's ``when`` (a reference or ``{ref, op, value}``) as a Condition, or None after reporting."""
    if isinstance(value, str):
        return Condition(ref=value, op="truthy")
    if not isinstance(value, dict) or "ref" not in value:
        report("when: expected a reference (\"{{steps.a.output.ok}}\") or a table {ref, op, value}")
        return None
    op = value.get("op", "truthy")
    if op not in CONDITION_OPS:
        report(f"when.op: must be one of {', '.join(CONDITION_OPS)}, got {op!r}")
        return None
    extra = set(value) - {"ref", "op", "value"}
    if extra:
        report(f"when: unknown field(s) {', '.join(sorted(map(str, extra)))} (known: ref, op, value)")
    return Condition(ref=value["ref"], op=op, value=value.get("value"))


def parse_loop(value: Any, report: Callable[[str], None]) -> Loop | None:
    """A step's ``loop`` (``{over | range, max_iterations}``) as a Loop, or None after reporting."""
    if not isinstance(value, dict):
        report("loop: expected a table {over | range, max_iterations}")
        return None
    extra = set(value) - {"over", "range", "max_iterations"}
    if extra:
        report(f"loop: unknown field(s) {', '.join(sorted(map(str, extra)))} (known: over, range, max_iterations)")
    loop = Loop(over=value.get("over"))
    rng = value.get("range")
    if rng is not None:
        if (isinstance(rng, list) and len(rng) in (2, 3)
                and all(isinstance(n, int) and not isinstance(n, bool) for n in rng)):
            loop.range = list(rng)
        else:
            report("loop.range: expected [start, stop] or [start, stop, step] (integers)")
    if loop.over is None and loop.range is None:
        report("loop: give `over` (a list or a {{...}} reference) or `range`")
    limit = value.get("max_iterations")
    if limit is not None:
        problem = number_problem(limit, integer=True, minimum=1)
        if problem:
            report(f"loop.max_iterations: {problem}")
        else:
            loop.max_iterations = int(limit)
    return loop
