"""What each kind of operation looks like as a span, after the OpenTelemetry GenAI semantic
conventions (semantic-conventions 1.37 GenAI names, ``gen_ai.provider.name``; with
``OTEL_SEMCONV_STABILITY_OPT_IN`` unset the 1.36 ``gen_ai.system`` is emitted as well).

:data:`SHAPES` maps an operation kind's name to a :class:`Shape`: ``start(op, telemetry)`` gives the
span's name, kind and attributes when the operation starts; ``finish(op, result, span, telemetry)``
adds what the result says. Content (prompts, answers, tool arguments and results) is added only
when ``telemetry.capture_content``; secrets never (no headers, URLs are cleaned by their kind)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry.trace import SpanKind

from ..operations import Operation
from .spans import SharedAttributes

__all__ = ["SHAPES", "Shape", "llm_provider"]

Start = Callable[[Operation, Any], tuple[str, SpanKind, dict[str, Any]]]
Finish = Callable[[Operation, Any, Any, Any], None]

INTERNAL, CLIENT = SpanKind.INTERNAL, SpanKind.CLIENT


@dataclass(frozen=True, slots=True)
class Shape:
    start: Start
    finish: Finish | None = None
    content_only: bool = False  # finish adds captured content only: not called without capture_content


def llm_provider(model: str) -> str:
    """The provider part of ``provider/model`` (``"unknown"`` for a bare alias)."""
    return model.split("/", 1)[0] if "/" in model else "unknown"


def _provider_attrs(attrs: dict[str, Any], provider: str, telemetry: Any) -> None:
    attrs["gen_ai.provider.name"] = provider
    if not telemetry.latest_semconv:
        attrs["gen_ai.system"] = provider


# -- model calls ---------------------------------------------------------------------------------
def _llm_start(op: Operation, t: Any) -> tuple[str, SpanKind, dict[str, Any]]:
    model = op.name
    provider = llm_provider(model)
    attrs: dict[str, Any] = {"aikit.operation.kind": "llm", "gen_ai.operation.name": "chat",
                             "gen_ai.request.model": model}
    _provider_attrs(attrs, provider, t)
    call = op.meta.get("call")
    who = getattr(call, "who", None) or {}
    if "agent" in who:
        attrs["gen_ai.agent.name"] = str(who["agent"])
    if "workflow" in who:
        attrs["aikit.workflow.name"] = str(who["workflow"])
    request = op.meta.get("request")
    if request is not None:
        if request.temperature is not None:
            attrs["gen_ai.request.temperature"] = float(request.temperature)
        if request.max_tokens is not None:
            attrs["gen_ai.request.max_tokens"] = int(request.max_tokens)
        if t.capture_content:
            attrs["gen_ai.input.messages"] = t.text([m.to_dict() for m in request.messages])
    return f"chat {model}", INTERNAL if provider == "local" else CLIENT, attrs


def _llm_finish(op: Operation, completion: Any, span: Any, t: Any) -> None:
    usage = completion.usage
    answered = completion.model or op.name
    attrs: dict[str, Any] = {
        "gen_ai.response.model": answered,
        "gen_ai.response.finish_reasons": [str(completion.stop_reason)],
        "gen_ai.usage.input_tokens": int(usage.input_tokens),
        "gen_ai.usage.output_tokens": int(usage.output_tokens),
    }
    response_id = getattr(completion, "response_id", "")
    if response_id:
        attrs["gen_ai.response.id"] = str(response_id)
    if "/" in answered and answered.split("/", 1)[0] != llm_provider(op.name):
        _provider_attrs(attrs, llm_provider(answered), t)
    cost = t.cost(answered, usage.input_tokens, usage.output_tokens)
    if cost is not None:
        attrs["aikit.cost.usd"] = cost
    if t.capture_content:
        attrs["gen_ai.output.messages"] = t.text([completion.message.to_dict()])
    span.set_attributes(attrs)
    attempts = getattr(getattr(op.meta.get("call"), "provider", None), "last_attempts", None)
    if attempts and len(attempts) > 1:
        t.fallback_spans(span, attempts)


# -- agents, tools, workflows ------------------------------------------------------------------------
def _agent_start(op: Operation, t: Any) -> tuple[str, SpanKind, dict[str, Any]]:
    attrs: dict[str, Any] = {"aikit.operation.kind": "agent", "gen_ai.operation.name": "invoke_agent",
                             "gen_ai.agent.name": op.name, "gen_ai.agent.id": f"agent:{op.name}"}
    model = op.payload.get("model")
    if model:
        attrs["gen_ai.request.model"] = str(model)
    if t.capture_content:
        attrs["gen_ai.input.messages"] = t.text([{"role": "user", "text": op.payload.get("input", "")}])
    return f"invoke_agent {op.name}", INTERNAL, attrs


def _agent_finish(op: Operation, result: Any, span: Any, t: Any) -> None:
    # The run's usage is the sum of its chat spans', so it is not repeated here under the
    # gen_ai.usage names (a trace's totals add those up).
    usage = result.usage
    span.set_attributes({"aikit.agent.steps": int(result.steps), "aikit.agent.stop_reason": str(result.stop_reason),
                         "aikit.agent.input_tokens": int(usage.input_tokens),
                         "aikit.agent.output_tokens": int(usage.output_tokens),
                         "gen_ai.response.model": str(result.model or "")})
    if t.capture_content:
        span.set_attribute("gen_ai.output.messages", t.text([{"role": "assistant", "text": result.text}]))
    trace_id = format(span.get_span_context().trace_id, "032x")
    try:
        result.trace_id = trace_id
    except AttributeError:
        pass


def _tool_start(op: Operation, t: Any) -> tuple[str, SpanKind, dict[str, Any]]:
    name = op.name
    try:
        caller = op.context.caller
    except AttributeError:
        caller = None
    meta = op.meta
    plain = not t.capture_content and not meta.get("call_id") and not meta.get("mcp_server")
    if plain:  # a tool called the same way as before: the same shared attributes
        known = _PLAIN_TOOL_SPANS.get((name, caller))
        if known is not None:
            return known
    attrs: dict[str, Any] = {"aikit.operation.kind": "tool", "gen_ai.operation.name": "execute_tool",
                             "gen_ai.tool.name": name, "gen_ai.tool.type": "function"}
    call_id = meta.get("call_id")
    if call_id:
        attrs["gen_ai.tool.call.id"] = str(call_id)
    server = meta.get("mcp_server")
    if server:  # a tool of an MCP server (aikit_components/mcp/client.py): which server, which tool there
        attrs.update({"gen_ai.tool.type": "extension", "mcp.method.name": "tools/call", "aikit.mcp.server": str(server),
                      "aikit.mcp.tool": str(meta.get("mcp_tool") or op.name)})
    if caller:
        attrs["aikit.caller"] = str(caller)
        if attrs["aikit.caller"].startswith("agent:"):
            attrs["gen_ai.agent.name"] = attrs["aikit.caller"][6:]
    if t.capture_content:
        attrs["gen_ai.tool.call.arguments"] = t.text(op.payload.get("args"))
    shape = (f"execute_tool {name}", INTERNAL, attrs)
    if plain and name.__class__ is str and caller.__class__ in (str, type(None)):
        if len(_PLAIN_TOOL_SPANS) >= _PLAIN_TOOL_LIMIT:
            _PLAIN_TOOL_SPANS.clear()
        _PLAIN_TOOL_SPANS[(name, caller)] = shape = (shape[0], INTERNAL, SharedAttributes(attrs))
    return shape


# A tool's spans without call id, MCP server or content have the same name and attributes for one
# caller, call after call: they are made once (SharedAttributes, which spans copy before changing).
_PLAIN_TOOL_SPANS: dict[tuple[str, str | None], tuple[str, SpanKind, dict[str, Any]]] = {}
_PLAIN_TOOL_LIMIT = 1024


def _tool_finish(op: Operation, result: Any, span: Any, t: Any) -> None:
    if t.capture_content:
        span.set_attribute("gen_ai.tool.call.result", t.text(result))


def _step_start(op: Operation, t: Any) -> tuple[str, SpanKind, dict[str, Any]]:
    identity = op.meta.get("identity") or {}
    attrs: dict[str, Any] = {"aikit.operation.kind": "workflow.step", "aikit.workflow.step": op.name}
    for key in ("workflow", "run_id", "type"):
        if identity.get(key) is not None:
            attrs[f"aikit.workflow.{key}" if key != "workflow" else "aikit.workflow.name"] = str(identity[key])
    return f"step {op.name}", INTERNAL, attrs


def _workflow_start(op: Operation, t: Any) -> tuple[str, SpanKind, dict[str, Any]]:
    attrs = {"aikit.operation.kind": str(op.payload.get("kind") or "workflow"),
             "gen_ai.operation.name": "invoke_workflow", "aikit.workflow.name": op.name}
    if op.payload.get("run_id"):
        attrs["aikit.workflow.run_id"] = str(op.payload["run_id"])
    return f"invoke_workflow {op.name}", INTERNAL, attrs


def _workflow_finish(op: Operation, record: Any, span: Any, t: Any) -> None:
    status = getattr(record, "status", None)
    if status is not None:
        span.set_attribute("aikit.workflow.status", str(status))
        if status not in ("succeeded", "completed", "ok"):
            t.fail(span, str(status), f"the workflow run ended {status}")


# -- RAG, processes, HTTP, cells -----------------------------------------------------------------------
def _ingest_start(op: Operation, t: Any) -> tuple[str, SpanKind, dict[str, Any]]:
    embedder = op.meta.get("embedder") or "local"
    attrs = {"aikit.operation.kind": "rag.ingest", "gen_ai.operation.name": "embeddings",
             "gen_ai.request.model": str(embedder), "aikit.rag.collection": op.name,
             "aikit.rag.documents": len(op.payload.get("ids") or ())}
    return f"embeddings {embedder}", INTERNAL, attrs


def _ingest_finish(op: Operation, result: Any, span: Any, t: Any) -> None:
    if isinstance(result, dict):
        span.set_attribute("aikit.rag.chunks", int(result.get("chunks") or 0))


def _search_start(op: Operation, t: Any) -> tuple[str, SpanKind, dict[str, Any]]:
    p = op.payload
    attrs: dict[str, Any] = {"aikit.operation.kind": "rag.search", "gen_ai.operation.name": "retrieval",
                             "gen_ai.data_source.id": op.name, "aikit.rag.collection": op.name,
                             "aikit.rag.k": int(p.get("k") or 0), "aikit.rag.mode": str(p.get("mode") or "")}
    if t.capture_content and isinstance(p.get("query"), str):
        attrs["gen_ai.retrieval.query.text"] = t.text(p["query"])
    return f"retrieval {op.name}", INTERNAL, attrs


def _search_finish(op: Operation, hits: Any, span: Any, t: Any) -> None:
    try:
        span.set_attribute("aikit.rag.hits", len(hits))
    except TypeError:
        pass


def _process_start(op: Operation, t: Any) -> tuple[str, SpanKind, dict[str, Any]]:
    attrs: dict[str, Any] = {"aikit.operation.kind": "process", "process.executable.name": op.name}
    if t.capture_content:
        attrs["process.command_args"] = [str(a) for a in op.payload.get("argv") or ()]
    return f"process {op.name}", INTERNAL, attrs


def _process_finish(op: Operation, result: Any, span: Any, t: Any) -> None:
    code = getattr(result, "exit_code", None)
    if code is not None:
        span.set_attribute("process.exit.code", int(code))


def _http_start(op: Operation, t: Any) -> tuple[str, SpanKind, dict[str, Any]]:
    method = str(op.payload.get("method", "GET"))
    url = str(op.payload.get("url", ""))
    host = op.name.split(" ", 1)[-1]
    attrs = {"aikit.operation.kind": "http", "http.request.method": method, "url.full": url, "server.address": host}
    return method, CLIENT, attrs


def _http_finish(op: Operation, response: Any, span: Any, t: Any) -> None:
    status = getattr(response, "status_code", None)
    if status is not None:
        span.set_attribute("http.response.status_code", int(status))
        if status >= 500:
            t.fail(span, str(status), f"HTTP {status}")


def _cell_start(op: Operation, t: Any) -> tuple[str, SpanKind, dict[str, Any]]:
    attrs: dict[str, Any] = {"aikit.operation.kind": "cell"}
    count = op.payload.get("execution_count")
    if count is not None:
        attrs["jupyter.execution_count"] = int(count)
    if t.capture_content and isinstance(op.payload.get("code"), str):
        attrs["aikit.cell.code"] = t.text(op.payload["code"])
    return f"cell {op.name}", INTERNAL, attrs


SHAPES: dict[str, Shape] = {
    "llm": Shape(_llm_start, _llm_finish),
    "agent": Shape(_agent_start, _agent_finish),
    "tool": Shape(_tool_start, _tool_finish, content_only=True),
    "workflow.step": Shape(_step_start),
    "workflow": Shape(_workflow_start, _workflow_finish),
    "rag.ingest": Shape(_ingest_start, _ingest_finish),
    "rag.search": Shape(_search_start, _search_finish),
    "process": Shape(_process_start, _process_finish),
    "http": Shape(_http_start, _http_finish),
    "cell": Shape(_cell_start),
}


def generic_start(op: Operation, t: Any) -> tuple[str, SpanKind, dict[str, Any]]:
    """A kind without a shape of its own (another helper's, a plugin's): ``<kind> <name>``."""
    return f"{op.kind.name} {op.name}", INTERNAL, {"aikit.operation.kind": op.kind.name}
