"""Every subcommand's --help has a one-line description and ends with examples under the one heading
``examples:`` (issues 17 and 18), and every example is a command line the parser accepts."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex

import pytest

from aikit_kernel.cli.common import EXAMPLES_HEADING
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


def help_of(command: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main([*command.split(), "--help"]) == 0
    return out.getvalue()


def test_help_shows_description_and_examples_last() -> None:
    for command in subcommands(build_parser()):
        text = help_of(command)
        description = text.split("\n\n")[1]
        assert description and not description.startswith(("positional", "options")), (command, text)
        last = text.rstrip().split("\n\n")[-1]
        assert re.match(r"examples:\n  aikit ", last), (command, text)  # the examples end the help
        assert "Example:" not in text and text.count(EXAMPLES_HEADING) == 1, (command, text)


def example_lines(command: str) -> list[str]:
    """The aikit command lines in ``command``'s examples, without their comments, pipes and
    redirections."""
    block = help_of(command).rstrip().split("\n\n")[-1].splitlines()[1:]
    lines = []
    for line in block:
        line = re.split(r"\s{2,}|\s[|>&#]|\s&$", line.strip())[0]
        if line.startswith("aikit "):
            lines.append(line)
    return lines


@pytest.mark.parametrize("command", subcommands(build_parser()))
def test_every_example_is_a_valid_command_line(command: str) -> None:
    """An example that the parser would refuse teaches the wrong thing (``aikit plan SOT.md -o
    plan.json`` did: plan takes --sot and --out)."""
    parser = build_parser()
    for line in example_lines(command):
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                parser.parse_args(shlex.split(line)[1:])
        except SystemExit as exc:
            pytest.fail(f"{command}: the example `{line}` is refused (exit {exc.code}): {err.getvalue()}")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(["mission", "--help"])
    assert "A mission is a YAML file" in out.getvalue()
