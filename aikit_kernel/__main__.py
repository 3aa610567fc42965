"""``python -m aikit_kernel -f CONNECTION_FILE [--dap-port N]``: start the aikit kernel."""

from __future__ import annotations

import argparse
import os
import sys


def default_connection_file() -> str:
    from jupyter_core.paths import jupyter_runtime_dir

    os.makedirs(jupyter_runtime_dir(), exist_ok=True)
    return os.path.join(jupyter_runtime_dir(), f"kernel-aikit-{os.getpid()}.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aikit_kernel", description="Start the aikit (Lua) Jupyter kernel.")
    parser.add_argument("-f", "--connection-file", help="Jupyter connection file (created if it does not exist)")
    parser.add_argument("--dap-port", type=int, default=None,
                        help="serve the Lua debugger over DAP on this TCP port (default: the kernel.dap_port "
                             "setting, also AIKIT_KERNEL__DAP_PORT or AIKIT_DAP_PORT)")
    args, _unknown = parser.parse_known_args(argv)
    from .kernel_process import run_kernel

    return run_kernel(args.connection_file or default_connection_file(), dap_port=args.dap_port)


if __name__ == "__main__":
    sys.exit(main())
