"""``aikit tools list|info|call``: the tool catalogue from a terminal."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from aikit_kernel.cli.common import error


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``tools`` subcommand (list, info, call) to *subparsers*."""
    parser = subparsers.add_parser("tools", help="list, describe and call tools",
                                   description="The built-in and plugin tools scripts and agents can call.")
    actions = parser.add_subparsers(dest="tools_action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="list tools (by category)")
    listing.add_argument("--category", help="only this category")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
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
                tools = registry.list(args.category)
                if args.json:
                    print(json.dumps([{"name": t.name, "category": t.category, "security": t.security,
                                       "description": t.description.split("\n")[0]} for t in tools], indent=2))
                else:
                    for t in tools:
                        print(f"{t.category:<11} {t.name:<22} {t.description.splitlines()[0]}")
                for problem in registry.plugin_errors:
                    print(f"warning: {problem}", file=sys.stderr)
                return 0
            if args.tools_action == "info":
                item = registry.get(args.name)
                print(json.dumps(item.info(), indent=2, default=str) if args.json else item.doc())
                return 0
            try:
                arguments = json.loads(args.args)
            except json.JSONDecodeError as exc:
                return error(f"arguments are not valid JSON: {exc}", 2)
            result = asyncio.run(registry.acall(args.name, arguments, components.tool_context(caller="cli")))
            print(json.dumps(result, indent=2, ensure_ascii=False, default=str))
            return 0
    except AikitError as exc:
        return error(f"{exc.code}: {exc.message}")
