"""Bridge 2: plain DAP with ``Content-Length`` framing, over TCP (IDEs attach to a port) or over
stdin/stdout (an IDE starts ``aikit debug --stdio`` as its debug adapter).

The server runs on the global I/O loop; one client at a time (a second connection is refused
with an error message, as a port can only serve one IDE session sensibly).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from .dap import DapSession, encode_message, read_message
from .lua_debugger import LuaDebugger

log = logging.getLogger(__name__)


class DapServer:
    """Serves DAP clients for one debugger. ``launcher``/``on_configured``/``on_terminate`` are
    given by ``aikit debug`` (which runs a script); a kernel's server only supports ``attach``."""

    def __init__(self, debugger: LuaDebugger, *,
                 launcher: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
                 on_configured: Callable[[], None] | None = None,
                 on_terminate: Callable[[], None] | None = None) -> None:
        self.debugger = debugger
        self._launcher = launcher
        self._on_configured = on_configured
        self._on_terminate = on_terminate
        self._server: asyncio.AbstractServer | None = None
        self._busy = False
        self.session: DapSession | None = None
        self.disconnected = asyncio.Event()

    async def listen(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Start listening; returns the port (useful with port 0)."""
        self._server = await asyncio.start_server(self._serve_socket, host, port)
        return int(self._server.sockets[0].getsockname()[1])

    async def serve_stdio(self) -> None:
        """Serve one client on this process's stdin/stdout (until it disconnects)."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(sys.stdin.fileno(), "rb", 0))
        out = os.fdopen(os.dup(sys.stdout.fileno()), "wb", 0)

        def write(data: bytes) -> None:
            out.write(data)

        await self._serve(reader, write)

    async def close(self) -> None:
        if self.session is not None:
            self.session.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def send_event(self, event: str, body: dict[str, Any] | None = None) -> None:
        """Send an event to the connected client, if any (from any thread)."""
        if self.session is not None:
            self.session.send_event(event, body)

    async def _serve_socket(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._busy:
            writer.write(encode_message({"seq": 1, "type": "event", "event": "output", "body": {
                "category": "important", "output": "another debugger is already attached to this process\n"}}))
            await writer.drain()
            writer.close()
            return
        try:
            await self._serve(reader, writer.write)
        finally:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, write: Callable[[bytes], None]) -> None:
        loop = asyncio.get_running_loop()
        self._busy = True
        self.disconnected.clear()

        def send(message: dict[str, Any]) -> None:
            data = encode_message(message)
            if _on_loop(loop):
                write(data)
            else:
                loop.call_soon_threadsafe(write, data)

        session = DapSession(self.debugger, send, self._launcher, self._on_configured, self._on_terminate)
        self.session = session
        try:
            while True:
                try:
                    request = await read_message(reader)
                except (ValueError, asyncio.IncompleteReadError) as exc:
                    log.warning("DAP client sent a malformed message: %s", exc)
                    send(session.event("output", {"category": "important", "output": f"malformed DAP message: {exc}\n"}))
                    continue
                except ConnectionError:
                    break
                if request is None:
                    break
                if request.get("type") != "request":
                    continue
                response = await session.handle(request)
                send(response)
                session.flush_after()
                if request.get("command") == "disconnect":
                    break
        finally:
            session.close()
            self.session = None
            self._busy = False
            self.disconnected.set()


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
