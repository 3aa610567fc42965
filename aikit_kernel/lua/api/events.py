"""``Event``: publish and subscribe from Lua.

Lua subscribers are called on the Lua thread at safe points (between cells, while Lua waits on
the I/O loop, after ``Event.publish`` from Lua, and on ``Event.dispatch()``), never in the middle
of other Lua code. ``sub:receive(timeout)`` pulls instead. Queues are bounded
(``max_size``, default 10,000) and drop the oldest event on overflow (``overflow = 'drop_newest'``
keeps the oldest instead); ``sub:dropped()`` counts the losses.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

from aikit_components.components import Components
from aikit_components.errors import InvalidArgument, NotFound
from aikit_components.events import Event, Subscription

from ..engine import LuaEngine
from ... import runtime
from . import expose
from ._util import lua, name_arg, options, py

RECEIVE_SLICE_S = 0.02

DOCS = {
    "": "Event\n\nThe event bus: Event.publish(topic, payload), Event.subscribe(pattern [, fn]) -> sub, sub:receive(timeout), "
        "sub:remove(), Event.dispatch(). Topics are dotted names; patterns are globs ('tool.*'). aikit publishes cell.started, "
        "cell.finished, tool.called, tool.finished, tool.failed, state.written, state.deleted, artifact.put, session.*.",
    "publish": "Event.publish(topic [, payload]) -> delivered\n\nPublishes an event; returns how many subscriptions matched.\n"
               "Example: Event.publish('job.done', {id = 7})",
    "subscribe": "Event.subscribe(pattern [, fn [, {max_size = 10000, overflow = 'drop_oldest'|'drop_newest'}]]) -> sub\n\n"
                 "With fn, calls fn(event) on the Lua thread at safe points; without, queues events for sub:receive. "
                 "sub:remove() ends it.\n"
                 "Example: local sub = Event.subscribe('tool.*', function(e) print(e.topic, e.payload.name) end)",
    "receive": "Event.receive(sub [, timeout]) -> event | nil\n\nThe old name of sub:receive([timeout]): waits up to "
               "timeout seconds (default 0) for the next event of a pull subscription.\nExample: local e = sub:receive(1.0)",
    "dispatch": "Event.dispatch() -> n\n\nDelivers pending events to Lua subscribers now; returns how many calls ran.",
    "unsubscribe": "Event.unsubscribe(sub)\n\nThe old name of sub:remove(): stops a subscription.",
}

_LUA_HANDLE = r"""
local E, receive, unsubscribe, dropped, pending = ...
local mt = {}
mt.__index = {
  receive = function(self, timeout) return receive(self.id, timeout) end,
  remove = function(self) return unsubscribe(self.id) end,
  close = function(self) return unsubscribe(self.id) end,  -- the old name of remove
  dropped = function(self) return dropped(self.id) end,
  pending = function(self) return pending(self.id) end,
}
mt.__name = "aikit.Subscription"
mt.__tostring = function(self) return "subscription " .. self.id .. " (" .. self.pattern .. ")" end
return function(id, pattern) return setmetatable({ id = id, pattern = pattern }, mt) end
"""


class LuaSubscriptions:
    """Subscriptions made from Lua, by id, and their delivery at safe points."""

    def __init__(self, engine: LuaEngine) -> None:
        self.engine = engine
        self.subs: dict[int, tuple[Subscription, Any]] = {}
        self.ids = itertools.count(1)

    def get(self, handle: Any) -> Subscription:
        sub_id = handle[b"id"] if hasattr(handle, "__getitem__") and not isinstance(handle, (int, bytes)) else handle
        entry = self.subs.get(sub_id)
        if entry is None:
            raise NotFound(f"no open subscription {sub_id!r} (closed already?)")
        return entry[0]

    def deliver(self) -> int:
        """Call every Lua subscriber with its queued events (a safe point)."""
        calls = 0
        for sub, fn in list(self.subs.values()):
            if fn is None or not sub.pending():
                continue
            for event in sub.drain(1000):
                result = self.engine.pcall(fn, event_table(self.engine, event))
                calls += 1
                if result.error is not None:
                    if result.error.ename == "KeyboardInterrupt":
                        return calls
                    self.engine.host.output.write(
                        "stderr", f"aikit: event subscriber for {sub.pattern!r} failed: {result.error.evalue}\n")
        return calls


def event_table(engine: LuaEngine, event: Event) -> Any:
    return lua(engine, {"topic": event.topic, "payload": event.payload, "source": event.source,
                        "time": event.time, "seq": event.seq})


def install(engine: LuaEngine, components: Components) -> None:
    bus = components.events
    registry = LuaSubscriptions(engine)
    engine.dispatcher.add_service(registry.deliver)

    def publish(topic: Any, payload: Any = None) -> int:
        count = bus.publish(name_arg(topic, "Event.publish: the topic"), py(engine, payload), source="lua")
        engine.dispatcher.service()
        return count

    def subscribe(pattern: Any, fn: Any = None, opts: Any = None) -> Any:
        from ..convert import lua_type

        if fn is not None and lua_type(fn) == "table" and opts is None:
            fn, opts = None, fn
        if fn is not None and lua_type(fn) != "function":
            raise InvalidArgument("Event.subscribe: the second argument must be a function or an options table")
        o = options(engine, opts, ("max_size", "overflow"), "Event.subscribe", aliases={"maxsize": "max_size"})
        sub = bus.subscribe(name_arg(pattern, "Event.subscribe: the pattern"), None,
                            max_size=o.get("max_size", 10_000), overflow=o.get("overflow", "drop_oldest"))
        sub_id = next(registry.ids)
        registry.subs[sub_id] = (sub, fn)
        return make_handle(sub_id, pattern)

    def receive(handle: Any, timeout: Any = None) -> Any:
        sub = registry.get(handle)
        deadline = time.monotonic() + float(timeout or 0)
        while True:
            event = sub.receive(min(RECEIVE_SLICE_S, max(0.0, deadline - time.monotonic())))
            if event is not None:
                return event_table(engine, event)
            if engine.interrupt_requested():
                raise runtime.WaitCancelled()
            engine.dispatcher.service()
            if time.monotonic() >= deadline:
                return None

    def unsubscribe(handle: Any) -> bool:
        sub = registry.get(handle)
        sub.close()
        registry.subs = {k: v for k, v in registry.subs.items() if v[0] is not sub}
        return True

    def dropped(handle: Any) -> int:
        return registry.get(handle).dropped

    def pending(handle: Any) -> int:
        return registry.get(handle).pending()

    def dispatch() -> int:
        return engine.dispatcher.service()

    wrap, bind = engine.host.wrap, engine.internal[b"bind"]
    make_handle = engine.compile_trusted(_LUA_HANDLE, "event")(None, bind(wrap(receive)), bind(wrap(unsubscribe)),
                                                              bind(wrap(dropped)), bind(wrap(pending)))
    expose(engine, "Event", {"publish": publish, "subscribe": subscribe, "receive": receive, "dispatch": dispatch,
                             "unsubscribe": unsubscribe}, DOCS, convert=False)
