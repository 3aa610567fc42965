"""Risky steps: commands, paths and URLs the security policy would refuse, found without
running anything."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from ...errors import AikitError
from ..model import Step
from .loader import MissionProblems
from .mapping import Mapped
from .params import has_template
from .parse import Mission, builtin_registry

if TYPE_CHECKING:
    from ...security import SecurityPolicy
    from ...tools import ToolRegistry

# Parameter names that hold file system paths (any tool), checked against the policy's allowed paths.
PATH_PARAMETERS = ("path", "source", "destination", "root", "repo", "database", "archive", "cwd")


def risky_steps(mission: Mission, policy: SecurityPolicy, registry: ToolRegistry | None = None,
                inputs: dict[str, Any] | None = None) -> list[str]:
    """Problems for steps the security policy would refuse (commands, paths, URLs), found
    without running anything. ``{{input.*}}`` references are filled from the mission's inputs
    (and ``inputs``); values depending on other steps are known only at run time: skipped."""
    registry = registry if registry is not None else builtin_registry()
    problems = MissionProblems()
    known = {**mission.workflow.inputs, **(inputs or {})}
    for step in mission.workflow.steps:
        mapped = mission.mapped.get(step.id)
        if mapped is None or mission.lines.get(step.id) != (step.source_line or 0):
            continue  # unmapped, or a duplicate id (reported elsewhere)
        param_lines = mission.param_lines.get(step.id, {})

        def report(key: str | None, text: str, step: Step = step, mapped: Mapped = mapped,
                   param_lines: dict[str, int] = param_lines) -> None:
            shown = mapped.names.get(key, key) if key else None
            line = param_lines.get(shown) if shown else None
            problems.add(line or step.source_line, f"parameters.{shown}: {text}" if shown else text, step.id)

        for key, text in _policy_problems(_with_inputs(step, known), policy, registry):
            report(key, text)
    return problems.sorted()


def _with_inputs(step: Step, inputs: dict[str, Any]) -> Step:
    """A copy of ``step`` whose parameters have their ``{{input.*}}`` references filled in where
    nothing else is referenced (the rest stays templated)."""
    from .. import templates

    params: dict[str, Any] = {}
    for key, value in (step.params if isinstance(step.params, dict) else {}).items():
        if has_template(value):
            try:
                template = templates.compile(value, f"params.{key}")
                if not template.problems and all(ref.root == "input" for ref in template.refs):
                    value = template.resolve(templates.TemplateContext(inputs=inputs, steps={}))
            except AikitError:
                pass
        params[key] = value
    return dataclasses.replace(step, params=params)


def _denied(exc: AikitError) -> str:
    rule = exc.details.get("rule") if isinstance(exc.details, dict) else None
    prefix = f"denied by the security policy (rule {rule})" if rule else f"refused ({exc.code})"
    return f"{prefix}: {exc.message}"


def _policy_problems(step: Step, policy: SecurityPolicy, registry: ToolRegistry) -> list[tuple[str | None, str]]:
    out: list[tuple[str | None, str]] = []
    writes = (step.kind == "tool" and isinstance(step.target, str) and step.target in registry
              and registry.get(step.target).security == "write")
    params = step.params if isinstance(step.params, dict) else {}
    argv = None
    if step.kind == "command" or (step.kind == "tool" and step.target == "run_process"):
        argv = params.get("command")
    if isinstance(argv, list) and argv and isinstance(argv[0], str) and "{{" not in argv[0]:
        # Path-like arguments are checked against the step's cwd, so only when that is known now and
        # allowed (a bad cwd is reported on its own below); templated ones are checked when it runs.
        cwd = params.get("cwd")
        known = cwd is None or (isinstance(cwd, str) and bool(cwd) and not has_template(cwd)
                                and not _check_path(policy, "cwd", cwd, False))
        args = [a if isinstance(a, str) else str(a) for a in argv[1:]] if known else []
        try:
            policy.check_command([argv[0], *(a for a in args if not has_template(a))], cwd if known else None)
        except AikitError as exc:
            out.append(("command", _denied(exc)))
    if step.kind in ("tool", "command"):
        for key in PATH_PARAMETERS:
            value = params.get(key)
            if isinstance(value, str) and value and not has_template(value):
                out += _check_path(policy, key, value, writes and key != "source")
        paths = params.get("paths")
        if isinstance(paths, list):
            for value in paths:
                if isinstance(value, str) and value and not has_template(value):
                    out += _check_path(policy, "paths", value, writes)
        url = params.get("url")
        if step.target in ("http_request", "fetch_page") and isinstance(url, str) and not has_template(url):
            try:
                policy.check_url(url)
            except AikitError as exc:
                out.append(("url", _denied(exc)))
    if step.kind == "workflow" and step.workflow is not None:
        for sub in step.workflow.steps:
            for key, text in _policy_problems(sub, policy, registry):
                out.append((None, f"nested step {sub.id!r}: {f'parameters.{key}: ' if key else ''}{text}"))
    return out


def _check_path(policy: SecurityPolicy, key: str, value: str, write: bool) -> list[tuple[str | None, str]]:
    try:
        policy.check_path(value, write=write)
    except AikitError as exc:
        return [(key, _denied(exc))]
    return []
