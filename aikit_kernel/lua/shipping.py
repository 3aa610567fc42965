"""Lua function steps shipped to a Ray worker (``Workflow.new{executor = "ray", ...}``).

A Lua function cannot travel as it is: it lives in this kernel's Lua state. What travels is
:class:`ShippedLuaFunction`, taken when the workflow is defined: the function's compiled code
(``string.dump``, with its debug info, so errors keep their line numbers), the values of its
upvalues and the notebook globals it reads. On the worker it runs in a fresh sandboxed Lua
runtime with aikit's globals (``Tool``, ``State``, ... over the worker's components), its
upvalues and those globals set from the shipped values, and ``(params, ctx)`` as arguments.

What can be shipped: a function whose upvalues and notebook globals are **data** (nil, booleans,
numbers, strings, and tables of these without metatables), taken by value when the workflow is
defined. A function that uses another function, a handle (an agent, a collection, a workflow) or
a coroutine from outside its body cannot: that is an error naming the value before anything
runs. Define helpers inside the step's function, or pass values through ``params``. Globals are
found by name in the function's source, so a local inside the function that shadows a notebook
global of the same name is treated as that global.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from aikit_components.distributed.shipping import NotShippable
from aikit_components.errors import AikitError

from .convert import lua_to_python, lua_type, python_to_lua
from .source import tokenize

# (upvalue names, values, count, code or nil, why it cannot be dumped)
_UPVALUES = b"""
(function(getupvalue, dump, pcall)
  return function(f)
    local names, values, n = {}, {}, 0
    while true do
      local name, value = getupvalue(f, n + 1)
      if name == nil then break end
      n = n + 1
      names[n], values[n] = name, value
    end
    local ok, code = pcall(dump, f)
    if ok then return names, values, n, code, nil end
    return names, values, n, nil, code
  end
end)(debug.getupvalue, string.dump, pcall)
"""

# Where a value is not data and what is there (nil when it is all data).
_NOT_DATA = b"""
(function(type, getmetatable, next, tostring)
  local function problem(v, path, seen)
    local t = type(v)
    if t == "nil" or t == "boolean" or t == "number" or t == "string" then return nil end
    if t ~= "table" then return path, "a " .. t end
    if getmetatable(v) ~= nil then return path, "an object (a table with a metatable, such as an aikit handle)" end
    if seen[v] then return path, "a table that contains itself" end
    seen[v] = true
    for k, x in next, v do
      local p, what = problem(k, path .. " (a key)", seen)
      if p == nil then p, what = problem(x, path .. "." .. tostring(k), seen) end
      if p then return p, what end
    end
    seen[v] = nil
    return nil
  end
  return function(v, path)
    local p, what = problem(v, path, {})
    return p, what
  end
end)(type, getmetatable, next, tostring)
"""

# A shipped function, loaded into a fresh runtime with its upvalues set.
_LOAD = b"""
(function(load, setupvalue)
  return function(code, name, env, names, values, n)
    local fn, err = load(code, name, "b", env)
    if fn == nil then return nil, err end
    for i = 1, n do
      if names[i] == "_ENV" then setupvalue(fn, i, env) else setupvalue(fn, i, values[i]) end
    end
    return fn, nil
  end
end)(load, debug.setupvalue)
"""

INTERRUPT_POLL_S = 0.05


@dataclass(frozen=True)
class ShippedLuaFunction:
    """A Lua step function as data (see the module docstring); calling it on a worker runs it
    in a fresh sandboxed runtime and returns its first result as JSON-like Python."""

    step_id: str
    code: bytes
    upvalue_names: tuple[str, ...]
    upvalues: tuple[Any, ...]  # JSON-like values, None for _ENV
    globals: dict[str, Any] = field(default_factory=dict)

    def __call__(self, params: Any, ctx: Any) -> Any:
        from ..lua_runtime import build_lua_runtime
        from ..output import TerminalOutput

        built = build_lua_runtime(TerminalOutput(), getattr(ctx, "components", None))
        engine = built.engine
        try:
            runtime = engine.runtime
            env = engine.env
            for name, value in self.globals.items():
                env[name.encode()] = python_to_lua(runtime, value)
            n = len(self.upvalue_names)
            names = runtime.table_from([name.encode() for name in self.upvalue_names])
            values = runtime.table_from({i + 1: python_to_lua(runtime, v) for i, v in enumerate(self.upvalues)
                                         if v is not None})
            fn, err = runtime.eval(_LOAD)(self.code, f"=step {self.step_id}".encode(), env, names, values, n)
            if fn is None:
                raise AikitError(f"step {self.step_id!r}: the shipped Lua function does not load on this worker "
                                 f"({err!r}); the worker needs the same aikit (and Lua) version as the kernel",
                                 code="worker_setup")
            to_data = ctx.to_dict() if hasattr(ctx, "to_dict") else ctx
            result = _interruptible(engine, fn, python_to_lua(runtime, params), python_to_lua(runtime, to_data))
            if result.error is not None:
                raise AikitError(_lua_error_message(self.step_id, result.error), code="lua_error")
            values_out = [lua_to_python(v, engine.address) for v in result.values]
            return values_out[0] if values_out else None
        finally:
            engine.close()


def _interruptible(engine: Any, fn: Any, *args: Any) -> Any:
    """``engine.call(fn, *args)`` on a helper thread; a KeyboardInterrupt in this (main) thread
    (Ray's cancellation) interrupts the Lua code and propagates once it stopped."""
    box: list[Any] = []
    thread = threading.Thread(target=lambda: box.append(engine.call(fn, *args)), name="aikit-lua-step", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(INTERRUPT_POLL_S)
    except KeyboardInterrupt:
        engine.interrupt()
        thread.join()
        raise
    return box[0]


def _lua_error_message(step_id: str, failure: Any) -> str:
    message = f"{failure.ename}: {failure.evalue}" if getattr(failure, "evalue", None) else str(failure)
    if "global '" in message and "nil value" in message:
        message += (" (a Lua step on a Ray worker runs in a fresh runtime: only aikit's globals and the data the "
                    "step used when the workflow was defined are there)")
    return f"step {step_id!r}: {message}"


class LuaShipper:
    """Takes the shippable form of Lua step functions of one engine; ``baseline`` names the
    globals every fresh runtime has (so they are not shipped)."""

    def __init__(self, engine: Any, baseline: set[str]) -> None:
        self._engine = engine
        self._baseline = baseline
        self._upvalues = engine.runtime.eval(_UPVALUES)
        self._not_data = engine.runtime.eval(_NOT_DATA)

    def ship(self, fn: Any, step_id: str) -> ShippedLuaFunction:
        """``fn`` as a :class:`ShippedLuaFunction`, or :class:`NotShippable` naming the value
        that keeps it here."""
        names, values, n, code, why = self._upvalues(fn)
        if code is None:
            raise NotShippable(f"its function cannot be shipped to a Ray worker ({_text(why)})")
        upvalue_names: list[str] = []
        upvalues: list[Any] = []
        for i in range(1, n + 1):
            name = _text(names[i])
            upvalue_names.append(name)
            if name == "_ENV":
                upvalues.append(None)
                continue
            upvalues.append(self._data(values[i], name, "the local"))
        shipped_globals = self._globals(fn, set(upvalue_names))
        return ShippedLuaFunction(step_id, code, tuple(upvalue_names), tuple(upvalues), shipped_globals)

    def _data(self, value: Any, name: str, what: str) -> Any:
        path, kind = self._not_data(value, name.encode())
        if path is not None:
            raise NotShippable(f"its function uses {what} {_text(path)!r}, {_text(kind)}, which cannot be shipped to a "
                               "Ray worker: only data (nil, booleans, numbers, strings and plain tables of these) can; "
                               "define it inside the step's function or pass it in params")
        return lua_to_python(value, self._engine.address, strict=True)

    def _globals(self, fn: Any, upvalue_names: set[str]) -> dict[str, Any]:
        source = self._engine.introspection.function_source(fn)
        if source is None:
            return {}
        env = self._engine.env
        shipped: dict[str, Any] = {}
        for name in _free_names(source.split("\n", 1)[-1]):
            if name in upvalue_names or name in self._baseline or name in shipped:
                continue
            value = env[name.encode()]
            if value is None:
                continue
            if lua_type(value) in ("function", "userdata", "thread") or lua_type(value) == "table":
                shipped[name] = self._data(value, name, "the notebook global")
            else:
                shipped[name] = lua_to_python(value, self._engine.address)
        return shipped


def _free_names(source: str) -> list[str]:
    """Names in ``source`` that may be globals: not a field (``a.b``, ``a:b``), label or goto."""
    tokens = [t for t in tokenize(source) if t.kind != "comment"]
    found: list[str] = []
    for i, tok in enumerate(tokens):
        if tok.kind != "name":
            continue
        before = tokens[i - 1].text if i > 0 else ""
        if before in (".", ":", "::", "goto"):
            continue
        found.append(tok.text)
    return found


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
