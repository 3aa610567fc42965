"""Running a workflow: :func:`run` checks it, then assembles one run's parts (scheduler, step
runner, executors, conditions, recorder, events), each given what it needs, and starts it."""

from __future__ import annotations

import contextlib
import functools
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from ...control.step_approval import ApprovalExecutor
from ...control.workflow_decisions import note_run, stored_decisions
from ...errors import InvalidArgument, NotFound, ValidationError
from ...operations import Operation, OperationKind
from ...operations.standard import standard_pipeline
from ..model import RunRecord, StepRecord, Workflow
from ..templates import TemplateContext
from ..validation import WorkflowPlan, analyze, run_scope
from .conditions import ConditionEvaluator
from .context import StepContexts
from .events import RunEvents
from .executors import (
    AgentExecutor,
    CommandExecutor,
    FunctionExecutor,
    LlmExecutor,
    NestedWorkflowExecutor,
    StepExecutors,
    ToolExecutor,
    run_noop,
)
from .loops import StepWork
from .placement import RunPlacement, place
from .records import PERSIST_INTERVAL_S, RunRecorder, load_run
from .scheduler import RunScheduler
from .steps import StepRunner

# A whole run as an operation, for what observes runs (tracing: the ``invoke_workflow`` span its
# steps hang under). No hook points and no events of its own: the run publishes ``workflow.*``
# itself. Payload ``{workflow, run_id}``; the result is the RunRecord.
WORKFLOW_RUN = OperationKind("workflow", describe=lambda op: f"workflow {op.name!r}")


async def run(workflow: Workflow, *, components: Any, inputs: Mapping[str, Any] | None = None,
              run_id: str | None = None, resume: RunRecord | str | None = None,
              on_event: Callable[[str, str | None, Any], Any] | None = None,
              tool_context: Any = None, persist_interval_s: float = PERSIST_INTERVAL_S,
              durable_steps: bool = True, approve_in_doubt: bool = False) -> RunRecord:
    """Validate and run ``workflow`` on the current loop; return its record (also stored in State,
    see the package docstring). Raises ValidationError (listing every problem) before anything
    runs. ``resume`` (a RunRecord or a run id) reuses the finished steps of an earlier run.
    ``tool_context`` (default: a new one, caller ``workflow:<name>``) carries the budget of the
    run's tool calls. ``durable_steps=False`` stores every step on the ``persist_interval_s``
    schedule, as noops are (a durable write costs an fsync, about 2-4 ms); failures are still
    written at once. A cancelled run records ``cancelled`` and re-raises the cancellation.
    Steps run through ``components.pipeline`` (the operation pipeline: hooks, events, ...). Their
    tool calls are journaled (control/journal.py): a resume replays the calls that finished; a call
    in doubt (started, never finished) holds its step (``needs_approval``) unless its tool is
    idempotent, ``approve_in_doubt`` (every in-doubt call) or a decision stored for it
    (control/workflow_decisions.py: approved, it runs again; denied, its step fails). A run held
    only by such steps ends ``needs_approval``."""
    previous: RunRecord | None = None
    if resume is not None:
        if isinstance(resume, RunRecord):
            previous = resume
        else:
            previous = load_run(components, str(resume))
            if previous is None:
                raise NotFound(f"no stored run {str(resume)!r} to resume (scope {run_scope(str(resume))!r})",
                               details={"run_id": str(resume)})
        if previous.workflow != workflow.name:
            raise InvalidArgument(f"run {previous.run_id!r} belongs to workflow {previous.workflow!r}, "
                                  f"not {workflow.name!r}", details={"run_id": previous.run_id})
        run_id = previous.run_id
        if inputs is None:
            inputs = previous.inputs
    given = dict(inputs or {})
    plan = analyze(workflow, components, given)
    if plan.problems:
        raise ValidationError(f"workflow {workflow.name!r} is invalid:", plan.problems,
                              details={"workflow": workflow.name})
    merged = {**(workflow.inputs or {}), **given}
    run_id = run_id or uuid.uuid4().hex[:16]
    backend = getattr(getattr(components, "state", None), "backend", None)
    decisions = stored_decisions(backend, run_id) if previous is not None and backend is not None else {}
    scheduler = _assemble(plan, components, merged, run_id, previous, on_event, tool_context, persist_interval_s,
                          durable_steps, approve_in_doubt, decisions)
    switch = getattr(components, "stop_switch", None)  # the kill switch cancels the whole run
    budgets = getattr(components, "budgets", None)  # the run's budget (and the session's) count its steps
    meter = (budgets.run_meter(f"workflow {workflow.name!r}", "workflow", getattr(workflow, "budget", None))
             if budgets is not None else None)
    if meter is not None and meter.limited:
        scheduler.budget_meter(meter)

    async def execute() -> RunRecord:
        with switch.tracking() if switch is not None else contextlib.nullcontext(), \
                budgets.running(meter) if meter is not None else contextlib.nullcontext():
            record = await scheduler.execute()
        if record.budget is not None:
            record.budget = record.budget_report()  # the use when it ended
        if backend is not None and (previous is not None or record.status != "succeeded"):
            note_run(backend, record.to_dict())  # `aikit approvals list` shows a run that waits
        return record

    pipeline = getattr(components, "pipeline", None)
    if pipeline is None or not pipeline.watches(WORKFLOW_RUN):
        return await execute()
    op = Operation(WORKFLOW_RUN, workflow.name, {"workflow": workflow.name, "run_id": run_id})
    return await pipeline.arun(op, lambda op: execute())


def _assemble(plan: WorkflowPlan, components: Any, inputs: dict[str, Any], run_id: str, previous: RunRecord | None,
              on_event: Callable[..., Any] | None, tool_context: Any, persist_interval_s: float,
              durable_steps: bool, approve_in_doubt: bool = False,
              decisions: dict[str, tuple[str, ...]] | None = None) -> RunScheduler:
    """The parts of one run, wired together."""
    wf = plan.workflow
    records = {sid: StepRecord(sid) for sid in plan.order}
    record = RunRecord(run_id, wf.name, "pending", records, inputs, source=wf.source)
    state = getattr(components, "state", None)
    templates = TemplateContext(inputs, records, getattr(components, "policy", None),
                                getattr(components, "config", None), state=state)
    contexts = StepContexts(run_id, wf.name, inputs, components, records)
    events = RunEvents(getattr(components, "events", None), on_event, wf.name, run_id)
    conditions = ConditionEvaluator(templates, contexts)
    tools = _tool_context_source(components, tool_context, wf.name)
    local = StepExecutors({
        "noop": run_noop,
        "approval": ApprovalExecutor(components, wf.name, run_id),
        "tool": ToolExecutor(components, tools),
        "function": FunctionExecutor(contexts),
        "command": CommandExecutor(components, tools),
        "llm": LlmExecutor(components, wf.name, run_id),
        "agent": AgentExecutor(components),
        "workflow": NestedWorkflowExecutor(run, components, run_id, previous is not None, tools,
                                           persist_interval_s, durable_steps),
    })
    executors = place(wf.executor, local, RunPlacement(plan, components, run_id, contexts))
    work = StepWork(templates, conditions, executors)
    hooks = getattr(components, "hooks", None)
    pipeline = getattr(components, "pipeline", None)
    if pipeline is None:
        pipeline = standard_pipeline(getattr(components, "events", None), hooks)
    steps = StepRunner(wf, run_id, records, templates, conditions, work, events, pipeline, hooks, components,
                       approve_in_doubt, decisions)
    recorder = RunRecorder(state, record, events, persist_interval_s, durable_steps)
    return RunScheduler(plan, record, steps, recorder, events, previous)


def _tool_context_source(components: Any, given: Any, workflow: str) -> Callable[[], Any]:
    """The run's tool context: ``given``, or one made on first use (a run without tool steps
    never needs one)."""
    if given is not None:
        return lambda: given
    return functools.cache(lambda: components.tool_context(caller=f"workflow:{workflow}"))
