"""The agent: an LLM with tools, run in a loop until it answers.

One run: build the conversation (system prompt, remembered turns, the input) -> ask the model
(through :mod:`.llm_call`: hooks ``llm.before/after/error``, events ``llm.called/finished``) ->
if it asks for tools, run them concurrently on the I/O loop through the tool pipeline and feed
results (and errors, including argument-validation problems) back -> repeat until the model
answers without tools,
``max_steps`` is reached, or the same call repeats too often. With ``output_schema`` the answer
must be JSON matching it; invalid answers are sent back with the problems, at most
``max_output_retries`` times. Memory (the turns of earlier runs) persists in State.

A run is an operation of kind :data:`AGENT_RUN` through the operation pipeline (and each model
call one of kind ``LLM_CALL``). Hooks decide as they do for tools: ``agent.before`` and
``llm.before`` may cancel, modify (the input; the messages sent) or replace; ``agent.after`` and
``llm.after`` may cancel, retry or replace; ``agent.error`` and ``llm.error`` may retry or replace.
A retry reruns the whole run (``agent.*``) or repeats the model call (``llm.*``), at most
``MAX_RETRIES`` times per run or per call; then the last outcome stands. A model stopped by its
provider's content filter gives a result whose ``refusal`` says so (which provider and model, and
what the provider said).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..control.approvals import ApprovalRequired
from ..control.budgets import RunBudgetExceeded
from ..control.journal import JournalCorrupted, JournalInterceptor
from ..control.runs import AgentRuns, AgentRunStore, RunControl, in_call, new_run_id
from ..errors import AikitError, InvalidArgument
from ..jsontext import dumps_with
from ..operations import Operation, OperationKind, Pipeline, honours
from ..operations.standard import standard_pipeline
from ..providers.messages import Completion, Message, Request, ToolCall, ToolSpec, Usage
from ..tools import Tool, ToolContext, ToolRegistry
from ..tools.schema import compile_validator
from .llm_call import ModelCall, refusal

MAX_REPEATED_CALLS = 3
# json.dumps(arguments, sort_keys=True, default=str), its C encoder made once (arguments are
# decoded JSON: no cycles to look for)
_CALL_KEY_JSON = dumps_with(sort_keys=True, default=str)
MEMORY_KEY = "memory"
MEMORY_MAX_MESSAGES = 200

Complete = Callable[[Request], Awaitable[Completion]]
Stream = Callable[[Request], Any]  # async iterator of StreamEvent


@dataclass
class AgentSpec:
    """What an agent is: the fields of ``Agent.new{...}``."""

    name: str = "agent"
    model: str = "default"
    system: str = ""
    tools: list[str] = field(default_factory=list)
    fallback: list[str] = field(default_factory=list)
    max_steps: int = 8
    temperature: float | None = None
    max_tokens: int | None = None
    output_schema: dict[str, Any] | None = None
    max_output_retries: int = 2
    memory: bool = False
    approve: list[str] = field(default_factory=list)  # tool-name patterns whose calls need a person's approval

    def validate(self) -> None:
        def whole(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        problems = []
        if not self.name or not isinstance(self.name, str):
            problems.append("name: a non-empty string")
        if not whole(self.max_steps) or self.max_steps < 1:
            problems.append("max_steps: an integer >= 1")
        if not whole(self.max_output_retries) or self.max_output_retries < 0:
            problems.append("max_output_retries: an integer >= 0")
        if self.temperature is not None and (not isinstance(self.temperature, (int, float))
                                             or isinstance(self.temperature, bool)
                                             or not 0 <= self.temperature <= 2):
            problems.append("temperature: a number between 0 and 2")
        if self.max_tokens is not None and (not whole(self.max_tokens) or self.max_tokens < 1):
            problems.append("max_tokens: an integer >= 1")
        if not isinstance(self.fallback, list) or not all(isinstance(m, str) for m in self.fallback):
            problems.append("fallback: a list of model names")
        if not isinstance(self.approve, list) or not all(isinstance(p, str) and p for p in self.approve):
            problems.append("approve: a list of tool names or patterns (\"http_*\")")
        if self.output_schema is not None and not isinstance(self.output_schema, dict):
            problems.append("output_schema: a JSON Schema table")
        if problems:
            raise InvalidArgument(f"invalid agent {self.name!r}: " + "; ".join(problems), details={"problems": problems})


@dataclass
class ToolCallRecord:
    """A tool call made during a run, with its outcome."""

    name: str
    arguments: dict[str, Any]
    result: Any = None
    error: dict[str, Any] | None = None
    step: int = 0
    pending: dict[str, Any] | None = None  # the approval request when the call waits for a decision

    def to_dict(self) -> dict[str, Any]:
        data = {"name": self.name, "arguments": self.arguments, "step": self.step}
        data["error" if self.error is not None else "result"] = self.error if self.error is not None else self.result
        return data


@dataclass
class AgentResult:
    """What ``agent:run`` returns."""

    text: str
    data: Any = None
    tool_calls: list[ToolCallRecord] = field(default_factory=list)
    steps: int = 0
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    stop_reason: str = "end"  # end | max_steps | repeated_call | invalid_output | max_tokens | content_filter
    refusal: str | None = None  # with stop_reason content_filter: whose filter stopped the answer, and what it said
    messages: list[Message] = field(default_factory=list)
    trace_id: str | None = None  # the trace the run is part of (set by tracing; None when it is off)
    run_id: str = ""
    status: str = "done"  # done | needs_approval
    pending: list[dict[str, Any]] = field(default_factory=list)  # with needs_approval: the calls waiting

    def to_dict(self) -> dict[str, Any]:
        data = {
            "text": self.text, "data": self.data, "tool_calls": [c.to_dict() for c in self.tool_calls],
            "steps": self.steps, "usage": self.usage.to_dict(), "model": self.model, "stop_reason": self.stop_reason,
            "refusal": self.refusal, "run_id": self.run_id, "status": self.status,
        }
        if self.trace_id is not None:
            data["trace_id"] = self.trace_id
        if self.pending:
            data["pending"] = self.pending
        return data


class Agent:
    """Runs an :class:`AgentSpec` against a provider (see the module docstring)."""

    def __init__(self, spec: AgentSpec, *, provider: Any, tools: ToolRegistry, context: Callable[[], ToolContext],
                 state: Any = None, events: Any = None, hooks: Any = None, ledger: UsageLedger | None = None,
                 pipeline: Pipeline | None = None) -> None:
        spec.validate()
        self.spec = spec
        self.provider = provider
        self.registry = tools
        self.context = context
        self.state = state
        self.events = events
        self.hooks = hooks
        self.pipeline = pipeline if pipeline is not None else standard_pipeline(events, hooks)
        self.ledger = ledger
        self.usage = Usage()
        # The run store's and the model call's callbacks hold the agent weakly: an agent that
        # referred to itself was freed only by a full garbage collection, which a kernel runs
        # rarely (aikit_kernel/collector.py), and a kernel making agents cell after cell kept
        # tens of MB of them until then.
        me = weakref.ref(self)
        self.runs = AgentRuns(AgentRunStore(state) if state is not None and hasattr(state, "backend") else None,
                              spec.name, lambda: _fields(me().spec), lambda topic, payload: me()._publish(topic, payload))
        self._weak_account: Callable[[Completion], None] = lambda completion: me()._account(completion)  # (ModelCall's)
        spec.tools = tools.expand(spec.tools)  # "files.*" -> every tool of that MCP server
        for name in spec.tools:
            tools.get(name)  # unknown tools fail at creation, with suggestions
        self._validate_output = compile_validator(spec.output_schema) if spec.output_schema else None
        self._call: ModelCall | None = None  # see _model_call

    # ------------------------------------------------------------------ public
    def tool_specs(self) -> list[ToolSpec]:
        specs = []
        for name in self.spec.tools:
            item = self.registry.get(name)
            specs.append(ToolSpec(item.name, item.description, item.parameters))
        return specs

    def as_tool(self, description: str | None = None) -> Tool:
        """This agent as a tool another agent can call (a commander delegating to a specialist)."""
        agent = self

        async def delegate(input: str) -> dict[str, Any]:
            result = await agent.run(input)
            answer = {"text": result.text, "data": result.data, "model": result.model}
            if result.refusal:  # the commander learns why the specialist said nothing
                answer["refusal"] = result.refusal
            return answer

        return Tool(
            name=self.spec.name, description=description or f"Ask the agent {self.spec.name!r}: {self.spec.system[:200]}",
            fn=delegate,
            parameters={"type": "object",
                        "properties": {"input": {"type": "string", "description": "The task or question."}},
                        "required": ["input"], "additionalProperties": False},
            category="agents", security="safe", source="agent", is_async=True,
        )

    def as_actor(self) -> Any:
        """This agent as a supervisable actor: each message is an input (a string, or a table with
        ``input``); a ``call`` returns the run's result as a dict."""
        from ..actors import Actor

        agent = self

        async def handle(msg: Any, ctx: Any) -> dict[str, Any]:
            prompt = msg.get("input") if isinstance(msg, dict) else msg
            return (await agent.run(str(prompt))).to_dict()

        return Actor(handle, name=self.spec.name)

    async def run(self, input: str, *, on_text: Callable[[str], None] | None = None,
                  run_id: str | None = None) -> AgentResult:
        """Run once. ``on_text`` (called on the loop) receives streamed text deltas. A call that
        needs a person's approval when nobody can be asked pauses the run: the result's ``status``
        is ``needs_approval``, its ``pending`` the calls waiting; :meth:`resume` continues it."""
        run = RunControl(run_id or new_run_id(), "agent", self.spec.name, tuple(self.spec.approve),
                         fresh=run_id is None)
        return await self._start(input, on_text, run, None)

    async def resume(self, record: dict[str, Any], decisions: dict[str, tuple[str, ...]] | None = None, *,
                     on_text: Callable[[str], None] | None = None) -> AgentResult:
        """Continue the stored run ``record`` (from :class:`AgentRunStore`, checked resumable)
        with ``decisions`` for its pending calls (approval key -> ("approved" | "denied", reason, who)):
        calls already finished are replayed from the effect journal, never run again."""
        run = RunControl.resumed(record, decisions, "agent", self.spec.name, tuple(self.spec.approve))
        return await self._start(str(record.get("input", "")), on_text, run, record)

    async def _start(self, input: str, on_text: Callable[[str], None] | None, run: RunControl,
                     resume: dict[str, Any] | None) -> AgentResult:
        op = Operation(AGENT_RUN, self.spec.name, {"agent": self.spec.name, "input": input, "model": self.spec.model},
                       meta={"agent": self, "on_text": on_text, "usage": Usage(), "run": run, "resume": resume})
        result: AgentResult = await self.pipeline.arun(op, _run_once)
        if self.spec.memory and self.state is not None and op.meta.get("result") is result and result.status == "done":
            self._remember(result.messages)
        return result

    # ------------------------------------------------------------------ the loop
    async def _loop(self, input: str, on_text: Callable[[str], None] | None, usage: Usage, run: RunControl,
                    resume: dict[str, Any] | None, meter: Any = None) -> AgentResult:
        spec = self.spec
        result = AgentResult(text="", usage=usage, run_id=run.run_id)
        seen_calls: dict[str, int] = {}
        output_retries = 0
        carried: list[ToolCall] = []  # the tool calls of the last answer, still to run (a resume)
        if resume is None:
            history = self._recall()
            messages = ([Message.system(spec.system)] if spec.system else []) + history + [Message.user(input)]
            first_new = len(messages) - 1
            start = 1
        else:
            messages = [Message.from_dict(m) for m in resume.get("messages") or []]
            first_new = int(resume.get("first_new", 0))
            start = int(resume.get("step", 1))
            output_retries = int(resume.get("output_retries", 0))
            seen_calls = dict(resume.get("seen_calls") or {})
            result.tool_calls = [ToolCallRecord(**r) for r in resume.get("tool_calls") or []]
            if messages and messages[-1].role == "assistant" and messages[-1].tool_calls:
                carried = list(messages[-1].tool_calls)
        tools = self.tool_specs()
        # The records of the calls as the run record stores them, each made once (the run is saved
        # several times; a record does not change once its call is recorded).
        stored_calls = [stored_call(r) for r in result.tool_calls]
        # The messages as stored, likewise: the conversation only grows (each save adds the new ones).
        stored_messages: list[dict[str, Any]] = []
        # One tool context per run: its budget limits the whole run; the caller names this agent
        # without changing the context it was given (a cell's, shared with the cell's own calls).
        ctx = dataclasses.replace(self.context(), caller=f"agent:{spec.name}")

        async def save(status: str, step: int, **extra: Any) -> None:
            if meter is not None:  # the run's own meter, when a budget applies (control/budgets.py)
                extra["budget"] = meter.report()  # use against each budget, as agent:usage() shows it
            stored_messages.extend(m.to_dict() for m in messages[len(stored_messages):])
            await self.runs.asave(run, status, input=input, messages=stored_messages, first_new=first_new,
                           step=step, output_retries=output_retries, seen_calls=seen_calls,
                           tool_calls=stored_calls, **extra)

        # Saved: when the run starts, when an answer asks for tool calls (before they run) and when it
        # ends or pauses. Not after the calls: with the effect journal, a resume from the answer gets
        # their results back from the journal without running them again.
        journaled = self.pipeline.find(JournalInterceptor) is not None
        await save("running", start)  # this process runs it now (a resume takes it over)
        for step in range(start, spec.max_steps + 1):
            result.steps = step
            if carried:
                calls, carried = carried, []
            else:
                request = Request(model="", messages=messages, tools=tools, temperature=spec.temperature,
                                  max_tokens=spec.max_tokens, json_schema=spec.output_schema)
                try:
                    completion = await self._ask(request, on_text, step, usage)
                except ApprovalRequired as exc:  # the model call (or its request) waits for a person
                    pending = [dict(exc.details.get("request") or {}, message=exc.message, call_id=f"model-{step}")]
                    return await self._paused(result, pending, messages, first_new, save, step)
                result.model = completion.model or result.model
                messages.append(completion.message)
                calls = completion.tool_calls
                if calls:
                    repeated = self._repeated(calls, seen_calls)
                    if repeated:
                        result.text = (f"stopped: the model called {repeated} with the same arguments "
                                       f"{MAX_REPEATED_CALLS} times")
                        result.stop_reason = "repeated_call"
                        for call in calls:  # keep the conversation valid (memory, next runs)
                            messages.append(Message.tool_result(call, json.dumps({"error": {
                                "code": "repeated_call", "message": result.text}}), is_error=True))
                        break
                    await save("running", step)  # the answer is durable before any of its calls runs
            if calls:
                if len(calls) == 1:
                    records = [await self._call_tool(calls[0], step, ctx, 0)]
                else:
                    records = await asyncio.gather(*(self._call_tool(call, step, ctx, i)
                                                     for i, call in enumerate(calls)))
                pending = [dict(r.pending, call_id=c.id, index=i)
                           for i, (c, r) in enumerate(zip(calls, records, strict=True)) if r.pending is not None]
                if pending:  # the step's results wait for the decisions; finished calls are in the journal
                    return await self._paused(result, pending, messages, first_new, save, step)
                for call, record in zip(calls, records, strict=True):
                    result.tool_calls.append(record)
                    stored_calls.append(stored_call(record))
                    messages.append(Message.tool_result(call, _tool_result_text(record), is_error=record.error is not None))
                if not journaled:
                    await save("running", step + 1)
                continue
            result.text = completion.text
            result.stop_reason = "end" if completion.stop_reason in ("end", "stop_sequence") else completion.stop_reason
            if completion.stop_reason == "content_filter":
                # a refusal is not an answer to validate or to argue with: the run ends saying why
                result.refusal = refusal(completion, spec.model)
                break
            if self._validate_output is None:
                break
            data, problems = self._parse_output(completion.text)
            if not problems:
                result.data = data
                break
            if output_retries >= spec.max_output_retries:
                result.stop_reason = "invalid_output"
                result.data = None
                break
            output_retries += 1
            messages.append(Message.user(
                "Your answer did not match the required JSON schema:\n - " + "\n - ".join(problems)
                + "\nAnswer again with only the JSON value."))
        else:
            result.stop_reason = "max_steps"
            if not result.text:
                result.text = f"stopped after {spec.max_steps} steps without a final answer"
        result.messages = messages[first_new:]
        await save("done", result.steps, result={k: v for k, v in result.to_dict().items() if k != "tool_calls"})
        return result

    @staticmethod
    async def _paused(result: AgentResult, pending: list[dict[str, Any]], messages: list[Message], first_new: int,
                      save: Callable[..., Awaitable[None]], step: int) -> AgentResult:
        """End the run for now: it waits at ``step`` for decisions on ``pending`` (stored by ``save``)."""
        result.status, result.stop_reason, result.pending = "needs_approval", "needs_approval", pending
        result.text = f"waiting for approval of {len(pending)} call(s): " + ", ".join(p["name"] for p in pending)
        await save("needs_approval", step, pending=pending)
        result.messages = messages[first_new:]
        return result

    async def _ask(self, request: Request, on_text: Callable[[str], None] | None, step: int, usage: Usage) -> Completion:
        """One model call (see :mod:`.llm_call`): hooks ``llm.*``, events, accounting."""
        return await self._model_call().ask(request, on_text=on_text, usage=usage, where={"step": step})

    def _model_call(self) -> ModelCall:
        """How this agent asks its model: made once, again only when what it was made of changed."""
        call = self._call
        if (call is None or call.provider is not self.provider or call.model != self.spec.model
                or call.who["agent"] != self.spec.name or call.hooks is not self.hooks
                or call.events is not self.events or call.pipeline is not self.pipeline):
            call = self._call = ModelCall(self.provider, self.spec.model, {"agent": self.spec.name}, hooks=self.hooks,
                                          events=self.events, source="agents", account=self._weak_account,
                                          pipeline=self.pipeline)
        return call

    async def _call_tool(self, call: ToolCall, step: int, ctx: ToolContext, index: int = 0) -> ToolCallRecord:
        record = ToolCallRecord(call.name, dict(call.arguments), step=step)
        if call.name not in self.spec.tools:
            record.error = {"code": "not_found", "message": f"no tool named {call.name!r} is available to this agent; "
                                                          f"available: {', '.join(self.spec.tools) or 'none'}"}
            return record
        if "_raw" in call.arguments and len(call.arguments) == 1:
            record.error = {"code": "invalid_argument",
                            "message": "the arguments were not valid JSON: " + str(call.arguments["_raw"])[:500]}
            return record
        try:
            with in_call(f"{step}.{index}"):  # the call's place in the run: its effect-journal entry
                record.result = await self.registry.acall(call.name, call.arguments, ctx, call_id=call.id)
        except (asyncio.CancelledError, RunBudgetExceeded):  # a run budget stops the run
            raise
        except JournalCorrupted:  # the run cannot know what already ran: it stops, nothing decided
            raise
        except ApprovalRequired as exc:  # nobody could be asked: the run pauses for a decision
            record.pending = dict(exc.details.get("request") or {}, message=exc.message)
        except AikitError as exc:  # validation problems, tool failures, denials: the model gets to react
            record.error = exc.to_dict()
        except Exception as exc:  # a broken tool must not end the run
            record.error = {"code": "internal_error", "message": f"{type(exc).__name__}: {exc}"}
        return record

    def _account(self, completion: Completion) -> None:
        """Count each model call's tokens as it happens (a run that fails later still pays for
        them), priced at the model that actually answered."""
        self.usage.add(completion.usage)
        if self.ledger is not None:
            self.ledger.record(self.spec.name, completion.model, completion.usage)

    def _repeated(self, calls: list[ToolCall], seen: dict[str, int]) -> str | None:
        for call in calls:
            key = call.name + _CALL_KEY_JSON(call.arguments)
            seen[key] = seen.get(key, 0) + 1
            if seen[key] > MAX_REPEATED_CALLS:
                return call.name
        return None

    def _parse_output(self, text: str) -> tuple[Any, list[str]]:
        candidate = text.strip()
        if candidate.startswith("```"):
            candidate = candidate.strip("`")
            candidate = candidate[candidate.find("\n") + 1:] if "\n" in candidate else candidate
        try:
            data = json.loads(candidate)
        except ValueError as exc:
            start, end = candidate.find("{"), candidate.rfind("}")
            if start < 0 or end <= start:
                return None, [f"not JSON: {exc}"]
            try:
                data = json.loads(candidate[start:end + 1])
            except ValueError as inner:
                return None, [f"not JSON: {inner}"]
        assert self._validate_output is not None
        return data, self._validate_output(data)

    # ------------------------------------------------------------------ memory
    def _recall(self) -> list[Message]:
        if not self.spec.memory or self.state is None:
            return []
        stored = self.state.get(f"agent:{self.spec.name}", MEMORY_KEY, [])
        return [Message.from_dict(m) for m in stored if isinstance(m, dict)]

    def _remember(self, new_messages: list[Message]) -> None:
        def append(old: Any) -> list[dict[str, Any]]:
            history = list(old or []) + [m.to_dict() for m in new_messages if m.role != "system"]
            return history[-MEMORY_MAX_MESSAGES:]

        self.state.update(f"agent:{self.spec.name}", MEMORY_KEY, append)

    def forget(self) -> None:
        """Drop the remembered conversation."""
        if self.state is not None:
            self.state.delete(f"agent:{self.spec.name}", MEMORY_KEY)

    def _publish(self, topic: str, payload: dict[str, Any]) -> None:
        if self.events is not None:
            self.events.publish(topic, payload, source="agents")


async def _run_once(op: Operation) -> AgentResult:
    """The handler of an agent run: one attempt of the loop (every model call of the run, those of
    retried attempts included, counts in the run's usage). The run's state is stored as it goes
    (control/runs.py): ``failed`` when it raises, ``interrupted`` when it is cancelled."""
    agent: Agent = op.meta["agent"]
    run: RunControl = op.meta["run"]
    op.meta.pop("result", None)
    meter = op.meta.get("budget_meter")
    with agent.runs.running(run, op.meta.get("resume"), meter):
        result = await agent._loop(str(op.payload.get("input", "")), op.meta["on_text"], op.meta["usage"], run,
                                   op.meta.get("resume"), meter)
    op.meta["result"] = result
    return result


def _replaced_run(op: Operation, value: Any) -> AgentResult:
    if not op.started:  # replaced before the model was asked
        return _replacement(value, AgentResult(text="", model="hook"))
    return _replacement(value, op.meta.get("result") or AgentResult(text="", usage=op.meta["usage"], model="hook"))


def _finished_fields(op: Operation, result: AgentResult) -> dict[str, Any]:
    fields = {"model": result.model, "steps": result.steps, "stop_reason": result.stop_reason,
              "usage": result.usage.to_dict()}
    if result.refusal:
        fields["refusal"] = result.refusal
    return fields


AGENT_RUN = OperationKind(
    "agent",
    hook_prefix="agent",
    honours=honours(before="cancel replace", after="cancel retry replace", error="retry replace"),
    topics=("agent.started", "agent.finished", "agent.failed"),
    source="agents",
    describe=lambda op: f"agent {op.name!r}",
    event_fields=lambda op: {"agent": op.name, "model": op.payload.get("model")},
    finished_fields=_finished_fields,
    after_payload=lambda op, result: {"agent": op.name, "input": op.payload.get("input"), "attempt": op.attempt,
                                      "result": result.to_dict()},
    error_payload=lambda op, error: {"agent": op.name, "input": op.payload.get("input"), "attempt": op.attempt,
                                     "error": error.to_dict()},
    replaced=_replaced_run,
)


def _fields(instance: Any) -> dict[str, Any]:
    """A dataclass's fields as a dict, shallow (``dataclasses.asdict`` deep-copies every value;
    the run record is copied whole as it is stored anyway). For the spec, whose values are plain."""
    names = _FIELD_NAMES.get(type(instance))
    if names is None:  # dataclasses.fields() builds its tuple anew at every call (once per save)
        names = _FIELD_NAMES[type(instance)] = tuple(f.name for f in dataclasses.fields(instance))
    values = getattr(instance, "__dict__", None)
    if values is not None and tuple(values) == names:  # the fields alone, in their order: copied at once
        return dict(values)
    return {name: getattr(instance, name) for name in names}


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _replacement(value: Any, result: AgentResult) -> AgentResult:
    """``result`` with a hook's replacement: a table sets ``text`` and ``data`` (those it has),
    anything else becomes the text. The rest (steps, usage, stop_reason, ...) still describes what
    the model did."""
    if isinstance(value, dict):
        if "text" in value:
            result.text = str(value["text"] or "")
        if "data" in value:
            result.data = value["data"]
    else:
        result.text = str(value)
    return result


def stored_call(record: ToolCallRecord) -> dict[str, Any]:
    """``dataclasses.asdict(record)``, as a run record stores it (a copy: the run goes on with
    the record's values), without asdict's walk through every field and value (a third of a tool
    call's cost to the agent loop)."""
    return {"name": record.name, "arguments": _copied(record.arguments), "result": _copied(record.result),
            "error": _copied(record.error), "step": record.step, "pending": _copied(record.pending)}


@dataclass
class _Boxed:
    value: Any


def _copied(value: Any) -> Any:
    """``value`` as ``dataclasses.asdict`` copies a field's value: JSON-like values directly,
    anything else through asdict itself (a dataclass becomes a dict, the rest is deep-copied)."""
    kind = type(value)
    if value is None or kind is str or kind is int or kind is float or kind is bool:
        return value
    if kind is dict:
        return {k if type(k) is str else _copied(k): _copied(v) for k, v in value.items()}
    if kind is list:
        return [_copied(v) for v in value]
    return dataclasses.asdict(_Boxed(value))["value"]


def _tool_result_text(record: ToolCallRecord) -> str:
    if record.error is not None:
        return json.dumps({"error": record.error}, ensure_ascii=False, default=str)
    if isinstance(record.result, str):
        return record.result
    return json.dumps(record.result, ensure_ascii=False, default=str)


class UsageLedger:
    """Tokens and cost per agent and for the whole session (prices from ``[models.prices]``)."""

    def __init__(self, prices: dict[str, dict[str, float]] | None = None) -> None:
        self.prices = prices or {}
        self.by_agent: dict[str, Usage] = {}
        self.cost_by_agent: dict[str, float] = {}
        self.session = Usage()
        self.session_cost = 0.0

    def record(self, agent: str, model: str, usage: Usage) -> None:
        self.by_agent.setdefault(agent, Usage()).add(usage)
        self.session.add(usage)
        price = self.prices.get(model, {})
        cost = (usage.input_tokens * float(price.get("input_per_mtok", 0.0))
                + usage.output_tokens * float(price.get("output_per_mtok", 0.0))) / 1_000_000
        self.cost_by_agent[agent] = self.cost_by_agent.get(agent, 0.0) + cost
        self.session_cost += cost

    def to_dict(self) -> dict[str, Any]:
        return {
            "session": {**self.session.to_dict(), "cost": round(self.session_cost, 6)},
            "agents": {name: {**u.to_dict(), "cost": round(self.cost_by_agent.get(name, 0.0), 6)}
                       for name, u in self.by_agent.items()},
        }
