"""Small helpers shared by the ``aikit`` subcommands.

:func:`add_command` registers one subcommand the same way everywhere: a one-line ``help`` for
``aikit --help``, a description (the help as a sentence unless given), the examples that end its
``--help`` under the one heading ``examples:``, and the handler. :func:`reported` turns an aikit
error raised by a handler into ``aikit: error: ...`` and an exit status.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

PROG = "aikit"
#: The heading of the examples that end every command's ``--help`` (argparse's own headings,
#: ``options:`` and ``positional arguments:``, are lower case too).
EXAMPLES_HEADING = "examples:"

Handler = Callable[[argparse.Namespace], int]
Subparsers = argparse._SubParsersAction  # argparse exposes no public name for it


def error(message: str, code: int = 1) -> int:
    """Print ``aikit: error: MESSAGE`` to stderr and return the exit *code*."""
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code


def confirm(question: str) -> bool:
    """Ask a yes/no *question* on the terminal; anything but y/yes (or EOF) is no."""
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        print(file=sys.stderr)
        return False
    return answer.strip().lower() in {"y", "yes"}


def examples_epilog(lines: Sequence[str]) -> str:
    """The ``examples:`` block of a ``--help``: one command line each (a comment may follow it)."""
    return EXAMPLES_HEADING + "\n" + "\n".join(f"  {line}" for line in lines)


class HelpFormatter(argparse.HelpFormatter):
    """argparse's layout (descriptions re-wrapped to the terminal), except that the ``examples:``
    epilog keeps its lines as written (commands and their aligned comments)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith(EXAMPLES_HEADING):
            return "\n".join(indent + line for line in text.splitlines())
        return super()._fill_text(text, width, indent)


def sentence(help_text: str) -> str:
    """A one-line help as a description: capitalised, with a full stop."""
    text = help_text[:1].upper() + help_text[1:]
    return text if text.endswith(".") else text + "."


def add_command(subparsers: Subparsers, name: str, help: str, *, description: str | None = None,
                examples: Sequence[str] = (), handler: Handler | None = None,
                **kwargs: Any) -> argparse.ArgumentParser:
    """Add subcommand ``name`` to ``subparsers`` and return its parser (for its arguments).

    ``help`` is the line ``aikit --help`` shows; ``description`` defaults to it as a sentence;
    ``examples`` end its ``--help`` (a command without any gets them from
    :data:`aikit_kernel.cli.help_text.EXAMPLES`); ``handler(args) -> exit status`` runs it."""
    parser = subparsers.add_parser(name, help=help, description=description or sentence(help),
                                   epilog=examples_epilog(examples) if examples else None,
                                   formatter_class=HelpFormatter, **kwargs)
    if handler is not None:
        parser.set_defaults(handler=handler)
    return parser


def add_actions(parser: argparse.ArgumentParser, dest: str) -> Subparsers:
    """The required ``ACTION`` level of a command with actions (``aikit state get|set|...``)."""
    return parser.add_subparsers(dest=dest, metavar="ACTION", required=True)


def reported(handler: Handler) -> Handler:
    """``handler`` with its aikit errors reported: ``aikit: error: MESSAGE`` and exit status 3 for
    something that does not exist (:class:`NotFound`), 1 for any other aikit error."""

    def run(args: argparse.Namespace) -> int:
        from aikit_components.errors import AikitError, NotFound

        try:
            return int(handler(args))
        except NotFound as exc:
            return error(exc.message, 3)
        except AikitError as exc:
            return error(exc.message, 1)

    run.__doc__ = handler.__doc__
    return run


def print_records(records: Sequence[dict[str, Any]], columns: Sequence[str], as_json: bool = False) -> None:
    """Print ``records`` (dicts) as JSON, or as aligned text columns (``columns``, in order; no
    header, so that ``cut``/``awk`` read it as easily as a person does)."""
    if as_json:
        import json

        print(json.dumps(list(records), ensure_ascii=False, default=str))
        return
    rows = [["" if record.get(c) is None else str(record.get(c)) for c in columns] for record in records]
    widths = [max((len(row[i]) for row in rows), default=0) for i in range(len(columns))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
