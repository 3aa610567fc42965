"""aikit as an MCP server: tools, agents, RAG collections, State and Artifacts for any MCP client.

:class:`AikitServer` builds an SDK low-level ``Server`` whose handlers read what is exposed at the
time of each request (so a notebook's later definitions show up) and call it the way a local call
does: a tool through ``ToolRegistry.acall`` (validation, the operation pipeline: hooks, events,
tracing, approvals, budgets, audit), an agent through ``Agent.run``. Errors become ``isError``
results carrying aikit's structured error.

Approvals: while a call runs, :data:`REMOTE_CLIENT` holds the :class:`RemoteClient` that made it.
An approval interceptor asks it with ``await REMOTE_CLIENT.get().ask(question)``: the question goes
to the client as an elicitation when the client supports elicitation; otherwise the call is denied
with a reason saying so (:class:`~aikit_components.errors.PermissionDenied`).

Transports: :meth:`AikitServer.run_stdio` (requests over ``max_request_bytes`` are answered with a
JSON-RPC error, see :mod:`.stdio_server`) and :meth:`AikitServer.run_http` (Streamable HTTP; a
bearer token is required when binding anything but loopback; larger bodies get 413).

List changes: while it serves, the server listens to the tool registry; a served tool defined,
redefined or removed (a notebook's ``Tool.define``) sends ``notifications/tools/list_changed`` to
every connected client: to sessions of the handshake era directly, and through the SDK's
subscription bus to clients of the 2026-07-28 era that listen (``subscriptions/listen``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import fnmatch
import hmac
import ipaddress
import json
import logging
import secrets
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import mcp_types as types
from mcp.server.lowlevel.server import NotificationOptions, Server
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ToolsListChanged
from mcp.server.transport_security import TransportSecuritySettings

from ..errors import AikitError, InvalidArgument, NotFound, PermissionDenied
from ..tools import Tool, ToolContext
from .convert import error_result, to_call_result

log = logging.getLogger(__name__)

DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024
LOOPBACK = ("127.0.0.1", "localhost", "::1")
MAX_ANNOUNCED_SESSIONS = 1024


@dataclass
class RemoteClient:
    """The MCP client a served call came from: what an approval interceptor may ask."""

    session: Any
    name: str | None = None

    @property
    def can_elicit(self) -> bool:
        caps = self.session.client_capabilities if self.session is not None else None
        return caps is not None and caps.elicitation is not None

    async def ask(self, question: str) -> bool:
        """Ask the client's user to approve (elicitation); True when accepted. Without elicitation
        support the call is denied with a reason."""
        if not self.can_elicit:
            raise PermissionDenied("this call needs an approval, and the MCP client cannot be asked (it does not "
                                   "support elicitation); approve it in aikit or use a client that supports "
                                   "elicitation", details={"rule": "approval", "client": self.name})
        result = await self.session.elicit_form(question, {"type": "object", "properties": {}})
        return result.action == "accept"


REMOTE_CLIENT: contextvars.ContextVar[RemoteClient | None] = contextvars.ContextVar("aikit_mcp_client", default=None)


@dataclass
class Exposed:
    """What a server offers: tool-name patterns over the registry, agents by name, whether RAG
    collections, State and Artifacts are offered. Read on every request."""

    tools: list[str] | None = None  # glob patterns; None = every tool that is not a process launcher
    agents: dict[str, Any] = field(default_factory=dict)
    rag: bool = True
    resources: bool = True
    missions: bool = True  # run_mission{mission, inputs}, with progress notifications


class ListChangingServer(Server[Any]):
    """The SDK's low-level server announcing ``tools.listChanged`` in every handshake (stdio and
    each Streamable HTTP session build their initialization options without arguments)."""

    def create_initialization_options(self, notification_options: NotificationOptions | None = None,
                                      *args: Any, **kwargs: Any) -> Any:
        return super().create_initialization_options(
            notification_options or NotificationOptions(tools_changed=True), *args, **kwargs)


class AikitServer:
    """An MCP server over one process's components (see the module docstring)."""

    def __init__(self, components: Any, exposed: Exposed | None = None, *, name: str = "aikit",
                 context: Callable[[], ToolContext] | None = None) -> None:
        self.components = components
        self.exposed = exposed or Exposed()
        self.name = name
        self.context = context or (lambda: components.tool_context(caller="mcp-client"))
        self.bus = InMemorySubscriptionBus()
        self.server: Server[Any] = ListChangingServer(
            name, version="1", instructions="aikit's tools, agents and document collections.",
            on_list_tools=self._list_tools, on_call_tool=self._call_tool,
            on_list_resources=self._list_resources if self.exposed.resources else None,
            on_read_resource=self._read_resource if self.exposed.resources else None,
            on_list_prompts=self._list_prompts, on_get_prompt=self._get_prompt,
            on_subscriptions_listen=ListenHandler(self.bus))
        self.server.add_notification_handler("notifications/initialized", types.NotificationParams,
                                              self._initialized)
        # Handshake-era connections, told of changes: the session of each one's `initialized`
        # notification (its notifications go on the connection's standalone stream). Bounded:
        # a closed connection's session drops what is sent to it, and the oldest are forgotten.
        self.sessions: deque[Any] = deque(maxlen=MAX_ANNOUNCED_SESSIONS)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._announce_pending = False

    # ------------------------------------------------------------------ list changes
    async def _initialized(self, ctx: Any, params: Any) -> None:
        session = getattr(ctx, "session", None)
        if session is not None and hasattr(session, "send_tool_list_changed"):
            self.sessions.append(session)

    def _tool_changed(self, name: str, item: Tool | None) -> None:
        """Registry listener (any thread): announce the change on the serving loop, once per burst."""
        if item is not None and not self.serves_tool(item):
            return
        if item is None and self.exposed.tools is not None and not any(
                fnmatch.fnmatchcase(name, p) for p in self.exposed.tools):
            return
        loop = self._loop
        if loop is None or loop.is_closed() or self._announce_pending:
            return
        self._announce_pending = True
        try:
            loop.call_soon_threadsafe(lambda: loop.create_task(self._announce()))
        except RuntimeError:  # the loop is closing
            self._announce_pending = False

    async def _announce(self) -> None:
        self._announce_pending = False
        await self.bus.publish(ToolsListChanged())
        for session in list(self.sessions):
            try:
                await session.send_tool_list_changed()
            except Exception as exc:  # a closed session is forgotten
                log.debug("could not tell an MCP session of the tool list change: %s", exc)
                with contextlib.suppress(ValueError):
                    self.sessions.remove(session)

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        """While in this context (entered on the serving loop), registry changes are announced."""
        self._loop = asyncio.get_running_loop()
        self.components.tools.add_change_listener(self._tool_changed)
        try:
            yield
        finally:
            self.components.tools.remove_change_listener(self._tool_changed)
            self._loop = None

    # ------------------------------------------------------------------ what is exposed
    def serves_tool(self, item: Tool) -> bool:
        """Whether a registry tool is served: it matches the patterns (by default: it does not
        launch programs) and is not a proxy for another MCP server's tool."""
        if item.source.startswith("mcp:"):
            return False
        patterns = self.exposed.tools
        if patterns is None:
            return item.security != "process"
        return any(fnmatch.fnmatchcase(item.name, p) for p in patterns)

    def lookup(self, name: str) -> tuple[Tool, Callable[..., Any]] | None:
        """The served tool ``name`` (a registry tool without listing every other)."""
        registry = self.components.tools
        if name in registry:
            item = registry.get(name)
            return (item, self._tool_caller(name)) if self.serves_tool(item) else None
        return self.tools().get(name)

    def tools(self) -> dict[str, tuple[Tool, Callable[..., Any]]]:
        """Exposed tool name -> (definition, async caller of the arguments)."""
        found: dict[str, tuple[Tool, Callable[..., Any]]] = {}
        patterns = self.exposed.tools
        for item in self.components.tools.list():
            if self.serves_tool(item):
                found[item.name] = (item, self._tool_caller(item.name))
        for agent_name, agent in self.exposed.agents.items():
            tool = agent_tool(agent_name)
            found[tool.name] = (tool, validated(tool, self._agent_caller(agent)))

        def wanted(name: str) -> bool:
            return patterns is None or any(fnmatch.fnmatchcase(name, p) for p in patterns)

        if self.exposed.missions and wanted(MISSION_TOOL.name):
            found[MISSION_TOOL.name] = (MISSION_TOOL, validated(MISSION_TOOL, self._run_mission))
        if self.exposed.rag and self._has_collections():
            for info in self.components.rag.list():
                if wanted(f"search_{info['name']}"):
                    tool = self.components.rag.collection(info["name"]).as_tool(name=f"search_{info['name']}")
                    found[tool.name] = (tool, validated(tool, lambda args, tool=tool: tool.fn(**args)))
        return found

    def _has_collections(self) -> bool:
        return (self.components.data_dir / "rag").is_dir()

    def _tool_caller(self, name: str) -> Callable[..., Any]:
        async def call(args: dict[str, Any]) -> Any:
            return await self.components.tools.acall(name, args, self.context())
        return call

    def _agent_caller(self, agent: Any) -> Callable[..., Any]:
        async def call(args: dict[str, Any]) -> Any:
            text = args.get("input")
            if not isinstance(text, str):
                raise InvalidArgument("the agent's input must be a string (argument `input`)")
            result = await agent.run(text)
            data = json.loads(json.dumps(result.to_dict(), default=str))
            return types.CallToolResult(content=[types.TextContent(type="text", text=result.text or "")],
                                        structured_content=data)
        return call

    async def _run_mission(self, args: dict[str, Any]) -> Any:
        """``run_mission``: validate the mission (a file inside the allowed paths, or YAML text),
        run it on this loop and report each finished step as MCP progress."""
        from ..errors import ValidationError
        from ..workflows import engine
        from ..workflows.missions import parse_mission, validate_mission

        source, inputs = args.get("mission"), args.get("inputs") or {}
        if not isinstance(source, str) or not source.strip():
            raise InvalidArgument("run_mission: `mission` must be a mission file path or YAML text")
        if not isinstance(inputs, dict):
            raise InvalidArgument("run_mission: `inputs` must be an object")
        if "\n" not in source:
            source = str(self.components.policy.check_path(source))
        mission = parse_mission(source, registry=self.components.tools)
        problems = validate_mission(mission, components=self.components, inputs=inputs)
        if problems:
            raise ValidationError(f"run_mission: the mission {mission.workflow.name!r} has problems:", problems)
        client = REMOTE_CLIENT.get()
        total = len(mission.workflow.steps)
        finished: list[str] = []
        pending: set[asyncio.Task[Any]] = set()

        def on_event(kind: str, step_id: str | None, record: Any) -> None:
            if kind == "step.finished" and step_id is not None and client is not None and client.session is not None:
                finished.append(step_id)
                task = asyncio.ensure_future(client.session.report_progress(
                    len(finished), total, f"step {step_id} {getattr(record, 'status', 'finished')}"))
                pending.add(task)
                task.add_done_callback(pending.discard)

        record = await engine.run(mission.workflow, components=self.components, inputs=inputs, on_event=on_event,
                                  tool_context=self.context())
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        data = json.loads(json.dumps(record.to_dict(), default=str))
        summary = f"mission {mission.workflow.name!r} {record.status} ({len(finished)}/{total} steps)"
        return types.CallToolResult(content=[types.TextContent(type="text", text=summary)], structured_content=data,
                                    is_error=record.status != "succeeded")

    # ------------------------------------------------------------------ handlers
    async def _list_tools(self, ctx: Any, params: Any) -> types.ListToolsResult:
        tools = []
        for name, (item, _) in sorted(self.tools().items()):
            tools.append(types.Tool(name=name, description=item.description, input_schema=item.parameters))
        return types.ListToolsResult(tools=tools)

    async def _call_tool(self, ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        entry = self.lookup(params.name)
        if entry is None:
            return error_result(NotFound(f"no tool named {params.name!r} is served here",
                                         details={"name": params.name}))
        _, call = entry
        args = params.arguments or {}
        client = RemoteClient(getattr(ctx, "session", None))
        token = REMOTE_CLIENT.set(client)
        try:
            value = await call(dict(args))
        except AikitError as exc:
            return error_result(exc)
        except Exception as exc:  # a bug in a tool must not take the server down
            log.exception("served tool %s failed", params.name)
            return error_result(AikitError(f"{type(exc).__name__}: {exc}", code="internal_error"))
        finally:
            REMOTE_CLIENT.reset(token)
        return value if isinstance(value, types.CallToolResult) else to_call_result(value)

    async def _list_prompts(self, ctx: Any, params: Any) -> types.ListPromptsResult:
        """One prompt per served agent: its instructions with the user's request, for a client
        that wants to run the agent's role with its own model."""
        return types.ListPromptsResult(prompts=[
            types.Prompt(name=f"agent_{name}", description=f"The instructions of the aikit agent {name!r}",
                         arguments=[types.PromptArgument(name="input", description="The request", required=True)])
            for name in sorted(self.exposed.agents)])

    async def _get_prompt(self, ctx: Any, params: types.GetPromptRequestParams) -> types.GetPromptResult:
        agent = self.exposed.agents.get(params.name.removeprefix("agent_")) if params.name.startswith("agent_") else None
        if agent is None:
            raise _mcp_error(types.INVALID_PARAMS, f"no prompt named {params.name!r} (prompts: agent_<name> of the "
                                                   "served agents)")
        request = (params.arguments or {}).get("input", "")
        text = f"{agent.spec.system}\n\n{request}".strip()
        return types.GetPromptResult(description=f"The aikit agent {agent.spec.name!r}", messages=[
            types.PromptMessage(role="user", content=types.TextContent(type="text", text=text))])

    async def _list_resources(self, ctx: Any, params: Any) -> types.ListResourcesResult:
        resources = []
        state = self.components.state
        for key in state.keys("global"):
            resources.append(types.Resource(uri=f"state://global/{key}", name=f"State {key}",
                                            mime_type="application/json"))
        for info in self.components.artifacts.list():
            resources.append(types.Resource(uri=f"artifact://{info.name}", name=f"Artifact {info.name}",
                                            mime_type=info.mime, size=info.size))
        return types.ListResourcesResult(resources=resources)

    async def _read_resource(self, ctx: Any, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        uri = str(params.uri)
        if uri.startswith("state://global/"):
            key = uri[len("state://global/"):]
            missing = object()
            value = self.components.state.get("global", key, missing)
            if value is missing:
                raise _mcp_error(types.INVALID_PARAMS, f"no State key {key!r} in scope global")
            return types.ReadResourceResult(contents=[types.TextResourceContents(
                uri=uri, mime_type="application/json", text=json.dumps(value, default=str, ensure_ascii=False))])
        if uri.startswith("artifact://"):
            name = uri[len("artifact://"):]
            try:
                info, data = self.components.artifacts.get(name)
            except AikitError as exc:
                raise _mcp_error(types.INVALID_PARAMS, exc.message) from None
            if info.mime.startswith("text/") or info.mime in ("application/json",):
                contents: Any = types.TextResourceContents(uri=uri, mime_type=info.mime,
                                                           text=data.decode("utf-8", errors="replace"))
            else:
                import base64

                contents = types.BlobResourceContents(uri=uri, mime_type=info.mime,
                                                      blob=base64.b64encode(data).decode("ascii"))
            return types.ReadResourceResult(contents=[contents])
        raise _mcp_error(types.INVALID_PARAMS, f"unknown resource {uri!r} (served: state://global/KEY, artifact://NAME)")

    # ------------------------------------------------------------------ transports
    async def run_stdio(self, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
                        fds: tuple[int, int] | None = None) -> None:
        """Serve over this process's stdin/stdout (or the file descriptors ``fds``) until the
        client closes its end; a request over ``max_request_bytes`` gets a JSON-RPC error."""
        from .stdio_server import bounded_stdio_server

        with self.watching():
            async with bounded_stdio_server(max_request_bytes, fds) as (read_stream, write_stream):
                await self.server.run(read_stream, write_stream, self.server.create_initialization_options())

    def http_app(self, host: str, token: str | None, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES) -> Any:
        """The Streamable HTTP ASGI app at ``/mcp``, behind the bearer-token check."""
        security = None
        if host in LOOPBACK:
            security = TransportSecuritySettings(
                enable_dns_rebinding_protection=True,
                allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
                allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"])
        app = self.server.streamable_http_app(host=host, max_request_body_size=max_request_bytes,
                                              transport_security=security)
        return BearerGate(app, token) if token else app

    async def run_http(self, host: str = "127.0.0.1", port: int = 0, token: str | None = None,
                       started: Callable[[str], Any] | None = None,
                       max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES) -> None:
        """Serve Streamable HTTP on ``host:port`` until cancelled; ``started(url)`` is called once
        listening (port 0 picks a free port)."""
        import uvicorn

        check_bind(host, token)
        config = uvicorn.Config(self.http_app(host, token, max_request_bytes), host=host, port=port,
                                log_level="warning", lifespan="on", access_log=False, timeout_graceful_shutdown=2)
        server = uvicorn.Server(config)
        watch = contextlib.ExitStack()
        watch.enter_context(self.watching())
        task = asyncio.ensure_future(server.serve())
        try:
            while not server.started:
                if task.done():
                    await task
                    raise OSError(f"the MCP server could not listen on {host}:{port}")
                await asyncio.sleep(0.01)
            bound = server.servers[0].sockets[0].getsockname()[1]
            shown = f"[{host}]" if ":" in host else host
            if started is not None:
                started(f"http://{shown}:{bound}/mcp")
            await asyncio.shield(task)  # a cancellation stops the server below, not mid-flight
        finally:
            if not task.done():
                server.should_exit = True  # uvicorn closes its sockets and its open streams
                try:
                    await asyncio.wait_for(asyncio.shield(task), 5)
                except (TimeoutError, asyncio.CancelledError):
                    server.force_exit = True
                    task.cancel()
            watch.close()


def validated(tool: Tool, call: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], Any]:
    """``call`` behind the validation of ``tool``'s schema (served tools that do not go through the
    registry: agents, missions, collections)."""
    async def checked(args: dict[str, Any]) -> Any:
        from ..errors import ValidationError

        problems = tool.validate(args)
        if problems:
            raise ValidationError(f"invalid arguments for tool {tool.name!r}:", problems, details={"tool": tool.name})
        return await call(tool.bind_args(dict(args)))
    return checked


async def _unused(**_: Any) -> Any:  # served tools whose caller is the server itself
    raise NotImplementedError


MISSION_TOOL = Tool(
    name="run_mission", fn=_unused, category="missions", security="process", source="mcp-server", is_async=True,
    description="Run an aikit mission (YAML, the RustChain format): validate it, run its steps as a DAG, and return "
                "the run record; progress is reported after each step.",
    parameters={"type": "object", "required": ["mission"], "additionalProperties": False, "properties": {
        "mission": {"type": "string", "description": "A mission file inside the allowed paths, or the YAML itself."},
        "inputs": {"type": "object", "description": "Values for {{input.NAME}} in the mission."}}})


def agent_tool(name: str) -> Tool:
    """The served tool of an agent: text in, the agent's answer (text and structured result) out."""
    return Tool(name=f"agent_{name}", description=f"Ask the aikit agent {name!r}; returns its answer.", fn=_unused,
                parameters={"type": "object", "required": ["input"], "additionalProperties": False,
                            "properties": {"input": {"type": "string", "description": "The request for the agent."}}},
                category="agents", security="network", source="agent", is_async=True)


def check_bind(host: str, token: str | None) -> None:
    """Loopback needs no token; any other address does (the server would be reachable by others)."""
    if host in LOOPBACK:
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    if not token:
        raise PermissionDenied(f"serving MCP on {host!r} (not loopback) requires a bearer token: pass --token or set "
                               "mcp.serve_token", details={"rule": "mcp_serve_token", "host": host})


def new_token() -> str:
    return secrets.token_urlsafe(24)


class BearerGate:
    """ASGI middleware: HTTP requests must carry ``Authorization: Bearer <token>``."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                body = b'{"error": "unauthorized: send Authorization: Bearer <token>"}'
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def _mcp_error(code: int, message: str) -> Exception:
    from mcp.shared.exceptions import MCPError

    return MCPError(code=code, message=message)


__all__ = ["REMOTE_CLIENT", "AikitServer", "BearerGate", "Exposed", "RemoteClient", "agent_tool", "check_bind",
           "new_token"]
