"""``Tool``: call, list, inspect and define tools from Lua."""

from __future__ import annotations

from typing import Any

from aikit_components.components import Components
from aikit_components.errors import InvalidArgument, ValidationError
from aikit_components.tools import SECURITY_LEVELS, Tool
from aikit_components.tools.schema import schema_problems

from ..convert import flat_pairs_to_dict, lua_type, python_to_lua
from ..engine import LuaEngine
from . import expose
from ._util import call_lua, call_lua_async, function_arg, lua, lua_kind, name_arg, options, py
from .mcp import resolve_tools
from .run import RunScope

DOCS = {
    "": "Tool\n\nBuilt-in and custom tools: Tool.call(name, args), Tool.list{category=...}, Tool.info(name), "
        "Tool.define{...}. Tools are typed: bad arguments raise one invalid_argument error listing every problem.",
    "call": "Tool.call(name [, args]) -> result\n\nCalls a tool with a table of named arguments and returns its result as "
            "Lua values; raises a structured error {code, message, details} on failure.\n"
            "Example: Tool.call('hash', {text = 'hi', algorithm = 'sha256'})",
    "list": "Tool.list([{category = name}]) -> {{name, category, description, security}, ...}\n\nThe available tools, "
            "sorted by category and name.\nExample: for _, t in ipairs(Tool.list{category = 'text'}) do print(t.name) end",
    "info": "Tool.info(name) -> {name, description, category, security, parameters, examples, doc}\n\nA tool's JSON "
            "Schema, documentation and examples.\nExample: Tool.info('read_file').parameters",
    "define": "Tool.define{name, description, params = <JSON Schema>, fn = function(args) ... end [, category, security, "
              "examples, approval = 'always' | function(call), idempotent]} -> name\n\nDefines a tool in Lua, callable "
              "with Tool.call and usable by agents like a built-in. approval: a person approves each call (or those "
              "the function returns true for); idempotent: a resume may run a call again that it cannot tell ran.\n"
              "Example: Tool.define{name = 'double', description = 'Double a number', params = {type = 'object', "
              "properties = {n = {type = 'number'}}, required = {'n'}}, fn = function(a) return a.n * 2 end}",
    "categories": "Tool.categories() -> {name, ...}\n\nThe tool categories.",
}


# Tool.call in Lua. A flat argument table (string keys; string, number or boolean values: the
# common case) crosses into Python as ``name, k1, v1, k2, v2, ...``, several times cheaper than a
# table, which Python would walk entry by entry; any other table goes as it is. ``flat`` is
# reused; the values it held are released after each call so it keeps nothing alive.
_AWAITING_CALL = r"""
local start, start_flat, await, check = ...
local next, type, select, unpack = next, type, select, table.unpack
local SCALAR = {string = true, number = true, boolean = true}
local MAX_FLAT = 48  -- values (24 arguments): beyond that the table goes as it is
local flat, stale = {}, 0
return function(name, args, ...)
  local value, pending
  if type(args) == "table" and select("#", ...) == 0 then
    local n = 0
    for k, v in next, args do
      if n == MAX_FLAT or type(k) ~= "string" or not SCALAR[type(v)] then n = -1; break end
      flat[n + 1], flat[n + 2] = k, v
      n = n + 2
    end
    if n >= 0 then
      if n > stale then stale = n end
      -- the host function itself, not bind()'s closure around it: check() only when it failed
      local ok, details
      ok, value, pending, details = start_flat(name, unpack(flat, 1, n))
      for i = 1, stale do flat[i] = nil end
      stale = 0
      if not ok then check(ok, value, pending, details) end
    else
      value, pending = start(name, args)
    end
  else
    value, pending = start(name, args, ...)
  end
  if pending ~= nil then return await(pending) end
  return value
end
"""


def install(engine: LuaEngine, components: Components, scope: RunScope) -> None:
    def started(tool_name: str, arguments: dict[str, Any]) -> Any:
        """Run a call of a synchronous tool (its result, one value) or start an async one
        (``nil`` and what Lua awaits: it runs on the I/O loop, a workflow step yields meanwhile)."""
        registry = components.tools
        item = registry.find(tool_name)
        if item is None:
            resolve_tools(engine, components, [tool_name])  # an MCP server of aikit.toml, on first use
            item = registry.get(tool_name)
        if item.is_async:
            return None, engine.start(registry.acall(tool_name, arguments, scope.context))
        return python_to_lua(engine.runtime, registry.call(tool_name, arguments, scope.context))  # one value

    def call(name: Any, args: Any = None) -> Any:
        tool_name = name_arg(name, "Tool.call: the tool name")
        arguments = py(engine, args) if args is not None else {}
        if arguments == []:
            arguments = {}  # an empty Lua table converts to a list
        return started(tool_name, arguments)

    def call_flat(name: Any, *flat: Any) -> Any:
        # name_arg's, inlined for the common case (a non-empty string): this runs for every call
        tool_name = (name.decode("utf-8", errors="replace") if type(name) is bytes and name
                     else name_arg(name, "Tool.call: the tool name"))
        return started(tool_name, flat_pairs_to_dict(flat))

    def list_(opts: Any = None) -> Any:
        category = options(engine, opts, ("category",), "Tool.list").get("category")
        if isinstance(category, str):
            resolve_tools(engine, components, [category])
        return lua(engine, [
            {"name": t.name, "category": t.category, "description": t.description.split("\n")[0], "security": t.security}
            for t in components.tools.list(category)
        ])

    def info(name: Any) -> Any:
        return lua(engine, components.tools.get(name_arg(name, "Tool.info: the tool name")).info())

    def categories() -> Any:
        return lua(engine, components.tools.categories())

    def define(spec: Any) -> Any:
        return define_lua_tool(engine, components, spec)

    table = expose(engine, "Tool", {"call": call, "list": list_, "info": info, "define": define,
                                    "categories": categories}, DOCS, convert=False)
    flat_start = engine.host.wrap(call_flat)  # returns true, ... or false, code, message[, details]
    awaiting = engine.compile_trusted(_AWAITING_CALL, "tool")(table[b"call"], flat_start, engine.internal[b"await"],
                                                              engine.internal[b"check"])
    table[b"call"] = awaiting
    engine.register_doc("Tool.call", awaiting, DOCS["call"])


def define_lua_tool(engine: LuaEngine, components: Components, spec: Any) -> bytes:
    """Register a tool whose body is a Lua function (runs on the Lua thread, wherever it is called from)."""
    fields = options(engine, spec, ("name", "description", "params", "fn", "category", "security", "examples",
                                    "approval", "idempotent"), "Tool.define")
    name = fields.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InvalidArgument("Tool.define: `name` must be a non-empty string")
    fn = function_arg(spec[b"fn"], "Tool.define: `fn`")
    params = fields.get("params") or {"type": "object"}
    if params == []:
        params = {"type": "object"}
    if not isinstance(params, dict):
        raise InvalidArgument("Tool.define: `params` must be a JSON Schema table")
    problems = schema_problems(params)
    if problems:
        raise ValidationError(f"Tool.define: `params` of {name!r} is not a valid JSON Schema:", problems)
    security = fields.get("security", "safe")
    if security not in SECURITY_LEVELS:
        raise InvalidArgument(f"Tool.define: `security` must be one of {', '.join(SECURITY_LEVELS)}")

    approval = _approval_rule(engine, spec[b"approval"])
    idempotent = fields.get("idempotent", False)
    if not isinstance(idempotent, bool):
        raise InvalidArgument("Tool.define: `idempotent` must be true or false")

    def run(**kwargs: Any) -> Any:
        return call_lua(engine, fn, kwargs)

    async def run_async(**kwargs: Any) -> Any:
        return await call_lua_async(engine, fn, kwargs)

    try:
        item = Tool(name=name, description=str(fields.get("description") or name), fn=run, parameters=params,
                    category=str(fields.get("category", "custom")), security=security,
                    examples=_examples(fields.get("examples")), source="lua", async_fn=run_async,
                    approval=approval, idempotent=idempotent)
    except Exception as exc:
        raise InvalidArgument(f"Tool.define: {exc}") from None
    components.tools.register(item, replace=True)
    return name.encode()


def _approval_rule(engine: LuaEngine, value: Any) -> Any:
    """``approval`` of Tool.define: nil, ``"always"`` / true, or a Lua function of the call
    ``{name, args, caller, run_id}`` returning true (or a reason string) when a person must approve."""
    if value is None or value is False:
        return None
    if value is True or value == b"always":
        return "always"
    if lua_type(value) != "function":
        raise InvalidArgument("Tool.define: `approval` must be \"always\", true or a function(call) returning "
                              f"true (or a reason) when a person must approve, got {lua_type(value) or 'a string'}")

    def check(call: dict[str, Any]) -> Any:
        return call_lua(engine, value, call)

    async def acheck(call: dict[str, Any]) -> Any:
        return await call_lua_async(engine, value, call)

    check.acall = acheck  # type: ignore[attr-defined]  # the approval interceptor awaits it on the loop
    return check


def _examples(value: Any) -> list[Any]:
    """Tool.define's ``examples``: a list (of argument tables, or of strings)."""
    if value is None or value == {}:
        return []
    if not isinstance(value, list):
        raise InvalidArgument(f"Tool.define: examples must be a list, got {lua_kind(value)}")
    return value
