"""Entry point of the ``aikit`` command line.

Each subcommand lives in its own module ``aikit_kernel.cli.<name>_cmd`` that
exposes ``register(subparsers)``: it adds its parser(s) and sets a ``handler``
default, a callable ``handler(args) -> int``.  To add a subcommand, write such
a module and append its name to :data:`COMMANDS`.  Modules import their heavy
dependencies inside the handler, so ``aikit --help`` stays fast and one broken
subcommand does not break the others.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from aikit_kernel.cli.common import PROG

#: Subcommand modules, in the order they are listed by ``aikit --help``.
COMMANDS: tuple[str, ...] = ("repl", "run", "debug", "serve", "plan", "kernel", "config", "tools", "mission",
                             "trace", "dashboard", "audit", "stop", "approvals", "mcp", "db", "console", "doctor",
                             "data")


def package_version() -> str:
    """Return the installed aikit version ("unknown" when not installed)."""
    try:
        return version("aikit")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """Build the ``aikit`` argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="aikit: a Lua 5.4 Jupyter kernel hosting AI building blocks.",
    )
    parser.add_argument(
        "--version", action="version", version=f"{PROG} {package_version()}"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"aikit_kernel.cli.{name}_cmd")
        module.register(subparsers)
    from aikit_kernel.cli.help_text import complete_help

    complete_help(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``aikit`` command line with *argv* (default: ``sys.argv[1:]``).

    Returns the process exit status: 0 on success, 1 on a reported error,
    2 on a usage error, 130 on Ctrl-C.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return _exit_code(exc.code)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(handler(args))
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except BrokenPipeError:  # `aikit tools list | head`: the reader left; not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _exit_code(code: object) -> int:
    """Translate a ``SystemExit.code`` into an integer exit status."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
