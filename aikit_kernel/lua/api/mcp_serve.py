"""``MCP.serve{...}``: serve what a notebook defined (tools, agents) to MCP clients over Streamable
HTTP, from the kernel's I/O loop, until ``server:stop()`` (or the kernel's shutdown)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aikit_components.components import Components
from aikit_components.errors import InvalidArgument

if TYPE_CHECKING:  # imported where used: the MCP SDK is a second of a kernel's start-up, paid only by MCP users
    from aikit_components.mcp.server import AikitServer, Exposed

from ..convert import lua_type
from ..engine import LuaEngine
from ._util import lua, options

SERVE_OPTIONS = ("port", "host", "token", "tools", "agents", "rag", "resources", "name")


class ServedNotebook:
    """One running ``MCP.serve``: its task on the I/O loop and its URL."""

    def __init__(self, server: AikitServer) -> None:
        self.server = server
        self.url: str | None = None
        self.task: asyncio.Task[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    async def start(self, host: str, port: int, token: str | None, max_request_bytes: int) -> str:
        self.loop = asyncio.get_running_loop()
        started: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def on_started(url: str) -> None:
            if not started.done():
                started.set_result(url)

        self.task = asyncio.ensure_future(self.server.run_http(host, port, token, started=on_started,
                                                                  max_request_bytes=max_request_bytes))
        self.task.add_done_callback(lambda t: started.done() or started.set_exception(
            t.exception() or RuntimeError("the MCP server stopped before it listened")))
        self.url = await started
        return self.url

    async def stop(self) -> bool:
        task = self.task
        if task is None or task.done():
            return False
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return True


# Where an engine keeps (LuaEngine.bindings) what MCP.expose asked for: on the engine, since an
# Exposed refers to agents, whose Lua tools refer back to the engine.
_EXPOSED = "mcp.exposed"


def exposed_by(engine: LuaEngine) -> Exposed | None:
    """What a setup script asked to serve with ``MCP.expose`` (None: it did not call it)."""
    return engine.bindings.get(_EXPOSED)


def _field(spec: Any, key: bytes) -> Any:
    """``spec[key]`` of an options table that may be nil (checked by ``options`` first)."""
    return spec[key] if spec is not None else None


def _agents_of(engine: LuaEngine, raw_agents: Any, agent_handles: Any, what: str) -> dict[str, Any]:
    agents: dict[str, Any] = {}
    if raw_agents is None:
        return agents
    if lua_type(raw_agents) != "table" or agent_handles is None:
        raise InvalidArgument(f"{what}: agents must be a list of agents (Agent.new{{...}})")
    for _, item in raw_agents.items():
        agent = agent_handles.from_lua(item)
        if agent is None:
            raise InvalidArgument(f"{what}: each of agents must be an agent (Agent.new{{...}})")
        agents[agent.spec.name] = agent
    return agents


def _patterns(fields: dict[str, Any], what: str) -> list[str] | None:
    patterns = fields.get("tools")
    if patterns == {}:
        patterns = []
    if patterns is not None and (not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns)):
        raise InvalidArgument(f"{what}: tools must be a list of tool names or patterns ('files.*')")
    return patterns


def expose_function(engine: LuaEngine, agent_handles: Any = None) -> Any:
    """The raw-Lua ``MCP.expose``: record what ``aikit mcp serve --script`` serves."""
    def expose(spec: Any) -> bool:
        from aikit_components.mcp.server import Exposed

        fields = options(engine, spec, ("tools", "agents"), "MCP.expose")
        engine.bindings[_EXPOSED] = Exposed(
            tools=_patterns(fields, "MCP.expose"),
            agents=_agents_of(engine, _field(spec, b"agents"), agent_handles, "MCP.expose"))
        return True

    return expose


def serve_function(engine: LuaEngine, components: Components, agent_handles: Any = None) -> Any:
    """The raw-Lua ``MCP.serve`` (its options hold agent handles, so no plain conversion)."""
    def serve(spec: Any) -> Any:
        from aikit_components.mcp.server import DEFAULT_MAX_REQUEST_BYTES, AikitServer, Exposed

        fields = options(engine, spec, SERVE_OPTIONS, "MCP.serve")
        port = fields.get("port", 0)
        if isinstance(port, bool) or not isinstance(port, (int, float)) or port < 0 or port != int(port):
            raise InvalidArgument("MCP.serve: port must be a whole number (0 picks a free port)")
        host = fields.get("host", "127.0.0.1")
        token = fields.get("token") or None
        if not isinstance(host, str) or (token is not None and not isinstance(token, str)):
            raise InvalidArgument("MCP.serve: host and token must be strings")
        patterns = _patterns(fields, "MCP.serve")
        agents = _agents_of(engine, _field(spec, b"agents"), agent_handles, "MCP.serve")
        exposed = Exposed(tools=patterns if patterns is not None else ([] if agents else None), agents=agents,
                          rag=bool(fields.get("rag", False)), resources=bool(fields.get("resources", True)))
        served = ServedNotebook(AikitServer(components, exposed, name=str(fields.get("name", "aikit-notebook"))))
        limit = components.config.get("mcp.max_request_bytes", DEFAULT_MAX_REQUEST_BYTES)
        url = engine.wait(served.start(host, int(port), token, int(limit)))
        clients = components.mcp
        clients.served.append(served.stop)  # stopped at shutdown if not before
        if served.loop is not None:
            clients.served_loops.add(served.loop)

        def stop(*_: Any) -> bool:
            stopped = engine.wait(served.stop())
            if served.stop in clients.served:
                clients.served.remove(served.stop)
            return stopped

        bind = engine.internal[b"bind"]
        return engine.table(url=url.encode(), tools=lua(engine, sorted(served.server.tools())),
                            stop=bind(engine.host.wrap(stop)))

    return serve


__all__ = ["SERVE_OPTIONS", "ServedNotebook", "expose_function", "exposed_by", "serve_function"]
