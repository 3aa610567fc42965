"""``Supervisor``: Erlang/OTP-style supervision trees from Lua.

``Supervisor.new{strategy, intensity, period_s, name, children = {{name, start, restart, shutdown_timeout_s}, ...}}``
builds a :class:`aikit_components.supervision.Supervisor`. A child's ``start`` is a Lua function
returning what to run:

- a *Lua worker*: ``{init = function() return state end, handle = function(state, msg) ... return
  reply end [, terminate = function(state, reason) end, mailbox_size = n]}``. Its functions run on
  the Lua thread (only that thread may touch Lua), queued from the I/O loop through the engine's
  dispatcher and run at safe points: while Lua waits on the loop (``sup:call``, ``sleep``, ...),
  between cells and on ``Event.dispatch()``. A Lua error in them is a crash. ``state`` is the
  table ``init`` returned (mutate it in place); a restart calls ``init`` again.
- another ``Supervisor.new{...}`` (not started): a nested supervisor;
- anything with a Python actor behind it: an :class:`~aikit_components.supervision.Actor` or
  ``Supervisor``, a Python object with ``as_actor()``, or a Lua value one of the
  :func:`register_adapter` functions recognises (how other bindings, such as agents, make their
  objects supervisable).

The supervisor itself runs on the I/O loop; ``sup:start/stop/send/call/children/status`` reach it
through ``engine.wait`` (interruptible, and serving the worker calls queued for Lua meanwhile).
Limitation: a Lua worker's handler must not ``call`` another Lua worker (the Lua thread is busy
running the first handler, so the second one could only run after the first returns: the call
times out); ``send`` is fine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aikit_components.actors import (
    DEFAULT_CALL_TIMEOUT,
    DEFAULT_MAILBOX_SIZE,
    DEFAULT_SHUTDOWN_TIMEOUT,
    RUNNING,
    Actor,
    ActorContext,
    reason_text,
)
from aikit_components.components import Components
from aikit_components.errors import InvalidArgument
from aikit_components.supervision import ChildSpec, Supervisor

from ..convert import lua_type
from ..engine import LuaEngine
from . import expose
from ._util import checked_values, function_arg, lua, lua_kind, name_arg, py
from .handles import HandleKind

DOCS = {
    "": "Supervisor\n\nErlang/OTP-style supervision of long-lived workers: Supervisor.new{strategy, intensity, period_s, "
        "children} -> sup; sup:start(), sup:send(name, msg), sup:call(name, msg [, timeout]), sup:children(), "
        "sup:status(), sup:stop(). Children start in order and stop in reverse; more than `intensity` restarts in "
        "`period_s` seconds stop the supervisor (reason 'shutdown: restart intensity exceeded') and escalate to its "
        "parent supervisor. Events: supervisor.child_started/child_exited/child_restarted, supervisor.shutdown.",
    "new": "Supervisor.new{strategy = 'one_for_one'|'one_for_all'|'rest_for_one', intensity = 3, period_s = 5, name = ..., "
           "executor = 'local'|'ray', "
           "children = {{name = ..., start = fn, restart = 'permanent'|'transient'|'temporary', shutdown_timeout_s = 5}, "
           "...}} -> sup\n\nEach child's start() returns a worker {init = function() return state end, handle = "
           "function(state, msg) ... return reply end [, terminate = function(state, reason) end, mailbox_size = 1000]}, "
           "a nested Supervisor.new{...} (not started), or a supervisable object (agent). one_for_one restarts the "
           "failed child; one_for_all stops the others and restarts all; rest_for_one restarts it and those started "
           "after it. permanent: always restarted; transient: only after an abnormal exit; temporary: never. "
           "executor = 'ray' runs agent children as Ray actors (the supervisor stays here; a lost actor is "
           "restarted by these rules). "
           "(The old names period and shutdown_timeout still work.)\n"
           "Example: local sup = Supervisor.new{children = {{name = 'counter', start = function() return "
           "{init = function() return {n = 0} end, handle = function(s, msg) s.n = s.n + (msg.add or 0) return s.n "
           "end} end}}}:start()",
    "exit": "Supervisor.exit([reply]) -> marker\n\nReturned by a worker's handle: reply (to a call) and end the worker "
            "normally (a 'transient' child is then not restarted).\nExample: handle = function(s, msg) "
            "if msg == 'quit' then return Supervisor.exit('bye') end end",
}

METHOD_DOCS = {
    "start": "sup:start() -> sup\n\nStarts the children in order (init runs on the Lua thread); if one fails, those "
             "already started are stopped (reverse order) and an error 'supervisor_start_failed' is raised.",
    "stop": "sup:stop()\n\nStops every child in reverse start order (terminate runs), then the supervisor.",
    "send": "sup:send(name, msg) -> true\n\nQueues msg (a JSON-like value) for child `name` without waiting. Errors: "
            "not_found, actor_stopped (not running, e.g. restarting), mailbox_full.",
    "call": "sup:call(name, msg [, timeout = 5]) -> reply\n\nSends msg and waits for the handler's return value. Errors: "
            "timeout, actor_crashed (the worker died handling it), actor_stopped, mailbox_full, not_found.",
    "children": "sup:children() -> {{name, state, restart, restarts, kind, exit_reason}, ...}\n\nThe children in start "
                "order; state is starting/running/stopped/crashed; restarts counts restarts of that child.",
    "status": "sup:status() -> {name, strategy, state, exit_reason, intensity, period_s, restarts_in_period, counts, "
              "children, restart_latency_ms}\n\nThe supervisor's state ('crashed' with exit_reason 'shutdown: restart "
              "intensity exceeded' after too many restarts).",
}

_LUA = r"""
local Supervisor = ...
local getmetatable, setmetatable, type = getmetatable, setmetatable, type
local exit_mt = { __name = "aikit.SupervisorExit" }
function Supervisor.exit(reply) return setmetatable({ reply = reply }, exit_mt) end

local function run_handle(handle, state, msg)
  local reply = handle(state, msg)
  if type(reply) == "table" and getmetatable(reply) == exit_mt then return reply.reply, true end
  return reply, false
end
return run_handle
"""
TOSTRING = 'function(self) return "supervisor " .. tostring(self.name) .. " (#" .. tostring(self.id) .. ")" end'
START_METHOD = "function(self) f.start(self.id) return self end"

_CHILD_KEYS = ("name", "start", "restart", "shutdown_timeout_s", "shutdown_timeout")  # the last: old name
_WORKER_KEYS = ("init", "handle", "terminate", "mailbox_size")

# Where an engine keeps (LuaEngine.bindings) the functions ``(engine, lua_value) -> Actor |
# Supervisor | None`` (called on the Lua thread) that recognise other bindings' objects as
# supervisable; see :func:`register_adapter`.
_ADAPTERS = "supervision.adapters"


def _renamed(table: Any, name: str, old: str, what: str) -> Any:
    """``table[name]``, or ``table[old]`` (the option's old name, accepted until 0.3; CHANGELOG.md)."""
    value, old_value = table[name.encode()], table[old.encode()]
    if value is not None and old_value is not None:
        raise InvalidArgument(f"{what}: give {name} or its old name {old}, not both")
    return old_value if value is None else value


def register_adapter(engine: LuaEngine, adapter: Callable[[LuaEngine, Any], Any]) -> None:
    """Let a child's ``start`` in ``engine`` return another binding's Lua object (an agent, say):
    ``adapter`` gets ``(engine, value)`` on the Lua thread and returns an unstarted
    Actor/Supervisor (or an object with ``as_actor()``) for values it knows, else None. The
    engine keeps it (it goes with the engine)."""
    adapters = engine.bindings.setdefault(_ADAPTERS, [])
    if adapter not in adapters:
        adapters.append(adapter)


class LuaWorker:
    """An actor handler whose init/handle/terminate are Lua functions run on the Lua thread."""

    def __init__(self, binding: LuaSupervisors, name: str, handle: Any, init: Any, terminate: Any) -> None:
        self.binding = binding
        self.engine = binding.engine
        self.name = name
        self._handle_fn = handle
        self._init_fn = init
        self._terminate_fn = terminate
        self.state: Any = None  # a Lua value: touched only on the Lua thread

    async def init(self, ctx: ActorContext) -> None:
        if self._init_fn is not None:
            await self.engine.dispatcher.call_async(self._init_on_lua)

    def _init_on_lua(self) -> None:
        values = checked_values(self.engine, self._init_fn)
        self.state = values[0] if values else None

    async def handle(self, msg: Any, ctx: ActorContext) -> Any:
        reply, finished = await self.engine.dispatcher.call_async(self._handle_on_lua, msg)
        if finished:
            ctx.stop()
        return reply

    def _handle_on_lua(self, msg: Any) -> tuple[Any, bool]:
        engine = self.engine
        values = checked_values(engine, self.binding.run_handle, self._handle_fn, self.state, lua(engine, msg))
        reply = py(engine, values[0]) if values else None
        return reply, bool(values[1]) if len(values) > 1 else False

    async def terminate(self, reason: Any, ctx: ActorContext) -> None:
        if self._terminate_fn is not None:
            await self.engine.dispatcher.call_async(self._terminate_on_lua, reason_text(reason))

    def _terminate_on_lua(self, reason: str | None) -> None:
        checked_values(self.engine, self._terminate_fn, self.state, lua(self.engine, reason))


class LuaSupervisors:
    """The supervisors made from Lua, by handle id."""

    def __init__(self, engine: LuaEngine, components: Components) -> None:
        self.engine = engine
        self.components = components
        # A supervisor whose handle Lua collected is forgotten unless it runs (its children are
        # live work that goes on, and sup:stop() is no longer reachable anyway).
        self.handles: HandleKind[Supervisor] = HandleKind(
            engine, "aikit.Supervisor", tostring=TOSTRING, missing=lambda sup_id: f"no supervisor #{sup_id!r}",
            functions={"start": self.start, "stop": self.stop, "send": self.send, "call": self.call,
                       "children": self.children, "status": self.status},
            lua_methods={"start": START_METHOD}, keep=lambda sup: sup.state == RUNNING)
        self.run_handle: Any = None

    # -------------------------------------------------------------- Supervisor.new
    def new(self, spec: Any) -> Any:
        if lua_type(spec) != "table":
            raise InvalidArgument(f"Supervisor.new expects a table, got {lua_kind(spec)}")
        keys = {k.decode() if isinstance(k, bytes) else k for k in spec}
        unknown = sorted(str(k) for k in keys - {"strategy", "intensity", "period_s", "period", "children", "name",
                                                 "executor"})
        if unknown:
            raise InvalidArgument(f"Supervisor.new: unknown option(s) {', '.join(unknown)} "
                                  "(known: strategy, intensity, period_s, children, name, executor)")
        executor = py(self.engine, spec[b"executor"]) or "local"
        if executor not in ("local", "ray"):
            raise InvalidArgument(f"Supervisor.new: executor must be 'local' or 'ray', got {executor!r}")
        adopt = None
        if executor == "ray":  # agents run as Ray actors; the supervisor stays here (distributed/actors.py)
            from aikit_components.distributed.actors import ray_adopter

            adopt = ray_adopter(self.components)
        strategy = py(self.engine, spec[b"strategy"]) or "one_for_one"
        intensity = _integer(spec[b"intensity"], 3, "Supervisor.new: intensity")
        period = _renamed(spec, "period_s", "period", "Supervisor.new")
        period = 5.0 if period is None else period
        if isinstance(period, bool) or not isinstance(period, (int, float)):
            raise InvalidArgument("Supervisor.new: period_s must be a number of seconds, "
                                  f"got {lua_type(period) or period!r}")
        name = spec[b"name"]
        sup_id = self.handles.reserve_id()
        name = name_arg(name, "Supervisor.new: name") if name is not None else f"supervisor-{sup_id}"
        children = spec[b"children"]
        specs: list[ChildSpec] = []
        if children is not None:
            if lua_type(children) != "table":
                raise InvalidArgument("Supervisor.new: children must be a list of child tables")
            for index in range(1, len(children) + 1):
                specs.append(self.child_spec(children[index], index, adopt))
        sup = Supervisor(strategy, intensity, period, specs, name=name, events=self.components.events, adopt=adopt)
        return self.handles.new(sup, sup_id, name=name.encode())

    def child_spec(self, table: Any, index: int, adopt: Callable[[Any, str], Any] | None = None) -> ChildSpec:
        what = f"Supervisor.new: child #{index}"
        if lua_type(table) != "table":
            raise InvalidArgument(f"{what} must be a table {{name = ..., start = function() ... end}}")
        unknown = sorted(str(k.decode() if isinstance(k, bytes) else k) for k in table
                         if (k.decode() if isinstance(k, bytes) else k) not in _CHILD_KEYS + (1, 2))
        if unknown:
            raise InvalidArgument(f"{what}: unknown field(s) {', '.join(unknown)} (known: {', '.join(_CHILD_KEYS)})")
        name = table[b"name"] if table[b"name"] is not None else table[1]
        start = table[b"start"] if table[b"start"] is not None else table[2]
        child_name = name_arg(name, f"{what}: name")
        start_fn = function_arg(start, f"{what} ({child_name}): start")
        restart = py(self.engine, table[b"restart"]) or "permanent"
        shutdown = _renamed(table, "shutdown_timeout_s", "shutdown_timeout", what)
        engine = self.engine

        async def start_child() -> Any:
            made = await engine.dispatcher.call_async(self.start_on_lua, start_fn, child_name)
            if isinstance(made, tuple):  # a Lua worker: the Actor is built on the loop
                if adopt is not None:
                    return adopt(made, child_name)  # it cannot run elsewhere: says why
                worker, mailbox_size = made
                return Actor(worker, name=child_name, mailbox_size=mailbox_size)
            return made

        return ChildSpec(child_name, start_child, restart=restart,
                         shutdown_timeout=DEFAULT_SHUTDOWN_TIMEOUT if shutdown is None else shutdown)

    def start_on_lua(self, start_fn: Any, name: str) -> Any:
        """Run a child's Lua ``start`` and turn what it returned into something supervisable."""
        values = checked_values(self.engine, start_fn)
        value = values[0] if values else None
        kind = lua_type(value)
        # What is not a Lua worker goes to the supervisor as it is: its ``adopt`` makes the process
        # (as_process: an actor here; a Ray supervisor: a Ray actor).
        if kind is None and value is not None and not isinstance(value, (bool, int, float, bytes)):
            return value  # a Python object (an Actor, a Supervisor, an agent)
        nested = self.handles.from_lua(value)
        if nested is not None:
            return nested
        for adapter in self.engine.bindings.get(_ADAPTERS, ()):
            made = adapter(self.engine, value)
            if made is not None:
                return made
        if kind == "table" and lua_type(value[b"handle"]) == "function":
            keys = {k.decode() if isinstance(k, bytes) else k for k in value}
            unknown = sorted(str(k) for k in keys - set(_WORKER_KEYS))
            if unknown:
                raise InvalidArgument(f"child {name!r}: unknown worker field(s) {', '.join(unknown)} "
                                      f"(known: {', '.join(_WORKER_KEYS)})")
            init, terminate = value[b"init"], value[b"terminate"]
            for field_name, fn in (("init", init), ("terminate", terminate)):
                if fn is not None:
                    function_arg(fn, f"child {name!r}: worker {field_name}")
            mailbox_size = _integer(value[b"mailbox_size"], DEFAULT_MAILBOX_SIZE, f"child {name!r}: mailbox_size")
            return LuaWorker(self, name, value[b"handle"], init, terminate), mailbox_size
        raise InvalidArgument(f"child {name!r}: start() must return a worker table {{init = fn, handle = fn}}, a "
                              f"Supervisor.new{{...}} or a supervisable object, got {kind or type(value).__name__}")

    # -------------------------------------------------------------- handle methods
    def start(self, sup: Supervisor) -> None:
        self.engine.wait(sup.start())

    def stop(self, sup: Supervisor) -> None:
        self.engine.wait(sup.stop())

    def send(self, sup: Supervisor, name: Any, msg: Any = None) -> bool:
        child, message = name_arg(name, "sup:send: the child name"), py(self.engine, msg)

        async def send() -> None:  # the mailbox lives on the loop
            sup.send(child, message)

        self.engine.wait(send())
        return True

    def call(self, sup: Supervisor, name: Any, msg: Any = None, timeout: Any = None) -> Any:
        child, message = name_arg(name, "sup:call: the child name"), py(self.engine, msg)
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0):
            raise InvalidArgument(f"sup:call: timeout must be a non-negative number of seconds, got {timeout!r}")
        reply = self.engine.wait(sup.call(child, message, DEFAULT_CALL_TIMEOUT if timeout is None else float(timeout)))
        return lua(self.engine, reply)

    def children(self, sup: Supervisor) -> Any:

        async def rows() -> list[dict[str, Any]]:
            return [info.to_dict() for info in sup.which_children()]

        return lua(self.engine, self.engine.wait(rows()))

    def status(self, sup: Supervisor) -> Any:

        async def status() -> dict[str, Any]:
            return sup.status()

        return lua(self.engine, self.engine.wait(status()))


def _integer(value: Any, default: int, what: str) -> int:
    if value is None:
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{what} must be an integer, got {lua_type(value) or repr(value)}")
    return value


def install(engine: LuaEngine, components: Components) -> LuaSupervisors:
    """Install the global ``Supervisor``."""
    registry = LuaSupervisors(engine, components)
    table = expose(engine, "Supervisor", {"new": registry.new}, DOCS, convert=False)
    registry.run_handle = engine.compile_trusted(_LUA, "supervisor")(table)
    methods = registry.handles.methods
    engine.register_doc("Supervisor.exit", table[b"exit"], DOCS["exit"])
    for key, doc in METHOD_DOCS.items():
        engine.register_doc(f"Supervisor:{key}", methods[key.encode()], doc)
    return registry
