"""The stdio transport of aikit's MCP client: the server runs as a child in its own process group
that dies with aikit, even after ``kill -9`` (the process watchdog, as for the process tools), its stderr is kept
(the tail goes into error messages), and a message larger than the limit or the server's exit
ends the connection with a reason instead of a request that waits forever.

The SDK's own ``stdio_client`` cannot do the last three; this transport yields the same
``(read_stream, write_stream)`` pair, so it plugs into ``mcp.Client`` as any ``Transport``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import mcp_types as types
from mcp.shared.message import SessionMessage

from ..tools._children import WATCHDOG

log = logging.getLogger(__name__)

STDERR_TAIL_LINES = 20
_CHUNK = 65536


@dataclass
class ServerProcess:
    """A launched stdio server: what a PROCESS operation's handler returns (``exit_code`` is None
    while it runs) and what the connection tells users when it stops."""

    proc: asyncio.subprocess.Process
    stderr_tail: deque[str] = field(default_factory=lambda: deque(maxlen=STDERR_TAIL_LINES))
    ended: str | None = None  # why the connection ended (exit, oversized message), once it has

    @property
    def exit_code(self) -> int | None:
        return self.proc.returncode

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr_text(self) -> str:
        return "\n".join(self.stderr_tail)


async def spawn(argv: list[str], env: dict[str, str], cwd: str | None) -> ServerProcess:
    """Start ``argv`` (already checked against the policy) with pipes, in its own process group."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=env, cwd=cwd, start_new_session=True)
    WATCHDOG.add(proc.pid)  # its group dies with aikit, even after kill -9 (forgotten in stop())
    return ServerProcess(proc)


def _kill_group(proc: asyncio.subprocess.Process, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


async def stop(server: ServerProcess, grace_s: float = 2.0) -> None:
    """Close the server's stdin, give it ``grace_s`` to exit, then kill its process group."""
    proc = server.proc
    if proc.stdin is not None:
        with contextlib.suppress(Exception):
            proc.stdin.close()
    if proc.returncode is None:
        try:
            await asyncio.wait_for(proc.wait(), grace_s)
        except TimeoutError:
            pass
    _kill_group(proc)  # what it started itself goes too
    if proc.returncode is None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 2.0)
    WATCHDOG.discard(proc.pid)


@contextlib.asynccontextmanager
async def stdio_streams(server: ServerProcess, max_message_bytes: int,
                        on_end: Callable[[str], Awaitable[None] | None]) -> AsyncIterator[tuple[Any, Any]]:
    """The MCP message streams over a launched server's stdin/stdout. ``on_end(reason)`` is called
    once when the server exits or breaks the protocol beyond repair (the caller tears down)."""
    proc = server.proc
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    read_writer, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](16)
    write_stream, write_reader = anyio.create_memory_object_stream[SessionMessage](16)

    async def end(reason: str) -> None:
        if server.ended is None:
            server.ended = reason
            outcome = on_end(reason)
            if asyncio.iscoroutine(outcome):
                await outcome

    async def read_stdout() -> None:
        buffer = bytearray()
        async with read_writer:
            while True:
                chunk = await proc.stdout.read(_CHUNK)
                if not chunk:
                    break
                buffer += chunk
                while True:
                    newline = buffer.find(b"\n")
                    if newline < 0:
                        break
                    line = bytes(buffer[:newline])
                    del buffer[:newline + 1]
                    if line.strip():
                        await read_writer.send(_parse(line))
                if len(buffer) > max_message_bytes:
                    await end(f"it sent a message larger than {max_message_bytes} bytes (mcp.max_message_bytes)")
                    return
        await proc.wait()
        tail = server.stderr_text()
        said = f"; its last output on stderr:\n{tail}" if tail else ""
        await end(f"the server exited with code {proc.returncode}{said}")

    async def read_stderr() -> None:
        # Chunks, not readline: a long line must not stop the reading (the server would block on a
        # full pipe); only the last lines are kept, each cut to 1000 characters.
        partial = b""
        while True:
            chunk = await proc.stderr.read(_CHUNK)
            if not chunk:
                if partial:
                    server.stderr_tail.append(partial[:1000].decode("utf-8", errors="replace").rstrip())
                return
            lines = (partial + chunk).split(b"\n")
            partial = lines.pop()[-_CHUNK:]
            for line in lines:
                server.stderr_tail.append(line[:1000].decode("utf-8", errors="replace").rstrip())

    async def write_stdin() -> None:
        async with write_reader:
            async for message in write_reader:
                data = message.message.model_dump_json(by_alias=True, exclude_unset=True).encode() + b"\n"
                try:
                    proc.stdin.write(data)
                    await proc.stdin.drain()
                except (ConnectionError, OSError):
                    return

    tasks = [asyncio.create_task(read_stdout()), asyncio.create_task(read_stderr()), asyncio.create_task(write_stdin())]
    try:
        yield read_stream, write_stream
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for stream in (read_stream, write_stream, read_writer, write_reader):
            await stream.aclose()


def _parse(line: bytes) -> SessionMessage | Exception:
    """One line of the server's stdout: a JSON-RPC message, or the error saying why it is not one
    (passed on to the session, as the SDK's own transport does)."""
    try:
        return SessionMessage(types.jsonrpc_message_adapter.validate_json(line, by_name=False))
    except ValueError as exc:
        shown = line[:200].decode("utf-8", errors="replace")
        log.warning("an MCP server sent a line that is not a JSON-RPC message: %s", shown)
        return ValueError(f"malformed JSON-RPC message from the server: {shown!r} ({exc.__class__.__name__})")


__all__ = ["STDERR_TAIL_LINES", "ServerProcess", "spawn", "stdio_streams", "stop"]
