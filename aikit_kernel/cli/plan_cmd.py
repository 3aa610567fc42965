"""``aikit plan --sot SOT.md --out PLAN.json``: turn a source-of-truth markdown file into a plan.

Queues are headings, tasks are checklist lines with a task id (``- [ ] TASK-001 Title``); see
docs/plans.md. Malformed lines are reported as ``FILE:LINE: message`` on stderr and the plan is
not written (exit status 1) unless ``--lenient`` is given. Run the plan with
``aikit run PLAN.json``.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from aikit_kernel.cli.common import PROG, Subparsers, add_command, error

if TYPE_CHECKING:
    from collections.abc import Callable

    from aikit_components.plans import PlanRunner
    from aikit_kernel.run_progress import RunProgress

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2
# The same defaults as aikit_components.plans.runner (not imported here: `aikit --help` stays light).
DEFAULT_MAX_WORKERS = 4
DEFAULT_TIMEOUT_S = 300.0


def register(subparsers: Subparsers) -> None:
    """Add the ``plan`` subcommand to *subparsers*."""
    parser = add_command(
        subparsers, "plan", "turn a source-of-truth markdown file into a plan (plan.json)",
        description="Parse a source-of-truth markdown file (queues as headings, tasks as checklist lines "
                    "'- [ ] TASK-001 Title') into an execution plan. Run it with `aikit run PLAN.json`. "
                    "Format: docs/plans.md.",
        examples=("aikit plan --sot SOT.md --out plan.json", "aikit run plan.json --dry-run"),
        handler=_run)
    parser.add_argument("--sot", required=True, metavar="SOT.md", help="the source-of-truth markdown file")
    parser.add_argument("--out", required=True, metavar="PLAN.json", help="where to write the plan ('-' for stdout)")
    parser.add_argument("--lenient", action="store_true",
                        help="write the plan even when lines are malformed (they are reported and left out)")


def _run(args: argparse.Namespace) -> int:
    from aikit_components.errors import AikitError, IOFailure
    from aikit_components.plans import parse_sot_file, save_plan

    try:
        result = parse_sot_file(args.sot)
    except AikitError as exc:
        return error(exc.message, EXIT_USAGE)
    plan = result.plan
    for problem in result.problems:
        print(problem.format(plan.source), file=sys.stderr)
    if result.problems and not args.lenient:
        return error(f"{plan.source}: {len(result.problems)} problem(s); the plan was not written "
                     "(fix them, or pass --lenient to leave those lines out)", EXIT_PROBLEMS)
    tasks = plan.tasks()
    done = sum(1 for _, t in tasks if t.checked)
    if args.out == "-":
        sys.stdout.write(plan.to_json())
        sys.stdout.flush()
        report = sys.stderr
    else:
        try:
            save_plan(plan, args.out)
        except IOFailure as exc:
            return error(exc.message, EXIT_PROBLEMS)
        report = sys.stdout
    where = "stdout" if args.out == "-" else args.out
    print(f"{PROG} plan: wrote {where}: {len(plan.queues)} queue(s), {len(tasks)} task(s)"
          f"{f' ({done} already checked)' if done else ''}", file=report)
    for queue in plan.queues:
        print(f"  {queue.name}: {', '.join(t.id for t in queue.tasks)}", file=report)
    if result.problems:
        print(f"{PROG} plan: warning: {len(result.problems)} problem(s) left out (--lenient)", file=sys.stderr)
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# `aikit run PLAN.json [OPTIONS]` (run_cmd delegates here when the file ends with .json)
# --------------------------------------------------------------------------------------------

def add_plan_run_options(parser: argparse.ArgumentParser, *, suppress: bool = False) -> None:
    """Add the plan-run options to *parser*: ``aikit run`` has them (for ``--plan PLAN.json`` and
    options given before the file; with ``suppress`` absent options leave no attribute) and so has
    the parser of the arguments after ``PLAN.json``."""
    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument("--max-workers", type=_positive_int, metavar="N", default=default(DEFAULT_MAX_WORKERS),
                        help=f"plans: tasks run in parallel (default {DEFAULT_MAX_WORKERS})")
    parser.add_argument("--dry-run", action="store_true", default=default(False),
                        help="plans: print what would run (and what would be refused); execute and write nothing")
    parser.add_argument("--hooks", metavar="FILE", default=default(None),
                        help="plans: the hooks file mapping task ids / queue names to commands "
                             "(default: hooks.json or config/hooks.json next to the plan, then in the current directory)")
    parser.add_argument("--manifest", metavar="FILE", default=default(None),
                        help="plans: the manifest of agents and layers (default: manifest.json or config/manifest.json "
                             "next to the plan, then in the current directory)")
    parser.add_argument("--runs-dir", metavar="DIR", default=default(None),
                        help="plans: where run directories are created (default: runs/ next to the plan)")
    parser.add_argument("--timeout", type=_positive_float, metavar="SECONDS", default=default(DEFAULT_TIMEOUT_S),
                        help=f"plans: default timeout of each command (default {DEFAULT_TIMEOUT_S:g})")
    parser.add_argument("--include-done", action="store_true", default=default(False),
                        help="plans: also run tasks checked ([x]) in the SOT")
    parser.add_argument("--json", action="store_true", default=default(False),
                        help="plans: print the summary (or the dry-run report) as JSON")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


def run_plan_command(plan_path: str, argv: list[str], preset: dict[str, object] | None = None) -> int:
    """``aikit run PLAN.json ARGV...``: parse the plan options in *argv* (over *preset*, the options
    given before the file) and run or dry-run the plan. Returns the exit status: 0 when every task
    succeeded (or the dry run found nothing to refuse), 1 when a task failed, 2 on a usage error or
    an invalid plan/hooks file, 130 on Ctrl-C."""
    parser = argparse.ArgumentParser(prog=f"{PROG} run {plan_path}", description="Run a plan.")
    add_plan_run_options(parser)
    parser.set_defaults(**(preset or {}))
    try:
        opts = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    return _run_plan(plan_path, opts)


def _run_plan(plan_path: str, opts: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from aikit_components.config import load_config
    from aikit_components.errors import AikitError
    from aikit_components.plans import (
        CommandMap,
        Manifest,
        PlanRunner,
        RunOptions,
        TaskResult,
        child_base_env,
        find_hooks_file,
        find_manifest_file,
        load_hooks,
        load_manifest,
        load_plan,
    )
    from aikit_components.security import SecurityPolicy

    components = None
    try:
        plan = load_plan(plan_path)
        hooks_path = Path(opts.hooks) if opts.hooks else find_hooks_file(plan.path)
        commands = load_hooks(hooks_path) if hooks_path is not None else CommandMap()
        commands.add_plan_hooks(plan)
        manifest_path = Path(opts.manifest) if opts.manifest else find_manifest_file(plan.path)
        manifest = load_manifest(manifest_path) if manifest_path is not None else Manifest()
        config = load_config()
        policy = SecurityPolicy.from_config(config)
        cap = int(config.get("tools.process_output_cap_bytes", 1024 * 1024) or 1024 * 1024)
        options = RunOptions(max_workers=opts.max_workers, dry_run=opts.dry_run,
                             runs_dir=Path(opts.runs_dir) if opts.runs_dir else None,
                             timeout_s=float(opts.timeout or DEFAULT_TIMEOUT_S), include_done=opts.include_done,
                             max_output_bytes=cap)
        base_env = child_base_env(policy, inherit=bool(config.get("tools.process_inherit_env", False)))
        if not opts.dry_run and any(agent.kind == "llm" for agent in manifest.agents.values()):
            from aikit_components.components import Components  # models and tools for the llm agents

            components = Components.open(config=config, session_name=f"plan {os.path.basename(plan_path)}")
    except AikitError as exc:
        return error(exc.message, EXIT_USAGE)

    for key in commands.unused_keys(plan):
        print(f"{PROG} run: warning: {commands.path}: {key!r} matches no task id or queue name of the plan",
              file=sys.stderr)

    progress: RunProgress | None = None

    def on_event(kind: str, result: object) -> None:
        nonlocal progress
        if opts.json or options.dry_run or not isinstance(result, TaskResult):
            return
        if progress is None:  # the first task: the header line is out, the live line goes below it
            from aikit_kernel.run_progress import RunProgress

            todo = sum(1 for _, task in plan.tasks() if options.include_done or not task.checked)
            progress = RunProgress(Path(plan.path).name, todo, sys.stdout, components=components, noun="task")
        if kind == "task_started":
            progress.step_started(result.task)
        elif kind == "task_finished":
            progress.step_finished(result.task, result.status, result.duration_s, result.error or "")

    def before_summary() -> None:
        if progress is not None:
            progress.close()

    try:
        try:
            runner = PlanRunner(plan, commands=commands, manifest=manifest, policy=policy, options=options,
                                components=components, base_env=base_env, on_event=on_event)
        except AikitError as exc:
            return error(exc.message, EXIT_USAGE)
        return _execute(runner, opts, before_summary)
    finally:
        before_summary()
        if components is not None:
            components.close()


def _execute(runner: PlanRunner, opts: argparse.Namespace, before_summary: Callable[[], None]) -> int:
    """Run or dry-run with ``runner``, print the outcome and return the exit status (calling
    ``before_summary`` first: the progress display ends there)."""
    import json
    import os

    from aikit_components.errors import AikitError

    plan, options, commands = runner.plan, runner.options, runner.commands

    if options.dry_run:
        report = runner.dry_run()
        if opts.json:
            print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
        else:
            print(report.render())
        return report.exit_code

    if not opts.json:
        print(f"{PROG} run: {plan.path} — {len(plan.tasks())} task(s), at most {options.max_workers} worker(s)"
              + (f", hooks {commands.path}" if commands.path else ", no hooks file")
              + (f", manifest {runner.manifest.path}" if runner.manifest.path else ""), flush=True)
    try:
        summary = runner.run()
    except KeyboardInterrupt:
        before_summary()
        print(f"\n{PROG} run: interrupted; partial evidence and run.json are in {runner.runs_dir}", file=sys.stderr)
        return 130
    except AikitError as exc:
        before_summary()
        return error(exc.message, EXIT_PROBLEMS)
    before_summary()
    if opts.json:
        print(json.dumps(summary.to_dict(), indent=2, ensure_ascii=False))
    else:
        counts = summary.counts
        parts = ", ".join(f"{counts[k]} {k}" for k in ("ok", "noop", "skipped", "error", "blocked", "cancelled")
                          if counts.get(k))
        print(f"run {summary.run_id}: {summary.status} — {counts['total']} task(s): {parts or 'nothing to do'}")
        print(f"evidence: {summary.run_dir / 'logs'}{os.sep}")
        print(f"summary:  {summary.run_dir / 'run.json'}")
    failed = [r.task for r in summary.results if r.status not in ("ok", "noop", "skipped")]
    if failed:
        return error(f"{len(failed)} task(s) did not succeed: {', '.join(failed)} (see their evidence logs)",
                     summary.exit_code)
    return summary.exit_code

