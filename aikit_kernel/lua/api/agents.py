"""``Agent``: LLM agents with tools, from Lua.

An agent runs on the I/O loop (its HTTP calls and tool calls are async there); the Lua thread
waits for it interruptibly and, while waiting, runs Lua tools, Lua hooks and stream callbacks the
agent needs (they are queued to it by the dispatcher). ``agent:run(input, {stream = true})``
shows the answer as it is generated in an updating display.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from aikit_components.agents import Agent, AgentSpec
from aikit_components.components import Components
from aikit_components.control.approvals import who_answers
from aikit_components.control.budgets import BudgetLimits
from aikit_components.control.resume import resume_agent_run
from aikit_components.control.runs import AgentRunStore
from aikit_components.errors import InvalidArgument

from ..convert import lua_type
from ..engine import LuaEngine
from ..host import text
from . import expose
from ._util import call_lua_async, function_arg, lua, lua_kind, name_arg, options, py
from .handles import HandleKind, printable_results
from .mcp import resolve_tools
from .supervision import register_adapter

STREAM_DISPLAY_INTERVAL_S = 0.05

DOCS = {
    "": "Agent\n\nLLM agents with tools: Agent.new{...} -> agent; agent:run(input) -> {text, data, tool_calls, steps, "
        "usage, model, stop_reason, refusal}. refusal says why when a provider's content filter stopped the answer. With "
        "no model configured, agents use the local model (no network).",
    "new": "Agent.new{name, model = 'default', system, tools = {name | agent, ...}, collections = {col, ...}, "
           "fallback = {model, ...}, max_steps = 8, temperature, max_tokens, output_schema, memory = false} -> agent\n\n"
           "Creates an agent. model is 'provider/model' or an alias from config; fallback models are tried when the "
           "model is rate-limited, overloaded or down. Each RAG collection gives the agent a search_<name> tool.\n"
           "Example: local a = Agent.new{name = 'helper', system = 'Answer briefly.', tools = {'calculate'}}",
    "resume": "Agent.resume(run_id [, {approve = {call, ...}, deny = {call, ...}, reason}]) -> result\n\n"
              "Continues an agent run that paused (status 'needs_approval'), was interrupted or was cut off by a "
              "crash, in this process or another. Calls are named by id, tool name or '*'. Calls that already "
              "finished are replayed from the effect journal, never run again; a denied call reaches the model as a "
              "tool error.\nExample: Agent.resume(r.run_id, {approve = {'write_file'}, reason = 'checked the path'})",
    "runs": "Agent.runs([status]) -> {{run_id, agent, status, pending, updated_at}, ...}\n\nStored agent runs, oldest "
            "first; Agent.runs('needs_approval') lists those waiting for a decision.",
    "scripted": "Agent.scripted{reply, ...} -> model name\n\nA scripted model for tests: each model call answers with the "
                "next reply, a string (the answer) or a table {text = ..., tool_calls = {{name = 'tool', arguments = "
                "{...}}}}. Use it as an agent's model: Agent.new{model = Agent.scripted{...}, tools = {...}}. Also: "
                "model = 'test' (calls each tool once, then summarises), or model = function(messages, tools) return "
                "{text = ..., tool_calls = {...}} end (decides each turn).\n"
                "Example: local a = Agent.new{model = Agent.scripted{{tool_calls = {{name = 'calculate', arguments = "
                "{expression = '6*7'}}}}, 'It is 42.'}, tools = {'calculate'}}",
    "total_usage": "Agent.total_usage() -> {session = {input_tokens, output_tokens, total_tokens, cost}, agents = {...}}"
                   "\n\nTokens and cost so far, for the session and per agent (one agent's own: agent:usage()).",
    "usage": "Agent.usage()\n\nThe old name of Agent.total_usage() (kept until 0.3; not agent:usage(), one agent's usage).",
}

TOSTRING = 'function(self) return "agent " .. self.name .. " (" .. self.model .. ")" end'

SPEC_FIELDS = ("name", "model", "system", "tools", "fallback", "max_steps", "temperature", "max_tokens",
               "output_schema", "max_output_retries", "memory", "approve")
NEW_FIELDS = SPEC_FIELDS + ("collections", "budget")


def install(engine: LuaEngine, components: Components, scope: Any, collections: Any = None) -> HandleKind[Agent]:

    def new(spec_table: Any) -> Any:
        fields = options(engine, spec_table, NEW_FIELDS, "Agent.new")
        budget = BudgetLimits.parse(fields["budget"], "Agent.new") if fields.get("budget") is not None else None
        tool_names = []
        raw_tools = spec_table[b"tools"] if spec_table is not None else None
        if raw_tools is not None:
            if lua_type(raw_tools) != "table":
                raise InvalidArgument("Agent.new: tools must be a list of tool names or agents")
            for _, item in raw_tools.items():
                if isinstance(item, bytes):
                    tool_names.append(text(item))
                elif lua_type(item) == "table" and item[b"id"] is not None:
                    sub = handles.get(item)
                    register_agent_tool(components, sub.as_tool())
                    tool_names.append(sub.spec.name)
                else:
                    raise InvalidArgument("Agent.new: each tool is a tool name or an agent")
        raw_collections = spec_table[b"collections"] if spec_table is not None else None
        if raw_collections is not None:
            found = [collections.from_lua(item) if collections is not None else None
                     for _, item in raw_collections.items()] if lua_type(raw_collections) == "table" else [None]
            if None in found:
                raise InvalidArgument("Agent.new: collections must be a list of RAG collections (RAG.collection(name))")
            for col in found:
                tool = col.as_tool()
                register_agent_tool(components, tool, source="rag")
                if tool.name not in tool_names:
                    tool_names.append(tool.name)
        resolve_tools(engine, components, tool_names)  # MCP servers of aikit.toml, on first use
        fallback = fields.get("fallback") or []
        raw_model = spec_table[b"model"] if spec_table is not None else None
        if lua_type(raw_model) == "function":
            model = components.models.scripted(_lua_decider(engine, raw_model))
        elif raw_model is not None and not isinstance(raw_model, bytes):
            raise InvalidArgument("Agent.new: model must be a model name ('provider/model', an alias, 'test'), "
                                  f"Agent.scripted{{...}} or a function(messages, tools), got {lua_type(raw_model)}")
        else:
            model = str(fields.get("model") or "default")
        spec = AgentSpec(
            name=str(fields.get("name") or f"agent-{uuid.uuid4().hex[:6]}"),
            model=model,
            system=str(fields.get("system") or ""),
            tools=tool_names,
            fallback=[fallback] if isinstance(fallback, str) else fallback,
            max_steps=_whole(fields.get("max_steps", 8)),
            temperature=fields.get("temperature"),
            max_tokens=_whole(fields.get("max_tokens")),
            output_schema=fields.get("output_schema") or None,
            max_output_retries=_whole(fields.get("max_output_retries", 2)),
            memory=bool(fields.get("memory", False)),
            approve=_patterns(fields.get("approve")),
        )
        agent = components.new_agent(spec, context=lambda: scope.context)
        agent.budget = budget  # each run gets a meter with these limits (control/budgets.py)
        if tool_names and not warned["tools"] and _is_base_model(components, spec.model):
            warned["tools"] = True
            engine.host.output.write("stderr", BASE_MODEL_TOOLS_WARNING)
        return handles.new(agent, name=spec.name.encode(), model=spec.model.encode())

    def scripted(replies: Any) -> bytes:
        if lua_type(replies) != "table":
            raise InvalidArgument("Agent.scripted needs a list of replies, one per model call, got "
                                  f"{lua_kind(replies)}")
        from aikit_components.providers.testing import scripted_decider

        return components.models.scripted(scripted_decider(py(engine, replies))).encode()

    def run(agent: Agent, input: Any, opts: Any = None) -> Any:
        prompt = name_arg(input, "agent:run: the input")
        o = options(engine, opts, ("stream",), "agent:run")
        on_text = _display_stream(engine) if o.get("stream") else None

        async def go() -> dict[str, Any]:
            result = None
            try:
                result = await agent.run(prompt, on_text=on_text)
                return result.to_dict()
            finally:
                if on_text is not None:  # all that arrived, even after a failure
                    on_text.finish(result.stop_reason if result is not None else None)  # type: ignore[attr-defined]

        return engine.start(go())  # Lua awaits the id (an awaiting method)

    def stream(agent: Agent, input: Any, fn: Any) -> Any:
        prompt = name_arg(input, "agent:stream: the input")
        function_arg(fn, "agent:stream: the callback")

        def on_text(delta: str) -> None:  # on the I/O loop: hand the delta to the Lua thread, in order
            engine.dispatcher.submit(_call_quietly, engine, fn, delta)

        result = engine.wait(agent.run(prompt, on_text=on_text))
        engine.dispatcher.service()
        return lua(engine, result.to_dict())

    def as_tool(agent: Agent, description: Any = None) -> bytes:
        register_agent_tool(components, agent.as_tool(text(description) if description else None))
        return agent.spec.name.encode()

    def forget(agent: Agent) -> None:
        agent.forget()

    def agent_usage(agent: Agent) -> Any:
        usage = agent.usage.to_dict()
        meter = getattr(agent, "budget_meter", None)
        if meter is not None:  # the last run's use against each of its budgets
            usage["budget"] = meter.report()
        return lua(engine, usage)

    def info(agent: Agent) -> Any:
        spec = agent.spec
        return lua(engine, {f: getattr(spec, f) for f in SPEC_FIELDS})

    def total_usage() -> Any:
        return lua(engine, components.ledger.to_dict())

    def resume(run_id: Any, decisions: Any = None) -> Any:
        o = options(engine, decisions, ("approve", "deny", "reason"), "Agent.resume")
        reason = o.get("reason") or ""
        if not isinstance(reason, str):
            raise InvalidArgument("Agent.resume: reason must be a string")
        rid = py(engine, run_id) if run_id is not None else None
        result = engine.wait(resume_agent_run(components, rid, lambda fields: components.new_agent(
            AgentSpec(**fields), context=lambda: scope.context), _listed(o.get("approve")), _listed(o.get("deny")),
            reason, who=_who()))
        engine.dispatcher.service()
        return lua(engine, result.to_dict())

    def runs(status: Any = None) -> Any:
        wanted = py(engine, status) if status is not None else None
        if wanted is not None and not isinstance(wanted, str):
            raise InvalidArgument("Agent.runs: status must be a string such as 'needs_approval'")
        store = AgentRunStore(components.state)
        return lua(engine, [_run_summary(r) for r in store.list(wanted)])

    handles: HandleKind[Agent] = HandleKind(
        engine, "aikit.Agent", tostring=TOSTRING, missing=lambda agent_id: f"no agent {agent_id!r}",
        functions={"run": run, "stream": stream, "as_tool": as_tool, "forget": forget, "usage": agent_usage,
                   "info": info},
        awaiting=("run",))
    warned = {"tools": False}
    api = expose(engine, "Agent", {"new": new, "scripted": scripted, "total_usage": total_usage, "resume": resume,
                                   "runs": runs}, DOCS,
                 convert=False)
    api[b"usage"] = api[b"total_usage"]  # the old name, kept until 0.3 (CHANGELOG.md)
    engine.register_doc("Agent.usage", api[b"usage"], DOCS["usage"])
    methods = handles.methods
    methods[b"run"], methods[b"stream"], api[b"resume"] = printable_results(
        engine, "aikit.AgentResult", _PRINTED_RESULT, methods[b"run"], methods[b"stream"], api[b"resume"])
    engine.register_doc("Agent.resume", api[b"resume"], DOCS["resume"])

    def supervisable(_engine: LuaEngine, value: Any) -> Any:
        """A Lua agent object returned by a supervisor child's start(): the agent (the supervisor
        makes its process: ``as_actor()`` here, a Ray actor under ``executor = "ray"``)."""
        return handles.from_lua(value)

    register_adapter(engine, supervisable)
    return handles


# A run's result prints as its answer: print(a:run("hi")) shows the text (see printable_results).
_PRINTED_RESULT = r"""function(r)
  if r.status == "needs_approval" then
    return "needs approval: " .. #(r.pending or {}) .. " call(s) waiting (Agent.resume(\"" .. tostring(r.run_id)
      .. "\", {approve = {...}}))"
  end
  return tostring(r.text or "")
end"""


BASE_MODEL_TOOLS_WARNING = (
    "aikit: warning: this agent's model is the packaged local base model, which cannot call tools (it "
    "answers in plain text). To try tools offline use model = 'test' or Agent.scripted{...}; for real tool use "
    "set a model that calls tools (e.g. model = 'openai/gpt-4o-mini', or [models] default in aikit.toml).\n")


def _is_base_model(components: Components, model: str) -> bool:
    """Whether ``model`` is served by the packaged local base model (it cannot call tools)."""
    try:
        full = components.models.expand(model)
        provider = full.partition("/")[0]
        return components.models.provider_type(provider) == "local" and not components.models.settings(provider).get(
            "model_path")
    except Exception:  # an unusable name fails elsewhere, with its own message
        return False


def _lua_decider(engine: LuaEngine, fn: Any) -> Any:
    """A scripted model's decider calling the Lua function ``fn(messages, tools)`` on the Lua thread."""
    async def decide(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Any:
        return await call_lua_async(engine, fn, messages, tools)

    return decide


def _whole(value: Any) -> Any:
    """Lua numbers computed as floats (3.0) are whole numbers too; anything else is left for
    AgentSpec.validate to reject with a clear message."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def register_agent_tool(components: Components, tool: Any, source: str = "agent") -> None:
    """Register an agent (or a collection's search) as a tool; never shadow a tool of another kind."""
    if tool.name in components.tools and components.tools.get(tool.name).source != source:
        what = "an agent" if source == "agent" else "a collection's search tool"
        raise InvalidArgument(f"{what} named {tool.name!r} cannot become a tool: a {tool.name!r} tool already "
                              "exists; give it another name")
    components.tools.register(tool, replace=True)


def _call_quietly(engine: LuaEngine, fn: Any, delta: str) -> None:
    result = engine.pcall(fn, delta.encode())
    if result.error is not None and not result.error.interrupted:
        engine.host.output.write("stderr", f"aikit: stream callback failed: {result.error.evalue}\n")


def _display_stream(engine: LuaEngine) -> Any:
    """An on_text callback that shows the growing answer in one updating display (throttled).

    Each display's metadata says it is a stream (``{"aikit_stream": {"delta": new text}}``): a
    terminal prints only the new text of each update, a notebook replaces the display. An answer
    cut by ``max_tokens`` ends with a note saying so."""
    display_id = uuid.uuid4().hex
    state = {"text": "", "shown": 0.0, "started": False, "sent": 0}
    output = engine.host.output

    def show(update: bool, final: bool = False, note: str = "") -> None:
        body = state["text"] + note
        delta = body[state["sent"]:]
        state["sent"] = len(state["text"])
        meta = {"aikit_stream": {"delta": delta, "final": final}}
        output.display({"text/markdown": body, "text/plain": body}, meta, display_id, update)

    def on_text(delta: str) -> None:
        state["text"] += delta
        now = time.monotonic()
        if not state["started"]:
            state["started"] = True
            show(False)
            state["shown"] = now
        elif now - state["shown"] >= STREAM_DISPLAY_INTERVAL_S:
            show(True)
            state["shown"] = now

    def finish(stop_reason: str | None = None) -> None:
        note = MAX_TOKENS_NOTE if stop_reason == "max_tokens" else ""
        if state["started"]:
            show(True, final=True, note=note)
        elif note:
            output.write("stderr", note.strip() + "\n")

    on_text.finish = finish  # type: ignore[attr-defined]
    return on_text


def _patterns(value: Any) -> Any:
    """``approve`` of Agent.new: a list of tool names or patterns (one string for one; an empty
    table is an empty list); anything else is left for AgentSpec.validate to reject."""
    if value is None or value == {}:
        return []
    if isinstance(value, str):
        return [value]
    return value


def _listed(value: Any) -> Any:
    return [] if value == {} else value


def _who() -> str:
    return who_answers()


def _run_summary(record: dict[str, Any]) -> dict[str, Any]:
    summary = {"run_id": record.get("run_id"), "agent": record.get("agent"), "status": record.get("status"),
               "pending": record.get("pending") or [], "step": record.get("step"),
               "updated_at": record.get("updated_at")}
    for optional in ("budget", "error"):  # use against each budget (a run that had one); why it failed
        if record.get(optional) is not None:
            summary[optional] = record[optional]
    return summary

#: Where an answer is printed, the sign that max_tokens cut it.
MAX_TOKENS_NOTE = "\n\n[cut off: the answer reached max_tokens; raise max_tokens in Agent.new to get more]"
