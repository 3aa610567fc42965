"""Agents as Ray actors under an OTP supervisor (``Supervisor.new{executor = "ray", ...}``).

The supervisor stays in this process, on the I/O loop, with its strategies, restart types and
restart intensity unchanged (:mod:`aikit_components.supervision`). What changes is where a child
runs: each agent child is a local :class:`~aikit_components.actors.Actor` (the mailbox, ``send``,
``call`` with its timeout, the exit reasons the supervisor reads) whose handler,
:class:`RayAgentHandler`, forwards every message to a Ray actor, :class:`AgentHost`, placed by Ray
on any node of the cluster. The host builds the agent from its spec with components opened from
the caller's configuration (:class:`~.worker.ShippedConfig`), as a worker running an ``agent``
step does.

- Ray's own actor restarts are off (``max_restarts=0``): the supervisor decides, by the OTP rules.
- A host that dies (its worker process or node lost) crashes the local actor with a
  :class:`ActorLost` (code ``worker_lost``): at once when a call was in flight, else as soon as a
  watch call that never returns fails. The supervisor then restarts it (a new host, a new process)
  or not, per its restart type, intensity and strategy.
- Stopping the child (``sup:stop()``, a restart of a sibling) kills its host; a call in flight is
  cancelled with ``ray.cancel``.
- Only agents ship: a Lua worker's functions live in this kernel's Lua runtime, and an agent whose
  tools are defined in Lua here cannot find them on a worker (:class:`~.shipping.NotShippable`).
- ``ChildInfo.placement`` (``sup:children()[i].placement``) gives ``{executor = "ray", pid, node}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
from collections.abc import Callable
from typing import Any

from ..actors import Actor, ActorContext
from ..agents import AgentSpec
from ..errors import AikitError
from ..supervision import Supervisor
from .cluster import connect
from .shipping import NotShippable
from .worker import ShippedConfig, worker_components

log = logging.getLogger(__name__)

START_TIMEOUT_S = 120.0  # for Ray to place the actor and build its agent
_host_classes: dict[int, Any] = {}  # the remote AgentHost, per ray module


class ActorLost(AikitError):
    """The Ray actor running a supervised child died (its process or its node was lost)."""

    code = "worker_lost"


class AgentHost:
    """The Ray actor: one agent, built on its worker from the spec and the caller's configuration."""

    def __init__(self, spec: dict[str, Any], shipped: ShippedConfig) -> None:
        self.components = worker_components(shipped)
        self.agent = self.components.new_agent(AgentSpec(**spec))
        self._never = asyncio.Event()

    async def where(self) -> dict[str, Any]:
        """Where this actor runs: its process id and Ray node id."""
        import ray

        return {"pid": os.getpid(), "node": ray.get_runtime_context().get_node_id()}

    async def run(self, msg: Any) -> dict[str, Any]:
        """One message, as a local agent actor takes it: a string, or a table with ``input``."""
        prompt = msg.get("input") if isinstance(msg, dict) else msg
        return (await self.agent.run(str(prompt))).to_dict()

    async def watch(self) -> None:
        """Never returns: the caller learns of this actor's death when the call fails."""
        await self._never.wait()


def host_class(ray: Any) -> Any:
    """:class:`AgentHost` as a Ray actor class (made once per process)."""
    made = _host_classes.get(id(ray))
    if made is None:
        made = _host_classes[id(ray)] = ray.remote(max_restarts=0, max_task_retries=0)(AgentHost)
    return made


class _Lost:
    """The message a handler sends itself when the watch call fails: its host died while idle."""

    def __init__(self, error: ActorLost) -> None:
        self.error = error


class RayAgentHandler:
    """The local actor's handler of a supervised agent that runs as a Ray actor."""

    def __init__(self, spec: AgentSpec, components: Any) -> None:
        self.spec = spec
        self.name = spec.name
        self.components = components
        self.placement: dict[str, Any] | None = None
        self._ray: Any = None
        self._host: Any = None
        self._watch: asyncio.Task[None] | None = None
        self._stopping = False

    async def init(self, ctx: ActorContext) -> None:
        self._ray = ray = connect(self.components.config.get("ray.address", "") or None)
        shipped = ShippedConfig.of(self.components)
        self._host = host_class(ray).remote(dataclasses.asdict(self.spec), shipped)
        try:
            where = await asyncio.wait_for(asyncio.ensure_future(self._host.where.remote()), START_TIMEOUT_S)
        except BaseException as exc:
            self._kill()
            if isinstance(exc, TimeoutError):
                raise ActorLost(f"agent {self.name!r} did not start as a Ray actor within {START_TIMEOUT_S:g} s: "
                                "the cluster has no free CPU for it, or its workers cannot start (see `ray status`)",
                                details={"agent": self.name}) from None
            if isinstance(exc, ray.exceptions.RayError):
                raise ActorLost(f"agent {self.name!r} could not start as a Ray actor: {_cause(exc)}",
                                details={"agent": self.name}) from None
            raise
        self.placement = {"executor": "ray", **where}
        self._watch = asyncio.get_running_loop().create_task(self._watch_host(ctx.actor))

    async def _watch_host(self, actor: Actor) -> None:
        ray = self._ray
        try:
            await self._host.watch.remote()
        except asyncio.CancelledError:
            raise
        except ray.exceptions.RayError as exc:
            if self._stopping:
                return
            with contextlib.suppress(AikitError):  # the actor is gone or its mailbox full: it finds out anyway
                actor.send(_Lost(self._lost(exc)))

    def _lost(self, exc: BaseException) -> ActorLost:
        where = self.placement or {}
        return ActorLost(f"the Ray actor of agent {self.name!r} (pid {where.get('pid')}) died: {_cause(exc)}",
                         details={"agent": self.name, **where})

    async def handle(self, msg: Any, ctx: ActorContext) -> Any:
        if isinstance(msg, _Lost):
            raise msg.error
        ray = self._ray
        ref = self._host.run.remote(msg)
        try:
            return await ref
        except asyncio.CancelledError:  # stopped mid-call: the call and the host go
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=False)
            self._kill()
            raise
        except ray.exceptions.RayTaskError as exc:  # the agent failed: the actor crashes, as a local one does
            cause = getattr(exc, "cause", None)
            raise (cause if isinstance(cause, Exception) else exc) from None
        except ray.exceptions.RayError as exc:
            raise self._lost(exc) from None

    async def terminate(self, reason: Any, ctx: ActorContext) -> None:
        self._kill()

    def _kill(self) -> None:
        self._stopping = True
        if self._watch is not None:
            self._watch.cancel()
        host, self._host = self._host, None
        if host is not None and self._ray is not None:
            try:
                self._ray.kill(host, no_restart=True)
            except Exception as exc:  # already dead
                log.debug("killing the Ray actor of %s: %s", self.name, exc)


def ray_adopter(components: Any) -> Callable[[Any, str], Any]:
    """What a ``ray`` supervisor makes of a child's ``start()`` value: an agent becomes an actor
    whose work runs in a Ray actor; a nested supervisor stays a supervisor (its own children follow
    its own executor); anything else cannot be shipped."""
    def adopt(value: Any, name: str) -> Any:
        if isinstance(value, Supervisor):
            return value
        spec = getattr(value, "spec", None)
        if isinstance(spec, AgentSpec):
            check_agent_ships(value, name)
            return Actor(RayAgentHandler(spec, components), name=name)
        kind = "a Lua worker" if isinstance(value, tuple) else type(value).__name__
        raise NotShippable(f"child {name!r}: only agents run as Ray actors (Supervisor executor \"ray\"), got {kind}; "
                           "return Agent.new{...} from start, or put this child under a local supervisor")
    return adopt


def check_agent_ships(agent: Any, name: str) -> None:
    """An agent ships when its tools exist on a worker (not defined in Lua in this kernel)."""
    local = [t for t in agent.spec.tools if agent.registry.get(t).source == "lua"]
    if local:
        raise NotShippable(f"child {name!r}: the agent's tools {', '.join(local)} are defined in Lua in this kernel, "
                           "so a Ray worker does not have them; make them Python plugin tools installed on the "
                           "workers, or supervise this agent locally")


def _cause(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


__all__ = ["ActorLost", "AgentHost", "RayAgentHandler", "check_agent_ships", "host_class", "ray_adopter"]
