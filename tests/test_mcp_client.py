"""aikit's MCP client against real servers: the npm reference servers (server-everything over stdio
and Streamable HTTP, server-filesystem), a server written with the Python SDK
(tests/mcp_servers/py_server.py) and a hand-written misbehaving one (raw_server.py), from Lua.

The npm packages are installed with ``npm ci`` from tests/mcp_servers/package-lock.json when
node_modules is missing or older than the lock file; the tests needing node are skipped only when
``node`` is not on PATH.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.lua import LateInterrupt
from tests.support.npm import npm_ci as install
from tests.support.processes import gone, wait_until

SERVERS = Path(__file__).resolve().parent / "mcp_servers"
EVERYTHING = SERVERS / "node_modules/@modelcontextprotocol/server-everything/dist/index.js"
FILESYSTEM = SERVERS / "node_modules/@modelcontextprotocol/server-filesystem/dist/index.js"
PY_SERVER = SERVERS / "py_server.py"
RAW_SERVER = SERVERS / "raw_server.py"


def npm_ci() -> None:
    """Install the reference servers from the committed lock file (once)."""
    install(SERVERS, "the MCP reference-server tests")


@pytest.fixture(scope="module")
def node() -> str:
    found = shutil.which("node")
    if found is None:
        pytest.skip("node is not on PATH: the MCP reference servers run on node")
    npm_ci()
    return found


@pytest.fixture
def mcp_lua(make_lua, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A Lua engine whose policy may start node and this Python (the test servers) and whose
    aikit.toml configures the Python server as [mcp.servers.conf]."""
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    (tmp_path / "aikit.toml").write_text(
        "[security]\n"
        f'allowed_commands = ["node", "{Path(sys.executable).name}"]\n'
        f'allowed_paths = ["{SERVERS}", "{tmp_path}"]\n'
        "[mcp]\nmax_result_bytes = 200000\n"
        "[mcp.servers.conf]\n"
        f'command = "{Path(sys.executable).name}"\n'
        f'args = ["{PY_SERVER}"]\n')
    lua = make_lua()
    lua.run(f"PY = {{command = {lua_str(Path(sys.executable).name)}, args = {{{lua_str(str(PY_SERVER))}}}}}")
    yield lua
    lua.engine.wait(lua.components.mcp.aclose())


def lua_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# ---------------------------------------------------------------------------- reference servers
def test_everything_server_over_stdio(node: str, mcp_lua) -> None:
    info = mcp_lua.run(f'return MCP.connect("ev", {{command = "node", args = {{{lua_str(str(EVERYTHING))}, "stdio"}}}})')
    assert info["connected"] and info["transport"] == "stdio" and "ev.echo" in info["tools"]
    names = mcp_lua.run('local out = {} for _, t in ipairs(Tool.list{category = "ev"}) do out[#out+1] = t.name end '
                        'return out')
    assert "ev.get-sum" in names and "ev.get-structured-content" in names
    assert mcp_lua.run('return Tool.call("ev.echo", {message = "hi"})') == "Echo: hi"
    assert mcp_lua.run('return Tool.call("ev.get-sum", {a = 2, b = 3})') == "The sum of 2 and 3 is 5."
    weather = mcp_lua.run('return Tool.call("ev.get-structured-content", {location = "Chicago"})')
    assert set(weather) == {"temperature", "conditions", "humidity"}
    image = mcp_lua.run('return Tool.call("ev.get-tiny-image")')
    block = next(b for b in image["content"] if b["type"] == "image")
    assert block["mime_type"] == "image/png" and block["display"]["image/png"] == block["data"]
    links = mcp_lua.run('return Tool.call("ev.get-resource-links", {count = 2})')
    assert [b["uri"] for b in links["content"] if b["type"] == "resource_link"][:1] == ["demo://resource/dynamic/blob/1"]
    # the server's schema is validated like any tool's, before the call leaves aikit
    err = mcp_lua.fail('Tool.call("ev.echo", {message = 3})')
    assert err.ename == "invalid_argument" and "message: expected string" in err.evalue
    assert "ev.echo" in mcp_lua.run('return Tool.info("ev.echo").name')
    resources = mcp_lua.run('return MCP.resources("ev")')
    uri = resources[0]["uri"]
    contents = mcp_lua.run(f'return MCP.read("ev", {lua_str(uri)})')
    assert contents[0]["uri"] == uri and contents[0]["text"]
    prompts = {p["name"] for p in mcp_lua.run('return MCP.prompts("ev")')}
    assert {"simple-prompt", "args-prompt"} <= prompts
    rendered = mcp_lua.run('return MCP.prompt("ev", "args-prompt", {city = "Paris"})')
    assert "Paris" in rendered["messages"][0]["text"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_everything_server_over_streamable_http(node: str, mcp_lua) -> None:
    port = free_port()

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen([node, str(EVERYTHING), "streamableHttp"], env={**os.environ, "PORT": str(port)},
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)

    def listening() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    server = start()
    try:
        wait_until(listening, timeout=30)
        info = mcp_lua.run(f'return MCP.connect("web", {{url = "http://127.0.0.1:{port}/mcp"}})')
        assert info["transport"] == "http" and "web.echo" in info["tools"]
        assert mcp_lua.run('return Tool.call("web.echo", {message = "over http"})') == "Echo: over http"
        assert mcp_lua.run('return Tool.call("web.get-sum", {a = 1, b = 1})') == "The sum of 1 and 1 is 2."
        server.kill()  # the server dies: a clear error at once, then a new session once it is back
        server.wait(10)
        assert server.stderr is not None
        server.stderr.close()
        err = mcp_lua.fail('Tool.call("web.echo", {message = "anyone?"})')
        assert err.ename == "io_error" and "the next call connects again" in err.evalue
        server = start()
        wait_until(listening, timeout=30)
        assert mcp_lua.run('return Tool.call("web.echo", {message = "back"})') == "Echo: back"
    finally:
        server.kill()
        server.wait(10)
        assert server.stderr is not None
        server.stderr.close()


def test_filesystem_server_tools_for_an_agent(node: str, mcp_lua, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "note.txt").write_text("MCP reached this file.")
    mcp_lua.run(f'MCP.connect("files", {{command = "node", args = {{{lua_str(str(FILESYSTEM))}, {lua_str(str(docs))}}}}})')
    text = mcp_lua.run(f'return Tool.call("files.read_text_file", {{path = {lua_str(str(docs / "note.txt"))}}})')
    assert "MCP reached this file." in str(text)
    listing = mcp_lua.run(f'return Tool.call("files.list_directory", {{path = {lua_str(str(docs))}}})')
    assert "note.txt" in str(listing)
    # a path outside the server's roots is the server's error, as aikit's structured error
    err = mcp_lua.fail('Tool.call("files.read_text_file", {path = "/etc/hostname"})')
    assert err.ename == "tool_error" and "files.read_text_file" in err.evalue
    expanded = mcp_lua.components.tools.expand(["files.*"])
    assert "files.read_text_file" in expanded and all(n.startswith("files.") for n in expanded)


# ---------------------------------------------------------------------------- the Python SDK server
def test_python_sdk_server_results_errors_and_list_changed(mcp_lua) -> None:
    info = mcp_lua.run('return MCP.connect("py", PY)')
    assert "py.echo" in info["tools"]
    assert "py.broken" not in info["tools"] and info["skipped"][0].startswith("broken: invalid input schema")
    assert mcp_lua.run('return Tool.call("py.echo", {text = "x"})') == "x"
    assert mcp_lua.run('return Tool.call("py.structured", {n = 4})')["double"] == 8
    err = mcp_lua.fail('Tool.call("py.fail")')
    assert err.ename == "tool_error" and "the disk is on fire" in err.evalue
    assert mcp_lua.run('local ok, e = pcall(Tool.call, "py.fail") return e.details.server') == "py"
    assert mcp_lua.run('return Tool.call("py.grow")') == "grown"
    wait_until(lambda: "py.extra" in mcp_lua.components.tools, timeout=10)
    assert mcp_lua.run('return Tool.call("py.extra")') == "extra here"
    assert mcp_lua.run('return MCP.read("py", "note://hello")')[0]["text"] == "Hello from the notes."
    assert "Hello from the notes." in mcp_lua.run('return MCP.context("py")')
    assert mcp_lua.run('return MCP.prompt("py", "greet", {name = "Ada"})')["messages"][0]["text"] == "Say hello to Ada."
    assert mcp_lua.run('return MCP.disconnect("py")') is True
    assert mcp_lua.fail('Tool.call("py.echo", {text = "x"})').ename == "not_found"


def test_calls_are_tool_operations_with_the_server_in_their_meta(mcp_lua) -> None:
    seen = []
    mcp_lua.components.events.subscribe("tool.finished", lambda event: seen.append(event))
    from aikit_components.operations import Interceptor

    class Watch(Interceptor):
        order = 150

        def started(self, op) -> None:
            if op.kind.name == "tool":
                seen.append(op.meta.get("mcp_server"))
    mcp_lua.components.pipeline.add(Watch())
    mcp_lua.run('MCP.connect("py", PY) Tool.call("py.echo", {text = "x"})')
    assert "py" in seen
    # the call's execute_tool span names the server and its tool
    spans = mcp_lua.run('local t = Trace.last() return Trace.get(t.trace_id).spans')
    tool = next(s for s in spans if s["name"] == "execute_tool py.echo")
    attrs = tool["attributes"]
    assert attrs["aikit.mcp.server"] == "py" and attrs["aikit.mcp.tool"] == "echo"
    assert attrs["gen_ai.operation.name"] == "execute_tool" and attrs["mcp.method.name"] == "tools/call"


def test_configured_server_connects_on_first_use(mcp_lua) -> None:
    assert mcp_lua.components.mcp.connections == {}
    assert mcp_lua.run('return Tool.call("conf.echo", {text = "lazy"})') == "lazy"
    assert "conf" in mcp_lua.components.mcp.connections
    assert mcp_lua.run('return #Tool.list{category = "conf"}') >= 5


def test_a_crash_mid_call_is_an_error_and_the_next_call_restarts_the_server(mcp_lua) -> None:
    mcp_lua.run('MCP.connect("py", PY)')
    first = mcp_lua.run('return Tool.call("py.structured", {n = 1}).pid')
    err = mcp_lua.fail('Tool.call("py.crash")')
    assert err.ename == "io_error" and "went away" in err.evalue and "exited with code 3" in err.evalue
    second = mcp_lua.run('return Tool.call("py.structured", {n = 1}).pid')
    assert second != first
    assert mcp_lua.components.mcp.connections["py"].connects == 2


def test_a_hanging_call_times_out_and_an_interrupt_stops_it(mcp_lua) -> None:
    mcp_lua.run('MCP.connect("py", {command = PY.command, args = PY.args, timeout_s = 0.5})')
    err = mcp_lua.fail('Tool.call("py.slow", {seconds = 30})')
    assert err.ename == "timeout" and "did not answer tool 'slow' within 0.5 s" in err.evalue
    assert mcp_lua.run('return Tool.call("py.echo", {text = "still here"})') == "still here"
    mcp_lua.run('MCP.connect("py2", PY)')
    LateInterrupt(mcp_lua.engine, 0.5)
    err = mcp_lua.fail('Tool.call("py2.slow", {seconds = 30})')
    assert err.ename in ("interrupted", "KeyboardInterrupt", "Interrupted") or "interrupt" in err.evalue.lower()
    assert mcp_lua.run('return Tool.call("py2.echo", {text = "after"})') == "after"


def test_a_huge_result_is_refused_clearly(mcp_lua) -> None:
    mcp_lua.run('MCP.connect("py", PY)')
    err = mcp_lua.fail('Tool.call("py.huge", {n = 1000000})')
    assert err.ename == "resource_exhausted" and "mcp.max_result_bytes" in err.evalue
    assert mcp_lua.run('return #Tool.call("py.huge", {n = 1000})') == 1000
    for _ in range(3):  # a server writing long lines to stderr keeps working (the pipe is drained)
        assert mcp_lua.run('return Tool.call("py.noisy")') == "quiet now"


def test_missing_and_forbidden_servers(mcp_lua) -> None:
    err = mcp_lua.fail('MCP.connect("nope", {command = "no-such-mcp-server"})')
    assert err.ename == "permission_denied" and "allowed_commands" in err.evalue
    err = mcp_lua.fail('MCP.connect("gone", {command = PY.command, args = {"/no/such/script.py"}})')
    assert err.ename in ("io_error", "permission_denied")
    err = mcp_lua.fail('MCP.connect("x", {url = "http://127.0.0.1:1/mcp"})')
    assert err.ename == "io_error" and "cannot connect to MCP server 'x'" in err.evalue
    err = mcp_lua.fail('MCP.connect("x", {command = "node", url = "http://a"})')
    assert err.ename == "invalid_argument" and "either command" in err.evalue
    err = mcp_lua.fail('MCP.tools("unknown")')
    assert err.ename == "not_found" and "[mcp.servers.unknown]" in err.evalue
    err = mcp_lua.fail('MCP.connect("bad name", PY)')
    assert err.ename == "invalid_argument"


def test_malformed_json_rpc_and_a_silent_server(mcp_lua) -> None:
    raw = lua_str(str(RAW_SERVER))
    mcp_lua.run(f'MCP.connect("garbled", {{command = PY.command, args = {{{raw}, "garbage-first"}}}})')
    assert mcp_lua.run('return Tool.call("garbled.ping")') == "pong"
    mcp_lua.run(f'MCP.connect("broken", {{command = PY.command, args = {{{raw}, "malformed"}}, timeout_s = 1}})')
    err = mcp_lua.fail('Tool.call("broken.ping")')
    assert err.ename == "timeout"
    err = mcp_lua.fail(f'MCP.connect("silent", {{command = PY.command, args = {{{raw}, "silent"}}, connect_timeout_s = 1}})')
    assert err.ename == "timeout" and "handshake" in err.evalue
    # the kernel and the other connections are unaffected
    assert mcp_lua.run('return Tool.call("garbled.ping")') == "pong"
    assert mcp_lua.run('return 1 + 1') == 2


def test_mcp_tools_in_workflows_and_missions(mcp_lua, tmp_path: Path) -> None:
    mcp_lua.run('MCP.connect("py", PY)')
    record = mcp_lua.run("""
local wf = Workflow.new{name = "via mcp", steps = {
  {id = "a", tool = "py.echo", params = {text = "from a workflow"}},
}}
return wf:run()""")
    assert record["status"] == "succeeded" and record["steps"]["a"]["output"] == "from a workflow"
    mission = tmp_path / "mission.yaml"
    mission.write_text('name: "mcp mission"\nversion: "1.0"\nsteps:\n'
                       '  - id: twice\n    step_type: py.structured\n    parameters: {n: 21}\n')
    record = mcp_lua.run(f"return Workflow.load({lua_str(str(mission))}):run()")
    assert record["status"] == "succeeded" and record["steps"]["twice"]["output"]["double"] == 42


def test_a_stdio_server_dies_with_aikit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    (tmp_path / "aikit.toml").write_text(
        f'[security]\nallowed_commands = ["{Path(sys.executable).name}"]\nallowed_paths = ["{SERVERS}"]\n')
    script = tmp_path / "hold.lua"
    script.write_text(
        f'MCP.connect("py", {{command = {lua_str(Path(sys.executable).name)}, args = {{{lua_str(str(PY_SERVER))}}}, '
        'timeout_s = 600})\n'
        'print(Tool.call("py.structured", {n = 1}).pid)\n'
        'io.stdout:flush()\n'
        'Tool.call("py.slow", {seconds = 600})\n')
    aikit = Path(sys.executable).with_name("aikit")
    env = {**os.environ, "AIKIT_DATA_DIR": str(tmp_path / "data"), "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
           "PYTHONPATH": str(SERVERS.parent.parent)}
    proc = subprocess.Popen([str(aikit), "run", str(script)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip().isdigit(), f"no pid printed: {line!r} {proc.stderr.read() if proc.poll() is not None else ''}"
        server_pid = int(line)
        os.kill(server_pid, 0)  # alive while aikit is
        proc.kill()  # SIGKILL: no handler of aikit runs
        proc.wait(10)
        wait_until(lambda: gone(server_pid), timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_in_a_kernel_the_connection_outlives_cells_and_closes_at_shutdown(tmp_path: Path) -> None:
    """A real kernel over ZMQ: the server connected in one cell answers in later cells (the
    connection lives on the kernel's I/O loop, not in a cell), and shutting the kernel down stops it."""
    from tests.support.kernels import start_kernel

    (tmp_path / "aikit.toml").write_text(
        f'[security]\nallowed_commands = ["{Path(sys.executable).name}"]\nallowed_paths = ["{SERVERS}"]\n')
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    kernel = start_kernel(tmp_path / "data", cwd=tmp_path, PATH=path, XDG_CONFIG_HOME=str(tmp_path / "cfg"))
    try:
        kernel.ok(f'MCP.connect("py", {{command = {lua_str(Path(sys.executable).name)}, '
                  f'args = {{{lua_str(str(PY_SERVER))}}}}})')
        pid = int(kernel.value('Tool.call("py.structured", {n = 1}).pid') or "0")
        assert pid > 0
        assert kernel.value('Tool.call("py.echo", {text = "later cell"})') == '"later cell"'
        assert int(kernel.value('Tool.call("py.structured", {n = 2}).pid') or "0") == pid
    finally:
        kernel.shutdown()
    wait_until(lambda: gone(pid), timeout=15)


def test_configured_servers_connect_for_workflows_and_missions(mcp_lua, tmp_path: Path) -> None:
    record = mcp_lua.run('return Workflow.new{name = "w", steps = {{id = "a", tool = "conf.echo", '
                         'params = {text = "configured"}}}}:run()')
    assert record["steps"]["a"]["output"] == "configured"
    mcp_lua.run('MCP.disconnect("conf")')
    mission = tmp_path / "m.yaml"
    mission.write_text('name: "m"\nversion: "1.0"\nsteps:\n  - id: e\n    step_type: conf.echo\n'
                       '    parameters: {text: "from yaml"}\n')
    record = mcp_lua.run(f"return Workflow.load({lua_str(str(mission))}):run()")
    assert record["steps"]["e"]["output"] == "from yaml"


def test_aikit_mission_run_connects_the_configured_server_its_steps_name(tmp_path: Path) -> None:
    (tmp_path / "aikit.toml").write_text(
        f'[security]\nallowed_commands = ["{Path(sys.executable).name}"]\nallowed_paths = ["{SERVERS}", "{tmp_path}"]\n'
        f'[mcp.servers.conf]\ncommand = "{Path(sys.executable).name}"\nargs = ["{PY_SERVER}"]\n')
    (tmp_path / "m.yaml").write_text('name: "m"\nversion: "1.0"\nsteps:\n  - id: e\n    step_type: conf.structured\n'
                                     '    parameters: {n: 5}\n')
    env = {**os.environ, "AIKIT_DATA_DIR": str(tmp_path / "data"), "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
           "PYTHONPATH": str(SERVERS.parent.parent),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run([str(Path(sys.executable).with_name("aikit")), "mission", "run", "m.yaml", "--out",
                           str(tmp_path / "record.json")], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["steps"]["e"]["output"]["double"] == 10


def test_an_agent_gets_a_configured_servers_tools_by_pattern(mcp_lua) -> None:
    mcp_lua.run('AGENT = Agent.new{name = "user_of_conf", tools = {"conf.*"}}')
    assert "conf" in mcp_lua.components.mcp.connections
    expanded = mcp_lua.components.tools.expand(["conf.*"])
    assert "conf.echo" in expanded and "conf.broken" not in expanded
    err = mcp_lua.fail('Agent.new{name = "nobody", tools = {"nothing_here.*"}}')
    assert err.ename == "not_found" and "no tool matches 'nothing_here.*'" in err.evalue


def test_plans_and_other_async_callers_resolve_configured_servers(mcp_lua) -> None:
    """What a plan's llm task does before it builds its agent (aikit_components/plans/execution.py)."""
    registry = mcp_lua.components.tools
    mcp_lua.engine.wait(registry.aresolve_missing(["conf.*", "hash"]))
    assert "conf.echo" in registry
    assert mcp_lua.engine.wait(registry.acall("conf.echo", {"text": "async"}, mcp_lua.components.tool_context())) == "async"


def test_without_configured_servers_agents_and_workflows_never_load_the_mcp_sdk(tmp_path: Path) -> None:
    """Tools are looked up among MCP servers only when aikit.toml names some: otherwise the first
    workflow of agents does not pay for importing the SDK (about a second)."""
    script = (
        "import sys, tempfile\n"
        "from pathlib import Path\n"
        "from aikit_components.components import Components\n"
        "from aikit_kernel.lua_runtime import build_lua_runtime\n"
        "from tests.support.lua import RecordingOutput\n"
        f"c = Components.open(data_dir=Path({str(tmp_path)!r}), plugins=False)\n"
        "engine = build_lua_runtime(RecordingOutput(), c).engine\n"
        "r = engine.run_cell(\"local a = Agent.new{name = 'z', model = 'test/echo', tools = {'hash'}} "
        "local wf = Workflow.new{name = 'w', steps = {{id = 's', agent = a, input = 'hi'}}} "
        "return wf:run().status, Tool.call('hash', {text = 'x'}) ~= nil\", '[1]')\n"
        "print(r.values, r.error, 'mcp' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "AIKIT_CONFIG"}  # no user config: none in tmp_path
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1], env={**env, "XDG_CONFIG_HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[b'succeeded', True] None False", done.stdout
