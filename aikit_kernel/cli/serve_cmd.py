"""``aikit serve``: start the kernel, optionally with a DAP port for IDEs and debugpy for Python.

``--dap-port N`` lets an IDE attach to the running kernel's Lua debugger over TCP (the same
debugger JupyterLab uses). ``--debugpy PORT`` starts debugpy inside the kernel process so the
authors of Python tools and providers can attach a Python debugger (VS Code "Python: Attach").
"""

from __future__ import annotations

import argparse
import sys

from aikit_kernel.cli.common import Subparsers, add_command, error


def register(subparsers: Subparsers) -> None:
    """Add the ``serve`` subcommand to *subparsers*."""
    parser = add_command(
        subparsers, "serve", "start the kernel (optionally with a DAP port and/or debugpy)",
        description="Start the aikit kernel on a Jupyter connection file (created when missing; connect with "
                    "`aikit console --existing FILE` or `jupyter console --existing FILE`; several clients may "
                    "connect at once). SIGTERM shuts it down cleanly: a running cell is interrupted, the session "
                    "is recorded and the stores are closed. Exit status 0 after a clean shutdown.",
        examples=("aikit serve -f kernel.json --pid-file kernel.pid --idle-timeout 3600 &",
                  "aikit console --existing kernel.json", "kill $(cat kernel.pid)"),
        handler=_serve)
    parser.add_argument("-f", "--connection-file", help="Jupyter connection file (default: a new one in the runtime dir)")
    parser.add_argument("--dap-port", type=int, metavar="PORT", help="also serve the Lua debugger over DAP on this TCP port")
    parser.add_argument("--debugpy", type=int, metavar="PORT", help="start debugpy in the kernel process on this port")
    parser.add_argument("--debugpy-wait", action="store_true", help="with --debugpy: wait until a Python debugger attaches")
    parser.add_argument("--metrics-port", type=int, metavar="PORT",
                        help="serve metrics (tokens, durations, failures) as Prometheus text on 127.0.0.1:PORT/metrics")
    parser.add_argument("--idle-timeout", type=float, metavar="SECONDS",
                        help="shut down after this many seconds without any request")
    parser.add_argument("--pid-file", metavar="FILE", help="write the kernel's process id here (removed at exit)")


def _serve(args: argparse.Namespace) -> int:
    if args.debugpy is not None:
        try:
            import debugpy
        except ImportError:
            return error("serve: --debugpy needs the debugpy package (pip install debugpy)", 1)
        try:
            debugpy.listen(("127.0.0.1", args.debugpy))
        except Exception as exc:  # port in use, adapter failed to start
            return error(f"serve: debugpy could not listen on port {args.debugpy}: {exc}", 1)
        print(f"aikit serve: debugpy listening on 127.0.0.1:{args.debugpy}", file=sys.stderr, flush=True)
        if args.debugpy_wait:
            debugpy.wait_for_client()
    from aikit_kernel.__main__ import default_connection_file
    from aikit_kernel.kernel_process import run_kernel

    if args.idle_timeout is not None and args.idle_timeout <= 0:
        return error("serve: --idle-timeout must be a positive number of seconds", 2)
    return run_kernel(args.connection_file or default_connection_file(), dap_port=args.dap_port,
                      metrics_port=args.metrics_port, idle_timeout_s=args.idle_timeout, pid_file=args.pid_file)
