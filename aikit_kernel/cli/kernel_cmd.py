"""``aikit kernel install|uninstall``: manage the aikit Jupyter kernelspec."""

from __future__ import annotations

import argparse
import sys

from aikit_kernel.cli.common import confirm, error
from aikit_kernel.kernelspec import (
    KERNEL_NAME,
    KernelspecError,
    find_installed,
    install,
    uninstall,
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``kernel`` subcommand (with ``install`` and ``uninstall``) to *subparsers*."""
    parser = subparsers.add_parser(
        "kernel",
        help="install or remove the Jupyter kernelspec",
        description="Install or remove the aikit kernelspec, which lets Jupyter start aikit.",
    )
    actions = parser.add_subparsers(dest="kernel_action", metavar="ACTION", required=True)

    inst = actions.add_parser(
        "install",
        help="install the kernelspec",
        description=(
            "Install the aikit kernelspec (default: for the current user). The spec "
            f"launches this Python interpreter ({sys.executable})."
        ),
    )
    _add_location_options(inst, default="for the current user (default)")
    inst.add_argument("--name", default=KERNEL_NAME, help=f"kernelspec name (default: {KERNEL_NAME})")
    inst.add_argument("--display-name", help='name shown by Jupyter (default: "aikit (Lua)")')
    inst.set_defaults(handler=_install)

    rm = actions.add_parser(
        "uninstall",
        help="remove the kernelspec",
        description=(
            "Remove an aikit kernelspec. Without a location option, removes the spec "
            "Jupyter would use (the first found on its kernel path)."
        ),
    )
    _add_location_options(rm, default="for the current user")
    rm.add_argument("--name", default=KERNEL_NAME, help=f"kernelspec name (default: {KERNEL_NAME})")
    rm.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    rm.set_defaults(handler=_uninstall)


def _add_location_options(parser: argparse.ArgumentParser, *, default: str) -> None:
    """Add the mutually exclusive ``--user | --sys-prefix | --prefix P`` options."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--user", action="store_true", help=default)
    group.add_argument(
        "--sys-prefix",
        action="store_true",
        help=f"in this Python environment ({sys.prefix})",
    )
    group.add_argument("--prefix", metavar="P", help="under P/share/jupyter/kernels")


def _location(args: argparse.Namespace) -> tuple[bool, str | None]:
    """Return ``(user, prefix)`` for the location options in *args*."""
    if args.prefix is not None:
        return False, args.prefix
    if args.sys_prefix:
        return False, sys.prefix
    return bool(args.user), None


def _install(args: argparse.Namespace) -> int:
    """Handle ``aikit kernel install``."""
    user, prefix = _location(args)
    if prefix is None:
        user = True  # the default location: per-user
    try:
        dest = install(name=args.name, user=user, prefix=prefix, display_name=args.display_name)
    except KernelspecError as exc:
        return error(str(exc))
    print(f"Installed kernelspec {args.name.lower()} in {dest}")
    return 0


def _uninstall(args: argparse.Namespace) -> int:
    """Handle ``aikit kernel uninstall``."""
    user, prefix = _location(args)
    explicit = user or prefix is not None
    path = find_installed(args.name, user=user, prefix=prefix, anywhere=not explicit)
    if path is None:
        where = "on Jupyter's kernel path" if not explicit else "at the given location"
        return error(f"no kernelspec named {args.name!r} is installed {where}")
    if not args.yes and not confirm(f"Remove kernelspec {args.name!r} at {path}?"):
        return error("not removed (pass -y to remove without asking)")
    try:
        uninstall(path)
    except KernelspecError as exc:
        return error(str(exc))
    print(f"Removed kernelspec {args.name.lower()} from {path}")
    return 0
