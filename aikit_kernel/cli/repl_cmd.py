"""``aikit repl``: an interactive Lua prompt with aikit's globals, in the terminal."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``repl`` subcommand to *subparsers*."""
    parser = subparsers.add_parser(
        "repl",
        help="an interactive Lua prompt (the kernel's runtime, in the terminal)",
        description="Start an interactive Lua 5.4 prompt with aikit's globals: Tab completion, multi-line "
                    "input, ?name for help, Ctrl+C to interrupt, history in the data directory. With piped "
                    "input it runs each complete chunk and prints its value (exit status 1 if one failed).",
    )
    from aikit_kernel.cli.console_cmd import add_existing_option

    add_existing_option(parser)
    parser.add_argument("--session-name", default="repl", help="name of the aikit session it opens (default: repl)")
    parser.set_defaults(handler=_repl)


def _repl(args: argparse.Namespace) -> int:
    if args.existing is not None:
        from aikit_kernel.cli.console import console_command

        return console_command(args.existing)
    from aikit_kernel.cli.repl import repl_command

    return repl_command(args.session_name)
