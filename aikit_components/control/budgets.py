"""Budgets: limits on what one agent run, one workflow (or mission) run and the whole session may use.

A budget is a table ``{tokens = N, cost = USD, tool_calls = N, wall_time_s = S, per_tool = {name = N}}``
(:class:`BudgetLimits`; every field optional). Where they come from:

- ``[budgets.session]``, ``[budgets.agent]`` and ``[budgets.workflow]`` in aikit.toml (the agent
  and workflow tables are defaults for every run);
- ``Agent.new{budget = {...}}``, ``Workflow.new{budget = {...}}``, a mission's ``config.budget``,
  ``Session.budget{...}`` (each field given replaces the configured one).

Each run has a :class:`BudgetMeter` whose parent is the session's (a workflow's agent steps charge
the agent's run, the workflow's run and the session). The current meter is a context variable,
set by :class:`BudgetInterceptor` for an agent run and by the workflow runner for a workflow run,
so every tool call and model call made inside (in any task it starts) is charged to it.
Tokens and cost are charged after each model call (cost from ``[models.prices]``:
``"provider/model" = {input_per_mtok = USD, output_per_mtok = USD}``); tool calls and the wall time
before each call. Reaching 80 % of a limit publishes ``budget.warning`` once; going past it raises
:class:`~aikit_components.errors.BudgetExceeded` (code ``budget_exceeded``, naming the budget, its
limit and its use) and publishes ``budget.exceeded``, which the audit ledger records; the run stops.

:class:`BudgetInterceptor` is the one place budgets are enforced: it also charges each tool call to
its caller's budget (``ToolContext.budget``, from ``[security] max_tool_calls`` and
``max_wall_time_s``, renewed for each cell or script), whose error an agent hands to its model.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..codec import lua_type_name
from ..errors import AikitError, BudgetExceeded, InvalidArgument
from ..operations.interceptor import POLICY, Interceptor
from ..operations.operation import Decision, Operation, OperationKind

BUDGET_NAMES = ("tokens", "cost", "tool_calls", "wall_time_s", "per_tool")
WARN_AT = 0.8
SCOPES = ("session", "agent", "workflow")

#: The meter of the run being executed (None outside any run: the session's applies).
CURRENT_METER: contextvars.ContextVar[BudgetMeter | None] = contextvars.ContextVar("aikit_budget_meter", default=None)


def _limit(value: Any, name: str, where: str, whole: bool) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgument(f"{where}: budget {name} must be a number, got {lua_type_name(value)}"
                              + (f" {value!r}" if isinstance(value, str) else ""),
                              details={"budget": name})
    if value != value or value < 0:
        raise InvalidArgument(f"{where}: budget {name} must be a number >= 0, got {value!r}", details={"budget": name})
    if whole:
        if value != int(value):
            raise InvalidArgument(f"{where}: budget {name} must be a whole number, got {value!r}",
                                  details={"budget": name})
        return int(value)
    return float(value)


@dataclass(frozen=True)
class BudgetLimits:
    """The limits of one budget (``None``: no limit)."""

    tokens: int | None = None
    cost: float | None = None
    tool_calls: int | None = None
    wall_time_s: float | None = None
    per_tool: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def parse(cls, value: Any, where: str = "budget") -> BudgetLimits:
        """Check a budget table (Lua's or a TOML one); errors say what to fix, in Lua's words."""
        if value is None:
            return cls()
        if isinstance(value, BudgetLimits):
            return value
        if not isinstance(value, Mapping):
            raise InvalidArgument(f"{where}: a budget must be a table {{{', '.join(BUDGET_NAMES)}}}, "
                                  f"got {lua_type_name(value)}")
        unknown = sorted(str(k) for k in value if k not in BUDGET_NAMES)
        if unknown:
            raise InvalidArgument(f"{where}: unknown budget name(s) {', '.join(unknown)} "
                                  f"(known: {', '.join(BUDGET_NAMES)})", details={"unknown": unknown})
        per_tool_raw = value.get("per_tool")
        per_tool: dict[str, int] = {}
        if per_tool_raw is not None:
            if not isinstance(per_tool_raw, Mapping):
                raise InvalidArgument(f"{where}: budget per_tool must be a table {{tool_name = N}}, "
                                      f"got {lua_type_name(per_tool_raw)}")
            for tool, count in per_tool_raw.items():
                per_tool[str(tool)] = int(_limit(count, f"per_tool.{tool}", where, whole=True))
        return cls(
            tokens=None if value.get("tokens") is None else int(_limit(value["tokens"], "tokens", where, True)),
            cost=None if value.get("cost") is None else float(_limit(value["cost"], "cost", where, False)),
            tool_calls=(None if value.get("tool_calls") is None
                        else int(_limit(value["tool_calls"], "tool_calls", where, True))),
            wall_time_s=(None if value.get("wall_time_s") is None
                         else float(_limit(value["wall_time_s"], "wall_time_s", where, False))),
            per_tool=per_tool,
        )

    def over(self, base: BudgetLimits) -> BudgetLimits:
        """These limits where set, ``base``'s elsewhere (a run's budget over the configured default)."""
        return BudgetLimits(
            tokens=self.tokens if self.tokens is not None else base.tokens,
            cost=self.cost if self.cost is not None else base.cost,
            tool_calls=self.tool_calls if self.tool_calls is not None else base.tool_calls,
            wall_time_s=self.wall_time_s if self.wall_time_s is not None else base.wall_time_s,
            per_tool={**base.per_tool, **self.per_tool},
        )

    @functools.cached_property  # the limits are frozen; read for every tool call (BudgetMeter.limited)
    def any(self) -> bool:
        return (self.tokens is not None or self.cost is not None or self.tool_calls is not None
                or self.wall_time_s is not None or bool(self.per_tool))

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {k: getattr(self, k) for k in BUDGET_NAMES[:4] if getattr(self, k) is not None}
        if self.per_tool:
            data["per_tool"] = dict(self.per_tool)
        return data


def configured_limits(config: Any, scope: str) -> BudgetLimits:
    """``[budgets.<scope>]`` of aikit.toml (an error names the table to fix)."""
    if config is None:
        return BudgetLimits()
    table = config.get(f"budgets.{scope}", None)
    return BudgetLimits.parse(table, f"[budgets.{scope}] in aikit.toml") if table else BudgetLimits()


def check_config(config: Any) -> None:
    """Check the ``[budgets]`` section (unknown scopes and bad limits are errors)."""
    section = config.get("budgets", None) if config is not None else None
    if not section:
        return
    unknown = sorted(str(k) for k in section if k not in SCOPES)
    if unknown:
        raise InvalidArgument(f"[budgets] in aikit.toml: unknown table(s) {', '.join(unknown)} "
                              f"(known: {', '.join(SCOPES)})")
    for scope in SCOPES:
        configured_limits(config, scope)


class Prices:
    """Cost of model usage from ``[models.prices]``: ``{"provider/model": {input_per_mtok,
    output_per_mtok}}`` (USD per million tokens); a model without a price costs 0."""

    def __init__(self, prices: Mapping[str, Any] | None) -> None:
        self.prices = dict(prices or {})

    def cost(self, model: str, input_tokens: int, output_tokens: int) -> float:
        price = self.prices.get(model)
        if price is None and "/" in model:
            price = self.prices.get(model.split("/", 1)[1])
        if not isinstance(price, Mapping):
            return 0.0
        return (input_tokens * float(price.get("input_per_mtok", 0.0))
                + output_tokens * float(price.get("output_per_mtok", 0.0))) / 1_000_000


class RunBudgetExceeded(BudgetExceeded):
    """A run's or the session's budget is used up: the run stops (an agent does not hand this
    one to its model as a tool error, as it does the security policy's ``max_tool_calls``)."""


class BudgetMeter:
    """What one scope (``"agent 'writer'"``, ``"workflow 'etl'"``, ``"session"``) has used
    against its limits; charges go up to ``parent`` too."""

    def __init__(self, limits: BudgetLimits, scope: str, *, parent: BudgetMeter | None = None,
                 events: Any = None, prices: Prices | None = None) -> None:
        self.limits = limits
        self.scope = scope
        self.parent = parent
        self.events = events
        self.prices = prices or (parent.prices if parent is not None else Prices(None))
        self.tokens = 0
        self.cost = 0.0
        self.tool_calls = 0
        self.per_tool: dict[str, int] = {}
        self.started = time.monotonic()
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    @property
    def limited(self) -> bool:
        """Whether this meter or one above it has any limit."""
        return self.limits.any or (self.parent is not None and self.parent.limited)

    def wall_time_s(self) -> float:
        return time.monotonic() - self.started

    # -- charging --------------------------------------------------------------------------------
    def charge_tool_call(self, name: str) -> None:
        """Count one call of tool ``name`` (before it runs); raise when a limit is passed."""
        self.check_time(f"before calling {name!r}")
        with self._lock:
            self.tool_calls += 1
            self.per_tool[name] = self.per_tool.get(name, 0) + 1
            tool_calls, count = self.tool_calls, self.per_tool[name]
        self._compare("tool_calls", self.limits.tool_calls, tool_calls, f"before calling {name!r}")
        self._compare(f"per_tool.{name}", self.limits.per_tool.get(name), count, f"before calling {name!r}")
        if self.parent is not None:
            self.parent.charge_tool_call(name)

    def charge_model(self, model: str, input_tokens: int, output_tokens: int) -> None:
        """Count one model call's tokens and cost (after it answered); raise when a limit is passed."""
        cost = self.prices.cost(model, input_tokens, output_tokens)
        self._charge_usage(input_tokens + output_tokens, cost, f"after a call of model {model!r}")

    def _charge_usage(self, tokens: int, cost: float, when: str) -> None:
        with self._lock:
            self.tokens += tokens
            self.cost += cost
            used_tokens, used_cost = self.tokens, self.cost
        try:
            self._compare("tokens", self.limits.tokens, used_tokens, when)
            self._compare("cost", self.limits.cost, used_cost, when)
        finally:
            if self.parent is not None:
                self.parent._charge_usage(tokens, cost, when)

    def check(self, when: str) -> None:
        """Raise when a limit is already used up (before a model call: its tokens are not known
        yet, but a run out of tokens must not ask for more)."""
        self.check_time(when)
        for name, limit, used in (("tokens", self.limits.tokens, self.tokens), ("cost", self.limits.cost, self.cost)):
            if limit is not None and used >= limit:
                raise self._exceeded(name, limit, used, when)
        if self.parent is not None:
            self.parent.check(when)

    def check_time(self, when: str) -> None:
        self._compare("wall_time_s", self.limits.wall_time_s, self.wall_time_s(), when)

    def _compare(self, name: str, limit: float | None, used: float, when: str) -> None:
        if limit is None:
            return
        if used > limit:
            raise self._exceeded(name, limit, used, when)
        if used >= WARN_AT * limit and name not in self._warned:
            self._warned.add(name)
            self._publish("budget.warning", name, limit, used)

    def _exceeded(self, name: str, limit: float, used: float, when: str) -> BudgetExceeded:
        shown_used = round(used, 6) if isinstance(used, float) else used
        self._publish("budget.exceeded", name, limit, shown_used)
        unit = {"cost": " USD", "wall_time_s": " s"}.get(name, "")
        return RunBudgetExceeded(
            f"{self.scope}: budget {name} exceeded {when}: limit {limit:g}{unit}, used {shown_used:g}{unit}; "
            f"raise it in the budget table (budget = {{{name.split('.')[0]} = ...}}) or in [budgets] of aikit.toml",
            details={"budget": name, "limit": limit, "used": shown_used, "scope": self.scope})

    def _publish(self, topic: str, name: str, limit: float, used: float) -> None:
        if self.events is not None:
            self.events.publish(topic, {"scope": self.scope, "budget": name, "limit": limit, "used": used},
                                source="budgets")

    # -- reporting -------------------------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        """Use against each budget: ``{tokens = {used, limit}, cost = ..., per_tool = {name = {used, limit}}}``
        (``limit`` absent when there is none)."""
        def row(used: Any, limit: Any) -> dict[str, Any]:
            return {"used": used} if limit is None else {"used": used, "limit": limit}

        tools = set(self.per_tool) | set(self.limits.per_tool)
        return {
            "scope": self.scope,
            "tokens": row(self.tokens, self.limits.tokens),
            "cost": row(round(self.cost, 6), self.limits.cost),
            "tool_calls": row(self.tool_calls, self.limits.tool_calls),
            "wall_time_s": row(round(self.wall_time_s(), 3), self.limits.wall_time_s),
            "per_tool": {name: row(self.per_tool.get(name, 0), self.limits.per_tool.get(name)) for name in sorted(tools)},
        }


class Budgets:
    """The process's budgets: the session's meter, and new meters for runs."""

    def __init__(self, config: Any = None, events: Any = None, prices: Mapping[str, Any] | None = None) -> None:
        check_config(config)
        self.config = config
        self.events = events
        self.prices = Prices(prices if prices is not None else (config.get("models.prices", None) if config else None))
        self.session = BudgetMeter(configured_limits(config, "session"), "session", events=events, prices=self.prices)

    def set_session_limits(self, limits: BudgetLimits) -> None:
        """Replace the session's limits (``Session.budget{...}``); what was used so far stays."""
        self.session.limits = limits.over(configured_limits(self.config, "session"))

    def current(self) -> BudgetMeter:
        """The meter that charges now: the run's, else the session's."""
        return CURRENT_METER.get() or self.session

    def run_meter(self, scope: str, kind: str, limits: BudgetLimits | None) -> BudgetMeter:
        """A meter for a new run of ``kind`` (``agent`` or ``workflow``) inside the current one."""
        merged = (limits or BudgetLimits()).over(configured_limits(self.config, kind))
        return BudgetMeter(merged, scope, parent=self.current(), events=self.events, prices=self.prices)

    @contextlib.contextmanager
    def running(self, meter: BudgetMeter) -> Iterator[BudgetMeter]:
        """Make ``meter`` the current one while the block runs."""
        token = CURRENT_METER.set(meter)
        try:
            yield meter
        finally:
            CURRENT_METER.reset(token)


_RUN_KINDS = frozenset({"agent"})
_CHARGED_KINDS = frozenset({"tool", "llm"})


def caller_budget(op: Operation) -> Any:
    """The budget of the tool context ``op`` runs in (``ToolContext.budget``: ``[security]
    max_tool_calls`` and ``max_wall_time_s`` for one cell, script or run), when it has a limit."""
    budget = getattr(op.context, "budget", None)
    if budget is None or (budget.max_tool_calls is None and budget.max_wall_time_s is None):
        return None
    return budget


class BudgetInterceptor(Interceptor):
    """Every budget of an operation, in one place: a tool call is charged to its caller's budget
    (:func:`caller_budget`, whose error names ``security.max_tool_calls`` and which an agent hands
    to its model as a tool error) and to the current meter (the run's, the session's; a
    :class:`RunBudgetExceeded` stops the run); a model call is checked before and charged after;
    each agent run gets its own meter (limits: the agent's ``budget`` over ``[budgets.agent]``).
    Joins an operation only when some budget applies, so without budgets it costs nothing; for
    tool calls it only guards (``decides`` False: the pipeline's fast path). ``budgets``: the
    process's (default: one without configured limits)."""

    order = POLICY
    name = "budgets"

    def __init__(self, budgets: Budgets | None = None) -> None:
        self.budgets = budgets if budgets is not None else Budgets()

    def wants_kind(self, kind: OperationKind) -> bool | None:
        if kind.name == "tool":  # its guard's before() tests the budgets itself: no wants() call per tool call
            return True
        return None if kind.name in _CHARGED_KINDS or kind.name in _RUN_KINDS else False

    def for_kind(self, kind: OperationKind) -> Interceptor:
        if kind.name != "tool":
            return self
        guard = _ToolCallCharge(self.budgets)  # a tool call is charged before it runs; nothing after
        guard.pipelines = self.pipelines
        guard.decides, guard.has_after, guard.has_notifications, guard.has_started = False, False, False, False
        return guard

    def wants(self, op: Operation) -> bool:
        kind = op.kind.name
        if kind in _RUN_KINDS:
            agent = op.meta.get("agent")
            return (getattr(agent, "budget", None) is not None or self.budgets.current().limited
                    or configured_limits(self.budgets.config, "agent").any)
        if kind == "tool" and caller_budget(op) is not None:
            return True
        return self.budgets.current().limited

    def before(self, op: Operation) -> Decision | None:
        kind = op.kind.name
        if kind == "agent":
            agent = op.meta.get("agent")
            meter = self.budgets.run_meter(f"agent {op.name!r}", "agent", getattr(agent, "budget", None))
            op.meta["budget_meter"] = meter
            op.meta["budget_token"] = CURRENT_METER.set(meter)
            if agent is not None:
                agent.budget_meter = meter  # agent:usage() shows the last run's use
        elif kind == "tool":
            self._charge_tool_call(op)
        else:
            self.budgets.current().check(f"before a call of model {op.name!r}")
        return None

    def _charge_tool_call(self, op: Operation) -> None:
        """Charge a tool call to its caller's budget and to the current run's meter."""
        budget = caller_budget(op)
        if budget is not None:
            budget.charge_tool_call(op.name)
        meter = self.budgets.current()
        if meter.limited:
            meter.charge_tool_call(op.name)

    def after(self, op: Operation, result: Any) -> Decision | None:
        if op.kind.name == "llm":
            usage = getattr(result, "usage", None)
            if usage is not None:
                self.budgets.current().charge_model(getattr(result, "model", "") or op.name,
                                                    usage.input_tokens, usage.output_tokens)
        return None

    def finished(self, op: Operation, result: Any) -> None:
        self._leave(op)

    def failed(self, op: Operation, error: AikitError) -> None:
        self._leave(op)

    def _leave(self, op: Operation) -> None:
        token = op.meta.pop("budget_token", None)
        if token is not None:
            try:
                CURRENT_METER.reset(token)
            except ValueError:  # reset from another context: the run's task ends with it anyway
                pass


class _ToolCallCharge(BudgetInterceptor):
    """What :class:`BudgetInterceptor` puts in the chain of every tool call: the ``tool`` branch
    of its ``before`` alone, which charges only the budgets that have limits (this runs for
    every tool call)."""

    def before(self, op: Operation) -> Decision | None:
        budget = getattr(op.context, "budget", None)
        if budget is not None and (budget.max_tool_calls is not None or budget.max_wall_time_s is not None):
            budget.charge_tool_call(op.name)  # caller_budget's test, inlined
        meter = CURRENT_METER.get() or self.budgets.session  # Budgets.current()'s, inlined
        if meter.limited:
            meter.charge_tool_call(op.name)
        return None
