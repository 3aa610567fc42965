"""``Workflow``: pipelines of tools, agents, LLM calls, Lua functions, commands and nested
workflows, from Lua (``Workflow.new{...}``) or YAML missions (``Workflow.load(path)``).

The engine runs on the I/O loop. A Lua function step runs on the Lua thread as a coroutine the
engine drives: when it awaits I/O (``sleep``, an async ``Tool.call``, ``agent:run``) it yields,
so several Lua steps make progress at once. ``wf:run(inputs, {display = true})`` shows a live
progress table in the notebook.
"""

from __future__ import annotations

import functools
import html
import sys
import time
from typing import Any

from aikit_components.components import Components
from aikit_components.control.approvals import who_answers
from aikit_components.control.budgets import BudgetLimits
from aikit_components.control.step_approval import decide_step
from aikit_components.control.workflow_decisions import decide_workflow_calls
from aikit_components.errors import AikitError, InvalidArgument, ValidationError
from aikit_components.workflows.model import Condition, Loop, RunRecord, Step, Workflow

from ...output import TerminalOutput
from ...run_progress import RunProgress
from ..convert import lua_to_python, lua_type
from ..engine import LuaEngine
from ..host import text
from . import expose
from ._util import lua, lua_kind, name_arg, named_table, options, py, seconds_arg, string_list, whole_number
from .handles import HandleKind, printable_results
from .mcp import resolve_tools

PROGRESS_INTERVAL_S = 0.2

DOCS = {
    "": "Workflow\n\nPipelines: Workflow.new{name, mode = 'dag'|'sequential'|'parallel', steps = {...}} -> wf; "
        "wf:run([inputs] [, {display = true, raise = true}]) -> run record (raise: a failed run is an "
        "error); Workflow.load('mission.yaml'). Steps are tools, agents, "
        "llm calls, Lua functions, commands, nested workflows or noops; values flow with {{input.x}}, "
        "{{steps.ID.output.FIELD}}, {{env.NAME}}, {{config.KEY}}, {{loop.item}}.",
    "new": "Workflow.new{name, mode = 'dag', max_concurrency, fail_fast = true, timeout_s, retries = 0, retry_delay_s = 0, "
           "executor = 'local'|'ray', inputs = {...}, "
           "steps = {{id, tool = name, params = {...}} | {id, agent = name|agent, input = ...} | "
           "{id, llm = {prompt, model}} | {id, fn = function(params, ctx) ... end} | {id, command = {argv...}} | "
           "{id, workflow = wf} | {id, noop = true} | {id, approval = {message, timeout_s, default}}, ...}} -> wf\n\n"
           "Each step may also have approval = true (a person approves it first), depends_on, when (a function "
           "of ctx, or {ref, op, value}), loop ({over | range | while, max_iterations}), timeout_s, continue_on_error, "
           "retries, retry_delay_s, backoff. Durations are in seconds (the old names timeout and retry_delay still work).",
    "load": "Workflow.load(path) -> wf\n\nLoads a YAML mission (RustChain format) as a workflow.",
    "resume": "Workflow.resume(run_id, wf) -> record\n\nThe old way to write wf:resume(run_id): re-runs what did not "
              "succeed in an earlier run of wf.",
    "record": "Workflow.record(run_id) -> record | nil\n\nA run record from State.",
    "approve": "Workflow.approve(run_id, step [, reason]) -> {decision, who, reason, at}\n\nApproves a step that waits "
               "for a person (an approval step, or a step with approval = true), from any process.",
    "deny": "Workflow.deny(run_id, step [, reason]) -> {decision, who, reason, at}\n\nDenies a step that waits for a "
            "person: it fails with approval_denied and its dependents do not run.",
}

TOSTRING = 'function(self) return "workflow " .. self.name end'

STEP_KEYS = ("id", "name", "depends_on", "when", "loop", "timeout_s", "continue_on_error", "retries", "retry_delay_s",
             "backoff", "params", "tool", "agent", "input", "llm", "fn", "command", "workflow", "noop", "approval")
#: Old option names of Workflow.new and its steps, still accepted until 0.3 (CHANGELOG.md).
DURATION_ALIASES = {"timeout": "timeout_s", "retry_delay": "retry_delay_s"}
KIND_KEYS = ("tool", "agent", "llm", "fn", "command", "workflow", "noop")


def install(engine: LuaEngine, components: Components, agents: Any = None) -> None:
    from aikit_components.workflows import engine as wf_engine

    baseline = {text(k) for k in engine.env if isinstance(k, bytes)}  # every fresh runtime has these
    warned: set[str] = set()

    def warn_once(message: str) -> None:
        if message not in warned:
            warned.add(message)
            engine.host.output.write("stderr", message)

    def build(spec: Any) -> Workflow:
        fields = options(engine, spec, ("name", "mode", "max_concurrency", "fail_fast", "timeout_s", "retries",
                                        "retry_delay_s", "inputs", "steps", "description", "budget", "executor"),
                                       "Workflow.new",
                         aliases=DURATION_ALIASES)
        raw_steps = spec[b"steps"] if spec is not None else None
        if lua_type(raw_steps) != "table":
            raise InvalidArgument("Workflow.new: steps must be a list of step tables")
        executor = str(fields.get("executor") or "local")
        steps = [build_step(raw_steps[i], i) for i in range(1, len(raw_steps) + 1)]
        if not fields.get("name"):
            warn_once("aikit: warning: Workflow.new without a name: its runs are recorded (and resumed, shown in "
                      "progress) as 'workflow'; give it one: Workflow.new{name = 'report', steps = {...}}\n")
        workflow = Workflow(
            name=str(fields.get("name") or "workflow"), steps=steps, mode=str(fields.get("mode") or "dag"),
            description=str(fields.get("description") or ""), max_concurrency=fields.get("max_concurrency"),
            fail_fast=bool(fields.get("fail_fast", True)), timeout_s=fields.get("timeout_s"),
            retry_attempts=whole_number(fields.get("retries"), "Workflow.new: retries"),
            retry_delay_s=seconds_arg(fields.get("retry_delay_s"), "Workflow.new: retry_delay_s"),
            inputs=named_table(fields.get("inputs"), "Workflow.new: inputs"), executor=executor,
            budget=BudgetLimits.parse(fields["budget"], "Workflow.new") if fields.get("budget") is not None else None,
        )
        if executor == "ray":
            ship_lua_steps(workflow, raw_steps)
        return workflow

    def ship_lua_steps(workflow: Workflow, raw_steps: Any) -> None:
        """Take the shipped form of every Lua function step now (its upvalues and globals by
        value), so a step that cannot run on a Ray worker is an error before anything runs."""
        from ..shipping import LuaShipper, NotShippable

        shipper = LuaShipper(engine, baseline | {name.split(".")[0] for name in engine.docs})
        problems: list[str] = []
        for index, step in enumerate(workflow.steps, 1):
            if step.kind != "function":
                continue
            try:
                shipped = shipper.ship(raw_steps[index][b"fn"], step.id)
            except NotShippable as exc:
                problems.append(f"step {step.id!r}: {exc.message}")
                continue
            step.fn.__aikit_ship__ = functools.partial(_same, shipped)  # type: ignore[union-attr]
        if problems:
            raise ValidationError(f"workflow {workflow.name!r} cannot run on Ray (executor = \"ray\"):", problems)

    def build_step(raw: Any, index: int) -> Step:
        if lua_type(raw) != "table":
            raise InvalidArgument(f"Workflow.new: step {index} must be a table")
        f = options(engine, raw, STEP_KEYS, f"Workflow.new: step {index}", aliases=DURATION_ALIASES)
        kinds = [k for k in KIND_KEYS if raw[k.encode()] is not None]
        if len(kinds) > 1:
            raise InvalidArgument(f"Workflow.new: step {f.get('id') or index} has several kinds "
                                  f"({', '.join(kinds)}); give one")
        step_id = str(f.get("id") or f"step{index}")
        if not kinds:  # a noop, as documented; said once, since it is often a forgotten or misspelled kind
            warn_once(f"aikit: warning: Workflow.new: step {step_id!r} has no kind, so it is a noop (it passes its "
                      "params on); write noop = true to say so, or give one of tool, agent, llm, fn, command, "
                      "workflow\n")
        kind = kinds[0] if kinds else "noop"
        params = named_table(f.get("params"), f"Workflow.new: step {step_id!r}: params")
        step = Step(id=step_id, name=str(f.get("name") or ""), params=params,
                    depends_on=string_list(f.get("depends_on"), f"Workflow.new: step {step_id!r}: depends_on"),
                    timeout_s=f.get("timeout_s"), continue_on_error=bool(f.get("continue_on_error", False)),
                    retries=f.get("retries"), retry_delay_s=f.get("retry_delay_s"), backoff=f.get("backoff", 2.0))
        if kind == "tool":
            step.kind, step.target = "tool", str(f["tool"])
        elif kind == "agent":
            step.kind = "agent"
            agent_value = raw[b"agent"]
            step.target = agent_target(agent_value)
            if "input" in f:
                step.params.setdefault("input", f["input"])
        elif kind == "llm":
            step.kind = "llm"
            step.params = {**dict(f.get("llm") or {}), **params}
        elif kind == "fn":
            step.kind, step.fn = "function", lua_step(raw[b"fn"], step_id)
        elif kind == "command":
            step.kind = "command"
            command = f.get("command") or []
            step.params = {"command": command if isinstance(command, str) else list(command), **params}
        elif kind == "workflow":
            step.kind, step.workflow = "workflow", handles.get(raw[b"workflow"])
        else:
            step.kind = "noop"
        approval = f.get("approval")
        if approval is not None and approval is not False:
            if not kinds:  # {id, approval = {message, timeout_s, default}}: a step that waits for a person
                step.kind = "approval"
                step.params = {**(approval if isinstance(approval, dict) else {}), **params}
            elif approval is True:
                step.approval = True
            else:
                raise InvalidArgument(f"Workflow.new: step {step_id}: approval = true asks a person before the step "
                                      "runs; an approval step of its own is {id, approval = {message, timeout_s, "
                                      "default}} without another kind")
        when = raw[b"when"]
        if when is not None:
            step.when = condition(when, step_id)
        loop = raw[b"loop"]
        if loop is not None:
            lo = options(engine, loop, ("over", "range", "while", "max_iterations"), f"step {step_id}: loop")
            step.loop = Loop(over=lo.get("over"), range=lo.get("range"),
                             while_=condition(loop[b"while"], step_id) if loop[b"while"] is not None else None,
                             max_iterations=int(lo.get("max_iterations", 1000)))
        return step

    def agent_target(value: Any) -> Any:
        if isinstance(value, bytes):
            return text(value)
        if lua_type(value) == "table" and value[b"id"] is not None and agents is not None:
            return agents.get(value[b"id"]).spec
        if lua_type(value) == "table":
            return lua_to_python(value, engine.address)
        raise InvalidArgument("a step's agent is an agent name, an agent, or an Agent.new-style table")

    def condition(value: Any, step_id: str) -> Condition:
        if lua_type(value) == "function":
            fn = value

            async def predicate(ctx: Any) -> bool:
                return bool(await call_on_lua(fn, ctx))
            return Condition(fn=predicate)
        if lua_type(value) == "table":
            c = options(engine, value, ("ref", "op", "value"), f"step {step_id}: when")
            return Condition(ref=c.get("ref"), op=str(c.get("op", "truthy")), value=c.get("value"))
        raise InvalidArgument(f"step {step_id}: when must be a function or {{ref, op, value}}")

    async def call_on_lua(fn: Any, *args: Any) -> Any:
        """Run a Lua function as a driven coroutine: it may await I/O, yielding to other steps,
        and cancelling the calling task (a step or workflow timeout) stops it wherever it is."""
        return await engine.coroutines.run(fn, *[_plain(a) for a in args])

    def lua_step(fn: Any, step_id: str) -> Any:
        if lua_type(fn) != "function":
            raise InvalidArgument(f"step {step_id}: fn must be a function")

        async def run_fn(params: Any, ctx: Any) -> Any:
            return await call_on_lua(fn, params, ctx)
        return run_fn

    def new(spec: Any) -> Any:
        workflow = build(spec)
        resolve_tools(engine, components, [s.target for s in workflow.steps if isinstance(s.target, str)])
        problems = wf_engine.validate(workflow, components=components)
        if problems:
            raise ValidationError(f"workflow {workflow.name!r} is invalid:", problems)
        return handles.new(workflow, name=workflow.name.encode())

    def load(path: Any) -> Any:
        from aikit_components.workflows.missions import load_mission

        file = components.policy.check_path(name_arg(path, "Workflow.load: the path"))
        if components.mcp_configured():  # a step type may be the tool of an MCP server not connected yet
            from aikit_components.workflows.missions import parse_mission

            resolve_tools(engine, components, list(parse_mission(file, registry=components.tools).step_types.values()))
        workflow = load_mission(file, policy=components.policy, components=components)
        problems = wf_engine.validate(workflow, components=components)
        if problems:
            raise ValidationError(f"mission {str(file)!r} is invalid:", problems)
        return handles.new(workflow, name=workflow.name.encode())

    def run(workflow: Workflow, inputs: Any = None, opts: Any = None) -> int:
        if opts is None and lua_type(inputs) == "table" and _only_run_options(engine, inputs):
            inputs, opts = None, inputs  # wf:run{raise = true}: the options alone
        o = options(engine, opts, ("display", "run_id", "raise"), "wf:run")
        given = py(engine, inputs) if inputs is not None else {}
        if given == []:
            given = {}  # an empty Lua table converts to a list
        if not isinstance(given, dict):
            raise InvalidArgument(f"wf:run: the inputs must be a table of named values, got {lua_kind(inputs)}")
        terminal = isinstance(engine.host.output, TerminalOutput)
        display = o.get("display", terminal)  # a terminal always shows the steps as they finish
        progress = ((TerminalProgress(engine, workflow, components) if terminal else Progress(engine, workflow))
                    if display else None)

        async def go() -> dict[str, Any]:
            try:
                record = await wf_engine.run(workflow, components=components, inputs=given or {}, run_id=o.get("run_id"),
                                             on_event=progress.on_event if progress else None)
            finally:
                if progress is not None:
                    progress.show(final=True)
            data = record.to_dict()
            if data["status"] != "succeeded":
                if terminal:
                    engine.host.output.write("stderr", failure_report(data) + "\n")
                if o.get("raise") or getattr(engine, "strict", False):
                    raise AikitError(failure_summary(data), code="workflow_failed",
                                     details={"run_id": data["run_id"], "status": data["status"],
                                              "failed": _failed_steps(data)})
            return data

        return engine.start(go())

    def resume(run_id: Any, wf: Any) -> int:
        return resume_run(handles.get(wf), run_id)

    def resume_run(workflow: Workflow, run_id: Any, opts: Any = None) -> int:  # wf:resume(run_id [, opts])
        rid = name_arg(run_id, "wf:resume: the run id")
        o = options(engine, opts, ("approve_in_doubt", "approve", "deny", "reason"), "wf:resume")
        if o.get("approve") is not None or o.get("deny") is not None:  # decided first: a bad name runs nothing
            reason = o.get("reason", "")
            if not isinstance(reason, str):
                raise InvalidArgument("wf:resume: reason must be a string")
            decide_workflow_calls(components, rid, o.get("approve"), o.get("deny"), reason, who_answers())

        async def go() -> dict[str, Any]:
            record = await wf_engine.run(workflow, components=components, run_id=rid, resume=rid,
                                         approve_in_doubt=bool(o.get("approve_in_doubt", False)))
            return record.to_dict()

        return engine.start(go())  # awaited in Lua (see install): a Lua step yields meanwhile

    def validate(workflow: Workflow) -> Any:
        return lua(engine, wf_engine.validate(workflow, components=components))

    def layers(workflow: Workflow) -> Any:
        return lua(engine, wf_engine.layers(workflow))

    def info(wf: Workflow) -> Any:
        return lua(engine, {"name": wf.name, "mode": wf.mode, "steps": [s.id for s in wf.steps], "source": wf.source})

    def record(run_id: Any) -> Any:
        data = components.state.get(f"workflow:{name_arg(run_id, 'Workflow.record: the run id')}", "run")
        return lua(engine, data) if data is not None else None

    handles: HandleKind[Workflow] = HandleKind(
        engine, "aikit.Workflow", tostring=TOSTRING, missing=lambda wf_id: f"no workflow {wf_id!r}",
        functions={"run": run, "validate": validate, "layers": layers, "info": info, "resume": resume_run},
        awaiting=("run", "resume"))
    def decide(decision: str) -> Any:
        def given(run_id: Any, step: Any, reason: Any = None) -> Any:
            why = py(engine, reason) if reason is not None else ""
            if not isinstance(why, str):
                raise InvalidArgument(f"Workflow.{decision}: reason must be a string")
            stored = decide_step(components, py(engine, run_id), py(engine, step),
                                 "approved" if decision == "approve" else "denied", why)
            return lua(engine, stored)
        return given

    api = expose(engine, "Workflow", {"new": new, "load": load, "resume": resume, "record": record,
                                      "approve": decide("approve"), "deny": decide("deny")}, DOCS, convert=False)
    awaiting_resume = engine.compile_trusted(
        "local start, await = ... return function(run_id, wf) return await(start(run_id, wf)) end", "workflow")(
        api[b"resume"], engine.internal[b"await"])
    methods = handles.methods
    methods[b"run"], methods[b"resume"], api[b"resume"] = printable_results(
        engine, "aikit.WorkflowRun", _PRINTED_RUN, methods[b"run"], methods[b"resume"], awaiting_resume)
    engine.register_doc("Workflow.resume", api[b"resume"], DOCS["resume"])


# A run's record prints as a summary: its status and its steps' outcomes (see printable_results).
_PRINTED_RUN = r"""function(r)
  local counts, names = {}, {}
  for _, step in pairs(r.steps or {}) do
    local status = tostring(step.status)
    if counts[status] == nil then names[#names + 1] = status end
    counts[status] = (counts[status] or 0) + 1
  end
  table.sort(names)
  local parts = {}
  for i, status in ipairs(names) do parts[i] = counts[status] .. " " .. status end
  return "workflow '" .. tostring(r.workflow) .. "' " .. tostring(r.status) .. " (run " .. tostring(r.run_id) .. "): "
    .. (#parts > 0 and table.concat(parts, ", ") or "no steps")
end"""


def _same(value: Any) -> Any:
    return value


def _plain(value: Any) -> Any:
    """Step params and contexts as JSON-like values (records become dicts)."""
    if isinstance(value, RunRecord):
        return value.to_dict()
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return value


def _only_run_options(engine: LuaEngine, value: Any) -> bool:
    """Whether a table holds only wf:run options (``raise``, ``display``, ``run_id``)."""
    keys = [k for k, _ in value.items()]
    return bool(keys) and all(k in (b"raise", b"display") for k in keys)


def _failed_steps(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"step": sid, "status": rec["status"], "error": (rec.get("error") or {}).get("message", "")}
            for sid, rec in data["steps"].items() if rec["status"] not in ("succeeded", "skipped")]


def failure_summary(data: dict[str, Any]) -> str:
    """One line saying which steps of a failed run failed, and why."""
    failed = [f"step {f['step']!r} {f['status']}" + (f": {f['error']}" if f["error"] else "")
              for f in _failed_steps(data) if f["status"] != "upstream_failed"]
    why = "; ".join(failed) or str((data.get("error") or {}).get("message") or data["status"])
    return f"workflow {data['workflow']!r} {data['status']} (run {data['run_id']}): {why}"


def failure_report(data: dict[str, Any]) -> str:
    """A failed run as a terminal shows it: a line, then a per-step status table with the errors."""
    from ...terminal_render import render_records

    rows = [{"step": sid, "status": rec["status"], "attempts": rec.get("attempts", 0),
             "error": (rec.get("error") or {}).get("message", "")} for sid, rec in data["steps"].items()]
    table = render_records(rows, columns=["step", "status", "attempts", "error"])
    return f"workflow {data['workflow']!r} {data['status']} (run {data['run_id']}):\n{table}"


class TerminalProgress:
    """Progress of a workflow on a terminal (``aikit run``, the REPL), on stderr: a live status line
    (steps done, running and failed, time, tokens and cost) and a line per finished step, or plain
    lines when stderr is not a terminal (see :mod:`aikit_kernel.run_progress`)."""

    def __init__(self, engine: LuaEngine, workflow: Workflow, components: Components | None = None) -> None:
        output = engine.host.output
        stream = output.streams[1] if isinstance(output, TerminalOutput) else sys.stderr
        self.progress = RunProgress(workflow.name, len(workflow.steps), stream, components=components, output=output)

    def on_event(self, kind: str, step_id: str | None, record: Any) -> None:
        status = getattr(record, "status", None)
        if step_id is None or status in (None, "pending"):
            return
        if status == "running":
            self.progress.step_started(step_id)
            return
        error = getattr(record, "error", None)
        message = str(error.get("message", error) if isinstance(error, dict) else error) if error else ""
        self.progress.step_finished(step_id, status, getattr(record, "duration_s", None), message)

    def show(self, final: bool = False) -> None:
        if final:
            self.progress.close()


class Progress:
    """A live-updating HTML table of step statuses (throttled), shown while a workflow runs."""

    ICONS = {"pending": "·", "running": "▶", "succeeded": "✔", "failed": "✘", "skipped": "↷",
             "upstream_failed": "⇡✘", "cancelled": "⊘", "timed_out": "⏱"}

    def __init__(self, engine: LuaEngine, workflow: Workflow) -> None:
        self.output = engine.host.output
        self.workflow = workflow
        self.status = {s.id: "pending" for s in workflow.steps}
        self.errors: dict[str, str] = {}
        self.display_id = f"workflow-{id(self)}"
        self.shown = 0.0
        self.started = False

    def on_event(self, kind: str, step_id: str | None, record: Any) -> None:
        if step_id is not None and record is not None and hasattr(record, "status"):
            self.status[step_id] = record.status
            error = getattr(record, "error", None)
            if error:  # a failed step shows why
                self.errors[step_id] = str(error.get("message", error) if isinstance(error, dict) else error)
        if time.monotonic() - self.shown >= PROGRESS_INTERVAL_S:
            self.show()

    def show(self, final: bool = False) -> None:
        done = sum(1 for s in self.status.values() if s not in ("pending", "running"))
        rows = "".join(f"<tr><td>{self.ICONS.get(st, st)}</td><td>{html.escape(sid)}</td><td>{html.escape(st)}</td>"
                       f"<td>{html.escape(self.errors.get(sid, ''))}</td></tr>"
                       for sid, st in self.status.items())
        body = (f"<b>{html.escape(self.workflow.name)}</b> {done}/{len(self.status)} steps"
                f"<table>{rows}</table>")
        plain = f"{self.workflow.name}: {done}/{len(self.status)} steps" + "".join(
            f"\n  {sid}: {self.status[sid]}: {message}" for sid, message in self.errors.items())
        self.output.display({"text/html": body, "text/plain": plain}, {}, self.display_id, self.started)
        self.started = True
        self.shown = time.monotonic()
