"""``Event``: publish and subscribe from Lua.

Lua subscribers are called on the Lua thread at safe points (between cells, while Lua waits on
the I/O loop, after ``Event.publish`` from Lua, and on ``Event.dispatch()``), never in the middle
of other Lua code. ``sub:receive(timeout)`` pulls instead. Queues are bounded
(``max_size``, default 10,000) and drop the oldest event on overflow (``overflow = 'drop_newest'``
keeps the oldest instead); ``sub:dropped()`` counts the losses.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from typing import Any

from aikit_components.components import Components
from aikit_components.errors import Interrupted, InvalidArgument
from aikit_components.events import Event, EventBus, Subscription

from ..engine import LuaEngine
from . import expose
from ._util import lua, name_arg, options, py
from .handles import HandleKind

RECEIVE_SLICE_S = 0.02

DOCS = {
    "": "Event\n\nThe event bus: Event.publish(topic, payload), Event.subscribe(pattern [, fn]) -> sub, "
        "sub:receive(timeout), sub:remove(), Event.dispatch(). Topics are dotted names; patterns are globs ('tool.*'). "
        "aikit publishes cell.started, cell.finished, tool.called, tool.finished, tool.failed, state.written, "
        "state.deleted, artifact.put, session.*.",
    "publish": "Event.publish(topic [, payload]) -> delivered\n\n"
               "Publishes an event; returns how many subscriptions matched.\n"
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

TOSTRING = 'function(self) return "subscription " .. self.id .. " (" .. self.pattern .. ")" end'


class LuaSubscription:
    """A subscription made from Lua: the bus subscription and the Lua function it calls (or None
    for a pull subscription, read with ``sub:receive``)."""

    def __init__(self, sub: Subscription, fn: Any) -> None:
        self.sub = sub
        self.fn = fn
        #: seqs of events its own function caused (published on the Lua thread while it ran): not
        #: delivered back to it, or a subscriber that writes State would call itself forever
        self.own: set[int] = set()
        self._last_failure = ""
        self._repeats = 0

    def report_failure(self, engine: LuaEngine, message: str) -> None:
        """Say that the function failed; the same failure again is only counted (see
        :meth:`flush_failures`), so a subscriber failing on every event does not flood stderr."""
        if message == self._last_failure:
            self._repeats += 1
            return
        self.flush_failures(engine)
        self._last_failure = message
        engine.host.output.write("stderr", f"aikit: event subscriber for {self.sub.pattern!r} failed: {message}\n")

    def flush_failures(self, engine: LuaEngine) -> None:
        """Say how many more times the last failure repeated (``... 29,021 more``), if it did."""
        if self._repeats:
            engine.host.output.write("stderr", f"aikit: ... {self._repeats:,} more failure(s) of the event subscriber "
                                               f"for {self.sub.pattern!r} with the same error\n")
        self._repeats = 0


class OwnActivity:
    """Which Lua subscriber is running now, and a bus subscriber that marks the events published
    meanwhile on the Lua thread as that subscriber's own."""

    def __init__(self, engine: LuaEngine) -> None:
        # Weakly: the bus (the components') outlives the engines built over it and must not keep
        # them alive; install() takes the tap off the bus once the engine is collected.
        self._engine = weakref.ref(engine)
        self.running: LuaSubscription | None = None

    def record(self, event: Event) -> None:  # called by the bus in the publishing thread
        entry = self.running
        if entry is not None and entry.sub.matches(event.topic):
            engine = self._engine()
            if engine is not None and engine.dispatcher.on_lua_thread():
                entry.own.add(event.seq)


def _untap(bus: weakref.ref[EventBus], record: Callable[[Event], Any]) -> None:
    """Take an engine's :class:`OwnActivity` off its bus, once the engine is collected."""
    found = bus()
    if found is not None:
        found.untap(record)


def deliver(engine: LuaEngine, subscriptions: HandleKind[LuaSubscription], activity: OwnActivity | None = None) -> int:
    """Call every Lua subscriber with its queued events (a safe point); a subscriber does not get
    the events its own calls caused."""
    calls = 0
    for entry in subscriptions.objects():
        sub, fn = entry.sub, entry.fn
        if fn is None or not sub.pending():
            if fn is not None:  # quiet now: say how often its last failure repeated
                entry.flush_failures(engine)
            continue
        for event in sub.drain(1000):
            if event.seq in entry.own:
                entry.own.discard(event.seq)
                continue
            outer = activity.running if activity is not None else None
            if activity is not None:
                activity.running = entry
            try:
                result = engine.pcall(fn, event_table(engine, event))
            finally:
                if activity is not None:
                    activity.running = outer
            calls += 1
            if result.error is not None:
                if result.error.interrupted:
                    return calls
                entry.report_failure(engine, result.error.evalue)
    return calls


def event_table(engine: LuaEngine, event: Event) -> Any:
    return lua(engine, {"topic": event.topic, "payload": event.payload, "source": event.source,
                        "time": event.time, "seq": event.seq})


def install(engine: LuaEngine, components: Components) -> None:
    bus = components.events
    # A pull subscription whose handle Lua collected can never be read again: it is closed. One
    # that calls a function is live work, kept until closed, like a registered hook.
    def close(entry: LuaSubscription) -> None:
        entry.sub.close()

    def unsubscribe(entry: LuaSubscription) -> bool:
        entry.sub.close()
        subscriptions.release_where(lambda other: other is entry)
        return True

    def receive(entry: LuaSubscription, timeout: Any = None) -> Any:
        sub = entry.sub
        deadline = time.monotonic() + float(timeout or 0)
        while True:
            event = sub.receive(min(RECEIVE_SLICE_S, max(0.0, deadline - time.monotonic())))
            if event is not None:
                return event_table(engine, event)
            if engine.interrupt_requested():
                raise Interrupted()
            engine.dispatcher.service()
            if time.monotonic() >= deadline:
                return None

    def dropped(entry: LuaSubscription) -> int:
        return entry.sub.dropped

    def pending(entry: LuaSubscription) -> int:
        return entry.sub.pending()

    subscriptions: HandleKind[LuaSubscription] = HandleKind(
        engine, "aikit.Subscription", tostring=TOSTRING,
        missing=lambda sub_id: f"no open subscription {sub_id!r} (closed already?)",
        functions={"receive": receive, "remove": unsubscribe, "close": unsubscribe,  # close: remove's old name
                   "dropped": dropped, "pending": pending},
        on_release=close, keep=lambda entry: entry.fn is not None)
    activity = OwnActivity(engine)
    bus.tap(activity.record)
    # The bus weakly too: through hooks and subscriptions it may refer to the engine.
    weakref.finalize(engine, _untap, weakref.ref(bus), activity.record).atexit = False
    engine.dispatcher.add_service(lambda: deliver(engine, subscriptions, activity))

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
        return subscriptions.new(LuaSubscription(sub, fn), pattern=pattern)

    def dispatch() -> int:
        return engine.dispatcher.service()

    def receive_from(handle: Any, timeout: Any = None) -> Any:
        return receive(subscriptions.get(handle), timeout)

    def unsubscribe_handle(handle: Any) -> bool:
        return unsubscribe(subscriptions.get(handle))

    expose(engine, "Event", {"publish": publish, "subscribe": subscribe, "receive": receive_from, "dispatch": dispatch,
                             "unsubscribe": unsubscribe_handle}, DOCS, convert=False)
