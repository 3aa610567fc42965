"""aikit's MCP server under an oversized request (a real ``aikit mcp serve --stdio`` child, spoken to
line by line) and announcing ``notifications/tools/list_changed`` when a notebook defines or
removes a served tool (``MCP.serve``, the SDK's own client receiving it, in both protocol eras)."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from mcp import Client

from aikit_components.mcp.stdio_server import LineSplitter, request_id_of

AIKIT = Path(sys.executable).with_name("aikit")
REPO = Path(__file__).resolve().parent.parent


class LineChild:
    """A child process spoken to in JSON lines; its stdout and stderr read by threads."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, start_new_session=True)
        self.lines: queue.Queue[bytes] = queue.Queue()
        self.stderr: list[bytes] = []
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines.put), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr.append), daemon=True).start()

    @staticmethod
    def _pump(stream: Any, put: Any) -> None:
        for line in stream:
            put(line)

    def send(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def request(self, message: dict[str, Any]) -> None:
        self.send(json.dumps(message).encode() + b"\n")

    def reply(self, timeout: float = 60) -> dict[str, Any]:
        try:
            return json.loads(self.lines.get(timeout=timeout))
        except queue.Empty:
            raise AssertionError(f"no reply; stderr:\n{b''.join(self.stderr).decode(errors='replace')}") from None

    def close(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            return self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


def test_an_oversized_request_over_stdio_gets_an_error_and_the_server_goes_on(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "AIKIT_DATA_DIR": str(tmp_path / "data"),
           "XDG_CONFIG_HOME": str(tmp_path / "user-config")}
    child = LineChild([str(AIKIT), "mcp", "serve", "--stdio", "--max-request-bytes", "4096",
                       "--tools", "base64_encode"], tmp_path, env)
    try:
        child.request({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}})
        assert child.reply()["result"]["serverInfo"]["name"] == "aikit"
        child.request({"jsonrpc": "2.0", "method": "notifications/initialized"})
        big = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
               "params": {"name": "base64_encode", "arguments": {"text": "x" * 100_000}}}
        child.request(big)
        refused = child.reply()
        assert refused["id"] == 2 and refused["error"]["code"] == types.INVALID_REQUEST
        assert "mcp.max_request_bytes" in refused["error"]["message"]
        assert refused["error"]["data"]["limit"] == 4096
        child.send(b'{"jsonrpc": "2.0", "method": "tools/call", "params": {"text": "' + b"y" * 10_000 + b'"}}\n')
        assert child.reply()["id"] is None  # no id in sight: answered with JSON-RPC's null id
        child.request({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                       "params": {"name": "base64_encode", "arguments": {"text": "hi"}}})
        answer = child.reply()
        assert answer["id"] == 3 and "aGk=" in json.dumps(answer["result"]), answer
        assert child.close() == 0
    finally:
        if child.proc.poll() is None:
            child.proc.kill()
    assert b"refused an MCP request" in b"".join(child.stderr)


def test_line_splitter_skips_oversized_lines_across_chunks() -> None:
    splitter = LineSplitter(10)
    assert splitter.feed(b'{"id": 7, "x": "') == []
    assert splitter.feed(b"a" * 50) == []
    out = splitter.feed(b'"}\nshort\n')
    assert out[0][1] == 16 + 50 + 2 and request_id_of(out[0][0]) == 7 and out[1] == b"short"
    assert splitter.feed(b"par") == [] and splitter.feed(b"tial\n") == [b"partial"]


DEFINE = """Tool.define{name = "%s", description = "A tool defined live",
            params = {type = "object", properties = {}}, fn = function() return "%s" end}"""


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_a_notebooks_new_tool_is_announced_to_connected_clients(make_lua: Any, mode: str) -> None:
    lua = make_lua()
    lua.run(DEFINE % ("first", "one"))
    url = lua.run('SRV = MCP.serve{port = 0, tools = {"first", "second"}} return SRV.url')
    lock = threading.Lock()  # the Lua runtime is used from one thread at a time

    def run_lua(code: str) -> Any:
        with lock:
            return lua.run(code)

    async def session() -> list[str]:
        changed = asyncio.Event()

        async def on_message(message: Any) -> None:
            if isinstance(message, types.ToolListChangedNotification):
                changed.set()

        async with Client(url, mode=mode, message_handler=on_message) as client:
            assert [t.name for t in (await client.list_tools()).tools] == ["first"]
            if mode == "legacy":
                await asyncio.to_thread(run_lua, DEFINE % ("second", "two"))
                await asyncio.wait_for(changed.wait(), 30)
            else:  # the 2026-07-28 era: change events come on a subscriptions/listen stream
                async with client.listen(tools_list_changed=True) as subscription:
                    await asyncio.to_thread(run_lua, DEFINE % ("second", "two"))
                    event = await asyncio.wait_for(subscription.__anext__(), 30)
                    assert type(event).__name__ == "ToolsListChanged"
            return [t.name for t in (await client.list_tools()).tools]

    try:
        assert asyncio.run(asyncio.wait_for(session(), 90)) == ["first", "second"]
    finally:
        run_lua("SRV:stop()")
