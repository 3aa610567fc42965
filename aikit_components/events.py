"""The event bus: topic strings, glob subscriptions, bounded queues.

- ``publish(topic, payload)`` is thread-safe, never blocks and never raises because of a
  subscriber. Topics are dotted strings (``tool.called``, ``state.written``, ``cell.finished``).
- A subscription matches topics with a glob (``tool.*``, ``*``, ``state.written``).
- Delivery: a *callback* subscription calls ``handler(event)`` in the publishing thread (keep it
  short); an *async* subscription (``async def`` handler) is run on the global I/O loop; a *pull*
  subscription (no handler) queues events for :meth:`Subscription.receive` / :meth:`drain`.
- Queues are bounded (``max_size``, default 10,000). Overflow policy, per subscription:
  ``"drop_oldest"`` (default: the newest events matter most) or ``"drop_newest"``. Dropped events
  are counted in ``Subscription.dropped``; nothing ever blocks the publisher.
"""

from __future__ import annotations

import asyncio
import fnmatch
import inspect
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidArgument
from .listeners import ChangeListeners

log = logging.getLogger(__name__)

OVERFLOW_POLICIES = ("drop_oldest", "drop_newest")
# Topics can be unbounded (one per run id); the per-topic route cache is dropped past this size.
MAX_CACHED_ROUTES = 4096


@dataclass(frozen=True, slots=True)
class Event:
    """One published event."""

    topic: str
    payload: Any = None
    source: str | None = None
    time: float = field(default_factory=time.time)
    seq: int = 0


class Subscription:
    """A glob pattern plus how matching events are delivered."""

    def __init__(self, bus: EventBus, pattern: str, handler: Callable[[Event], Any] | None,
                 max_size: int, overflow: str, loop_getter: Callable[[], asyncio.AbstractEventLoop] | None) -> None:
        if overflow not in OVERFLOW_POLICIES:
            raise InvalidArgument(f"overflow must be one of {', '.join(OVERFLOW_POLICIES)}, got {overflow!r}")
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1:
            raise InvalidArgument(f"max_size must be a positive integer, got {max_size!r}")
        self.bus = bus
        self.pattern = pattern
        self.handler = handler
        self.is_async = handler is not None and inspect.iscoroutinefunction(handler)
        self.max_size = max_size
        self.overflow = overflow
        self.dropped = 0
        self.delivered = 0
        self.closed = False
        self._queue: deque[Event] = deque()
        self._ready = threading.Condition(threading.Lock())
        self._loop_getter = loop_getter
        self.listeners = ChangeListeners()  # told after every (un)subscription
        self._pump_scheduled = False

    def matches(self, topic: str) -> bool:
        return self.pattern == "*" or self.pattern == topic or fnmatch.fnmatchcase(topic, self.pattern)

    def _offer(self, event: Event) -> None:
        if self.handler is not None and not self.is_async:
            try:
                self.handler(event)
                self.delivered += 1
            except Exception:
                log.exception("event subscriber for %r failed on %s", self.pattern, event.topic)
            return
        with self._ready:
            if len(self._queue) >= self.max_size:
                self.dropped += 1
                if self.overflow == "drop_newest":
                    return
                self._queue.popleft()
            self._queue.append(event)
            self._ready.notify()
            schedule = self.is_async and not self._pump_scheduled
            if schedule:
                self._pump_scheduled = True
        if schedule:
            self._schedule_pump()

    def _schedule_pump(self) -> None:
        if self._loop_getter is None:
            raise RuntimeError("async subscribers need an event loop (EventBus(loop_getter=...))")
        loop = self._loop_getter()
        loop.call_soon_threadsafe(lambda: loop.create_task(self._pump()))

    async def _pump(self) -> None:
        while True:
            with self._ready:
                if not self._queue:
                    self._pump_scheduled = False
                    return
                event = self._queue.popleft()
            try:
                await self.handler(event)  # type: ignore[misc]
                self.delivered += 1
            except Exception:
                log.exception("async event subscriber for %r failed on %s", self.pattern, event.topic)

    def receive(self, timeout: float | None = None) -> Event | None:
        """Pull the next event, waiting up to ``timeout`` seconds (None: forever); None on timeout."""
        with self._ready:
            if not self._queue and not self._ready.wait_for(lambda: bool(self._queue) or self.closed, timeout):
                return None
            if not self._queue:
                return None
            self.delivered += 1
            return self._queue.popleft()

    def drain(self, limit: int | None = None) -> list[Event]:
        """Take every queued event (at most ``limit``) without waiting."""
        with self._ready:
            count = len(self._queue) if limit is None else min(limit, len(self._queue))
            events = [self._queue.popleft() for _ in range(count)]
        self.delivered += len(events)
        return events

    def pending(self) -> int:
        return len(self._queue)

    def close(self) -> None:
        """Stop receiving events."""
        self.bus.unsubscribe(self)
        with self._ready:
            self.closed = True
            self._ready.notify_all()


class EventBus:
    """Publish/subscribe by topic glob; see the module docstring for delivery and overflow."""

    def __init__(self, loop_getter: Callable[[], asyncio.AbstractEventLoop] | None = None) -> None:
        self._subs: list[Subscription] = []
        self._taps: tuple[Callable[[Event], Any], ...] = ()
        self._lock = threading.Lock()
        self._routes: dict[str, tuple[Subscription, ...]] = {}
        self._seq = itertools.count(1)
        self._loop_getter = loop_getter
        self.listeners = ChangeListeners()  # told after every (un)subscription

    def subscribe(self, pattern: str, handler: Callable[[Event], Any] | None = None, *,
                  max_size: int = 10_000, overflow: str = "drop_oldest") -> Subscription:
        """Subscribe to topics matching ``pattern``; see the module docstring for delivery."""
        sub = Subscription(self, pattern, handler, max_size, overflow, self._loop_getter)
        with self._lock:
            self._subs.append(sub)
            self._routes = {}
        self.listeners.notify()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)
                self._routes = {}
            else:
                return
        self.listeners.notify()

    def _route(self, topic: str) -> tuple[Subscription, ...]:
        """The subscriptions matching ``topic``, worked out and cached (a cache miss)."""
        with self._lock:
            routes = tuple(s for s in self._subs if s.matches(topic))
            if len(self._routes) >= MAX_CACHED_ROUTES:
                self._routes = {}
            self._routes[topic] = routes
        return routes

    def has_subscribers(self, topic: str) -> bool:
        """Whether an event on ``topic`` would reach anyone (a publisher may then skip building its
        payload). Cheap: the answer comes from the route cache that ``publish`` keeps."""
        routes = self._routes.get(topic)
        return bool(routes if routes is not None else self._route(topic))

    def publish(self, topic: str, payload: Any = None, source: str | None = None) -> int:
        """Deliver an event to every matching subscription; returns how many matched."""
        routes = self._routes.get(topic)
        if routes is None:
            routes = self._route(topic)
        if not routes:
            return 0
        event = Event(topic, payload, source, time.time(), next(self._seq))
        for tap in self._taps:
            tap(event)
        for sub in routes:
            sub._offer(event)
        return len(routes)

    def tap(self, fn: Callable[[Event], Any]) -> None:
        """Call ``fn(event)`` in the publishing thread for every event some subscription receives,
        before they receive it (not a subscription: publish does not count it). Used to tell a
        subscriber's own activity from the rest."""
        with self._lock:
            self._taps = (*self._taps, fn)

    def untap(self, fn: Callable[[Event], Any]) -> None:
        """Stop calling ``fn`` (given to :meth:`tap`); nothing when it is not a tap."""
        with self._lock:
            self._taps = tuple(t for t in self._taps if t != fn)

    def subscriptions(self) -> list[Subscription]:
        with self._lock:
            return list(self._subs)
