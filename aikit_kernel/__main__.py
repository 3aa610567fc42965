"""``python -m aikit_kernel -f CONNECTION_FILE``: start the aikit kernel."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aikit_kernel", description="Start the aikit (Lua) Jupyter kernel.")
    parser.add_argument("-f", "--connection-file", help="Jupyter connection file (created if it does not exist)")
    args, _unknown = parser.parse_known_args(argv)
    from .kernel import run_kernel

    connection_file = args.connection_file
    if connection_file is None:
        import os

        from jupyter_core.paths import jupyter_runtime_dir

        os.makedirs(jupyter_runtime_dir(), exist_ok=True)
        connection_file = os.path.join(jupyter_runtime_dir(), f"kernel-aikit-{os.getpid()}.json")
    return run_kernel(connection_file)


if __name__ == "__main__":
    sys.exit(main())
