"""Small helpers shared by the ``aikit`` subcommands."""

from __future__ import annotations

import sys

PROG = "aikit"


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
