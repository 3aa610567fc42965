"""``aikit run SCRIPT [ARGS...]``: run a Lua script directly, without a kernel.

``aikit run PLAN.json [OPTIONS]`` (any file ending in ``.json``), or ``aikit run --plan PLAN.json
[OPTIONS]``, runs a plan made by ``aikit plan`` instead (see :mod:`aikit_kernel.cli.plan_cmd`).
"""

from __future__ import annotations

import argparse

from aikit_kernel.cli.common import Subparsers, add_command, error


def register(subparsers: Subparsers) -> None:
    """Add the ``run`` subcommand to *subparsers*."""
    from aikit_kernel.cli.plan_cmd import add_plan_run_options

    parser = add_command(
        subparsers, "run", "run a Lua script (no kernel process needed), or a plan (PLAN.json)",
        description="Run a Lua script with the aikit runtime and print its output. Given a .json file "
                    "(or --plan FILE), run that plan instead: `aikit run plan.json --max-workers 4 [--dry-run]` "
                    "(the options marked 'plans:' apply; make plans with `aikit plan`). Exit status: 0 done, "
                    "1 the script failed, 2 usage error, 130 interrupted (Ctrl-C).",
        examples=("aikit run script.lua a b                  arg[1], arg[2] are \"a\", \"b\"",
                  "aikit run --arg topic=llamas script.lua   arg.topic is \"llamas\"",
                  "aikit run --strict pipeline.lua           a failed workflow run: exit status 1",
                  "aikit run plan.json --max-workers 4"),
        handler=_run)
    parser.add_argument("--plan", metavar="PLAN.json", default=argparse.SUPPRESS,
                        help="plans: the plan to run (the same as giving it as SCRIPT)")
    add_plan_run_options(parser, suppress=True)
    parser.add_argument("--arg", action="append", default=[], metavar="K=V",
                        help="scripts: a named argument, seen by the script as arg.K (a string); repeatable")
    parser.add_argument("--strict", action="store_true", default=argparse.SUPPRESS,
                        help="scripts: a workflow run that fails (wf:run()) is an error: exit status 1")
    parser.add_argument("script", nargs="?", help="path of the script (or of the plan .json) to run")
    parser.add_argument(
        "script_args",
        nargs=argparse.REMAINDER,
        metavar="ARGS",
        help="arguments passed to the script (for a plan: its options)",
    )


_PLAN_OPTIONS = ("max_workers", "dry_run", "hooks", "manifest", "runs_dir", "timeout", "include_done", "json")


def _run(args: argparse.Namespace) -> int:
    """Run a plan (``.json`` or --plan) or delegate to :func:`aikit_kernel.cli.run.run_command`."""
    preset = {name: getattr(args, name) for name in _PLAN_OPTIONS if hasattr(args, name)}
    strict = bool(getattr(args, "strict", False))
    plan = getattr(args, "plan", None)
    if plan is not None and args.script is not None:
        return error("give the plan either with --plan or as the file argument, not both", 2)
    if plan is None and args.script is not None and args.script.lower().endswith(".json"):
        plan = args.script
    if plan is not None:
        if args.arg:
            return error("run: --arg applies to Lua scripts, not plans", 2)
        from aikit_kernel.cli.plan_cmd import run_plan_command

        return run_plan_command(plan, list(args.script_args), preset)
    if args.script is None:
        return error("run: give a Lua script (or a plan .json) to run, e.g. `aikit run script.lua`", 2)
    if preset:
        flags = ", ".join("--" + name.replace("_", "-") for name in preset)
        return error(f"run: {flags} only apply to plans (a .json file); put script arguments after the script", 2)
    named: dict[str, str] = {}
    for item in args.arg:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            return error(f"run: --arg expects NAME=VALUE with NAME a Lua name, got {item!r}", 2)
        named[key] = value
    from aikit_kernel.cli.run import run_command

    return run_command(args.script, list(args.script_args), named=named, strict=strict)
