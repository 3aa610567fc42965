"""Validating a mission (every problem at once, in the mission's terms) and loading it."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

from ...errors import ValidationError
from ..model import Workflow
from ..validation import validate
from .checks import risky_steps
from .parse import Mission, parse_mission

if TYPE_CHECKING:
    from ...security import SecurityPolicy
    from ...tools import ToolRegistry


def validate_mission(source: str | os.PathLike[str] | Mission, *, components: Any = None,
                     policy: SecurityPolicy | None = None, registry: ToolRegistry | None = None,
                     inputs: dict[str, Any] | None = None) -> list[str]:
    """Every problem of a mission at once (empty: it can run): parse and field errors, step
    types, parameters, the engine's checks (ids, dependencies, cycles, ``{{...}}`` references)
    and risky steps under ``policy`` (default: the components' policy, else the default one)."""
    if registry is None and components is not None:
        registry = components.tools
    mission = source if isinstance(source, Mission) else parse_mission(source, registry=registry)
    problems = list(mission.problems)
    workflow = mission.workflow
    if workflow.steps:
        for problem in validate(workflow, components=components, inputs=inputs):
            if not _reported(problem, mission):
                problems.append(_with_line(problem, mission))
    if policy is None:
        policy = components.policy if components is not None else _default_policy()
    problems += risky_steps(mission, policy, registry, inputs)
    return _by_line(_dedupe(problems))


_ENGINE_STEP = re.compile(r"^step '(?P<id>[^']+)'(?: \(line (?P<line>\d+)\))?: (?:params\.(?P<param>[^\s.:\[]+))?")
_CYCLE = re.compile(r"^dependency cycle: (?P<first>[^\s]+) -> ")


def _with_line(problem: str, mission: Mission) -> str:
    """An engine problem in the mission's terms: the YAML line of the step (or of the parameter
    it names) and the parameter's name as written in the mission (``parameters.input_file``
    rather than ``params.path``); a cycle gets the line of its first step."""
    match = _ENGINE_STEP.match(problem)
    if match:
        sid, param = match.group("id"), match.group("param")
        line = mission.lines.get(sid)
        if match.group("line") and int(match.group("line")) != line:
            return problem  # a later step with a duplicate id: the engine's line is the right one
        rest = problem[match.end():]
        if param is not None:
            mapped = mission.mapped.get(sid)
            shown = mapped.names.get(param, param) if mapped is not None else param
            line = mission.param_lines.get(sid, {}).get(shown) or line
            rest = f"parameters.{shown}{rest}"
        where = f" (line {line})" if line else ""
        return f"step {sid!r}{where}: {rest}"
    match = _CYCLE.match(problem)
    if match and match.group("first") in mission.lines:
        return f"line {mission.lines[match.group('first')]}: {problem}"
    return problem


_ANY_LINE = re.compile(r"^(?:step '[^']*' )?\(?line (\d+)\)?")


def _by_line(problems: list[str]) -> list[str]:
    """Problems in file order (those without a line first), stable."""
    def key(text: str) -> int:
        match = _ANY_LINE.match(text)
        return int(match.group(1)) if match else 0
    return sorted(problems, key=key)


# What the engine says about a step's parameters that the mission parser has already said, with
# the mission's own parameter names and YAML lines.
_ALREADY_CHECKED = re.compile(r"^step '([^']+)'[^:]*: (tool '[^']+' (needs|has no) parameter |no tool named |"
                              r"an llm step needs params\.prompt|an agent step needs params\.input|"
                              r"a command step needs params\.command|params\.command must be)")


def _reported(problem: str, mission: Mission) -> bool:
    match = _ALREADY_CHECKED.match(problem)
    return bool(match) and match.group(1) in mission.mapped


def _dedupe(problems: list[str]) -> list[str]:
    seen: set[str] = set()
    return [p for p in problems if not (p in seen or seen.add(p))]


def _default_policy() -> SecurityPolicy:
    from ...config import Config
    from ...security import SecurityPolicy

    return SecurityPolicy.from_config(Config.load())


def load_mission(path_or_text: str | os.PathLike[str], *, policy: SecurityPolicy | None = None,
                 components: Any = None, inputs: dict[str, Any] | None = None) -> Workflow:
    """The :class:`Workflow` of a mission file (or YAML text); raises ValidationError listing
    every problem :func:`validate_mission` finds."""
    registry = components.tools if components is not None else None
    mission = parse_mission(path_or_text, registry=registry)
    problems = validate_mission(mission, components=components, policy=policy, inputs=inputs)
    if problems:
        where = mission.workflow.source or "mission"
        raise ValidationError(f"invalid mission {where}: {len(problems)} problem(s)", problems,
                              details={"source": mission.workflow.source})
    return mission.workflow
