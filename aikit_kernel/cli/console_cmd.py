"""``aikit console [--existing [CONNECTION_FILE]]``: the Lua REPL on a kernel, over the Jupyter protocol."""

from __future__ import annotations

import argparse

from aikit_kernel.cli.common import Subparsers, add_command

EXAMPLES = ("aikit console                      start a kernel of its own (shut down on exit)",
            "aikit serve -f k.json &            then, from any terminal:",
            "aikit console --existing k.json    attach to that kernel (its variables, its output)",
            "aikit console --existing           attach to the most recent kernel in Jupyter's runtime dir")


def add_existing_option(parser: argparse.ArgumentParser) -> None:
    """``--existing [CONNECTION_FILE]``, shared by ``console`` and ``repl``."""
    parser.add_argument("--existing", nargs="?", const="", default=None, metavar="CONNECTION_FILE",
                        help="attach to a running kernel: its connection file, a name in Jupyter's runtime dir, "
                             "or nothing for the most recent one")


def register(subparsers: Subparsers) -> None:
    """Add the ``console`` subcommand to *subparsers*."""
    parser = add_command(
        subparsers, "console", "the Lua REPL on a kernel (attach to a running one with --existing)",
        description="An interactive Lua prompt talking to an aikit kernel over the Jupyter protocol: the "
                    "variables of the notebook or `aikit serve` it attaches to, Tab completion, multi-line "
                    "input, ?name for help, Ctrl+C to interrupt, other clients' output as it arrives, rich "
                    "output (tables, Markdown, JSON, images saved to a file), debugger commands "
                    "(.break FILE:LINE, .step, .next, .out, .continue, .bt, .locals, .print EXPR; ?help lists them).",
        examples=EXAMPLES, handler=_console)
    add_existing_option(parser)
    parser.add_argument("--kernel", default="aikit", metavar="NAME",
                        help="without --existing: the kernelspec to start (default: aikit)")


def _console(args: argparse.Namespace) -> int:
    from aikit_kernel.cli.console import console_command

    return console_command(args.existing, args.kernel)
