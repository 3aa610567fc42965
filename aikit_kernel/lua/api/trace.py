"""``Trace``: the traces of the local span store, from Lua (docs/lua-api.md, "Tracing").

``Trace.get(id)`` and ``Trace.last()`` give a trace table whose ``tostring`` is its span tree and
whose display (``display(t)``, ``t:show()``, or the trace as a cell's value) is the waterfall."""

from __future__ import annotations

import uuid
from typing import Any

from aikit_components.components import Components
from aikit_components.errors import InvalidArgument, NotFound
from aikit_components.telemetry.records import SpanRecord, TraceSummary
from aikit_components.telemetry.view import text_tree
from aikit_components.telemetry.waterfall import render_waterfall

from ..engine import LuaEngine
from . import python_callable
from ._util import lua_kind

DOCS = {
    "": "Trace\n\nWhat ran, from the local span store: Trace.last(), Trace.get(id), Trace.list{...}.",
    "last": "Trace.last() -> trace | nil\n\nThe most recent finished-or-running trace other than the current cell's "
            "(completions and inspections left out).\nExample: print(Trace.last())",
    "get": "Trace.get(id) -> trace\n\nA trace by id (32 hex digits, or a unique prefix of 8 or more): {trace_id, name, "
           "kind, status, duration_ms, span_count, error_count, input_tokens, output_tokens, cost_usd, spans = {...}}. "
           "tostring gives its span tree; display(trace) or trace:show() its waterfall.\n"
           "Example: local r = agent:run('hi'); Trace.get(r.trace_id):show()",
    "list": "Trace.list([{last = 20, agent = name, errors = true}]) -> {summary, ...}\n\nRecent traces, newest first.\n"
            "Example: for _, t in ipairs(Trace.list{last = 5}) do print(t.trace_id, t.name, t.status) end",
}

_LUA = r"""
local raw, bind = ...
local tree, html, show = bind(raw.tree), bind(raw.html), bind(raw.show)
local methods = {}
function methods.show(self) show(self.trace_id) end
function methods.html(self) return html(self.trace_id) end
local trace_mt = { __index = methods, __name = "aikit.Trace" }
trace_mt.__tostring = function(self) return tree(self.trace_id) end
trace_mt.__html = function(self) return html(self.trace_id) end
local function wrap(t) if t == nil then return nil end return setmetatable(t, trace_mt) end
local get, last, list = bind(raw.get), bind(raw.last), bind(raw.list)
return {
  get = function(id) return wrap(get(id)) end,
  last = function() return wrap(last()) end,
  list = function(opts) return list(opts) end,
}
"""

_NOT_TRACES = ("complete", "inspect", "debug")


def _ms(start: int, end: int | None) -> float | None:
    return None if end is None else round((end - start) / 1e6, 3)


def _summary(s: TraceSummary) -> dict[str, Any]:
    return {"trace_id": s.trace_id, "name": s.root_name, "kind": s.root_kind, "status": s.status,
            "start_ns": s.start_ns, "duration_ms": _ms(s.start_ns, s.end_ns), "span_count": s.span_count,
            "error_count": s.error_count, "input_tokens": s.input_tokens, "output_tokens": s.output_tokens,
            "cost_usd": s.cost_usd}


def _span(s: SpanRecord) -> dict[str, Any]:
    return {"span_id": s.span_id, "parent_span_id": s.parent_span_id, "name": s.name, "kind": s.kind,
            "status": s.status, "status_message": s.status_message, "start_ns": s.start_ns,
            "duration_ms": _ms(s.start_ns, s.end_ns), "attributes": s.attributes,
            "events": [{"name": e["name"], "attributes": e.get("attributes", {})} for e in s.events]}


def install(engine: LuaEngine, components: Components) -> None:
    telemetry = components.telemetry

    def store_trace(trace_id: Any) -> tuple[str, list[SpanRecord]]:
        if not isinstance(trace_id, str) or not trace_id:
            raise InvalidArgument(f"Trace.get: the id must be a string of hex digits, got "
                                  f"{lua_kind(trace_id)}")
        try:
            spans = telemetry.trace(trace_id)
        except KeyError:
            raise NotFound(f"no trace {trace_id!r} in the span store (a unique prefix needs 8 or more hex digits; "
                           f"Trace.list() shows the recent ones)", details={"trace_id": trace_id}) from None
        return spans[0].trace_id, spans

    def get(trace_id: Any) -> dict[str, Any]:
        full, spans = store_trace(trace_id)
        summary = _summary(telemetry.store().summary(full))
        summary["spans"] = [_span(s) for s in spans]
        return summary

    def last() -> dict[str, Any] | None:
        current = telemetry.current_trace_id()
        for s in telemetry.traces(limit=50):
            if s.trace_id != current and s.root_kind not in _NOT_TRACES:
                return get(s.trace_id)
        return None

    def list_traces(opts: Any = None) -> list[dict[str, Any]]:
        o = opts if isinstance(opts, dict) else {}
        if opts is not None and not isinstance(opts, dict):
            raise InvalidArgument("Trace.list: the options must be a table {last, agent, errors}")
        unknown = sorted(set(o) - {"last", "agent", "errors"})
        if unknown:
            raise InvalidArgument(f"Trace.list: unknown option(s) {', '.join(unknown)} (known: agent, errors, last)")
        limit = o.get("last", 20)
        if isinstance(limit, bool) or not isinstance(limit, (int, float)) or limit < 1:
            raise InvalidArgument("Trace.list: last must be a positive number")
        found = telemetry.traces(limit=int(limit) + 10, agent=o.get("agent"), errors_only=bool(o.get("errors")))
        return [_summary(s) for s in found if s.root_kind not in _NOT_TRACES][:int(limit)]

    def tree(trace_id: Any) -> str:
        return text_tree(store_trace(trace_id)[1])

    def html(trace_id: Any) -> str:
        full, spans = store_trace(trace_id)
        return render_waterfall(spans, title=f"{spans[0].name if spans else ''} · {full}")

    def show(trace_id: Any) -> None:
        full, spans = store_trace(trace_id)
        engine.host.output.display({"text/html": render_waterfall(spans, title=f"{spans[0].name} · {full}"),
                                    "text/plain": text_tree(spans)}, {}, uuid.uuid4().hex, False)

    bind = engine.internal[b"bind"]
    raw = engine.table(get=python_callable(engine, get), last=python_callable(engine, last),
                       list=python_callable(engine, list_traces), tree=python_callable(engine, tree),
                       html=python_callable(engine, html), show=python_callable(engine, show))
    table = engine.compile_trusted(_LUA, "Trace")(raw, bind)
    engine.set_global("Trace", table, DOCS[""])
    for key, doc in DOCS.items():
        if key:
            engine.register_doc(f"Trace.{key}", table[key.encode()], doc)
