"""``aikit mcp serve``: serve aikit's tools (and a setup script's tools and agents) to MCP clients.

``--stdio`` (the default) is what desktop assistants and IDEs launch; ``--port N`` serves
Streamable HTTP at ``http://HOST:N/mcp`` (loopback by default; any other host requires a bearer
token, from ``--token``, ``mcp.serve_token`` or generated and printed). Logs and the script's
output go to stderr: stdout belongs to the protocol.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``mcp`` subcommand (``mcp serve``) to *subparsers*."""
    parser = subparsers.add_parser("mcp", help="Model Context Protocol: serve aikit's tools to MCP clients",
                                   description="Model Context Protocol (see docs/mcp.md).")
    actions = parser.add_subparsers(dest="mcp_action", metavar="ACTION")
    serve = actions.add_parser("serve", help="serve tools, agents and collections over stdio or Streamable HTTP",
                               description="Serve aikit's tools (those the policy allows), the tools and agents of a "
                                           "setup script, RAG collections, State and Artifacts to MCP clients.")
    where = serve.add_mutually_exclusive_group()
    where.add_argument("--stdio", action="store_true", help="serve over stdin/stdout (the default)")
    where.add_argument("--port", type=int, metavar="N", help="serve Streamable HTTP on this port (0: a free one)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind with --port (default 127.0.0.1)")
    serve.add_argument("--token", help="bearer token clients must send with --port (default: mcp.serve_token)")
    serve.add_argument("--script", metavar="SETUP_LUA", help="Lua script run first: its Tool.define tools are served, "
                                                             "and MCP.expose{tools=..., agents=...} chooses what")
    serve.add_argument("--max-request-bytes", type=int, metavar="BYTES",
                       help="refuse larger requests with a JSON-RPC error (stdio) or 413 (HTTP); default: "
                            "mcp.max_request_bytes, 4 MiB")
    serve.add_argument("--tools", nargs="+", metavar="PATTERN", help="serve only tools matching these names/globs")
    serve.set_defaults(handler=_serve)
    parser.set_defaults(handler=lambda args: (parser.print_help(sys.stderr), 2)[1])


class StderrOutput:
    """Script output for a server whose stdout is the protocol: everything goes to stderr."""

    def write(self, name: str, text: str) -> None:
        sys.stderr.write(text)

    def display(self, data: dict[str, Any], metadata: dict[str, Any], display_id: str | None, update: bool) -> None:
        sys.stderr.write(str(data.get("text/plain", "")) + "\n")

    def clear(self, wait: bool) -> None:
        pass

    def flush(self) -> None:
        sys.stderr.flush()

    def readline(self, prompt: str, password: bool = False) -> str | None:
        from aikit_kernel.output import StdinNotAllowed

        raise StdinNotAllowed("an MCP server has no terminal to read from")


def _say(text: str) -> None:
    print(f"aikit mcp serve: {text}", file=sys.stderr, flush=True)


def _serve(args: argparse.Namespace) -> int:
    from aikit_components.errors import AikitError, Interrupted
    from aikit_components.mcp.server import DEFAULT_MAX_REQUEST_BYTES, LOOPBACK, AikitServer, Exposed, check_bind, new_token
    from aikit_kernel import runtime
    from aikit_kernel.lua.api.mcp_serve import exposed_by
    from aikit_kernel.lua_runtime import open_lua_runtime

    if args.script is not None and not os.path.isfile(args.script):
        _say(f"{args.script}: no such file")
        return 2
    try:
        lua = open_lua_runtime(StderrOutput(), session_name="aikit mcp serve", strict=True)
    except AikitError as exc:
        _say(exc.message)
        return 1
    status = "failed"
    try:
        if args.script is not None:
            result = lua.engine.run_script(args.script, [])
            if result.error is not None:
                _say(f"the setup script failed: {result.error.ename}: {result.error.evalue}")
                return 1
        components = lua.components
        assert components is not None
        chosen = exposed_by(lua.engine) or Exposed()
        if args.tools:
            chosen.tools = list(args.tools)
        server = AikitServer(components, chosen, name="aikit")
        limit = args.max_request_bytes or components.config.get("mcp.max_request_bytes", DEFAULT_MAX_REQUEST_BYTES)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            _say(f"the request size limit must be a positive number of bytes, got {limit!r} "
                 "(--max-request-bytes or mcp.max_request_bytes)")
            return 2
        runtime.on_sigint(lua.engine.interrupt)
        if args.port is None:
            _say("serving MCP over stdio (stdin/stdout)")
            lua.engine.wait(server.run_stdio(limit))
        else:
            token = args.token or components.config.secret("mcp.serve_token") or None
            if token is None and args.host not in LOOPBACK:
                token = new_token()
                _say(f"bearer token (send Authorization: Bearer <token>): {token}")
            check_bind(args.host, token)
            lua.engine.wait(server.run_http(args.host, args.port, token,
                                            started=lambda url: _say(f"serving MCP on {url}"),
                                            max_request_bytes=limit))
        status = "completed"
        return 0
    except Interrupted:
        status = "completed"
        return 0
    except AikitError as exc:
        _say(exc.message)
        return 1
    finally:
        lua.close(status)
