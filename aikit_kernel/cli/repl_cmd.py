"""``aikit repl``: an interactive Lua prompt with aikit's globals, in the terminal."""

from __future__ import annotations

import argparse

from aikit_kernel.cli.common import Subparsers, add_command


def register(subparsers: Subparsers) -> None:
    """Add the ``repl`` subcommand to *subparsers*."""
    parser = add_command(
        subparsers, "repl", "an interactive Lua prompt (the kernel's runtime, in the terminal)",
        description="Start an interactive Lua 5.4 prompt with aikit's globals: Tab completion, multi-line "
                    "input, ?name for help, Ctrl+C to interrupt, history in the data directory. With piped "
                    "input it runs each complete chunk and prints its value (exit status 1 if one failed).",
        examples=("aikit repl", "echo 'return 1 + 1' | aikit repl", "aikit repl --existing kernel.json"),
        handler=_repl)
    from aikit_kernel.cli.console_cmd import add_existing_option

    add_existing_option(parser)
    parser.add_argument("--session-name", default="repl", help="name of the aikit session it opens (default: repl)")


def _repl(args: argparse.Namespace) -> int:
    if args.existing is not None:
        from aikit_kernel.cli.console import console_command

        return console_command(args.existing)
    from aikit_kernel.cli.repl import repl_command

    return repl_command(args.session_name)
