"""``aikit stop [--kernel CONNECTION_FILE | --all]``: the kill switch, from a terminal.

A running aikit kernel is asked on its control channel (message ``aikit_stop_request``, answered by
``aikit_stop_reply {status, cancelled}``): the control channel is served even while a cell runs,
and the message must be signed with the key in the connection file, so only who can read that file
(its user) can stop the kernel. The kernel then stops every running agent, workflow, mission and
tool, and interrupts the running cell; the kernel itself goes on. ``--all`` asks every aikit
kernel whose connection file is in this user's Jupyter runtime directory.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import time
from pathlib import Path
from typing import Any

from aikit_kernel.cli.common import error

REPLY_TIMEOUT_S = 3.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``stop`` subcommand to *subparsers*."""
    parser = subparsers.add_parser("stop", help="stop every running agent, workflow and tool of a kernel",
                                   description="The kill switch: stop every running agent, workflow, mission and "
                                               "tool of one aikit kernel (--kernel) or of all of this user's running "
                                               "aikit kernels (--all). The kernels keep running.")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--kernel", metavar="CONNECTION_FILE", help="the kernel's connection file (kernel-*.json)")
    which.add_argument("--all", action="store_true", help="every aikit kernel in the Jupyter runtime directory")
    parser.add_argument("--runtime-dir", metavar="DIR", help="where --all looks (default: jupyter's runtime dir)")
    parser.add_argument("--timeout", type=float, default=REPLY_TIMEOUT_S, metavar="S",
                        help=f"how long to wait for each kernel's answer (default {REPLY_TIMEOUT_S:g} s)")
    parser.set_defaults(handler=_stop)


def stop_kernel(connection_file: Path, timeout: float = REPLY_TIMEOUT_S, by: str = "aikit stop") -> dict[str, Any]:
    """Ask the kernel of ``connection_file`` to stop its work; its reply content. Raises
    TimeoutError when it does not answer (not an aikit kernel, or not running)."""
    from jupyter_client import BlockingKernelClient

    from aikit_kernel.transport import read_connection_file

    read_connection_file(connection_file)  # a file that is not one says so (ConnectionFileError)
    client = BlockingKernelClient(connection_file=str(connection_file))
    client.load_connection_file()
    client.start_channels(shell=False, iopub=False, stdin=False, hb=False, control=True)
    try:
        request = client.session.msg("aikit_stop_request", {"by": by})
        client.control_channel.send(request)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no answer from the kernel of {connection_file} within {timeout:g} s")
            try:
                reply = client.control_channel.get_msg(timeout=remaining)
            except queue.Empty:
                continue
            if reply.get("parent_header", {}).get("msg_id") == request["header"]["msg_id"]:
                return dict(reply.get("content") or {})
    finally:
        client.stop_channels()


def aikit_connection_files(runtime_dir: Path) -> list[Path]:
    """This user's kernel connection files in ``runtime_dir`` that may belong to aikit kernels
    (no ``kernel_name``, or one that names aikit or Lua)."""
    found = []
    uid = os.getuid()
    for path in sorted(runtime_dir.glob("kernel-*.json")):
        try:
            if path.stat().st_uid != uid:
                continue
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        name = str(info.get("kernel_name") or "").lower()
        if not name or "aikit" in name or "lua" in name:
            found.append(path)
    return found


def _stop(args: argparse.Namespace) -> int:
    from aikit_kernel.transport import ConnectionFileError

    if args.kernel:
        path = Path(args.kernel).expanduser()
        if not path.is_file():
            return error(f"no connection file {path}")
        try:
            reply = stop_kernel(path, args.timeout)
        except TimeoutError as exc:
            return error(f"{exc}: is it a running aikit kernel?")
        except ConnectionFileError as exc:
            return error(str(exc))
        except (OSError, ValueError, KeyError) as exc:
            return error(f"cannot read the connection file {path}: {exc}")
        print(f"stopped {path.name}: {reply.get('cancelled', 0)} running task(s) cancelled")
        return 0
    if args.runtime_dir:
        runtime = Path(args.runtime_dir).expanduser()
    else:
        from jupyter_core.paths import jupyter_runtime_dir

        runtime = Path(jupyter_runtime_dir())
    files = aikit_connection_files(runtime)
    stopped = 0
    for path in files:
        try:
            reply = stop_kernel(path, args.timeout)
        except (TimeoutError, OSError, ValueError, KeyError):
            continue  # a kernel that is gone left its file, or it is not an aikit kernel
        stopped += 1
        print(f"stopped {path.name}: {reply.get('cancelled', 0)} running task(s) cancelled")
    if not stopped:
        print(f"no running aikit kernel answered (looked in {runtime})")
    return 0
