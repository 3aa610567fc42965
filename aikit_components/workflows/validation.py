"""Checking a workflow before it runs: the dependency graph (cycles with their path), step fields,
conditions, loops, template references (only to upstream steps, given inputs, allowed env names,
config keys) and step targets. ``validate`` and ``layers`` live here; the engine runs what passes."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..codec import lua_type_name
from ..control.step_approval import check_params as check_approval_params
from ..errors import AikitError, InvalidArgument, NotFound, ValidationError
from .model import EXECUTORS, STEP_KINDS, Condition, Loop, Step, Workflow
from .templates import LOOP_FIELDS, STEP_FIELDS, Ref, Template
from .templates import compile as compile_template

MODES = ("dag", "sequential", "parallel")
CONDITION_OPS = ("eq", "ne", "lt", "le", "gt", "ge", "in", "contains", "truthy", "falsy")
_BAD_ID = re.compile(r"[\s.{}\[\]|]")
_MISSING = object()


def run_scope(run_id: str) -> str:
    """The State scope holding a run's record."""
    return f"workflow:{run_id}"


# =========================================================================== analysis
@dataclass(slots=True)
class StepNode:
    """A checked step as the engine runs it: its effective dependencies (mode applied), the steps
    waiting on it, and its compiled templates."""

    step: Step
    index: int
    deps: list[str] = field(default_factory=list)
    dependents: list[str] = field(default_factory=list)
    params: Template | None = None
    when_ref: Template | None = None
    when_value: Template | None = None
    over: Template | None = None
    while_ref: Template | None = None
    while_value: Template | None = None
    inline: bool = False  # a noop without a predicate function: runs without a task
    nested: WorkflowPlan | None = None


@dataclass
class WorkflowPlan:
    """What :func:`analyze` found: the nodes in declaration order, every problem, and the
    topological layers."""

    workflow: Workflow
    nodes: dict[str, StepNode]
    order: list[str]
    problems: list[str]
    layers: list[list[str]] | None  # None when there is a cycle


def _label(step: Step) -> str:
    where = f" (line {step.source_line})" if step.source_line else ""
    return f"step {step.id!r}{where}"


def _suggest(name: Any, names: list[str]) -> str:
    close = difflib.get_close_matches(str(name), names, n=3) if len(names) < 5000 else []
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def _positive(value: Any, allow_zero: bool = False) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return value >= 0 if allow_zero else value > 0


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _graph(workflow: Workflow, problems: list[str]) -> tuple[dict[str, StepNode], list[str]]:
    """Nodes with effective dependencies (mode applied); problems for ids and depends_on."""
    nodes: dict[str, StepNode] = {}
    order: list[str] = []
    steps = workflow.steps if isinstance(workflow.steps, list) else list(workflow.steps or [])
    for index, step in enumerate(steps):
        if not isinstance(step, Step):
            problems.append(f"steps[{index}]: expected a Step, got {type(step).__name__}")
            continue
        sid = step.id
        if not isinstance(sid, str) or not sid:
            problems.append(f"steps[{index}]: a step needs a non-empty string id")
            continue
        if _BAD_ID.search(sid):
            problems.append(f"{_label(step)}: ids may not contain spaces, dots, brackets, braces or '|' "
                            "(they are used in {{steps.ID.output}} references)")
        if sid in nodes:
            first = nodes[sid].step
            where = f" (first declared at line {first.source_line})" if first.source_line else ""
            problems.append(f"{_label(step)}: duplicate step id{where}")
            continue
        nodes[sid] = StepNode(step, index)
        order.append(sid)
    sequential = workflow.mode == "sequential"
    previous: str | None = None
    for sid in order:
        node = nodes[sid]
        step = node.step
        wanted = step.depends_on
        if isinstance(wanted, str):
            wanted = [wanted]
        if not isinstance(wanted, (list, tuple)):
            problems.append(f"{_label(step)}: depends_on must be a list of step ids")
            wanted = []
        deps: dict[str, None] = {}
        for dep in wanted:
            if not isinstance(dep, str) or dep not in nodes:
                problems.append(f"{_label(step)}: depends on unknown step {dep!r}{_suggest(dep, order)}")
                continue
            deps[dep] = None
        if sequential and previous is not None:
            deps.setdefault(previous, None)
        node.deps = list(deps)
        for dep in node.deps:
            nodes[dep].dependents.append(sid)
        previous = sid
    return nodes, order


def _toposort(nodes: dict[str, StepNode], order: list[str]) -> tuple[list[list[str]], list[str]]:
    """Kahn's layers (declaration order within a layer) and the steps left over (cycles)."""
    indeg = {sid: len(nodes[sid].deps) for sid in order}
    current = [sid for sid in order if indeg[sid] == 0]
    result: list[list[str]] = []
    placed = 0
    while current:
        result.append(current)
        placed += len(current)
        following: list[str] = []
        for sid in current:
            for dep in nodes[sid].dependents:
                indeg[dep] -= 1
                if indeg[dep] == 0:
                    following.append(dep)
        following.sort(key=lambda s: nodes[s].index)
        current = following
    left = [sid for sid in order if indeg[sid] > 0] if placed < len(order) else []
    return result, left


def _cycles(nodes: dict[str, StepNode], left: list[str]) -> list[list[str]]:
    """Each dependency cycle among ``left`` once, in run order (each step waits for the previous)."""
    remaining = set(left)
    seen: set[str] = set()
    found: list[list[str]] = []
    for start in left:
        if start in seen:
            continue
        path: list[str] = []
        position: dict[str, int] = {}
        current: str | None = start
        while current is not None and current not in seen:
            seen.add(current)
            position[current] = len(path)
            path.append(current)
            current = next((d for d in nodes[current].deps if d in remaining), None)
        if current is not None and current in position:
            cycle = path[position[current]:]
            cycle.reverse()  # path follows "depends on"; report in run order
            first = min(range(len(cycle)), key=lambda i: nodes[cycle[i]].index)
            cycle = cycle[first:] + cycle[:first]  # start at the step declared first
            found.append(cycle + [cycle[0]])
    return found


def analyze(workflow: Workflow, components: Any = None, inputs: Mapping[str, Any] | None = None,
             provided: set[str] | None = None) -> WorkflowPlan:
    """Check ``workflow`` and compile its templates; ``provided`` names inputs a nested workflow's
    parent passes. The plan lists every problem (the engine runs a plan without any)."""
    problems: list[str] = []
    if not isinstance(workflow, Workflow):
        raise InvalidArgument(f"expected a Workflow, got {type(workflow).__name__}")
    if not isinstance(workflow.name, str) or not workflow.name:
        problems.append("workflow: a non-empty name is required")
    if workflow.mode not in MODES:
        problems.append(f"workflow: mode must be one of {', '.join(MODES)}, got {workflow.mode!r}")
    if workflow.max_concurrency is not None and (not _whole(workflow.max_concurrency) or workflow.max_concurrency < 1):
        problems.append(f"workflow: max_concurrency must be an integer >= 1 (or none), got {workflow.max_concurrency!r}")
    if workflow.timeout_s is not None and not _positive(workflow.timeout_s):
        problems.append(f"workflow: timeout_s must be a positive number of seconds, got {workflow.timeout_s!r}")
    if not _whole(workflow.retry_attempts) or workflow.retry_attempts < 0:
        problems.append(f"workflow: retry_attempts must be an integer >= 0, got {workflow.retry_attempts!r}")
    if not _positive(workflow.retry_delay_s, allow_zero=True):
        problems.append(f"workflow: retry_delay_s must be a number >= 0, got {workflow.retry_delay_s!r}")
    if not isinstance(workflow.inputs, Mapping):
        problems.append("workflow: inputs must be a table of input names to default values")
    if workflow.executor not in EXECUTORS:
        problems.append(f"workflow: executor must be one of {', '.join(repr(e) for e in EXECUTORS)}, "
                        f"got {workflow.executor!r}")

    nodes, order = _graph(workflow, problems)
    found_layers, left = _toposort(nodes, order)
    for cycle in _cycles(nodes, left):
        problems.append(f"dependency cycle: {' -> '.join(cycle)} (each step waits for the one before it)")
    position = {sid: i for i, sid in enumerate(s for layer in found_layers for s in layer)} if not left else None

    known_inputs = set(workflow.inputs) if isinstance(workflow.inputs, Mapping) else set()
    known_inputs |= set(inputs or ())
    known_inputs |= provided or set()
    policy = getattr(components, "policy", None)
    config = getattr(components, "config", None)
    tools = None
    if components is not None and any(n.step.kind in ("tool", "command") for n in nodes.values()):
        tools = components.tools

    for sid in order:
        node = nodes[sid]
        step = node.step
        label = _label(step)
        _check_step_fields(step, label, problems)
        node.params = compile_template(step.params, "params")
        refs: list[tuple[Ref, bool]] = [(r, False) for r in node.params.refs]  # (ref, loop refs allowed)
        template_problems = list(node.params.problems)
        loop_allowed = step.loop is not None
        if step.when is not None and _check_condition(step.when, f"{label}: when", problems):
            node.when_ref, node.when_value = _condition_templates(step.when, "when")
            for t in (node.when_ref, node.when_value):
                if t is not None:
                    template_problems += t.problems
                    refs += [(r, False) for r in t.refs]
        if step.loop is not None and _check_loop(step.loop, label, problems):
            loop = step.loop
            if isinstance(loop.over, str):
                node.over = compile_template(_as_reference(loop.over), "loop.over")
                template_problems += node.over.problems
                refs += [(r, False) for r in node.over.refs]
            if loop.while_ is not None:
                node.while_ref, node.while_value = _condition_templates(loop.while_, "loop.while")
                for t in (node.while_ref, node.while_value):
                    if t is not None:
                        template_problems += t.problems
                        refs += [(r, True) for r in t.refs]
        for text in template_problems:
            problems.append(f"{label}: {text}")
        refs = [(r, allowed or loop_allowed and not r.param.startswith(("loop.over", "when"))) for r, allowed in refs]
        _check_refs(node, nodes, refs, label, position, known_inputs, policy, config, components, problems)
        _check_kind(node, label, components, tools, problems)
        node.inline = (step.kind == "noop" and step.loop is None and not step.approval
                       and (step.when is None or step.when.fn is None))
    return WorkflowPlan(workflow, nodes, order, problems, None if left else found_layers)


def _check_step_fields(step: Step, label: str, problems: list[str]) -> None:
    if step.kind not in STEP_KINDS:
        problems.append(f"{label}: unknown kind {step.kind!r}; kinds: {', '.join(STEP_KINDS)}")
    if step.timeout_s is not None and not _positive(step.timeout_s):
        problems.append(f"{label}: timeout_s must be a positive number of seconds, got {step.timeout_s!r}")
    if step.retries is not None and (not _whole(step.retries) or step.retries < 0):
        problems.append(f"{label}: retries must be an integer >= 0, got {step.retries!r}")
    if step.retry_delay_s is not None and not _positive(step.retry_delay_s, allow_zero=True):
        problems.append(f"{label}: retry_delay_s must be a number >= 0, got {step.retry_delay_s!r}")
    if not _positive(step.backoff):
        problems.append(f"{label}: backoff must be a positive number (1 = constant delay), got {step.backoff!r}")
    if not isinstance(step.params, dict):
        problems.append(f"{label}: params must be a table, got {lua_type_name(step.params)}")


def _as_reference(text: str) -> str:
    """A condition's ``ref`` / a loop's ``over`` may be written without braces."""
    return text if "{{" in text else "{{" + text.strip() + "}}"


def _condition_templates(cond: Condition, where: str) -> tuple[Template | None, Template | None]:
    if cond.fn is not None:
        return None, None
    ref = compile_template(_as_reference(cond.ref), f"{where}.ref") if isinstance(cond.ref, str) else None
    value = compile_template(cond.value, f"{where}.value")
    return ref, (None if value.static and not value.problems else value)


def _check_condition(cond: Any, where: str, problems: list[str]) -> bool:
    if not isinstance(cond, Condition):
        problems.append(f"{where}: expected a Condition, got {type(cond).__name__}")
        return False
    ok = True
    if cond.fn is None and cond.ref is None:
        problems.append(f"{where}: give a predicate (fn) or a reference to test (ref)")
        ok = False
    if cond.fn is not None and not callable(cond.fn):
        problems.append(f"{where}: fn must be callable")
        ok = False
    if cond.fn is None:
        if cond.ref is not None and not isinstance(cond.ref, str):
            problems.append(f"{where}: ref must be a string such as \"{{{{steps.a.output.ok}}}}\"")
            ok = False
        if cond.op not in CONDITION_OPS:
            problems.append(f"{where}: unknown op {cond.op!r}; ops: {', '.join(CONDITION_OPS)}")
            ok = False
    return ok


def _check_loop(loop: Any, label: str, problems: list[str]) -> bool:
    where = f"{label}: loop"
    if not isinstance(loop, Loop):
        problems.append(f"{where}: expected a Loop, got {type(loop).__name__}")
        return False
    forms = [name for name, value in (("over", loop.over), ("range", loop.range), ("while", loop.while_))
             if value is not None]
    ok = True
    if len(forms) != 1:
        problems.append(f"{where}: give exactly one of over, range or while (got {', '.join(forms) or 'none'})")
        ok = False
    if not _whole(loop.max_iterations) or loop.max_iterations < 1:
        problems.append(f"{where}: max_iterations must be an integer >= 1, got {loop.max_iterations!r}")
        return False
    if loop.range is not None:
        bounds = loop.range
        if (not isinstance(bounds, (list, tuple)) or len(bounds) not in (2, 3) or not all(_whole(b) for b in bounds)
                or (len(bounds) == 3 and bounds[2] == 0)):
            problems.append(f"{where}: range must be [start, stop] or [start, stop, step] (integers, step not 0)")
            ok = False
        elif len(range_items(bounds)) > loop.max_iterations:
            problems.append(f"{where}: range {list(bounds)} has {len(range_items(bounds))} items, more than "
                            f"max_iterations ({loop.max_iterations})")
            ok = False
    if loop.over is not None and not isinstance(loop.over, str):
        if not isinstance(loop.over, (list, tuple, dict)):
            problems.append(f"{where}: over must be a list or a {{{{...}}}} reference to one")
            ok = False
        elif len(loop.over) > loop.max_iterations:
            problems.append(f"{where}: over has {len(loop.over)} items, more than max_iterations ({loop.max_iterations})")
            ok = False
    if loop.while_ is not None and not _check_condition(loop.while_, f"{where}.while", problems):
        ok = False
    return ok


def range_items(bounds: Any) -> range:
    """The items of a loop's inclusive ``[start, stop]`` or ``[start, stop, step]`` range."""
    start, stop = bounds[0], bounds[1]
    step = bounds[2] if len(bounds) == 3 else 1
    return range(start, stop + (1 if step > 0 else -1), step)


def _check_refs(node: StepNode, nodes: dict[str, StepNode], refs: list[tuple[Ref, bool]], label: str,
                position: dict[str, int] | None, known_inputs: set[str], policy: Any, config: Any,
                components: Any, problems: list[str]) -> None:
    if not refs:
        return
    sid = node.step.id
    direct = set(node.deps)
    ancestors: set[str] | None = None
    far = [r.step for r, _ in refs if r.root == "steps" and r.step in nodes and r.step != sid and r.step not in direct]
    if far:
        ancestors = _ancestors(node, nodes, position, min(position[t] for t in far) if position is not None else 0)
    for ref, loop_ok in refs:
        where = f"{label}: {ref.param}: {ref}"
        root = ref.root
        if root == "steps":
            target = ref.step
            if target not in nodes:
                problems.append(f"{where} refers to unknown step {target!r}{_suggest(target, list(nodes))}")
                continue
            if target == sid:
                problems.append(f"{where} refers to the step itself")
                continue
            if not ref.path or ref.path[0] not in STEP_FIELDS:
                problems.append(f"{where}: say which field of step {target!r}: {', '.join(STEP_FIELDS)}")
                continue
            if target in direct or ancestors is None:
                continue
            if target not in ancestors:
                problems.append(f"{where}: step {target!r} is not upstream of {sid!r}; add it to depends_on "
                                "(a step may only use results of steps it depends on, directly or not)")
        elif root == "input":
            name = ref.path[0]
            if not ref.has_default and name not in known_inputs:
                given = ", ".join(sorted(map(str, known_inputs))) or "none"
                problems.append(f"{where}: input {name!r} is not given and has no default (known inputs: {given}); "
                                "pass it, declare a default in the workflow's inputs, or add '| default: VALUE'")
        elif root == "env":
            if components is None:
                continue
            name = str(ref.path[0])
            if len(ref.path) > 1:
                problems.append(f"{where}: an environment variable has no fields")
            elif policy is None or not policy.check_env(name):
                problems.append(f"{where}: environment variable {name!r} is not in security.env_allowlist; add it "
                                "there (or to AIKIT_ENV_ALLOWLIST) to let workflows read it")
            elif not ref.has_default:
                import os

                if os.environ.get(name) is None:
                    problems.append(f"{where}: environment variable {name!r} is not set (set it, or add "
                                    "'| default: VALUE')")
        elif root == "config":
            if components is None or config is None:
                continue
            dotted = ".".join(str(p) for p in ref.path)
            value = config.get(dotted, _MISSING)
            if (value is _MISSING or value is None) and not ref.has_default:
                problems.append(f"{where}: config key {dotted!r} is not set")
            elif type(value).__name__ == "Secret":
                problems.append(f"{where}: config key {dotted!r} is a secret; templates do not reveal secrets")
        elif root == "loop":
            if not loop_ok:
                problems.append(f"{where}: loop.* is only available inside a step with a loop "
                                "(in its params or its while condition)")
            elif ref.path[0] not in LOOP_FIELDS:
                problems.append(f"{where}: loops have no field {ref.path[0]!r} (fields: {', '.join(LOOP_FIELDS)})")


def _ancestors(node: StepNode, nodes: dict[str, StepNode], position: dict[str, int] | None, floor: int) -> set[str]:
    """Upstream steps of ``node`` whose topological position is >= ``floor`` (a step placed
    earlier than ``floor`` cannot lead to a target placed at ``floor`` or later). Without a
    topological order (the graph has a cycle), every upstream step."""
    seen: set[str] = set()
    stack = list(node.deps)
    while stack:
        sid = stack.pop()
        if sid in seen or (position is not None and position[sid] < floor):
            continue
        seen.add(sid)
        stack.extend(nodes[sid].deps)
    return seen


FALLBACK_PROBLEM = "params.fallback must be a list of model names (tried in turn when the model before is unavailable)"


def _check_kind(node: StepNode, label: str, components: Any, tools: Any, problems: list[str]) -> None:
    step = node.step
    kind = step.kind
    params = step.params if isinstance(step.params, dict) else {}
    if kind == "tool":
        if not isinstance(step.target, str) or not step.target:
            problems.append(f"{label}: a tool step needs target = the tool's name")
        elif tools is not None:
            if step.target not in tools:
                names = [t.name for t in tools.list()]
                problems.append(f"{label}: no tool named {step.target!r}{_suggest(step.target, names)}")
            else:
                schema = tools.get(step.target).parameters
                props = schema.get("properties", {})
                for name in schema.get("required", []):
                    if name not in params:
                        problems.append(f"{label}: tool {step.target!r} needs parameter {name!r}")
                if schema.get("additionalProperties") is False:
                    for name in params:
                        if name not in props:
                            problems.append(f"{label}: tool {step.target!r} has no parameter {name!r}"
                                            f"{_suggest(name, list(props))}")
    elif kind == "command":
        command = params.get("command")
        if command is None:
            problems.append(f"{label}: a command step needs params.command (an argv list such as [\"ls\", \"-l\"])")
        elif not isinstance(command, (str, list, tuple)) or not command:
            problems.append(f"{label}: params.command must be a non-empty argv list or string")
    elif kind == "agent":
        if step.target is None:
            problems.append(f"{label}: an agent step needs target = an agent spec or the name of an [agents.NAME] table")
        else:
            try:
                spec = agent_spec(step.target, getattr(components, "config", None), strict=components is not None)
                if spec is not None:
                    spec.validate()
            except AikitError as exc:
                problems.append(f"{label}: {exc.message}")
            except TypeError as exc:
                problems.append(f"{label}: bad agent spec: {exc}")
        if "input" not in params:
            problems.append(f"{label}: an agent step needs params.input (the task for the agent)")
    elif kind == "llm":
        if "prompt" not in params:
            problems.append(f"{label}: an llm step needs params.prompt")
        fallback = params.get("fallback", [])
        if isinstance(fallback, str) and "{{" in fallback:  # a template of a list: checked when it resolves
            fallback = []
        elif not isinstance(fallback, list) or not all(isinstance(m, str) for m in fallback):
            problems.append(f"{label}: {FALLBACK_PROBLEM}")
            fallback = []
        for model in [params.get("model"), *fallback]:
            if components is not None and isinstance(model, str) and "{{" not in model:
                try:
                    components.models.expand(model)
                except AikitError as exc:
                    problems.append(f"{label}: {exc.message}")
    elif kind == "workflow":
        nested = step.workflow
        if not isinstance(nested, Workflow):
            problems.append(f"{label}: a workflow step needs workflow = a nested Workflow")
        else:
            sub = analyze(nested, components, None, set(params))
            node.nested = sub
            problems.extend(f"{label} > workflow {nested.name!r}: {p}" for p in sub.problems)
    elif kind == "approval":
        problems.extend(f"{label}: {p}" for p in check_approval_params(step.params))
    elif kind == "function" and not callable(step.fn):
        problems.append(f"{label}: a function step needs fn = a callable fn(params, ctx)")


def agent_spec(target: Any, config: Any, strict: bool = True) -> Any:
    """The AgentSpec an agent step's ``target`` names: a spec, a table of its fields or the name
    of an ``[agents.NAME]`` config table (None for an unknown name when not ``strict``)."""
    from ..agents import AgentSpec

    if isinstance(target, AgentSpec):
        return target
    if isinstance(target, Mapping):
        return AgentSpec(**dict(target))
    if isinstance(target, str) and target:
        table = config.get(("agents", target), None) if config is not None else None
        if isinstance(table, Mapping):
            return AgentSpec(**{"name": target, **dict(table)})
        if not strict:
            return None
        raise NotFound(f"no agent named {target!r}: define [agents.{target}] in aikit.toml (model, system, tools, ...) "
                       "or give the spec itself", details={"agent": target})
    raise InvalidArgument(f"agent target must be an AgentSpec, a table of its fields or a name, got {type(target).__name__}")


def validate(workflow: Workflow, *, components: Any = None, inputs: Mapping[str, Any] | None = None) -> list[str]:
    """Every problem with ``workflow`` (empty when it can run). With ``components``, tool names,
    ``{{env.X}}`` (security policy, set) and ``{{config.X}}`` are checked too."""
    return analyze(workflow, components, inputs).problems


def layers(workflow: Workflow) -> list[list[str]]:
    """Step ids in topological layers (every step after all it depends on; a layer's steps can run
    in parallel), declaration order within a layer. Raises ValidationError on unknown
    dependencies or cycles."""
    problems: list[str] = []
    nodes, order = _graph(workflow, problems)
    found, left = _toposort(nodes, order)
    for cycle in _cycles(nodes, left):
        problems.append(f"dependency cycle: {' -> '.join(cycle)} (each step waits for the one before it)")
    if problems:
        raise ValidationError(f"workflow {workflow.name!r} cannot be ordered:", problems)
    return found

