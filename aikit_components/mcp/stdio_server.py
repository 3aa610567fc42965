"""The stdio transport of aikit's MCP server, with a bound on the size of a request.

The SDK's ``stdio_server`` reads a line of any length into memory before it looks at it. This
transport reads stdin in chunks; a line longer than ``max_request_bytes`` is skipped up to its
newline without being kept, and the client gets a JSON-RPC error (``-32600``, with the request's
``id`` when it shows in the first bytes, else ``null``) naming the limit and the setting
(``mcp.max_request_bytes``, ``aikit mcp serve --max-request-bytes``). The server goes on with the
next line.

As the SDK's transport does, it takes the protocol's descriptors for itself while it serves:
fd 0 reads the null device and fd 1 writes to stderr, so a tool's or a child's stray output never
corrupts the protocol; both are restored at the end. It yields the SDK's
``(read_stream, write_stream)`` pair for ``Server.run``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import AsyncIterator
from typing import Any

import anyio
import mcp_types as types
from mcp.shared.message import SessionMessage

log = logging.getLogger(__name__)

_CHUNK = 65536
_ID_IN_PREFIX = re.compile(rb'"id"\s*:\s*("(?:[^"\\]|\\.){0,200}"|-?\d{1,18})')
_ID_PREFIX_BYTES = 4096


def too_large_error(request_id: Any, size: int, limit: int) -> bytes:
    """The JSON-RPC error line answering a request larger than ``limit`` bytes."""
    message = (f"request too large: more than {limit} bytes (read {size} before giving up); the limit is "
               "mcp.max_request_bytes in aikit.toml or aikit mcp serve --max-request-bytes")
    error = {"jsonrpc": "2.0", "id": request_id,
             "error": {"code": types.INVALID_REQUEST, "message": message, "data": {"limit": limit, "bytes": size}}}
    return json.dumps(error).encode() + b"\n"


def request_id_of(prefix: bytes) -> Any:
    """The ``id`` of a request, when it shows in its first bytes (else None: JSON-RPC's null)."""
    found = _ID_IN_PREFIX.search(prefix[:_ID_PREFIX_BYTES])
    if found is None:
        return None
    with contextlib.suppress(ValueError):
        return json.loads(found.group(1))
    return None


class LineSplitter:
    """Bytes in, complete lines out; a line longer than ``limit`` is reported once (its prefix
    and size) and its bytes dropped up to the newline."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.buffer = bytearray()
        self.skipping: tuple[bytes, int] | None = None  # (prefix, bytes seen) of an oversized line

    def feed(self, chunk: bytes) -> list[bytes | tuple[bytes, int]]:
        """Lines (bytes) and oversized lines ((prefix, size)) completed by ``chunk``."""
        out: list[bytes | tuple[bytes, int]] = []
        while chunk:
            newline = chunk.find(b"\n")
            part, chunk = (chunk, b"") if newline < 0 else (chunk[:newline], chunk[newline + 1:])
            if self.skipping is not None:
                prefix, seen = self.skipping
                self.skipping = (prefix, seen + len(part))
            else:
                self.buffer += part
                if len(self.buffer) > self.limit:
                    self.skipping = (bytes(self.buffer[:_ID_PREFIX_BYTES]), len(self.buffer))
                    self.buffer.clear()
            if newline < 0:
                break
            if self.skipping is not None:
                out.append(self.skipping)
                self.skipping = None
            else:
                line = bytes(self.buffer)
                self.buffer.clear()
                if line.strip():
                    out.append(line)
        return out


@contextlib.contextmanager
def claimed_stdio() -> Any:
    """Private duplicates of fd 0 and fd 1 for the protocol; meanwhile fd 0 reads /dev/null and
    fd 1 writes to stderr. Restored on exit."""
    wire_in, wire_out = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        os.dup2(null, 0)
        os.dup2(2, 1)
    finally:
        os.close(null)
    try:
        yield wire_in, wire_out
    finally:
        os.dup2(wire_in, 0)
        os.dup2(wire_out, 1)
        os.close(wire_out)
        # wire_in stays open: a reader thread abandoned on cancellation may still block on it, and
        # a closed descriptor number could be reused under it (the SDK's transport does the same).


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


@contextlib.asynccontextmanager
async def bounded_stdio_server(max_request_bytes: int, fds: tuple[int, int] | None = None
                               ) -> AsyncIterator[tuple[Any, Any]]:
    """``(read_stream, write_stream)`` over stdin/stdout (or the given ``(in_fd, out_fd)``), with
    requests over ``max_request_bytes`` answered by an error (see the module docstring)."""
    with contextlib.ExitStack() as claim:
        in_fd, out_fd = fds if fds is not None else claim.enter_context(claimed_stdio())
        read_writer, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](16)
        out_writer, out_reader = anyio.create_memory_object_stream[SessionMessage | bytes](16)
        write_stream, refusals = out_writer.clone(), out_writer.clone()
        out_writer.close()  # the output ends when the server and the reader have closed their ends
        written = anyio.Event()
        splitter = LineSplitter(max_request_bytes)

        async def read_stdin() -> None:
            async with read_writer, refusals:
                while True:
                    chunk = await anyio.to_thread.run_sync(os.read, in_fd, _CHUNK, abandon_on_cancel=True)
                    if not chunk:
                        return
                    for line in splitter.feed(chunk):
                        if isinstance(line, tuple):
                            prefix, size = line
                            log.warning("refused an MCP request of %d bytes (mcp.max_request_bytes = %d)", size,
                                        max_request_bytes)
                            await refusals.send(too_large_error(request_id_of(prefix), size, max_request_bytes))
                            continue
                        try:
                            message: SessionMessage | Exception = SessionMessage(
                                types.jsonrpc_message_adapter.validate_json(line, by_name=False))
                        except ValueError as exc:
                            message = exc
                        await read_writer.send(message)

        async def write_stdout() -> None:
            try:
                async with out_reader:
                    async for item in out_reader:
                        data = item if isinstance(item, bytes) else (
                            item.message.model_dump_json(by_alias=True, exclude_unset=True).encode() + b"\n")
                        await anyio.to_thread.run_sync(_write_all, out_fd, data)
            except OSError:  # the client went away
                pass
            finally:
                written.set()

        async with anyio.create_task_group() as group:
            group.start_soon(read_stdin)
            group.start_soon(write_stdout)
            try:
                yield read_stream, write_stream
            finally:
                write_stream.close()
                with anyio.move_on_after(5):  # what the server answered last still goes out
                    await written.wait()
                group.cancel_scope.cancel()


__all__ = ["LineSplitter", "bounded_stdio_server", "claimed_stdio", "request_id_of", "too_large_error"]
