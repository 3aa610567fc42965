"""Parsing a mission into a :class:`Mission`: the workflow, its steps mapped through the step
types, nested missions, and every problem found on the way."""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ...errors import AikitError
from ..model import Step, Workflow
from .fields import (
    MISSION_FIELDS,
    STEP_FIELDS,
    number_problem,
    parse_config,
    parse_loop,
    parse_when,
    unknown_field,
)
from .loader import MissionProblems, child_node, compose, key_line, node_line, read_source
from .mapping import Mapped, StepType
from .params import check_tool_params
from .step_types import STEP_TYPES, UNSUPPORTED_STEP_TYPES, supported_step_types

if TYPE_CHECKING:
    from ...tools import ToolRegistry


@dataclass
class Mission:
    """A parsed mission: the workflow, every problem found while parsing and mapping, and
    where each step came from."""

    workflow: Workflow
    problems: list[str] = field(default_factory=list)
    step_types: dict[str, str] = field(default_factory=dict)  # step id -> its mission step_type
    lines: dict[str, int] = field(default_factory=dict)  # step id -> YAML line
    param_lines: dict[str, dict[str, int]] = field(default_factory=dict)  # step id -> parameter -> line
    mapped: dict[str, Mapped] = field(default_factory=dict)  # step id -> its mapping (first step with that id)


def builtin_registry() -> ToolRegistry:
    """The built-in tools (no plugins), made once: what missions are checked against by default."""
    global _REGISTRY
    if _REGISTRY is None:
        from ...tools import default_registry

        _REGISTRY = default_registry(plugins=False)
    return _REGISTRY


_REGISTRY: ToolRegistry | None = None


def parse_mission(source: str | os.PathLike[str], *, registry: ToolRegistry | None = None,
                  _stack: tuple[str, ...] = ()) -> Mission:
    """Parse a mission (a path or YAML text) into a :class:`Mission`: the workflow plus every
    problem found in its fields, step types and parameters (against the tools' JSON Schemas of
    ``registry``, default the built-in tools). Raises only when the file cannot be read."""
    text, path = read_source(source)
    registry = registry if registry is not None else builtin_registry()
    problems = MissionProblems()
    root, data = compose(text, problems)
    workflow = Workflow(name=Path(path).stem if path else "mission", source=path)
    mission = Mission(workflow)
    if root is None and data is None:
        if not problems.items:
            problems.add(None, "the mission is empty (expected name, version and steps)")
        mission.problems = problems.sorted()
        return mission
    if not isinstance(data, dict):
        problems.add(node_line(root), f"a mission is a table (name, version, steps), got {type(data).__name__}")
        mission.problems = problems.sorted()
        return mission

    for key in data:
        if key not in MISSION_FIELDS:
            problems.add(key_line(root, str(key)), unknown_field("mission field", key, MISSION_FIELDS))
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.add(node_line(child_node(root, "name")) or 1, "name: required, a non-empty string")
    else:
        workflow.name = name
    version = data.get("version", "1.0")
    if not isinstance(version, (str, int, float)) or isinstance(version, bool):
        problems.add(node_line(child_node(root, "version")),
                     f"version: expected a string like \"1.0\", got {version!r}")
    else:
        workflow.version = str(version)
    description = data.get("description")
    if description is not None:
        if isinstance(description, str):
            workflow.description = description
        else:
            problems.add(node_line(child_node(root, "description")), "description: expected a string")
    inputs = data.get("inputs")
    if inputs is not None:
        if isinstance(inputs, dict) and all(isinstance(k, str) for k in inputs):
            workflow.inputs = dict(inputs)
        else:
            problems.add(node_line(child_node(root, "inputs")),
                         "inputs: expected a table of input names and default values")
    parse_config(data.get("config"), child_node(root, "config"), workflow, problems)

    steps_node = child_node(root, "steps")
    steps = data.get("steps")
    if steps is None:
        problems.add(None, "steps: required, a list of steps")
    elif not isinstance(steps, list):
        problems.add(node_line(steps_node), f"steps: expected a list of steps, got {type(steps).__name__}")
    else:
        if not steps:
            problems.add(node_line(steps_node), "steps: the mission has no steps")
        for index, item in enumerate(steps):
            node = steps_node.value[index] if isinstance(steps_node, yaml.SequenceNode) else None
            step = _parse_step(item, node, index, mission, registry, problems, path, _stack)
            if step is not None:
                workflow.steps.append(step)
    mission.problems = problems.sorted()
    return mission


def _parse_step(item: Any, node: Any, index: int, mission: Mission, registry: ToolRegistry,
                problems: MissionProblems, path: str | None, stack: tuple[str, ...]) -> Step | None:
    line = node_line(node)
    if not isinstance(item, dict):
        problems.add(line, f"steps[{index + 1}]: a step is a table (id, name, step_type, parameters), "
                           f"got {type(item).__name__}")
        return None
    sid = item.get("id")
    if not isinstance(sid, (str, int)) or isinstance(sid, bool) or not str(sid).strip():
        problems.add(line, f"steps[{index + 1}]: id: required, a non-empty string")
        sid = f"#{index + 1}"
    sid = str(sid)
    step = Step(id=sid, name=sid, source_line=line)

    def report(key: str | None, text: str) -> None:
        problems.add(key_line(node, key) if key else line, text, sid)

    first = sid not in mission.lines
    if first:
        mission.lines[sid] = line or 0
    for key in item:
        if key not in STEP_FIELDS:
            report(str(key), unknown_field("step field", key, STEP_FIELDS))
    for key, problem_of, apply in _STEP_SCALARS:
        value = item.get(key)
        if value is None:
            continue
        problem = problem_of(value)
        if problem:
            report(key, f"{key}: {problem}")
        else:
            apply(step, value)
    depends = item.get("depends_on")
    if depends is not None:
        if isinstance(depends, str):
            depends = [depends]
        if isinstance(depends, list) and all(isinstance(d, (str, int)) and not isinstance(d, bool) for d in depends):
            step.depends_on = [str(d) for d in depends]
        else:
            report("depends_on", "depends_on: expected a list of step ids")
    if item.get("when") is not None:
        step.when = parse_when(item["when"], lambda text: report("when", text))
    if item.get("loop") is not None:
        step.loop = parse_loop(item["loop"], lambda text: report("loop", text))

    params = item.get("parameters", {})
    params_node = child_node(node, "parameters")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        report("parameters", f"parameters: expected a table, got {type(params).__name__}")
        params = {}
    param_lines = {str(k): key_line(params_node, str(k)) or line or 0 for k in params}
    if first:
        mission.param_lines[sid] = param_lines
    params = {str(k): v for k, v in params.items()}

    step_type = item.get("step_type")
    if not isinstance(step_type, str) or not step_type:
        report("step_type" if "step_type" in item else None,
               "step_type: required (one of " + ", ".join(supported_step_types()) + ", or an aikit tool name)")
        return step
    if first:
        mission.step_types[sid] = step_type
    kind = STEP_TYPES.get(step_type)
    if kind is None and step_type in registry:
        kind = StepType(step_type, "tool", step_type)
    if kind is None:
        report("step_type", _unknown_step_type(step_type))
        return step
    mapped = kind.map(params)
    if first:
        mission.mapped[sid] = mapped
    step.kind, step.target, step.params = mapped.kind, mapped.target, mapped.params

    def report_param(name: str | None, text: str) -> None:
        at = param_lines.get(name) if name else None
        problems.add(at or line, f"parameters.{name}: {text}" if name else text, sid)

    for pname, text in mapped.problems:
        report_param(pname, text)
    if mapped.schema_tool:
        check_tool_params(mapped, registry, report_param)
    if mapped.kind == "workflow" and isinstance(mapped.target, str) and mapped.target:
        _load_chain(step, mapped, path, registry, stack, report_param)
    return step



def _expect(kind: type, wanted: str) -> Callable[[Any], str | None]:
    """A check that a field's value is a ``kind`` (bool is never taken for a number)."""
    def problem(value: Any) -> str | None:
        return None if isinstance(value, kind) else f"expected {wanted}, got {value!r}"
    return problem


# The scalar step fields: (key, the problem with a value or None, how a good value is applied).
_STEP_SCALARS: tuple[tuple[str, Callable[[Any], str | None], Callable[[Step, Any], None]], ...] = (
    ("name", _expect(str, "a string"), lambda step, v: setattr(step, "name", v)),
    ("timeout_seconds", lambda v: number_problem(v, exclusive=True),
     lambda step, v: setattr(step, "timeout_s", float(v))),
    ("continue_on_error", _expect(bool, "true or false"), lambda step, v: setattr(step, "continue_on_error", v)),
    ("retry_attempts", lambda v: number_problem(v, integer=True), lambda step, v: setattr(step, "retries", int(v))),
    ("retry_delay_ms", number_problem, lambda step, v: setattr(step, "retry_delay_s", v / 1000.0)),
    ("approval", _expect(bool, "true or false (a person approves the step first)"),
     lambda step, v: setattr(step, "approval", v)),
)

def _unknown_step_type(step_type: str) -> str:
    if step_type in UNSUPPORTED_STEP_TYPES:
        hint = UNSUPPORTED_STEP_TYPES[step_type]
        return (f"step type {step_type!r} is not supported by aikit (no tool for it{'; ' + hint if hint else ''}); "
                f"supported: {', '.join(supported_step_types())}")
    close = difflib.get_close_matches(step_type, list(STEP_TYPES), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return (f"unknown step type {step_type!r} ({hint}supported: {', '.join(supported_step_types())}; "
            "or an aikit tool name, see `aikit tools list`)")


def _load_chain(step: Step, mapped: Mapped, path: str | None, registry: ToolRegistry,
                stack: tuple[str, ...], report: Callable[[str | None, str], None]) -> None:
    base = Path(path).parent if path else Path.cwd()
    target = (base / mapped.target).resolve()
    name = mapped.names.get("mission", "mission")
    if str(target) in stack or str(target) == path:
        chain = " -> ".join([*stack, path or "", str(target)])
        report(name, f"missions include each other: {chain}")
        return
    try:
        nested = parse_mission(target, registry=registry, _stack=(*stack, path or "<text>"))
    except AikitError as exc:
        report(name, exc.message)
        return
    for problem in nested.problems:
        report(name, f"in {mapped.target}: {problem}")
    step.workflow = nested.workflow
