"""``python -m aikit_kernel -f CONNECTION_FILE``: start the aikit kernel."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aikit_kernel", description="Start the aikit (Lua) Jupyter kernel.")
    parser.add_argument("-f", "--connection-file", help="Jupyter connection file (created if it does not exist)")
    args, _unknown = parser.parse_known_args(argv)
    from .kernel import run_kernel

    return run_kernel(args.connection_file)


if __name__ == "__main__":
    sys.exit(main())
