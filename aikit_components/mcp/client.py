"""aikit as an MCP client: connections to MCP servers whose tools become aikit tools.

A :class:`Connection` is owned by one long-lived task on the loop that first used it (the kernel's
I/O loop): the SDK's client and its transport are entered and left in that task, so the connection
outlives the call that made it. A tool call awaits the session from any task of that loop. When the
server dies (a stdio server exits, an HTTP server stops answering) the connection ends with the
reason, calls in flight fail with it, and the next call starts the server again. ``close`` stops
the owner task (and a stdio server with its process group).

Each server tool ``t`` of server ``NAME`` is registered as the aikit tool ``NAME.t`` (category
``NAME``), so a call runs as a ``tool`` operation through the pipeline like any tool call; its
operation meta carries ``mcp_server``. Starting a stdio server is a ``process`` operation checked
against ``security.allowed_commands``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2  # the HTTP client the SDK's Streamable HTTP transport is written for
import mcp_types as types
from mcp import Client
from mcp.shared.exceptions import MCPError

from ..errors import AikitError, InvalidArgument, IOFailure, NotFound, PermissionDenied, ResourceExhausted, Timeout
from ..operations import Operation
from ..tools import Tool, ToolContext, ToolRegistry
from ..tools.system import PROCESS, child_env, resolve_program
from . import stdio
from .convert import content_block, result_value, security_of, size_of, tool_schema

log = logging.getLogger(__name__)

SPEC_KEYS = ("command", "args", "env", "cwd", "url", "headers", "timeout_s", "connect_timeout_s")
DEFAULT_CALL_TIMEOUT_S = 60.0
DEFAULT_CONNECT_TIMEOUT_S = 30.0
DEFAULT_MAX_RESULT_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_MESSAGE_BYTES = 32 * 1024 * 1024


@dataclass
class ServerSpec:
    """How to reach one MCP server: a stdio ``command`` (with ``args``, ``env``, ``cwd``) or a
    Streamable HTTP ``url`` (with ``headers``); ``timeout_s`` bounds each call."""

    name: str
    command: str | None = None
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    timeout_s: float = DEFAULT_CALL_TIMEOUT_S
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S

    @classmethod
    def parse(cls, name: str, raw: Any, defaults: dict[str, Any] | None = None) -> ServerSpec:
        """A spec from a Lua table or an ``[mcp.servers.NAME]`` section; errors say what to fix."""
        check_server_name(name)
        if not isinstance(raw, dict):
            raise InvalidArgument(f"MCP server {name!r}: the spec must be a table with command or url")
        unknown = sorted(str(k) for k in raw if k not in SPEC_KEYS)
        if unknown:
            raise InvalidArgument(f"MCP server {name!r}: unknown option(s) {', '.join(unknown)} "
                                  f"(known: {', '.join(SPEC_KEYS)})")
        command, url = raw.get("command"), raw.get("url")
        if (command is None) == (url is None):
            raise InvalidArgument(f"MCP server {name!r}: give either command (a program started over stdio) "
                                  "or url (a Streamable HTTP endpoint), not both or neither")
        for key in ("command", "url", "cwd"):
            if raw.get(key) is not None and (not isinstance(raw[key], str) or not raw[key]):
                raise InvalidArgument(f"MCP server {name!r}: {key} must be a non-empty string")
        args = raw.get("args") or []
        if args == {}:
            args = []
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise InvalidArgument(f"MCP server {name!r}: args must be a list of strings")
        tables = {}
        for key in ("env", "headers"):
            value = raw.get(key) or {}
            if value == []:
                value = {}
            if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                      for k, v in value.items()):
                raise InvalidArgument(f"MCP server {name!r}: {key} must be a table of string names to string values")
            tables[key] = value
        if url is not None and not url.startswith(("http://", "https://")):
            raise InvalidArgument(f"MCP server {name!r}: url must start with http:// or https://, got {url!r}")
        defaults = defaults or {}
        timeouts = {}
        for key, fallback in (("timeout_s", DEFAULT_CALL_TIMEOUT_S), ("connect_timeout_s", DEFAULT_CONNECT_TIMEOUT_S)):
            value = raw.get(key, defaults.get(key, fallback))
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise InvalidArgument(f"MCP server {name!r}: {key} must be a positive number of seconds")
            timeouts[key] = float(value)
        return cls(name=name, command=command, args=list(args), env=tables["env"], cwd=raw.get("cwd"), url=url,
                   headers=tables["headers"], **timeouts)

    @property
    def transport(self) -> str:
        return "stdio" if self.command is not None else "http"


def check_server_name(name: Any) -> str:
    """A server name becomes a tool-name prefix: letters, digits, ``_`` and ``-`` only."""
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "_-" for c in name):
        raise InvalidArgument(f"an MCP server name must be a non-empty string of letters, digits, _ and -, got {name!r}")
    return name


class Connection:
    """One MCP server: its session (owned by a task on the loop), its tools in the registry."""

    def __init__(self, spec: ServerSpec, manager: MCPClients) -> None:
        self.spec = spec
        self.name = spec.name
        self.manager = manager
        self.tool_names: list[str] = []
        self.problems: list[str] = []  # tools skipped (invalid schema), with the reason
        self.loop: asyncio.AbstractEventLoop | None = None
        self.connects = 0
        self.last_end: str | None = None
        self.last_http_error: str | None = None  # the last refusal of an HTTP server ("HTTP 401 Unauthorized")
        self._client: Client | None = None
        self._process: stdio.ServerProcess | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        self._lock: asyncio.Lock | None = None
        self._closed = False

    # ------------------------------------------------------------------ lifecycle
    @property
    def connected(self) -> bool:
        return (self._client is not None and self._task is not None and not self._task.done()
                and self._stop is not None and not self._stop.is_set())

    async def ensure(self) -> Client:
        """The live session, (re)connecting when there is none."""
        if self._closed:
            raise NotFound(f"the MCP server {self.name!r} was disconnected; MCP.connect it again")
        client = self._client
        if client is not None and self.connected:
            return client
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._client is not None and self.connected:
                return self._client
            return await self._start()

    async def _start(self) -> Client:
        self.loop = asyncio.get_running_loop()
        old = self._task
        if old is not None and not old.done():  # the previous connection is still winding down
            if self._stop is not None:
                self._stop.set()
            with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(old), 10)
        self.last_end = self.last_http_error = None
        ready: asyncio.Future[Client] = self.loop.create_future()
        # Retrieved even when the caller was cancelled meanwhile (no "exception never retrieved").
        ready.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._stop = asyncio.Event()
        self._task = self.loop.create_task(self._own(ready, self._stop), name=f"mcp:{self.name}")
        try:
            async with asyncio.timeout(self.spec.connect_timeout_s):
                return await asyncio.shield(ready)
        except TimeoutError:
            self._stop.set()
            self._task.cancel()
            raise Timeout(f"MCP server {self.name!r} did not complete the MCP handshake within "
                          f"{self.spec.connect_timeout_s:g} s{self._stderr_hint()}; check that it is an MCP server "
                          "speaking over " + ("stdio" if self.spec.transport == "stdio" else "Streamable HTTP"),
                          details=self._details()) from None
        except asyncio.CancelledError:
            self._stop.set()
            raise

    async def _own(self, ready: asyncio.Future[Client], stop: asyncio.Event) -> None:
        """The owner task: enter the session, list the tools, wait until told to stop."""
        try:
            async with contextlib.AsyncExitStack() as stack:
                transport = await self._transport(stack, stop)
                client = Client(transport, mode="legacy", cache=None, message_handler=self._on_message,
                                client_info=types.Implementation(name="aikit", version="1"))
                await stack.enter_async_context(client)
                self._client = client
                self.connects += 1
                await self._refresh_tools(client)
                if not ready.done():
                    ready.set_result(client)
                await stop.wait()
        except BaseException as exc:  # noqa: BLE001 - reported to whoever waits for the connection
            if not ready.done():
                ready.set_exception(self._connect_error(exc))
            elif not isinstance(exc, asyncio.CancelledError):
                log.warning("MCP server %s: connection ended: %s", self.name, exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self._client = None
            process, self._process = self._process, None
            if process is not None:
                self.last_end = self.last_end or process.ended
                with contextlib.suppress(Exception):
                    await stdio.stop(process)

    async def _transport(self, stack: contextlib.AsyncExitStack, stop: asyncio.Event) -> Any:
        spec = self.spec
        if spec.url is not None:
            from mcp.client.streamable_http import streamable_http_client

            async def remember_refusal(response: Any) -> None:
                if response.status_code >= 400:
                    self.last_http_error = f"HTTP {response.status_code} {response.reason_phrase}".strip()

            http = httpx2.AsyncClient(headers=spec.headers, timeout=httpx2.Timeout(spec.timeout_s, read=None),
                                      follow_redirects=False, event_hooks={"response": [remember_refusal]})
            await stack.enter_async_context(http)
            return streamable_http_client(spec.url, http_client=http)
        ctx = self.manager.context()
        cwd = Path(spec.cwd).expanduser() if spec.cwd else None
        argv = resolve_program(ctx, [spec.command or "", *spec.args], cwd)
        env = child_env(ctx, spec.env)
        op = Operation(PROCESS, os.path.basename(argv[0]), {"argv": list(argv), "cwd": str(cwd) if cwd else None,
                                                          "mcp_server": self.name},
                       ctx, meta={"label": f"MCP server {self.name}", "mcp_server": self.name})

        async def launch(_op: Operation) -> stdio.ServerProcess:
            try:
                return await stdio.spawn(argv, env, str(cwd) if cwd else None)
            except FileNotFoundError:
                raise NotFound(f"cannot start MCP server {self.name!r}: {argv[0]!r} (or the directory {cwd}) "
                               "does not exist", details={"server": self.name, "command": argv[0]}) from None
            except PermissionError as exc:
                raise PermissionDenied(f"the operating system refused to start MCP server {self.name!r}: "
                                       f"{exc.strerror}", details={"server": self.name}) from None

        pipeline = self.manager.pipeline
        process = await (pipeline.arun(op, launch) if pipeline is not None else launch(op))
        self._process = process
        stack.push_async_callback(stdio.stop, process)

        def on_end(reason: str) -> None:
            self.last_end = reason
            stop.set()

        return stdio.stdio_streams(process, self.manager.max_message_bytes, on_end)

    def _connect_error(self, exc: BaseException) -> BaseException:
        if isinstance(exc, AikitError | asyncio.CancelledError):
            return exc
        reason = self.last_end or _describe(exc)
        if self.last_http_error:
            reason = f"the server answered {self.last_http_error}"
            if self.last_http_error.startswith(("HTTP 401", "HTTP 403")):
                reason += " (give the credentials it wants in headers, e.g. {Authorization = 'Bearer ...'})"
        return IOFailure(f"cannot connect to MCP server {self.name!r}: {reason}{self._stderr_hint()}",
                         details={**self._details(), "http_status": self.last_http_error})

    def _stderr_hint(self) -> str:
        process = self._process
        tail = process.stderr_text() if process is not None else ""
        return f"; its stderr said:\n{tail}" if tail and "stderr" not in (self.last_end or "") else ""

    def _details(self) -> dict[str, Any]:
        return {"server": self.name, "transport": self.spec.transport,
                "target": self.spec.url or " ".join([self.spec.command or "", *self.spec.args])}

    async def close(self, *, forget: bool = True) -> None:
        """End the connection (and a stdio server); with ``forget`` also remove its tools."""
        self._closed = forget
        if self._stop is not None:
            self._stop.set()
        task = self._task
        if task is not None and not task.done():
            try:
                async with asyncio.timeout(10):
                    await asyncio.shield(task)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
        if forget:
            for name in self.tool_names:
                self.manager.registry.unregister(name)
            self.tool_names = []

    # ------------------------------------------------------------------ tools
    async def _refresh_tools(self, client: Client) -> None:
        listed: list[types.Tool] = []
        cursor: str | None = None
        for _ in range(100):
            page = await client.list_tools(cursor=cursor)
            listed.extend(page.tools)
            cursor = page.next_cursor
            if cursor is None:
                break
        registry = self.manager.registry
        fresh: list[str] = []
        problems: list[str] = []
        for item in listed:
            schema, why = tool_schema(item.input_schema)
            if schema is None:
                problems.append(f"{item.name}: invalid input schema: {'; '.join(why)}")
                log.warning("MCP server %s: tool %s skipped: invalid input schema: %s", self.name, item.name, why)
                continue
            tool = self._as_tool(item, schema)
            registry.register(tool, replace=True)
            fresh.append(tool.name)
        for stale in set(self.tool_names) - set(fresh):
            registry.unregister(stale)
        self.tool_names, self.problems = fresh, problems

    def _as_tool(self, item: types.Tool, schema: dict[str, Any]) -> Tool:
        connection, remote = self, item.name

        async def call(ctx: ToolContext, **args: Any) -> Any:
            return await connection.call_tool(remote, args)

        return Tool(name=f"{self.name}.{remote}", description=item.description or item.title or remote, fn=call,
                    parameters=schema, category=self.name, security=security_of(item), source=f"mcp:{self.name}",
                    wants_ctx=True, is_async=True, operation_meta={"mcp_server": self.name, "mcp_tool": remote})

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            client = self._client
            if client is not None:
                asyncio.get_running_loop().create_task(self._refresh_quietly(client))
        elif isinstance(message, Exception):
            log.warning("MCP server %s: %s", self.name, message)

    async def _refresh_quietly(self, client: Client) -> None:
        try:
            await self._refresh_tools(client)
        except Exception as exc:  # a failed refresh keeps the tools listed before
            log.warning("MCP server %s: refreshing the tools after list_changed failed: %s", self.name, exc)

    # ------------------------------------------------------------------ requests
    async def request(self, what: str, send: Callable[[Client], Any], timeout_s: float | None = None) -> Any:
        """Run one request on the live session with the per-call timeout; failures become aikit
        errors naming the server and what was asked, and a dead connection is restarted next time."""
        client = await self.ensure()
        timeout_s = timeout_s or self.spec.timeout_s
        started = time.monotonic()
        try:
            async with asyncio.timeout(timeout_s):
                return await send(client)
        except TimeoutError:
            raise Timeout(f"MCP server {self.name!r} did not answer {what} within {timeout_s:g} s "
                          f"(timeout_s of the server); the call was cancelled",
                          details={**self._details(), "timeout_s": timeout_s}) from None
        except MCPError as exc:
            if exc.error.code == types.CONNECTION_CLOSED or not self.connected:
                reason = await self._end_reason()
                raise IOFailure(f"MCP server {self.name!r} went away during {what}: {reason}; {self._next_call()}",
                                details={**self._details(), "reason": reason}) from None
            code = "invalid_argument" if exc.error.code == types.INVALID_PARAMS else "mcp_error"
            raise AikitError(f"MCP server {self.name!r} refused {what}: {exc.error.message}", code=code,
                             details={**self._details(), "mcp_code": exc.error.code}) from None
        except (httpx2.HTTPError, OSError) as exc:
            self._end(f"{_describe(exc)}")
            raise IOFailure(f"MCP server {self.name!r} failed during {what}: {_describe(exc)}; {self._next_call()}",
                            details=self._details()) from None
        except Exception as exc:
            if not self.connected:
                reason = self.last_end or _describe(exc)
                raise IOFailure(f"MCP server {self.name!r} went away during {what}: {reason}; {self._next_call()}",
                                details={**self._details(), "reason": reason}) from None
            raise AikitError(f"MCP server {self.name!r}: {what} failed after {time.monotonic() - started:.1f} s: "
                             f"{_describe(exc)}", code="mcp_error", details=self._details()) from None

    def _next_call(self) -> str:
        return ("the next call starts it again" if self.spec.transport == "stdio"
                else "the next call connects again")

    async def _end_reason(self) -> str:
        """Why the connection closed: a stdio server's exit (waited for briefly: its stdout
        closes a moment before the exit is seen) or what ended it."""
        process = self._process
        if process is not None and self.last_end is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(process.proc.wait()), 2.0)
            if process.exit_code is not None:
                tail = process.stderr_text()
                said = f"; its stderr said:\n{tail}" if tail else ""
                self._end(f"the server exited with code {process.exit_code}{said}")
        reason = self.last_end or "the connection closed"
        self._end(reason)
        return reason

    def _end(self, reason: str) -> None:
        self.last_end = reason
        if self._stop is not None:
            self._stop.set()

    async def call_tool(self, tool: str, args: dict[str, Any]) -> Any:
        """Call the server's tool ``tool``; the result as :func:`convert.result_value` gives it."""
        result = await self.request(f"tool {tool!r}", lambda client: client.call_tool(tool, args))
        value = result_value(result, self.name, tool)
        size = size_of(value)
        limit = self.manager.max_result_bytes
        if size > limit:
            raise ResourceExhausted(
                f"MCP tool {self.name}.{tool} returned {size / 1e6:.1f} MB, more than mcp.max_result_bytes "
                f"({limit / 1e6:.1f} MB); ask the tool for less or raise the limit",
                details={**self._details(), "tool": tool, "bytes": size, "limit": limit})
        return value

    async def resources(self) -> list[dict[str, Any]]:
        result = await self.request("resources/list", lambda c: c.list_resources())
        return [r.model_dump(mode="json", exclude_none=True) for r in result.resources]

    async def read(self, uri: str) -> list[dict[str, Any]]:
        result = await self.request(f"resource {uri!r}", lambda c: c.read_resource(uri))
        return [c.model_dump(mode="json", exclude_none=True) for c in result.contents]

    async def prompts(self) -> list[dict[str, Any]]:
        result = await self.request("prompts/list", lambda c: c.list_prompts())
        return [p.model_dump(mode="json", exclude_none=True) for p in result.prompts]

    async def prompt(self, name: str, args: dict[str, str]) -> dict[str, Any]:
        result = await self.request(f"prompt {name!r}", lambda c: c.get_prompt(name, args))
        messages = [{"role": m.role, **content_block(m.content)} for m in result.messages]
        return {"description": result.description, "messages": messages}

    def info(self) -> dict[str, Any]:
        client = self._client
        server = client.server_info if client is not None else None
        return {"name": self.name, "transport": self.spec.transport, "connected": self.connected,
                "tools": list(self.tool_names), "skipped": list(self.problems), "connects": self.connects,
                "server": server.name if server is not None else None, "last_end": self.last_end}


class MCPClients:
    """The process's MCP connections by name: made with :meth:`connect` or, for servers in
    ``[mcp.servers.NAME]``, on first use (:meth:`get`, and the tool registry's resolver)."""

    def __init__(self, registry: ToolRegistry, context: Callable[[], ToolContext], config: Any = None,
                 pipeline: Any = None) -> None:
        self.registry = registry
        self.context = context
        self.config = config
        self.pipeline = pipeline
        self.connections: dict[str, Connection] = {}
        # Servers this process serves (MCP.serve): stopped with the connections at shutdown.
        self.served: list[Callable[[], Any]] = []
        self.served_loops: set[asyncio.AbstractEventLoop] = set()
        self.max_result_bytes = int(self._setting("max_result_bytes", DEFAULT_MAX_RESULT_BYTES))
        self.max_message_bytes = int(self._setting("max_message_bytes", DEFAULT_MAX_MESSAGE_BYTES))
        registry.add_resolver(self.resolve)

    def _setting(self, key: str, default: Any) -> Any:
        if self.config is None:
            return default
        value = self.config.get(f"mcp.{key}", default)
        return default if value is None else value

    def configured(self) -> dict[str, Any]:
        """The ``[mcp.servers]`` section (name -> spec table)."""
        servers = self._setting("servers", {}) or {}
        return dict(servers) if isinstance(servers, dict) else {}

    def _defaults(self) -> dict[str, Any]:
        return {"timeout_s": self._setting("call_timeout_s", DEFAULT_CALL_TIMEOUT_S),
                "connect_timeout_s": self._setting("connect_timeout_s", DEFAULT_CONNECT_TIMEOUT_S)}

    async def connect(self, name: str, raw: Any = None) -> Connection:
        """Connect ``name`` (replacing a connection of that name) with the spec ``raw``, or the
        configured one when ``raw`` is None; returns once the server's tools are registered."""
        check_server_name(name)
        if raw is None:
            raw = self.configured().get(name)
            if raw is None:
                raise NotFound(f"no MCP server {name!r}: give MCP.connect a spec table, or add [mcp.servers.{name}] "
                               "to aikit.toml", details={"server": name, "configured": sorted(self.configured())})
        spec = ServerSpec.parse(name, _plain(raw), self._defaults())
        old = self.connections.pop(name, None)
        if old is not None:
            await old.close()
        connection = Connection(spec, self)
        self.connections[name] = connection
        try:
            await connection.ensure()
        except BaseException:
            self.connections.pop(name, None)
            await connection.close()
            raise
        return connection

    async def get(self, name: str) -> Connection:
        """The connection ``name``, connecting a configured server on first use."""
        found = self.connections.get(name)
        if found is not None:
            return found
        return await self.connect(name)

    async def resolve(self, tool_or_category: str) -> bool:
        """The registry's resolver: a tool named ``NAME.x`` or category ``NAME`` of a configured,
        not yet connected server connects it. True when something new was registered."""
        name = tool_or_category.split(".", 1)[0]
        if name in self.connections or name not in self.configured():
            return False
        await self.connect(name)
        return True

    async def connect_each(self, names: list[str]) -> None:
        """Connect the configured servers ``names`` that are not connected yet (a mission's
        step types name their tools before anything runs)."""
        for name in names:
            await self.resolve(name)

    async def disconnect(self, name: str) -> bool:
        connection = self.connections.pop(name, None)
        if connection is None:
            return False
        await connection.close()
        return True

    def list(self) -> list[dict[str, Any]]:
        return [c.info() for c in self.connections.values()]

    async def aclose(self) -> None:
        """Close every connection (at shutdown)."""
        for name in list(self.connections):
            await self.disconnect(name)
        for stop in list(self.served):
            with contextlib.suppress(Exception):
                await stop()
        self.served.clear()

    def close(self, timeout_s: float = 15.0) -> None:
        """:meth:`aclose` from a thread other than the connections' loop (Components.close)."""
        loops = {c.loop for c in self.connections.values() if c.loop is not None and not c.loop.is_closed()}
        loops |= {loop for loop in self.served_loops if not loop.is_closed()}
        for loop in loops:
            if loop.is_running() and not _runs_here(loop):
                future = asyncio.run_coroutine_threadsafe(self.aclose(), loop)
                with contextlib.suppress(Exception):
                    future.result(timeout_s)


def _runs_here(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether ``loop`` is the loop of this thread (waiting on it from here would deadlock)."""
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _plain(raw: Any) -> Any:
    """Config values (a Config section may hold Secret wrappers) as plain Python values."""
    if isinstance(raw, dict):
        return {k: _plain(v) for k, v in raw.items()}
    if isinstance(raw, list):
        return [_plain(v) for v in raw]
    reveal = getattr(raw, "reveal", None)
    return reveal() if callable(reveal) else raw


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        inner = [e for e in exc.exceptions]
        if inner:
            return _describe(inner[0])
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


__all__ = ["Connection", "MCPClients", "SPEC_KEYS", "ServerSpec", "check_server_name"]
