"""``MCP``: connect to MCP servers (their tools become ``NAME.tool``), read their resources and
prompts, and serve this notebook's tools and agents to MCP clients (``MCP.serve``)."""

from __future__ import annotations

from typing import Any

from aikit_components.components import Components
from aikit_components.errors import InvalidArgument

from ..engine import LuaEngine
from . import checked_arity, expose
from .mcp_serve import expose_function, serve_function

DOCS = {
    "": "MCP\n\nModel Context Protocol servers: MCP.connect(name, {command = ..., args = {...}} | {url = ...}) makes "
        "the server's tools aikit tools named name.tool; MCP.resources/read/prompts/prompt reach the rest; "
        "MCP.serve{...} serves this notebook's tools and agents to MCP clients. See docs/mcp.md.",
    "connect": "MCP.connect(name [, {command, args, env, cwd} | {url, headers}] [+ timeout_s]) -> info\n\n"
               "Connects (or reconnects) the MCP server `name` over stdio (command, checked against "
               "security.allowed_commands) or Streamable HTTP (url); without a spec, uses [mcp.servers.NAME] of "
               "aikit.toml. Its tools become aikit tools `name.tool` (Tool.list{category = name}).\n"
               "Example: MCP.connect('files', {command = 'npx', args = {'@modelcontextprotocol/server-filesystem', '.'}})",
    "disconnect": "MCP.disconnect(name) -> boolean\n\nCloses the connection (stops a stdio server) and removes its tools.",
    "list": "MCP.list() -> {{name, transport, connected, tools, skipped, server}, ...}\n\nThe MCP connections.",
    "tools": "MCP.tools(name) -> {tool name, ...}\n\nThe aikit names of a server's tools (connecting it if configured).",
    "resources": "MCP.resources(name) -> {{uri, name, description, mime_type}, ...}\n\nThe server's resources.",
    "read": "MCP.read(name, uri) -> {{uri, text | blob, mime_type}, ...}\n\nReads one resource of the server.",
    "prompts": "MCP.prompts(name) -> {{name, description, arguments}, ...}\n\nThe server's prompt templates.",
    "prompt": "MCP.prompt(name, prompt [, args]) -> {description, messages = {{role, type, text}, ...}}\n\n"
              "Renders one of the server's prompts with string arguments.",
    "context": "MCP.context(name [, {uri, ...}]) -> string\n\nThe text of the server's resources (all, or the given URIs), "
               "one section per resource: context for an agent (Agent.new{system = ... .. MCP.context('docs')}).",
    "expose": "MCP.expose{tools = {pattern, ...}, agents = {agent, ...}}\n\nWhat `aikit mcp serve --script` serves "
              "(a setup script calls it): tool names or patterns and agents (one tool agent_<name> each).",
    "serve": "MCP.serve{port = n [, host, token, tools = {pattern, ...}, agents = {agent, ...}]} -> server\n\n"
             "Serves this notebook's tools and agents over Streamable HTTP until server:stop(); server.url is the "
             "endpoint. Binding anything but loopback requires a token.",
}


def install(engine: LuaEngine, components: Components, agent_handles: Any = None) -> None:
    async def connect(name: Any, spec: Any = None) -> Any:
        return (await components.mcp.connect(_name(name, "MCP.connect"), spec)).info()

    async def disconnect(name: Any) -> bool:
        return await components.mcp.disconnect(_name(name, "MCP.disconnect"))

    def list_() -> Any:
        return components.mcp.list()

    async def tools(name: Any) -> Any:
        return list((await components.mcp.get(_name(name, "MCP.tools"))).tool_names)

    async def resources(name: Any) -> Any:
        return await (await components.mcp.get(_name(name, "MCP.resources"))).resources()

    async def read(name: Any, uri: Any) -> Any:
        if not isinstance(uri, str) or not uri:
            raise InvalidArgument("MCP.read: the uri must be a non-empty string")
        return await (await components.mcp.get(_name(name, "MCP.read"))).read(uri)

    async def prompts(name: Any) -> Any:
        return await (await components.mcp.get(_name(name, "MCP.prompts"))).prompts()

    async def prompt(name: Any, prompt_name: Any, args: Any = None) -> Any:
        if not isinstance(prompt_name, str) or not prompt_name:
            raise InvalidArgument("MCP.prompt: the prompt name must be a non-empty string")
        if args in (None, []):
            args = {}
        if not isinstance(args, dict) or not all(isinstance(v, str) for v in args.values()):
            raise InvalidArgument("MCP.prompt: args must be a table of string values")
        return await (await components.mcp.get(_name(name, "MCP.prompt"))).prompt(prompt_name, args)

    async def context(name: Any, uris: Any = None) -> str:
        connection = await components.mcp.get(_name(name, "MCP.context"))
        if uris in (None, {}):
            uris = [r["uri"] for r in await connection.resources()]
        if not isinstance(uris, list) or not all(isinstance(u, str) for u in uris):
            raise InvalidArgument("MCP.context: the uris must be a list of strings")
        sections = []
        for uri in uris:
            texts = [c["text"] for c in await connection.read(uri) if isinstance(c.get("text"), str)]
            if texts:
                sections.append(f"## {uri}\n\n" + "\n".join(texts))
        return "\n\n".join(sections)

    functions = {"connect": connect, "disconnect": disconnect, "list": list_, "tools": tools, "resources": resources,
                 "read": read, "prompts": prompts, "prompt": prompt, "context": context}
    table = expose(engine, "MCP", functions, DOCS)
    bind = engine.internal[b"bind"]
    for key, fn in (("serve", serve_function(engine, components, agent_handles)),
                    ("expose", expose_function(engine, agent_handles))):
        table[key.encode()] = bind(engine.host.wrap(checked_arity(fn, f"MCP.{key}")))
        engine.register_doc(f"MCP.{key}", table[key.encode()], DOCS[key])


def resolve_tools(engine: LuaEngine, components: Components, names: list[str]) -> None:
    """Connect the configured MCP servers that ``names`` (tool names, patterns or categories)
    refer to and that are not connected yet (first use), waiting interruptibly."""
    if not components.mcp_configured():
        return
    registry = components.tools
    for name in names:
        if name not in registry and name not in registry.categories():
            engine.wait(registry.aresolve(name))


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"{what}: the server name must be a non-empty string")
    return value
