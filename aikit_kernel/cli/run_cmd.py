"""``aikit run SCRIPT [ARGS...]``: run a Lua script directly, without a kernel."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``run`` subcommand to *subparsers*."""
    parser = subparsers.add_parser(
        "run",
        help="run a Lua script (no kernel process needed)",
        description="Run a Lua script with the aikit runtime and print its output.",
    )
    parser.add_argument("script", help="path of the script to run")
    parser.add_argument(
        "script_args",
        nargs=argparse.REMAINDER,
        metavar="ARGS",
        help="arguments passed to the script",
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    """Delegate to :func:`aikit_kernel.cli.run.run_command` (imported lazily)."""
    from aikit_kernel.cli.run import run_command

    return run_command(args.script, list(args.script_args))
