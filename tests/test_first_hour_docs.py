"""The docs and help a new user reads (issue 17, "Docs and help"): the error-code table lists every
code aikit raises, nothing says it is unfinished, and nothing names a path of the machine the
docs were written on."""

from __future__ import annotations

import contextlib
import io
import re
import sys
from pathlib import Path

from aikit_kernel.cli.main import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
LUA_API = (ROOT / "docs" / "lua-api.md").read_text(encoding="utf-8")
#: Paths of the machines aikit was written on; none belongs in what users read.
MACHINE_PATHS = re.compile(r"/work/|/root/|/Users/|specs/")
URL = re.compile(r"https?://\S+")


def machine_path(text: str) -> str | None:
    """The first path of the authors' machines in ``text`` (web addresses aside)."""
    found = MACHINE_PATHS.search(URL.sub("", text))
    return found.group(0) if found else None


def raised_codes() -> set[str]:
    """Every error code the Python code gives an error (``code = "..."``)."""
    codes: set[str] = set()
    for package in ("aikit_components", "aikit_kernel"):
        for module in (ROOT / package).rglob("*.py"):
            codes |= set(re.findall(r"\bcode\s*=\s*\"([a-z_]+)\"", module.read_text(encoding="utf-8")))
    return codes


def test_the_error_table_lists_every_code() -> None:
    section = LUA_API.split("\n## Errors", 1)[1].split("\n## ", 1)[0]
    documented = {code for row in section.splitlines() if row.startswith("| `")
                  for code in re.findall(r"`([a-z_]+)`", row.split(" | ")[0])}
    assert raised_codes() - documented == set()


def test_the_lua_api_does_not_say_it_is_unfinished() -> None:
    assert "as they land" not in LUA_API and "TODO" not in LUA_API


def test_no_doc_example_bench_or_help_names_a_path_of_the_authors_machine() -> None:
    files = [*ROOT.glob("docs/*.md"), ROOT / "README.md", *ROOT.glob("bench/*.py"), *ROOT.glob("examples/**/*.lua"),
             *ROOT.glob("examples/**/*.yaml")]
    for file in files:
        found = machine_path(file.read_text(encoding="utf-8"))
        assert found is None, f"{file.relative_to(ROOT)} names {found!r}"

    def subcommands(parser, path=""):  # type: ignore[no-untyped-def]
        import argparse

        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield f"{path} {name}".strip()
                    yield from subcommands(sub, f"{path} {name}")

    for command in subcommands(build_parser()):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            main([*command.split(), "--help"])
        own = out.getvalue().replace(sys.executable, "PYTHON").replace(sys.prefix, "PREFIX")  # this install's paths
        assert machine_path(own) is None, command
