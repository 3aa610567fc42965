"""Every subcommand's --help has a one-line description and an example (issue 17)."""

from __future__ import annotations

import argparse
import contextlib
import io
import re

from aikit_kernel.cli.help_text import EXAMPLES, complete_help
from aikit_kernel.cli.main import build_parser, main


def subcommands(parser: argparse.ArgumentParser, path: str = "") -> list[str]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                full = f"{path} {name}".strip()
                found += [full, *subcommands(sub, full)]
    return found


def test_every_subcommand_has_an_example() -> None:
    assert complete_help(build_parser()) == []  # from EXAMPLES, or the command's own epilog
    assert set(EXAMPLES) <= set(subcommands(build_parser()))  # no example of a command that is gone


def test_help_shows_description_and_example() -> None:
    for command in subcommands(build_parser()):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main([*command.split(), "--help"]) == 0
        text = out.getvalue()
        description = text.split("\n\n")[1]
        assert description and not description.startswith(("positional", "options")), (command, text)
        assert re.search(r"\n(Example|examples):\n +aikit ", text), (command, text)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(["mission", "--help"])
    assert "A mission is a YAML file" in out.getvalue()
