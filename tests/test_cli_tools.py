"""`aikit tools list|info|call` from a terminal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

AIKIT = str(Path(sys.executable).with_name("aikit"))


def aikit(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, AIKIT_DATA_DIR=str(tmp_path / "data"))
    return subprocess.run([AIKIT, "tools", *args], capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)


def test_list_info_and_call(tmp_path: Path) -> None:
    listing = aikit(tmp_path, "list", "--json")
    assert listing.returncode == 0, listing.stderr
    names = {t["name"] for t in json.loads(listing.stdout)}
    assert {"read_file", "write_file"} <= names
    info = aikit(tmp_path, "info", "write_file")
    assert info.returncode == 0 and "Parameters:" in info.stdout and "path" in info.stdout
    (tmp_path / "note.txt").write_text("hello")
    called = aikit(tmp_path, "call", "read_file", '{"path": "note.txt"}')
    assert called.returncode == 0, called.stderr
    assert json.loads(called.stdout)["content"] == "hello"


def test_errors_are_reported_without_traceback(tmp_path: Path) -> None:
    unknown = aikit(tmp_path, "call", "no_such_tool")
    assert unknown.returncode == 1 and "not_found" in unknown.stderr and "Traceback" not in unknown.stderr
    bad = aikit(tmp_path, "call", "read_file", '{"path": 3, "extra": 1}')
    assert bad.returncode == 1 and "invalid_argument" in bad.stderr and "extra" in bad.stderr
    not_json = aikit(tmp_path, "call", "read_file", "{nope")
    assert not_json.returncode == 2 and "not valid JSON" in not_json.stderr
    outside = aikit(tmp_path, "call", "read_file", '{"path": "/etc/passwd"}')
    assert outside.returncode == 1 and "permission_denied" in outside.stderr


def test_list_shows_the_tools_of_configured_mcp_servers(tmp_path: Path) -> None:
    """[mcp.servers.NAME] are connected on demand: the npm reference server's tools are listed as
    NAME.tool; a server that cannot start or does not answer in time is named with the reason."""
    import shutil

    import pytest

    from tests.support.npm import npm_ci

    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not on PATH: the MCP reference servers run on node")
    servers = Path(__file__).resolve().parent / "mcp_servers"
    npm_ci(servers, "the MCP reference-server tests")
    everything = servers / "node_modules/@modelcontextprotocol/server-everything/dist/index.js"
    python = Path(sys.executable)
    (tmp_path / "aikit.toml").write_text(
        "[security]\n"
        f'allowed_commands = ["node", "{python.name}"]\n'
        f'allowed_paths = ["{servers}", "{tmp_path}"]\n'
        "[mcp.servers.everything]\n"
        'command = "node"\n'
        f'args = ["{everything}", "stdio"]\n'
        "[mcp.servers.silent]\n"  # starts, never answers the handshake
        f'command = "{python.name}"\n'
        'args = ["-c", "import time; time.sleep(600)"]\n'
        "[mcp.servers.forbidden]\n"
        'command = "bash"\n'
        'args = ["-c", "true"]\n')
    listing = aikit(tmp_path, "list", "--json", "--mcp-timeout", "10")
    assert listing.returncode == 0, listing.stderr
    tools = {t["name"]: t for t in json.loads(listing.stdout)}
    assert {"everything.echo", "everything.get-sum", "read_file"} <= set(tools)
    assert tools["everything.echo"]["category"] == "everything" and tools["everything.echo"]["source"] == "mcp:everything"
    assert "MCP server 'silent' are not listed: timeout: " in listing.stderr
    assert "handshake within 10 s" in listing.stderr and "--mcp-timeout" in listing.stderr
    assert "MCP server 'forbidden' are not listed: permission_denied" in listing.stderr
    assert "Traceback" not in listing.stderr
    only = aikit(tmp_path, "list", "--category", "everything")
    assert only.returncode == 0 and all(line.startswith("everything ") for line in only.stdout.splitlines())
    assert "silent" not in only.stderr
    failed = aikit(tmp_path, "list", "--category", "forbidden", "--mcp-timeout", "10")
    assert failed.returncode == 1 and "permission_denied" in failed.stderr
    offline = aikit(tmp_path, "list", "--no-mcp", "--json")
    assert not any(t["name"].startswith("everything.") for t in json.loads(offline.stdout))
    called = aikit(tmp_path, "call", "everything.echo", '{"message": "hi"}')
    assert called.returncode == 0, called.stderr
    assert json.loads(called.stdout) == "Echo: hi"
