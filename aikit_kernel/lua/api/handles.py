"""Python objects exposed to Lua as handles (agents, workflows, collections, subscriptions, ...).

A handle is a Lua table holding plain fields (``id``, ``name``, ...) whose metatable gives it its
methods (``__index``), its ``__tostring`` and a ``__gc`` finalizer. The Python object lives in
this module's registry under the handle's id, so Lua code only ever holds the id. When Lua
collects an unreachable handle, ``__gc`` queues its id and the next safe point (the end of a
cell, a wait) releases the registry entry (and runs the kind's ``on_release``, e.g. closing a
subscription), so objects created from Lua do not pile up for the life of the kernel. A kind may
keep an object registered past its handle (``keep``) when the object is live work that must go on,
like a subscription that calls a Lua function.

Methods are pre-bound functions: ``methods.NAME(self, a, b)`` calls the Python function
``NAME(obj, a, b)`` with the object of ``self.id`` (the Lua parameter list is the Python one, so
a missing argument arrives as ``nil``/``None`` exactly as before). A method listed in
``awaiting`` returns a future id from Python and Lua awaits it (a workflow step yields
meanwhile); ``lua_methods`` replaces a generated method with Lua source of its own.
"""

from __future__ import annotations

import inspect
import itertools
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from aikit_components.errors import NotFound

from ..convert import lua_type
from ..engine import LuaEngine
from ..host import text

T = TypeVar("T")

# The Lua side of one handle kind. `f` holds the bound Python functions (each takes the handle's
# id first); `ids` maps live handles to their ids (weak keys: it also says "this is a handle of
# this kind", and the finalizer still reads it, since a weak key goes only after its finalizer ran).
_LUA_KIND = r"""
local f, await, setmetatable, misuse, new_error = ...
local ids = setmetatable({}, { __mode = "k" })
local released = {}
local methods = {
%(methods)s
}
-- A method called with '.' instead of ':' (a.run("hi")) gets no handle as self: say so at the
-- caller's line instead of failing on a nil or a string deep inside.
local getinfo, error, pairs, sub = debug.getinfo, error, pairs, string.sub
for name, impl in pairs(methods) do
  methods[name] = function(self, ...)
    if ids[self] == nil then
      local level = 2  -- the caller's line: past any aikit binding that wraps the method
      local info = getinfo(level, "Sl")
      while info and sub(info.source, 1, 7) == "=[aikit" do
        level = level + 1
        info = getinfo(level, "Sl")
      end
      info = info or {}
      error(new_error("invalid_argument", misuse(name, info.source, info.currentline)), 0)
    end
    return impl(self, ...)
  end
end
local mt = {
  __index = methods,
  __name = %(type_name)s,
  __tostring = %(tostring)s,
  __gc = function(self)
    local id = ids[self]
    if id ~= nil then released[#released + 1] = id end
  end,
}
local function new(fields)
  ids[fields] = fields.id
  return setmetatable(fields, mt)
end
local function id_of(value) return ids[value] end
return new, id_of, released, methods
"""


class HandleKind(Generic[T]):
    """One kind of Lua handle: the registry of its Python objects and the Lua metatable.

    ``functions`` are the methods' Python bodies, ``fn(obj, *lua_args)`` (raw Lua arguments,
    results returned to Lua as they are, errors following the host-function convention).
    ``tostring`` is the Lua source of the ``__tostring`` function; ``missing`` the message of
    the ``not_found`` error for an id that is not registered (released, closed, dropped).
    """

    def __init__(self, engine: LuaEngine, type_name: str, *, functions: Mapping[str, Callable[..., Any]],
                 tostring: str, missing: Callable[[Any], str], awaiting: tuple[str, ...] = (),
                 lua_methods: Mapping[str, str] | None = None, on_release: Callable[[T], None] | None = None,
                 keep: Callable[[T], bool] | None = None) -> None:
        self.engine = engine
        self.type_name = type_name
        self._objects: dict[int, T] = {}
        self._ids = itertools.count(1)
        self._missing = missing
        self._on_release = on_release
        self._keep = keep
        wrap, bind = engine.host.wrap, engine.internal[b"bind"]
        bound = engine.table(**{name: bind(wrap(self._method(fn))) for name, fn in functions.items()})
        sources = []
        for name, fn in functions.items():
            source = (lua_methods or {}).get(name) or _method_source(name, fn, name in awaiting)
            sources.append(f"  {name} = {source},")
        chunk = _LUA_KIND % {"methods": "\n".join(sources), "type_name": _lua_string(type_name), "tostring": tostring}
        self._new, self._id_of, self._released, self.methods = engine.compile_trusted(chunk, type_name)(
            bound, engine.internal[b"await"], engine.runtime.globals()[b"setmetatable"], self._misuse,
            engine.internal[b"new_error"])
        engine.dispatcher.add_service(self._collect_service)

    # ------------------------------------------------------------------ registry
    def reserve_id(self) -> int:
        """A fresh handle id, for an object that needs to know it before :meth:`new`."""
        return next(self._ids)

    def new(self, obj: T, handle_id: int | None = None, **fields: Any) -> Any:
        """Register ``obj`` and return a new handle for it with ``fields`` plus ``id`` (a fresh
        one, or one from :meth:`reserve_id`)."""
        if handle_id is None:
            handle_id = next(self._ids)
        self._objects[handle_id] = obj
        return self._new(self.engine.table(id=handle_id, **fields))

    def get(self, handle: Any) -> T:
        """The object of a handle (or of a handle id); ``not_found`` once released."""
        handle_id = handle[b"id"] if lua_type(handle) == "table" else handle
        obj = self._objects.get(handle_id)  # type: ignore[arg-type]
        if obj is None:
            raise NotFound(self._missing(handle_id))
        return obj

    def from_lua(self, value: Any) -> T | None:
        """The object behind ``value`` when it is a handle of this kind, else None (``not_found``
        when its object was released: closed, dropped)."""
        if lua_type(value) != "table":
            return None
        handle_id = self._id_of(value)
        return self.get(handle_id) if handle_id is not None else None

    def release_where(self, matches: Callable[[T], bool]) -> None:
        """Forget now every object for which ``matches`` is true (a closed subscription, a
        dropped collection): their handles then raise ``not_found``."""
        for handle_id in [i for i, obj in self._objects.items() if matches(obj)]:
            self._objects.pop(handle_id, None)

    def objects(self) -> Iterator[T]:
        """The registered objects (a snapshot)."""
        return iter(list(self._objects.values()))

    def __len__(self) -> int:
        return len(self._objects)

    # ------------------------------------------------------------------ internals
    def _misuse(self, method: bytes, source: Any, line: Any) -> bytes:
        """The message for ``obj.method(...)`` called where ``obj:method(...)`` was meant, naming
        the caller's object and line when its source is a file (a cell, a script)."""
        name = text(method)
        obj = self.type_name.rsplit(".", 1)[-1].lower()
        where = ""
        if isinstance(source, bytes) and source.startswith(b"@") and isinstance(line, int) and line > 0:
            path = text(source[1:])
            try:
                with open(path, encoding="utf-8", errors="replace") as fh:
                    code = fh.read().split("\n")[line - 1]
            except (OSError, IndexError):
                code = ""
            found = re.search(r"([A-Za-z_][\w.\[\]'\"]*?)\s*\.\s*" + re.escape(name) + r"\s*\(", code)
            if found:
                obj = found.group(1)
            where = self.engine.cells.prettify(f"{path}:{line}: ")
        return (f"{where}use {obj}:{name}(...), not {obj}.{name}(...): {name} is a method of the "
                f"{self.type_name.rsplit('.', 1)[-1].lower()}, called with ':'").encode()

    def _collect_service(self) -> int:
        self.collect()
        return 0  # releases are not work Event.dispatch() reports (it counts subscriber calls)

    def _method(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def method(handle_id: Any, *args: Any) -> Any:
            return fn(self.get(handle_id), *args)

        method.__name__ = getattr(fn, "__name__", "method")
        return method

    def collect(self) -> int:
        """Release the objects of the handles Lua collected since the last call (a dispatcher
        service: runs on the Lua thread at safe points); returns how many were released.

        ``__gc`` only queues the id in a Lua list: calling Python from a finalizer would run it
        in the middle of any Lua allocation, and while the runtime is torn down at exit. The list
        is read and emptied with raw table access, which runs no Lua code: a safe point may come
        while an interrupt is pending (its hook would stop any Lua call) or inside a coroutine."""
        queue = self._released
        count = len(queue)
        if count == 0:
            return 0
        taken = [queue[i] for i in range(1, count + 1)]
        for i in range(count, 0, -1):
            queue[i] = None
        released = 0
        for handle_id in taken:
            obj = self._objects.get(handle_id)
            if obj is None or (self._keep is not None and self._keep(obj)):
                continue
            del self._objects[handle_id]
            released += 1
            if self._on_release is not None:
                self._on_release(obj)
        return released


_PRINTABLE = r"""
local name, setmetatable = ...
local type, getmetatable = type, getmetatable
local mt = { __name = name, __show_fields = true, __tostring = %(tostring)s }
local function result(r)
  if type(r) == "table" and getmetatable(r) == nil then setmetatable(r, mt) end
  return r
end
return function(f) return function(...) return result(f(...)) end end
"""


def printable_results(engine: LuaEngine, type_name: str, tostring: str, *functions: Any) -> tuple[Any, ...]:
    """``functions`` (Lua functions returning a plain result table: a run's record), wrapped so
    their tables carry a metatable named ``type_name`` whose ``__tostring`` is the Lua function
    ``tostring``: ``print(result)`` shows a summary instead of a table address, while a cell that
    ends with one still shows every field (``__show_fields``, sandbox.lua's repr)."""
    wrap = engine.compile_trusted(_PRINTABLE % {"tostring": tostring}, type_name)(
        type_name, engine.runtime.globals()[b"setmetatable"])
    return tuple(wrap(fn) for fn in functions)


def _method_source(name: str, fn: Callable[..., Any], awaiting: bool) -> str:
    """``function(self, a, b) return f.name(self.id, a, b) end`` with the Python parameters."""
    params = [p.name for p in list(inspect.signature(fn).parameters.values())[1:]
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    args = "".join(", " + p for p in params)
    call = f"f.{name}(self.id{args})"
    return f"function(self{args}) return {'await(' + call + ')' if awaiting else call} end"


def _lua_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
