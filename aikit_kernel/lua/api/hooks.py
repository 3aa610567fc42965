"""``Hook``: intercept tool calls, state writes, cells, agent runs... from Lua.

A Lua hook is ``function(ctx) ... end`` with ``ctx = {point = ..., payload = {...}}``. It returns
nothing to continue (after editing ``ctx.payload`` if it likes), or one of ``Hook.modify(payload)``,
``Hook.cancel(reason)``, ``Hook.retry([delay])``, ``Hook.replace(value)``. It always runs on the
Lua thread; an error in it is reported and the operation goes on.
"""

from __future__ import annotations

from typing import Any

from aikit_components.components import Components
from aikit_components.errors import InvalidArgument
from aikit_components.hooks import HookContext, HookResult

from ... import runtime
from ..convert import lua_type
from ..engine import LuaEngine
from . import expose
from ._util import checked_values, function_arg, lua, name_arg, options, py, run_on_lua_thread

DOCS = {
    "": "Hook\n\nIntercept operations at named points: tool.before/after/error, state.write.before/after, "
        "cell.before/after, agent.*, llm.*, workflow.step.*. "
        "Hook.register(point, fn [, {priority, name}]) -> hook; hook:remove().",
    "register": "Hook.register(point, fn [, {priority = 0, name = ...}]) -> hook\n\nfn(ctx) gets {point, payload}; return "
                "nothing to continue, or Hook.modify/cancel/retry/replace. Higher priority runs first. The handle has "
                "id, point and name, and hook:remove() unregisters it.\n"
                "Example: local h = Hook.register('tool.before', function(ctx) print('calling', ctx.payload.name) end)",
    "unregister": "Hook.unregister(hook) -> removed\n\nThe old way to write hook:remove() (takes the handle or its id).",
    "list": "Hook.list([point]) -> {{point, name}, ...}\n\nRegistered hooks in firing order.",
    "cancel": "Hook.cancel(reason) -> decision\n\n"
              "Returned by a hook: the operation fails with code 'cancelled' and this reason.",
    "modify": "Hook.modify(payload) -> decision\n\nReturned by a hook: continue with this payload instead.",
    "retry": "Hook.retry([delay]) -> decision\n\n"
             "Returned by an after/error hook: run the operation again (at most 3 times).",
    "replace": "Hook.replace(value) -> decision\n\nReturned by a hook: the operation's result is value (a before hook skips "
               "the operation).",
}

_ACTIONS = ("continue", "modify", "cancel", "retry", "replace")

_LUA_HANDLE = r"""
local remove = ...
local mt = {}
mt.__index = { remove = remove }
mt.__name = "aikit.Hook"
mt.__tostring = function(self) return "hook " .. self.id .. " (" .. self.point .. ")" end
return function(id, point, name) return setmetatable({ id = id, point = point, name = name }, mt) end
"""


def to_hook_result(value: Any) -> HookResult | None:
    """Turn what a Lua hook returned (converted to Python) into a HookResult."""
    if value is None or value == [] or value == {}:
        return None
    if not isinstance(value, dict) or value.get("action") not in _ACTIONS:
        raise ValueError("a Lua hook must return nothing or Hook.modify/cancel/retry/replace(...)")
    return HookResult(action=value["action"], payload=value.get("payload"), reason=str(value.get("reason") or ""),
                      value=value.get("value"), delay=float(value.get("delay") or 0.0))


def install(engine: LuaEngine, components: Components) -> None:
    hooks = components.hooks

    def register(point: Any, fn: Any, opts: Any = None) -> Any:
        point_name = name_arg(point, "Hook.register: the point")
        function_arg(fn, "Hook.register: the hook")
        o = options(engine, opts, ("priority", "name"), "Hook.register")

        def invoke(point_name: str, payload: dict[str, Any]) -> HookResult | None:
            table = lua(engine, {"point": point_name, "payload": payload})
            values = checked_values(engine, fn, table)
            decision = to_hook_result(py(engine, values[0]) if values else None)
            if decision is None:
                edited = py(engine, table[b"payload"])
                if edited != payload and not (edited == [] and payload == {}):
                    decision = HookResult.modify(edited)  # the hook edited ctx.payload in place
            return decision

        def run(ctx: HookContext) -> Any:
            if engine.dispatcher.on_lua_thread() or not runtime.on_io_thread():
                return run_on_lua_thread(engine, invoke, ctx.point, ctx.payload)
            return engine.dispatcher.call_async(invoke, ctx.point, ctx.payload)

        run.__name__ = str(o.get("name") or f"lua:{point_name}")
        hook_id = hooks.register(point_name, run, priority=int(o.get("priority", 0)), name=o.get("name"))
        return make_handle(hook_id.encode(), point_name.encode(), run.__name__.encode())

    def unregister(hook: Any) -> bool:
        if lua_type(hook) == "table":  # a handle from Hook.register
            hook = hook[b"id"]
        return hooks.unregister(name_arg(hook, "Hook.unregister: the hook"))

    def list_(point: Any = None) -> Any:
        return lua(engine, [{"point": p, "name": n} for p, n in hooks.list(name_arg(point, "point") if point else None)])

    def remove(handle: Any = None, *_: Any) -> bool:
        """hook:remove()."""
        if lua_type(handle) != "table" or not isinstance(handle[b"id"], bytes):
            raise InvalidArgument("use hook:remove(), not hook.remove(): remove is a method of the hook, called with ':'")
        return unregister(handle)

    make_handle = engine.compile_trusted(_LUA_HANDLE, "hook")(engine.internal[b"bind"](engine.host.wrap(remove)))
    expose(engine, "Hook", {"register": register, "unregister": unregister, "list": list_}, DOCS, convert=False)
    decisions = engine.compile_trusted(r"""
local Hook = ...
function Hook.cancel(reason) return { action = "cancel", reason = reason } end
function Hook.modify(payload) return { action = "modify", payload = payload } end
function Hook.retry(delay) return { action = "retry", delay = delay } end
function Hook.replace(value) return { action = "replace", value = value } end
return Hook
""", "hook")
    table = decisions(engine.env[b"Hook"])
    for key in ("cancel", "modify", "retry", "replace"):
        engine.register_doc(f"Hook.{key}", table[key.encode()], DOCS[key])
