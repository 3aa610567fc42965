"""A hand-written JSON-RPC "MCP server" that misbehaves on purpose, for the client's failure tests.
``python raw_server.py MODE``: ``malformed`` answers tools/call with a line that is not JSON
(then nothing), ``silent`` never answers the handshake, ``garbage-first`` prints a non-JSON line
before every answer (the answers themselves are right)."""

from __future__ import annotations

import json
import sys

MODE = sys.argv[1] if len(sys.argv) > 1 else "malformed"
TOOL = {"name": "ping", "description": "Answers pong.", "inputSchema": {"type": "object", "properties": {}}}


def send(obj: dict) -> None:
    if MODE == "garbage-first":
        sys.stdout.write("this is not JSON-RPC\n")
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


for line in sys.stdin:
    message = json.loads(line)
    method, ident = message.get("method"), message.get("id")
    if MODE == "silent" or ident is None:
        continue
    if method == "initialize":
        send({"jsonrpc": "2.0", "id": ident, "result": {
            "protocolVersion": message["params"]["protocolVersion"], "capabilities": {"tools": {}},
            "serverInfo": {"name": "raw", "version": "0"}}})
    elif method == "tools/list":
        send({"jsonrpc": "2.0", "id": ident, "result": {"tools": [TOOL]}})
    elif method == "tools/call" and MODE == "malformed":
        sys.stdout.write('{"jsonrpc": "2.0", "id": ' + json.dumps(ident) + ', "result": {oops\n')
        sys.stdout.flush()
    elif method == "tools/call":
        send({"jsonrpc": "2.0", "id": ident, "result": {"content": [{"type": "text", "text": "pong"}]}})
    else:
        send({"jsonrpc": "2.0", "id": ident, "error": {"code": -32601, "message": f"no method {method}"}})
