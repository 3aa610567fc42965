"""``aikit debug [SCRIPT] [ARGS...] --port N`` (or ``--stdio``): debug a Lua script from an IDE."""

from __future__ import annotations

import argparse

from aikit_kernel.cli.common import Subparsers, add_command


def register(subparsers: Subparsers) -> None:
    """Add the ``debug`` subcommand to *subparsers*."""
    parser = add_command(
        subparsers, "debug", "run a Lua script under the debugger, for an IDE (DAP over TCP or stdio)",
        description="Start a Debug Adapter Protocol server, wait for an IDE (VS Code, Neovim's nvim-dap, ...) "
                    "to attach or launch and finish its configuration, then run the script. Without SCRIPT the "
                    "IDE's launch request names it (`program`).",
        examples=("aikit debug --port 5678 examples/hello.lua",), handler=_debug)
    parser.add_argument("--port", type=int, default=0, help="TCP port to listen on (default: any free port, printed)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--stdio", action="store_true", help="speak DAP on stdin/stdout (an IDE's debug adapter)")
    parser.add_argument("script", nargs="?", help="the Lua script to debug")
    parser.add_argument("script_args", nargs=argparse.REMAINDER, metavar="ARGS", help="arguments for the script")


def _debug(args: argparse.Namespace) -> int:
    from aikit_kernel.cli.debug import debug_command

    return debug_command(args.script, list(args.script_args), args.host, args.port, args.stdio)
