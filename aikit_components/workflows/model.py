"""What a workflow is, independent of where it was written (Lua ``Workflow``, a YAML mission, a
Python program). The engine (the ``engine`` package) runs these; the ``missions`` package builds
them from YAML.

A :class:`Workflow` is a set of :class:`Step` s plus how to schedule them:

- ``mode = "dag"`` (default): a step runs when everything in its ``depends_on`` has finished;
- ``mode = "sequential"``: each step depends on the one before it;
- ``mode = "parallel"``: no dependencies, at most ``max_concurrency`` at once.

Step kinds: ``tool`` (``target`` = tool name, ``params`` = its arguments), ``agent`` (``target``
= an agent name or an AgentSpec dict, ``params.input``), ``llm`` (one completion: ``params.prompt``,
``params.model``), ``workflow`` (``workflow`` = a nested Workflow, ``params`` = its inputs),
``function`` (``fn`` = a Python callable ``fn(params, ctx)``, sync or async; the Lua binding wraps
Lua functions this way), ``command`` (``params.command`` = argv list, through the process tool),
``noop``.

Values flow with ``{{...}}`` templates inside ``params`` (strings, nested): ``{{input.x}}``,
``{{steps.ID.output.FIELD}}`` (and the RustChain form ``{{ID.output.FIELD}}``), ``{{env.NAME}}``
(only names the security policy allows), ``{{config.KEY}}``, ``{{loop.item}}`` / ``{{loop.index}}``.
A template that is the whole string keeps the referenced value's type; inside text it is
formatted. A reference that cannot resolve is a validation error before anything runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

StepKind = Literal["tool", "agent", "llm", "workflow", "function", "command", "noop", "approval"]
Mode = Literal["dag", "sequential", "parallel"]
StepStatus = Literal["pending", "running", "succeeded", "failed", "skipped", "upstream_failed", "cancelled", "timed_out"]
RunStatus = Literal["pending", "running", "succeeded", "failed", "cancelled", "timed_out", "needs_approval"]

STEP_KINDS: tuple[str, ...] = ("tool", "agent", "llm", "workflow", "function", "command", "noop", "approval")
#: Where a workflow's steps may do their work (``Workflow.executor``; see ``engine/placement.py``).
EXECUTORS: tuple[str, ...] = ("local", "ray")


@dataclass
class Condition:
    """When a step runs (``Step.when``): a Python predicate ``fn(ctx) -> bool`` (Lua predicates
    are wrapped into one), or a declarative test ``{"ref": "{{steps.a.output.ok}}", "op": "eq",
    "value": true}`` with op in eq, ne, lt, le, gt, ge, in, contains, truthy, falsy."""

    fn: Callable[[Any], Any] | None = None
    ref: str | None = None
    op: str = "truthy"
    value: Any = None


@dataclass
class Loop:
    """Run a step once per item: ``over`` (a list or a ``{{...}}`` reference to one), ``range``
    (``[start, stop]`` inclusive, or ``[start, stop, step]``), or ``while_`` (a Condition checked
    before each iteration). ``max_iterations`` bounds every form; a step can end the loop early
    by returning ``{"break": true, ...}``. The step's output is the list of iteration outputs."""

    over: Any = None
    range: list[int] | None = None
    while_: Condition | None = None
    max_iterations: int = 1000


@dataclass
class Step:
    """One unit of work (see the module docstring for kinds and templates)."""

    id: str
    kind: str = "noop"
    name: str = ""
    target: Any = None  # tool name, agent name/spec, ...
    params: dict[str, Any] = field(default_factory=dict)
    depends_on: list[str] = field(default_factory=list)
    when: Condition | None = None
    loop: Loop | None = None
    fn: Callable[..., Any] | None = None
    workflow: Workflow | None = None
    timeout_s: float | None = None
    continue_on_error: bool = False
    retries: int | None = None  # None: the workflow's retry_attempts
    retry_delay_s: float | None = None  # None: the workflow's retry_delay_s
    backoff: float = 2.0  # delay multiplier per attempt (exponential backoff)
    source_line: int | None = None  # where it was declared (YAML line), for error messages
    approval: bool = False  # a person approves the step before it runs (control/step_approval.py)


@dataclass
class Workflow:
    """Steps and how to schedule them."""

    name: str
    steps: list[Step] = field(default_factory=list)
    mode: str = "dag"
    description: str = ""
    version: str = "1.0"
    max_concurrency: int | None = None  # None: unbounded
    fail_fast: bool = True
    timeout_s: float | None = None
    retry_attempts: int = 0
    retry_delay_s: float = 0.0
    inputs: dict[str, Any] = field(default_factory=dict)  # defaults for {{input.*}}
    source: str | None = None  # file it was loaded from
    budget: Any = None  # a control.budgets.BudgetLimits for each run (None: [budgets.workflow] only)
    executor: str = "local"  # where steps do their work: "local" (this process) or "ray" (engine/placement.py)


# A step that ended in one of these lets its dependents run; any other final status fails them.
PASSING_STATUSES = frozenset({"succeeded", "skipped"})


def elapsed_s(started_at: float | None, ended_at: float | None) -> float | None:
    """Seconds from ``started_at`` to ``ended_at``, or None until both are known."""
    if started_at is None or ended_at is None:
        return None
    return ended_at - started_at


@dataclass
class StepRecord:
    """What happened to one step in one run (JSON-like via ``to_dict``)."""

    id: str
    status: str = "pending"
    output: Any = None
    error: dict[str, Any] | None = None
    attempts: int = 0
    started_at: float | None = None
    ended_at: float | None = None

    @property
    def duration_s(self) -> float | None:
        return elapsed_s(self.started_at, self.ended_at)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "output": self.output, "error": self.error,
                "attempts": self.attempts, "started_at": self.started_at, "ended_at": self.ended_at,
                "duration_s": self.duration_s}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepRecord:
        return cls(data["id"], data.get("status", "pending"), data.get("output"), data.get("error"),
                   int(data.get("attempts", 0)), data.get("started_at"), data.get("ended_at"))


@dataclass
class RunRecord:
    """One run of a workflow; stored in State (scope ``workflow:<run_id>``, key ``run``) as it
    progresses, so a crashed run can be resumed without re-running finished steps."""

    run_id: str
    workflow: str
    status: str = "pending"
    steps: dict[str, StepRecord] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    started_at: float | None = None
    ended_at: float | None = None
    source: str | None = None
    budget: Any = None  # use against the run's budgets: a BudgetMeter while it runs, then its report

    @property
    def duration_s(self) -> float | None:
        return elapsed_s(self.started_at, self.ended_at)

    def budget_report(self) -> dict[str, Any] | None:
        """Use against each budget (control/budgets.py), or None for a run without a meter."""
        return self.budget.report() if hasattr(self.budget, "report") else self.budget

    def to_dict(self) -> dict[str, Any]:
        data = {"run_id": self.run_id, "workflow": self.workflow, "status": self.status, "inputs": self.inputs,
                "error": self.error, "started_at": self.started_at, "ended_at": self.ended_at,
                "duration_s": self.duration_s, "source": self.source,
                "steps": {sid: rec.to_dict() for sid, rec in self.steps.items()}}
        if self.budget is not None:
            data["budget"] = self.budget_report()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        return cls(data["run_id"], data["workflow"], data.get("status", "pending"),
                   {sid: StepRecord.from_dict(s) for sid, s in (data.get("steps") or {}).items()},
                   dict(data.get("inputs") or {}), data.get("error"), data.get("started_at"), data.get("ended_at"),
                   data.get("source"), data.get("budget"))
