"""Erlang/OTP-style supervision for long-lived actors, on one asyncio loop.

The actors (:class:`~aikit_components.actors.Actor`: an asyncio task with a bounded mailbox,
``send`` and ``call`` with a timeout, exit reasons ``"normal"``, ``"shutdown"`` or the exception)
live in :mod:`aikit_components.actors`.

A :class:`Supervisor` starts :class:`ChildSpec` children in order, stops them in reverse order,
and applies its strategy when one exits:

- ``one_for_one``: restart that child;
- ``one_for_all``: stop all the others (reverse order), then restart all of them in order;
- ``rest_for_one``: stop the children started after it (reverse order), then restart it and them.

Restart types: ``permanent`` (always restarted), ``transient`` (restarted only after an abnormal
exit: anything but ``"normal"`` and ``"shutdown"``), ``temporary`` (never restarted, and not
restarted either when a sibling's failure stops it). More than ``intensity`` restarts within
``period`` seconds make the supervisor stop all its children (reverse order) and exit with reason
``"shutdown: restart intensity exceeded"``; a supervisor is itself a valid child, so its parent sees
that exit as an abnormal exit of one child and applies its own strategy (escalation).

Where children run: ``adopt(value, name)`` turns what a child's ``start`` returned into the process
the supervisor runs (default :func:`as_process`: an actor on this loop). A supervisor made with
another one, such as :func:`aikit_components.distributed.actors.ray_adopter` (agents as Ray
actors), supervises children that run elsewhere by exactly these rules.

Events (when an event bus is given): ``supervisor.child_started``, ``supervisor.child_exited``,
``supervisor.child_restarted`` (with ``latency_ms``: from the exit to the new child running) and
``supervisor.shutdown``.

Everything here must be used from the one event loop it runs on (the I/O loop in aikit).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .actors import (
    CRASHED,
    DEFAULT_CALL_TIMEOUT,
    DEFAULT_SHUTDOWN_TIMEOUT,
    INTENSITY_EXCEEDED,
    RUNNING,
    SHUTDOWN,
    STARTING,
    STOPPED,
    Actor,
    is_normal_exit,
    notify_exit_listeners,
    reason_text,
)
from .errors import ActorStopped, InvalidArgument, NotFound, SupervisorStartFailed

__all__ = ["RESTART_TYPES", "STRATEGIES", "ChildInfo", "ChildSpec", "Supervisor", "as_process"]

log = logging.getLogger(__name__)

STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one")
RESTART_TYPES = ("permanent", "transient", "temporary")


# ------------------------------------------------------------------------------------ supervisor
@dataclass
class ChildSpec:
    """How to start one child: ``start()`` returns (or resolves to) an :class:`Actor`, a
    :class:`Supervisor`, a handler (wrapped in an Actor named ``name``) or anything with
    ``as_actor()``. Started or not: the supervisor starts it when needed."""

    name: str
    start: Callable[[], Any]
    restart: str = "permanent"
    shutdown_timeout: float | None = DEFAULT_SHUTDOWN_TIMEOUT

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InvalidArgument(f"a child needs a non-empty name, got {self.name!r}")
        if not callable(self.start):
            raise InvalidArgument(f"child {self.name!r}: start must be callable")
        if self.restart not in RESTART_TYPES:
            raise InvalidArgument(f"child {self.name!r}: restart must be one of {', '.join(RESTART_TYPES)}, "
                                  f"got {self.restart!r}")
        if self.shutdown_timeout is not None and (isinstance(self.shutdown_timeout, bool)
                                                  or not isinstance(self.shutdown_timeout, (int, float))
                                                  or self.shutdown_timeout < 0):
            raise InvalidArgument(f"child {self.name!r}: shutdown_timeout must be a non-negative number or None")


@dataclass
class ChildInfo:
    """One row of :meth:`Supervisor.which_children`."""

    name: str
    state: str
    restart: str
    restarts: int
    kind: str  # "worker" | "supervisor"
    process: Any = None
    exit_reason: Any = None

    @property
    def placement(self) -> dict[str, Any] | None:
        """Where a child that runs elsewhere runs (its handler's ``placement``, e.g. a Ray actor's
        ``{executor, pid, node}``); None for a child on this loop."""
        placement = getattr(getattr(self.process, "handler", None), "placement", None)
        return dict(placement) if isinstance(placement, dict) else None

    def to_dict(self) -> dict[str, Any]:
        row = {"name": self.name, "state": self.state, "restart": self.restart, "restarts": self.restarts,
               "kind": self.kind, "exit_reason": reason_text(self.exit_reason)}
        placement = self.placement
        if placement is not None:
            row["placement"] = placement
        return row


@dataclass
class _Child:
    spec: ChildSpec
    process: Any = None
    last_process: Any = None
    restarts: int = 0
    exit_reason: Any = None
    kind: str = "worker"


def as_process(value: Any, name: str) -> Any:
    """What a child's ``start`` returned, as something a supervisor can run and monitor."""
    if isinstance(value, (Actor, Supervisor)):
        return value
    as_actor = getattr(value, "as_actor", None)
    if callable(as_actor):
        return as_process(as_actor(), name)
    if callable(getattr(value, "handle", None)) or inspect.iscoroutinefunction(value):
        return Actor(value, name=name)
    raise InvalidArgument(f"child {name!r}: start() must return an Actor, a Supervisor, a handler or an object "
                          f"with as_actor(), got {type(value).__name__}")


class Supervisor:
    """Starts, monitors and restarts children (see the module docstring)."""

    def __init__(self, strategy: str = "one_for_one", intensity: int = 3, period: float = 5.0,
                 children: Iterable[ChildSpec | dict[str, Any]] = (), *, name: str = "supervisor",
                 parent: Supervisor | None = None, events: Any = None,
                 adopt: Callable[[Any, str], Any] | None = None) -> None:
        if strategy not in STRATEGIES:
            raise InvalidArgument(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
        if isinstance(intensity, bool) or not isinstance(intensity, int) or intensity < 0:
            raise InvalidArgument(f"intensity must be a non-negative integer, got {intensity!r}")
        if isinstance(period, bool) or not isinstance(period, (int, float)) or period <= 0:
            raise InvalidArgument(f"period must be a positive number of seconds, got {period!r}")
        self.strategy = strategy
        self.intensity = intensity
        self.period = float(period)
        self.name = name
        self.parent = parent
        self.events = events
        self.adopt = adopt or as_process
        self.state = STARTING
        self.exit_reason: Any = None
        self.restart_latencies: deque[float] = deque(maxlen=1000)  # seconds, exit -> new child running
        self._children: list[_Child] = []
        for spec in children:
            self._add_spec(spec)
        self._restarts: deque[float] = deque()
        self._lock = asyncio.Lock()
        self._exits: asyncio.Queue[tuple[_Child, Any, Any, float]] = asyncio.Queue()
        self._monitor: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[Any, Any], Any]] = []
        self._done: asyncio.Event | None = None
        self._stopping = False

    def __repr__(self) -> str:
        return f"<Supervisor {self.name} {self.strategy} {self.state}>"

    def _add_spec(self, spec: ChildSpec | dict[str, Any]) -> _Child:
        if isinstance(spec, dict):
            spec = ChildSpec(**spec)
        if not isinstance(spec, ChildSpec):
            raise InvalidArgument(f"a child must be a ChildSpec or a dict, got {type(spec).__name__}")
        if any(c.spec.name == spec.name for c in self._children):
            raise InvalidArgument(f"supervisor {self.name!r}: two children are named {spec.name!r}")
        child = _Child(spec)
        self._children.append(child)
        return child

    # -------------------------------------------------------------- process protocol
    @property
    def started(self) -> bool:
        return self._monitor is not None or self.state in (STOPPED, CRASHED)

    @property
    def alive(self) -> bool:
        return self.state in (STARTING, RUNNING) and not self._stopping

    def add_exit_listener(self, listener: Callable[[Any, Any], Any]) -> None:
        self._listeners.append(listener)

    def remove_exit_listener(self, listener: Callable[[Any, Any], Any]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    async def wait(self) -> Any:
        """Wait until the supervisor exited; returns its exit reason."""
        if self._done is not None:
            await self._done.wait()
        return self.exit_reason

    async def start(self) -> Supervisor:
        """Start the children in order. If one fails, stop those already started (reverse order)
        and raise :class:`SupervisorStartFailed`."""
        if self.started:
            raise InvalidArgument(f"supervisor {self.name!r} was already started (start a new one to restart)")
        self._done = asyncio.Event()
        self._monitor = asyncio.get_running_loop().create_task(self._monitor_exits(), name=f"supervisor:{self.name}")
        async with self._lock:
            for index, child in enumerate(self._children):
                try:
                    await self._start_child(child)
                except Exception as exc:
                    await self._stop_children(self._children[:index])
                    self._finish(exc)
                    raise SupervisorStartFailed(
                        f"supervisor {self.name!r}: child {child.spec.name!r} failed to start: {reason_text(exc)}",
                        details={"supervisor": self.name, "child": child.spec.name, "reason": reason_text(exc)},
                    ) from exc
            if self._stopping:
                return self
            self.state = RUNNING
        return self

    async def stop(self, reason: Any = SHUTDOWN, timeout: float | None = None) -> None:
        """Stop every child in reverse start order, then the supervisor (reason ``"shutdown"``)."""
        if self.state in (STOPPED, CRASHED) or self._stopping:
            if self._done is not None and self._monitor is not asyncio.current_task():
                await self._done.wait()
            return
        self._stopping = True
        if self._monitor is None:
            self._finish(reason)
            return
        async with self._lock:
            if self.state in (STOPPED, CRASHED):
                return
            await self._stop_children(self._children)
            self._finish(reason)

    # -------------------------------------------------------------- children
    def _find(self, name: str) -> _Child:
        for child in self._children:
            if child.spec.name == name:
                return child
        raise NotFound(f"supervisor {self.name!r} has no child {name!r} "
                       f"(children: {', '.join(c.spec.name for c in self._children) or 'none'})")

    def child(self, name: str) -> Any:
        """The running process of child ``name`` (a new object after each restart)."""
        child = self._find(name)
        if child.process is None:
            raise ActorStopped(f"child {name!r} of supervisor {self.name!r} is not running "
                               f"({self._child_state(child)})",
                               details={"child": name, "reason": reason_text(child.exit_reason)})
        return child.process

    def _actor(self, name: str) -> Actor:
        process = self.child(name)
        if not isinstance(process, Actor):
            raise InvalidArgument(f"child {name!r} is a supervisor: it has no mailbox")
        return process

    def send(self, name: str, msg: Any) -> None:
        """``send`` to the current process of child ``name``."""
        self._actor(name).send(msg)

    async def call(self, name: str, msg: Any, timeout: float | None = DEFAULT_CALL_TIMEOUT) -> Any:
        """``call`` the current process of child ``name``."""
        return await self._actor(name).call(msg, timeout)

    def _child_state(self, child: _Child) -> str:
        if child.process is not None:
            return child.process.state
        if child.exit_reason is None and child.last_process is None:
            return "not_started"
        return STOPPED if is_normal_exit(child.exit_reason) else CRASHED

    def which_children(self) -> list[ChildInfo]:
        """Every child in start order: name, state, restart type, restart count, kind."""
        return [ChildInfo(c.spec.name, self._child_state(c), c.spec.restart, c.restarts, c.kind, c.process,
                          c.exit_reason) for c in self._children]

    def count_children(self) -> dict[str, int]:
        """``{"specs", "active", "workers", "supervisors"}`` as Erlang's count_children."""
        return {"specs": len(self._children),
                "active": sum(1 for c in self._children if c.process is not None and c.process.alive),
                "workers": sum(1 for c in self._children if c.kind == "worker"),
                "supervisors": sum(1 for c in self._children if c.kind == "supervisor")}

    @property
    def restarts_in_period(self) -> int:
        now = time.monotonic()
        return sum(1 for t in self._restarts if now - t <= self.period)

    async def start_child(self, spec: ChildSpec | dict[str, Any]) -> Any:
        """Add a child at the end and start it (the supervisor must be running)."""
        if not self.alive:
            raise ActorStopped(f"supervisor {self.name!r} is {self.state}")
        async with self._lock:
            child = self._add_spec(spec)
            try:
                return await self._start_child(child)
            except Exception:
                self._children.remove(child)
                raise

    async def terminate_child(self, name: str) -> None:
        """Stop child ``name`` (not restarted; its spec stays, restartable with restart_child)."""
        async with self._lock:
            await self._stop_children([self._find(name)])

    async def restart_child(self, name: str) -> Any:
        """Start a terminated child ``name`` again."""
        async with self._lock:
            child = self._find(name)
            if child.process is not None:
                raise InvalidArgument(f"child {name!r} is running")
            return await self._start_child(child)

    # -------------------------------------------------------------- internals
    def _publish(self, topic: str, **payload: Any) -> None:
        if self.events is not None:
            try:
                self.events.publish(topic, {"supervisor": self.name, **payload}, source="supervisor")
            except Exception:
                log.exception("publishing %s failed", topic)

    async def _start_child(self, child: _Child, exited_at: float | None = None) -> Any:
        value = child.spec.start()
        if inspect.isawaitable(value):
            value = await value
        process = self.adopt(value, child.spec.name)
        if process.state in (STOPPED, CRASHED):
            raise InvalidArgument(f"child {child.spec.name!r}: start() returned a process that already exited")
        if isinstance(process, Supervisor):
            process.parent = self
            if process.events is None:
                process.events = self.events
        child.kind = "supervisor" if isinstance(process, Supervisor) else "worker"
        process.add_exit_listener(lambda proc, reason: self._exits.put_nowait((child, proc, reason, time.perf_counter())))
        child.process = process
        try:
            if not process.started:
                await process.start()
        except BaseException:
            child.process = None
            raise
        if exited_at is None:
            self._publish("supervisor.child_started", child=child.spec.name)
        else:
            latency = time.perf_counter() - exited_at
            child.restarts += 1
            self.restart_latencies.append(latency)
            self._publish("supervisor.child_restarted", child=child.spec.name, restarts=child.restarts,
                          latency_ms=round(latency * 1000, 3))
        return process

    async def _stop_children(self, children: list[_Child]) -> None:
        for child in reversed(children):
            process = child.process
            if process is None:
                continue
            child.process = None  # its exit is ours: the monitor ignores it
            child.last_process = process
            try:
                await process.stop(SHUTDOWN, child.spec.shutdown_timeout)
            except Exception:
                log.exception("stopping child %s of %s failed", child.spec.name, self.name)
            child.exit_reason = process.exit_reason if process.exit_reason is not None else SHUTDOWN
            self._publish("supervisor.child_exited", child=child.spec.name, reason=reason_text(child.exit_reason),
                          restarts=child.restarts)

    async def _monitor_exits(self) -> None:
        while self.state not in (STOPPED, CRASHED):
            child, process, reason, exited_at = await self._exits.get()
            async with self._lock:
                if self._stopping or self.state in (STOPPED, CRASHED) or process is not child.process:
                    continue
                await self._child_exited(child, reason, exited_at)

    def _add_restart(self) -> bool:
        now = time.monotonic()
        self._restarts.append(now)
        while self._restarts and now - self._restarts[0] > self.period:
            self._restarts.popleft()
        return len(self._restarts) <= self.intensity

    async def _child_exited(self, child: _Child, reason: Any, exited_at: float) -> None:
        """A child exited by itself (lock held): apply the restart type, intensity and strategy."""
        if child.process is not None:
            child.last_process = child.process
        child.process = None
        child.exit_reason = reason
        self._publish("supervisor.child_exited", child=child.spec.name, reason=reason_text(reason),
                      restarts=child.restarts)
        restart = child.spec.restart
        if restart == "temporary" or (restart == "transient" and is_normal_exit(reason)):
            return
        if not self._add_restart():
            log.warning("supervisor %s: more than %d restarts in %g s; shutting down", self.name, self.intensity,
                        self.period)
            self._stopping = True
            await self._stop_children(self._children)
            self._finish(INTENSITY_EXCEEDED)
            return
        index = self._children.index(child)
        if self.strategy == "one_for_one":
            targets = [child]
        elif self.strategy == "one_for_all":
            await self._stop_children([c for c in self._children if c is not child])
            targets = [c for c in self._children if c is child or c.spec.restart != "temporary"]
        else:  # rest_for_one
            rest = self._children[index + 1:]
            await self._stop_children(rest)
            targets = [child] + [c for c in rest if c.spec.restart != "temporary"]
        for target in targets:
            try:
                await self._start_child(target, exited_at)
            except Exception as exc:  # a failed restart is one more failure of that child
                await self._child_exited(target, exc, exited_at)
                return
            if self._stopping:
                return

    def _finish(self, reason: Any) -> None:
        self.exit_reason = reason
        self.state = STOPPED if is_normal_exit(reason) else CRASHED
        self._publish("supervisor.shutdown", reason=reason_text(reason))
        if self._monitor is not None and self._monitor is not asyncio.current_task():
            self._monitor.cancel()
        if self._done is not None:
            self._done.set()
        notify_exit_listeners(self._listeners, self, reason)

    def status(self) -> dict[str, Any]:
        """A JSON-like summary: name, strategy, state, exit reason, intensity, children."""
        latencies = sorted(self.restart_latencies)
        return {
            "name": self.name, "strategy": self.strategy, "state": self.state,
            "exit_reason": reason_text(self.exit_reason), "intensity": self.intensity, "period_s": self.period,
            "period": self.period,  # the old name of period_s, until 0.3
            "restarts_in_period": self.restarts_in_period, "counts": self.count_children(),
            "children": [info.to_dict() for info in self.which_children()],
            "restart_latency_ms": {"count": len(latencies),
                                   "median": round(latencies[len(latencies) // 2] * 1000, 3),
                                   "max": round(latencies[-1] * 1000, 3)} if latencies else None,
        }
