"""``aikit tools list|info|call``: the tool catalogue from a terminal.

The MCP servers of ``[mcp.servers.NAME]`` are connected on demand: ``list`` connects each (or the
one ``--category NAME`` names) to list its tools as ``NAME.tool``, each within ``--mcp-timeout``
seconds; a server that fails is named on stderr with the reason and the rest is listed.
``info NAME.tool`` and ``call NAME.tool`` connect the one server. Connections end with the command.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from aikit_kernel.cli.common import error

DEFAULT_MCP_TIMEOUT_S = 15.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``tools`` subcommand (list, info, call) to *subparsers*."""
    parser = subparsers.add_parser("tools", help="list, describe and call tools",
                                   description="The built-in and plugin tools scripts and agents can call.")
    actions = parser.add_subparsers(dest="tools_action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="list tools (by category)")
    listing.add_argument("--category", help="only this category")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.add_argument("--no-mcp", action="store_true", help="do not connect the [mcp.servers] to list their tools")
    listing.add_argument("--mcp-timeout", type=float, default=DEFAULT_MCP_TIMEOUT_S, metavar="S",
                         help=f"seconds each MCP server may take to connect (default {DEFAULT_MCP_TIMEOUT_S:g})")
    info = actions.add_parser("info", help="a tool's documentation and JSON Schema")
    info.add_argument("name")
    info.add_argument("--json", action="store_true", help="print the full description as JSON")
    call = actions.add_parser("call", help="call a tool with JSON arguments")
    call.add_argument("name")
    call.add_argument("args", nargs="?", default="{}", help='arguments as a JSON object, e.g. \'{"text": "hi"}\'')
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from aikit_components.components import Components
    from aikit_components.errors import AikitError

    try:
        with Components.open(session_name="aikit tools") as components:
            registry = components.tools
            if args.tools_action == "list":
                tools, failed = asyncio.run(_list(components, args))
                if args.json:
                    print(json.dumps([{"name": t.name, "category": t.category, "security": t.security,
                                       "source": t.source, "description": _first_line(t.description)}
                                      for t in tools], indent=2))
                else:
                    for t in tools:
                        print(f"{t.category:<11} {t.name:<22} {_first_line(t.description)}")
                for problem in registry.plugin_errors:
                    print(f"warning: {problem}", file=sys.stderr)
                for name, reason in failed.items():
                    print(f"warning: the tools of MCP server {name!r} are not listed: {reason} "
                          f"(check [mcp.servers.{name}] in aikit.toml)", file=sys.stderr)
                return 1 if failed and args.category in failed else 0
            if args.tools_action == "info":
                item = asyncio.run(_resolved(components, args.name, lambda: registry.get(args.name)))
                print(json.dumps(item.info(), indent=2, default=str) if args.json else item.doc())
                return 0
            try:
                arguments = json.loads(args.args)
            except json.JSONDecodeError as exc:
                return error(f"arguments are not valid JSON: {exc}", 2)
            context = components.tool_context(caller="cli")
            result = asyncio.run(_resolved(components, args.name, lambda: registry.acall(args.name, arguments, context)))
            print(json.dumps(result, indent=2, ensure_ascii=False, default=str))
            return 0
    except AikitError as exc:
        return error(f"{exc.code}: {exc.message}")


def _first_line(text: str) -> str:
    lines = text.splitlines()
    return lines[0] if lines else ""


async def _list(components: Any, args: argparse.Namespace) -> tuple[list[Any], dict[str, str]]:
    """The tools to list, with those of the configured MCP servers (connected here, each within
    ``--mcp-timeout`` seconds, closed before returning) and why a server could not be listed."""
    failed: dict[str, str] = {}
    clients = components.mcp
    try:
        if not args.no_mcp:
            names = sorted(clients.configured())
            if args.category is not None:
                names = [n for n in names if n == args.category]
            outcomes = await asyncio.gather(*(_connect(clients, n, args.mcp_timeout) for n in names))
            failed = {name: reason for name, reason in zip(names, outcomes) if reason is not None}
        return components.tools.list(args.category), failed
    finally:
        await clients.aclose()


async def _connect(clients: Any, name: str, timeout_s: float) -> str | None:
    """Connect the configured MCP server ``name`` within ``timeout_s`` (or its own shorter
    ``connect_timeout_s``); None, or why it failed."""
    from aikit_components.errors import AikitError, Timeout

    spec = clients.configured().get(name)
    try:
        if isinstance(spec, dict):
            given = spec.get("connect_timeout_s")
            shorter = timeout_s if not isinstance(given, (int, float)) else min(timeout_s, given)
            spec = {**spec, "connect_timeout_s": shorter}
        await clients.connect(name, spec)
    except Timeout as exc:
        return f"{exc.code}: {exc.message} (--mcp-timeout sets how long to wait)"
    except AikitError as exc:
        return f"{exc.code}: {exc.message}"
    return None


async def _resolved(components: Any, name: str, use: Any) -> Any:
    """``use()`` (awaited when it returns an awaitable) once the configured MCP server a tool
    name ``SERVER.tool`` belongs to is connected; the connections end with it."""
    import inspect

    try:
        if name not in components.tools:
            await components.tools.aresolve(name)
        value = use()
        return await value if inspect.isawaitable(value) else value
    finally:
        await components.mcp.aclose()
