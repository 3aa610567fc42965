"""The step kinds: one executor per kind (``tool``, ``function``, ``command``, ``llm``, ``agent``,
``workflow``, ``noop``), in a :class:`StepExecutors` registry."""

from __future__ import annotations

import inspect
import shlex
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ...agents.llm_call import ModelCall, refusal
from ...errors import AikitError, InvalidArgument
from ...providers.fallback import FallbackChain
from ...providers.messages import Completion, Message, Request
from ..model import RunRecord, Workflow
from ..templates import format_value
from ..validation import FALLBACK_PROBLEM, StepNode, agent_spec
from .context import StepContexts
from .records import load_run


@dataclass(frozen=True, slots=True)
class StepCall:
    """One call of a step's executor: the step, its resolved params, the loop frame (None outside
    a loop) and the attempt number (from 1)."""

    node: StepNode
    params: Any
    loop: dict[str, Any] | None
    attempt: int


Executor = Callable[[StepCall], Awaitable[Any]]


class StepExecutors:
    """The executor of each step kind."""

    def __init__(self, executors: Mapping[str, Executor]) -> None:
        self._executors = dict(executors)

    async def run(self, call: StepCall) -> Any:
        """The output of ``call`` from its kind's executor."""
        step = call.node.step
        executor = self._executors.get(step.kind)
        if executor is None:
            raise InvalidArgument(f"step {step.id!r}: unknown kind {step.kind!r}")
        return await executor(call)


ToolContext = Callable[[], Any]  # the run's tool context, made on first use


async def run_noop(call: StepCall) -> Any:
    """A ``noop`` step's output is its params."""
    params = call.params
    return dict(params) if isinstance(params, dict) else params


class ToolExecutor:
    """``tool``: ``components.tools.acall(target, params)``."""

    def __init__(self, components: Any, tool_context: ToolContext) -> None:
        self._components = components
        self._tool_context = tool_context

    async def __call__(self, call: StepCall) -> Any:
        return await self._components.tools.acall(call.node.step.target, call.params, self._tool_context())


class FunctionExecutor:
    """``function``: ``fn(params, ctx)`` (sync functions run in the loop's thread)."""

    def __init__(self, contexts: StepContexts) -> None:
        self._contexts = contexts

    async def __call__(self, call: StepCall) -> Any:
        step = call.node.step
        result = step.fn(call.params, self._contexts(step.id, call.attempt, call.loop))  # type: ignore[misc]
        if inspect.isawaitable(result):
            result = await result
        return result


class CommandExecutor:
    """``command``: the ``run_process`` tool; a non-zero exit fails the step unless
    ``params.check`` is false."""

    def __init__(self, components: Any, tool_context: ToolContext) -> None:
        self._components = components
        self._tool_context = tool_context

    async def __call__(self, call: StepCall) -> Any:
        step = call.node.step
        args = dict(call.params)
        check = args.pop("check", True)
        command = args.get("command")
        if isinstance(command, str):
            args["command"] = command = shlex.split(command)
        elif isinstance(command, list):  # a whole-string template keeps its type: argv needs text
            args["command"] = command = [
                ("true" if a else "false") if isinstance(a, bool) else str(a) if isinstance(a, (int, float)) else a
                for a in command]
        if step.timeout_s is not None and args.get("timeout_s") is None:
            args["timeout_s"] = step.timeout_s + 5  # the step's own timeout cancels (and kills) first
        result = await self._components.tools.acall("run_process", args, self._tool_context())
        code = result.get("exit_code") if isinstance(result, Mapping) else None
        if check and code != 0:
            stderr = (result.get("stderr") or "").strip()[-500:]
            program = command[0] if command else "?"
            raise AikitError(f"command {program!r} exited with code {code}" + (f": {stderr}" if stderr else "")
                             + " (set params.check = false to accept non-zero exits)",
                             code="command_failed", details={"result": result})
        return result


class AgentExecutor:
    """``agent``: ``components.new_agent(spec).run(params.input)``, output the AgentResult as a
    table."""

    def __init__(self, components: Any) -> None:
        self._components = components

    async def __call__(self, call: StepCall) -> Any:
        spec = agent_spec(call.node.step.target, getattr(self._components, "config", None))
        params = call.params
        text = params.get("input") if isinstance(params, Mapping) else params
        agent = self._components.new_agent(spec)
        result = await agent.run(text if isinstance(text, str) else format_value(text))
        return result.to_dict()


class LlmExecutor:
    """``llm``: one completion, made as an agent makes its model calls (hooks ``llm.*``, events,
    the ledger), the step naming itself by ``{workflow, run_id, step}``; ``params.fallback`` lists
    models tried in turn when the one before is unavailable."""

    def __init__(self, components: Any, workflow: str, run_id: str) -> None:
        self._components = components
        self._workflow = workflow
        self._run_id = run_id

    async def __call__(self, call: StepCall) -> Any:
        step, params = call.node.step, call.params
        components = self._components
        events = getattr(components, "events", None)
        prompt = params.get("prompt")
        if not isinstance(prompt, str):
            prompt = format_value(prompt)
        configured = params.get("model") or "default"
        messages = [Message.system(str(params["system"]))] if params.get("system") else []
        messages.append(Message.user(prompt))
        request = Request(model="", messages=messages, temperature=params.get("temperature"),
                          max_tokens=params.get("max_tokens"), json_schema=params.get("json_schema"))
        fallback = params.get("fallback") or []
        if not isinstance(fallback, list) or not all(isinstance(m, str) for m in fallback):
            raise InvalidArgument(f"step {step.id!r}: {FALLBACK_PROBLEM}, got {format_value(fallback)[:200]}")
        chain = FallbackChain(components.models, [configured, *fallback], events=events)
        ledger = getattr(components, "ledger", None)
        payer = f"workflow:{self._workflow}"

        def account(completion: Completion) -> None:
            if ledger is not None:
                ledger.record(payer, completion.model, completion.usage)

        model_call = ModelCall(chain, configured, {"workflow": self._workflow, "run_id": self._run_id, "step": step.id},
                               hooks=getattr(components, "hooks", None), events=events, source="workflow",
                               account=account, pipeline=getattr(components, "pipeline", None))
        completion = await model_call.ask(request)
        output = {"text": completion.text, "model": completion.model, "usage": completion.usage.to_dict(),
                  "stop_reason": completion.stop_reason}
        if completion.stop_reason == "content_filter":
            output["refusal"] = refusal(completion, configured)
        return output


RunWorkflow = Callable[..., Awaitable[RunRecord]]  # the engine's ``run``


class NestedWorkflowExecutor:
    """``workflow``: a nested run (inputs = params, run id ``<run_id>.<step>``, plus the loop
    index inside a loop) that resumes from its own record when the parent resumes or retries;
    output its record as a table."""

    def __init__(self, run_workflow: RunWorkflow, components: Any, run_id: str, resuming: bool,
                 tool_context: ToolContext, persist_interval_s: float, durable_steps: bool) -> None:
        self._run_workflow = run_workflow
        self._components = components
        self._run_id = run_id
        self._resuming = resuming
        self._tool_context = tool_context
        self._interval = persist_interval_s
        self._durable_steps = durable_steps

    async def __call__(self, call: StepCall) -> Any:
        step = call.node.step
        nested: Workflow = step.workflow  # type: ignore[assignment]
        frame = call.loop
        run_id = f"{self._run_id}.{step.id}" + (f".{frame['index']}" if frame is not None else "")
        resume = None
        if self._resuming or call.attempt > 1:
            stored = load_run(self._components, run_id)
            if stored is not None and stored.workflow == nested.name:
                resume = stored
        result = await self._run_workflow(nested, components=self._components, inputs=dict(call.params or {}),
                                          run_id=run_id, resume=resume, tool_context=self._tool_context(),
                                          persist_interval_s=self._interval, durable_steps=self._durable_steps)
        out = result.to_dict()
        if result.status != "succeeded":
            message = (result.error or {}).get("message", "")
            raise AikitError(f"nested workflow {nested.name!r} {result.status}: {message}", code="workflow_failed",
                             details={"run_id": run_id, "status": result.status})
        return out
