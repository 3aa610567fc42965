"""aikit's MCP server driven by the Python SDK's own client: ``aikit mcp serve`` over stdio (with a
setup script defining a Lua tool and exposing an agent) and over Streamable HTTP (bearer token,
bad requests), and ``MCP.serve`` from a notebook (aikit's own client connecting to it)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client, StdioServerParameters

from aikit_components.errors import PermissionDenied
from aikit_components.mcp.server import check_bind
from tests.support.agents import OPENAI, answer, config_text
from tests.support.processes import wait_until

AIKIT = Path(sys.executable).with_name("aikit")
REPO = Path(__file__).resolve().parent.parent

SETUP = """
Tool.define{name = "double", description = "Double a number",
            params = {type = "object", properties = {n = {type = "number"}}, required = {"n"}},
            fn = function(a) return a.n * 2 end}
State.set("global", "motto", {text = "served"})
local helper = Agent.new{name = "helper", model = "openai/m", system = "Be brief."}
MCP.expose{tools = {"double", "hash", "base64_*"}, agents = {helper}}
"""


def server_env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "AIKIT_DATA_DIR": str(tmp_path / "data"),
            "XDG_CONFIG_HOME": str(tmp_path / "user-config")}


def prepare(tmp_path: Path, llm_url: str) -> Path:
    (tmp_path / "aikit.toml").write_text(config_text(llm_url))
    setup = tmp_path / "setup.lua"
    setup.write_text(SETUP)
    return setup


def text_of(result: Any) -> str:
    return "\n".join(block.text for block in result.content if block.type == "text")


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_stdio_server_with_a_setup_script(llm_server: Any, tmp_path: Path, mode: str) -> None:
    setup = prepare(tmp_path, llm_server.url)
    llm_server.reply(OPENAI, answer("Hello from the helper."))
    params = StdioServerParameters(command=str(AIKIT), args=["mcp", "serve", "--stdio", "--script", str(setup)],
                                   env=server_env(tmp_path), cwd=str(tmp_path))

    async def session() -> None:
        async with Client(params, mode=mode) as client:
            names = sorted(t.name for t in (await client.list_tools()).tools)
            assert names == ["agent_helper", "base64_decode", "base64_encode", "double", "hash"]
            doubled = await client.call_tool("double", {"n": 21})
            assert not doubled.is_error and doubled.structured_content == {"result": 42}
            wrong = await client.call_tool("double", {"n": "twenty"})
            assert wrong.is_error and wrong.structured_content["code"] == "invalid_argument"
            assert "n: expected number" in text_of(wrong)
            missing = await client.call_tool("run_shell", {})
            assert missing.is_error and missing.structured_content["code"] == "not_found"
            helper = await client.call_tool("agent_helper", {"input": "Say hello"})
            assert text_of(helper) == "Hello from the helper." and helper.structured_content["text"] == text_of(helper)
            resources = {str(r.uri) for r in (await client.list_resources()).resources}
            assert "state://global/motto" in resources
            read = await client.read_resource("state://global/motto")
            assert json.loads(read.contents[0].text) == {"text": "served"}

    asyncio.run(asyncio.wait_for(session(), 60))


class HttpServer:
    """``aikit mcp serve --port 0`` in a child process; ``url`` once it listens."""

    def __init__(self, tmp_path: Path, *extra: str) -> None:
        self.proc = subprocess.Popen([str(AIKIT), "mcp", "serve", "--port", "0", *extra], cwd=tmp_path,
                                     env=server_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, start_new_session=True)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        wait_until(lambda: self.url is not None or self.proc.poll() is not None, timeout=60)
        assert self.url is not None, f"the server did not start:\n{''.join(self.lines)}"

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    @property
    def url(self) -> str | None:
        for line in self.lines:
            if "serving MCP on " in line:
                return line.rsplit(" ", 1)[1].strip()
        return None

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(15)


def test_http_server_token_and_bad_requests(llm_server: Any, tmp_path: Path) -> None:
    setup = prepare(tmp_path, llm_server.url)
    server = HttpServer(tmp_path, "--script", str(setup), "--token", "s3cret")
    try:
        url = server.url
        assert url is not None and url.startswith("http://127.0.0.1:")
        refused = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
        assert refused.status_code == 401

        async def session() -> None:
            from mcp.client.streamable_http import streamable_http_client

            async with (httpx2.AsyncClient(headers={"Authorization": "Bearer s3cret"}) as http,
                        Client(streamable_http_client(url, http_client=http), mode="legacy") as client):
                assert "double" in {t.name for t in (await client.list_tools()).tools}
                assert (await client.call_tool("double", {"n": 4})).structured_content == {"result": 8}
                wrong = await client.call_tool("hash", {"text": 5})
                assert wrong.is_error and wrong.structured_content["code"] == "invalid_argument"

        asyncio.run(asyncio.wait_for(session(), 60))
        headers = {"Authorization": "Bearer s3cret", "Accept": "application/json, text/event-stream",
                   "Content-Type": "application/json"}
        init = httpx.post(url, headers=headers, json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}})
        assert init.status_code == 200
        session_headers = {**headers, "mcp-session-id": init.headers["mcp-session-id"],
                           "mcp-protocol-version": "2025-06-18"}
        unknown = httpx.post(url, headers=session_headers, json={"jsonrpc": "2.0", "id": 2, "method": "no/such/method"})
        assert "-32601" in unknown.text
        huge = httpx.post(url, headers=session_headers, content=b'{"jsonrpc": "2.0", "id": 3, "method": "ping", "x": "'
                          + b"a" * (5 * 1024 * 1024) + b'"}')
        assert huge.status_code == 413
        # the server is still fine for everyone
        still = httpx.post(url, headers=session_headers, json={"jsonrpc": "2.0", "id": 4, "method": "ping"})
        assert still.status_code == 200 and '"result"' in still.text
    finally:
        server.stop()


def test_binding_beyond_loopback_requires_a_token() -> None:
    check_bind("127.0.0.1", None)
    check_bind("::1", None)
    with pytest.raises(PermissionDenied, match="requires a bearer token"):
        check_bind("192.0.2.10", None)
    check_bind("192.0.2.10", "token")


def test_notebook_serve_and_connect_to_it(make_lua) -> None:
    lua = make_lua()
    lua.run("""
Tool.define{name = "triple", description = "Triple a number",
            params = {type = "object", properties = {n = {type = "number"}}, required = {"n"}},
            fn = function(a) return a.n * 3 end}
SRV = MCP.serve{port = 0, tools = {"triple"}}
""")
    url = lua.run("return SRV.url")
    assert url.startswith("http://127.0.0.1:") and lua.run("return SRV.tools") == ["triple"]
    info = lua.run('return MCP.connect("me", {url = SRV.url})')
    assert info["tools"] == ["me.triple"]
    assert lua.run('return Tool.call("me.triple", {n = 5})') == {"result": 15}
    err = lua.fail('Tool.call("me.triple", {n = "x"})')
    assert err.ename == "invalid_argument"
    lua.run('MCP.disconnect("me")')
    assert lua.run("return SRV:stop()") is True
    err = lua.fail('MCP.connect("me", {url = SRV.url, connect_timeout_s = 5})')
    assert err.ename == "io_error"
    lua.run('GUARDED = MCP.serve{port = 0, tools = {"triple"}, token = "let-me-in"}')
    err = lua.fail('MCP.connect("nokey", {url = GUARDED.url, connect_timeout_s = 10})')
    assert err.ename == "io_error" and "HTTP 401 Unauthorized" in err.evalue and "Authorization" in err.evalue
    lua.run('MCP.connect("withkey", {url = GUARDED.url, headers = {Authorization = "Bearer let-me-in"}})')
    assert lua.run('return Tool.call("withkey.triple", {n = 2})') == {"result": 6}
    err = lua.fail('MCP.serve{port = 0, host = "192.0.2.1"}')
    assert err.ename == "permission_denied" and "requires a bearer token" in err.evalue
    lua.engine.wait(lua.components.mcp.aclose())


MISSION = """
name: "Two steps"
version: "1.0"
steps:
  - id: digest
    step_type: hash
    parameters: {text: "{{input.word}}"}
  - id: encoded
    step_type: base64_encode
    depends_on: [digest]
    parameters: {text: "{{digest.output}}"}
"""


def test_run_mission_reports_progress(tmp_path: Path) -> None:
    from aikit_components.components import Components
    from aikit_components.config import Config
    from aikit_components.mcp.server import AikitServer, Exposed

    components = Components.open(config=Config(), data_dir=tmp_path / "data", plugins=False)
    server = AikitServer(components, Exposed(tools=["run_mission"]))
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    async def session() -> None:
        async with Client(server.server, mode="legacy") as client:
            assert [t.name for t in (await client.list_tools()).tools] == ["run_mission"]
            result = await client.call_tool("run_mission", {"mission": MISSION, "inputs": {"word": "hi"}},
                                            progress_callback=on_progress)
            assert not result.is_error, text_of(result)
            assert result.structured_content["status"] == "succeeded"
            assert "2/2 steps" in text_of(result)
            bad = await client.call_tool("run_mission", {"mission": "name: x\nsteps:\n  - id: a\n    step_type: nope\n"})
            assert bad.is_error and bad.structured_content["code"] == "invalid_argument"
            wrong = await client.call_tool("run_mission", {"mission": 3})
            assert wrong.is_error and "mission: expected string" in text_of(wrong)

    try:
        asyncio.run(asyncio.wait_for(session(), 60))
    finally:
        components.close()
    assert [p[0] for p in progress] == [1, 2] and progress[-1][1] == 2


def test_an_approval_is_asked_of_the_client_by_elicitation(tmp_path: Path) -> None:
    """The hook point for the approvals interceptor: REMOTE_CLIENT.ask elicits when the client can,
    and denies with a reason when it cannot."""
    import mcp_types as types

    from aikit_components.components import Components
    from aikit_components.config import Config
    from aikit_components.mcp.server import REMOTE_CLIENT, AikitServer, Exposed
    from aikit_components.operations import Interceptor

    class AskTheClient(Interceptor):
        order = 500  # APPROVAL

        async def abefore(self, op: Any) -> None:
            client = REMOTE_CLIENT.get()
            asked = op.kind.name == "tool" and op.name == "hash" and client is not None
            if asked and not await client.ask(f"Run {op.name}?"):
                raise PermissionDenied("the user declined", details={"rule": "approval"})

    components = Components.open(config=Config(), data_dir=tmp_path / "data", plugins=False)
    components.pipeline.add(AskTheClient())
    server = AikitServer(components, Exposed(tools=["hash"]))
    questions: list[str] = []

    async def accept(context: Any, params: Any) -> types.ElicitResult:
        questions.append(params.message)
        return types.ElicitResult(action="accept", content={})

    async def decline(context: Any, params: Any) -> types.ElicitResult:
        return types.ElicitResult(action="decline")

    async def session() -> None:
        async with Client(server.server, mode="legacy", elicitation_callback=accept) as client:
            assert not (await client.call_tool("hash", {"text": "x"})).is_error
        async with Client(server.server, mode="legacy", elicitation_callback=decline) as client:
            declined = await client.call_tool("hash", {"text": "x"})
            assert declined.is_error and "declined" in text_of(declined)
        async with Client(server.server, mode="legacy") as client:
            cannot = await client.call_tool("hash", {"text": "x"})
            assert cannot.is_error and cannot.structured_content["code"] == "permission_denied"
            assert "does not support elicitation" in text_of(cannot)

    try:
        asyncio.run(asyncio.wait_for(session(), 60))
    finally:
        components.close()
    assert questions == ["Run hash?"]


def test_collections_and_artifacts_are_served(tmp_path: Path) -> None:
    from aikit_components.components import Components
    from aikit_components.config import Config
    from aikit_components.mcp.server import AikitServer, Exposed

    components = Components.open(config=Config(), data_dir=tmp_path / "data", plugins=False)
    components.rag.collection("facts").ingest([
        {"id": "paris", "text": "Paris is the capital of France and lies on the Seine."},
        {"id": "banana", "text": "Bananas are yellow fruit rich in potassium."}])
    components.artifacts.put("report.txt", b"quarterly numbers", mime="text/plain")
    server = AikitServer(components, Exposed(tools=["search_*"]))

    async def session() -> None:
        async with Client(server.server, mode="legacy") as client:
            assert [t.name for t in (await client.list_tools()).tools] == ["search_facts"]
            hits = await client.call_tool("search_facts", {"query": "capital of France", "k": 1})
            assert not hits.is_error and "Paris" in text_of(hits)
            assert (await client.call_tool("search_facts", {"k": 1})).is_error  # query is required
            uris = {str(r.uri) for r in (await client.list_resources()).resources}
            assert "artifact://report.txt" in uris
            read = await client.read_resource("artifact://report.txt")
            assert read.contents[0].text == "quarterly numbers"

    try:
        asyncio.run(asyncio.wait_for(session(), 180))
    finally:
        components.close()


def test_a_kernel_serves_its_notebook_to_an_mcp_client_while_idle(tmp_path: Path) -> None:
    """A real kernel: a cell defines a Lua tool and serves it; an outside MCP client calls it while
    the kernel waits for the next cell (the Lua tool runs at the kernel's safe point)."""
    from tests.support.kernels import start_kernel

    kernel = start_kernel(tmp_path / "data", cwd=tmp_path, XDG_CONFIG_HOME=str(tmp_path / "cfg"))
    try:
        kernel.ok("""
Tool.define{name = "count_words", description = "Count the words of a text",
            params = {type = "object", properties = {text = {type = "string"}}, required = {"text"}},
            fn = function(a) local n = 0 for _ in a.text:gmatch("%S+") do n = n + 1 end return n end}
SERVED = MCP.serve{port = 0, tools = {"count_words"}}""")
        url = json.loads(kernel.value("SERVED.url") or '""')
        assert url.startswith("http://127.0.0.1:")

        async def session() -> None:
            async with Client(url, mode="legacy") as client:
                assert [t.name for t in (await client.list_tools()).tools] == ["count_words"]
                counted = await client.call_tool("count_words", {"text": "one two three"})
                assert counted.structured_content == {"result": 3}

        asyncio.run(asyncio.wait_for(session(), 60))
        assert kernel.value("SERVED:stop()") == "true"
        kernel.assert_alive()
    finally:
        kernel.shutdown()
