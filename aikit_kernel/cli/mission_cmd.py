"""``aikit mission validate|run|resume|list|types``: YAML missions (the RustChain format) from a terminal.

- ``validate FILE [--dry-run]``: every problem at once (exit 1 when there is any); ``--dry-run``
  also prints the execution layers (steps that may run at the same time share a layer).
- ``run FILE [--input k=v ...] [--out record.json] [--dry-run] [--ray ADDRESS]``: validate, run with live
  progress (a progress bar on a terminal, one line per finished step otherwise), print a result
  table and write the run record as JSON (default ``<data_dir>/runs/<run_id>.json``). Exit 1
  when the mission failed.
- ``resume RUN_ID [--file FILE] [--approve CALL] [--deny CALL] [--reason R] [--approve-in-doubt]``:
  re-run what did not succeed in a stored run; calls that finished are replayed from the effect
  journal, and a call the stopped run started but never finished (in doubt) runs again only once
  approved (``--approve`` names one call, or a step, a tool, ``*``; ``--approve-in-doubt`` every
  in-doubt call); a denied one does not run and its step fails. A run that waits for decisions
  ends ``needs_approval``.
- ``list``: recent runs (records under ``<data_dir>/runs``).
- ``approve RUN STEP [--deny] [--reason R]``: decide a step that waits for a person (an
  ``approval`` step, or one with ``approval: true``); the waiting run, in any process, goes on.
- ``types``: the step types and the aikit tools they map to.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from aikit_kernel.cli.common import Subparsers, add_actions, add_command, error

STATUS_STYLE = {"succeeded": "green", "failed": "red", "timed_out": "red", "cancelled": "yellow",
                "skipped": "dim", "upstream_failed": "yellow", "pending": "dim", "running": "cyan"}
STATUS_MARK = {"succeeded": "✓", "failed": "✗", "timed_out": "✗", "cancelled": "!", "skipped": "-",
               "upstream_failed": "-", "pending": " ", "running": "…"}
FINAL = ("succeeded", "failed", "timed_out", "cancelled", "skipped", "upstream_failed")


def register(subparsers: Subparsers) -> None:
    """Add the ``mission`` subcommand (validate, run, resume, list, types) to *subparsers*."""
    parser = add_command(subparsers, "mission", "validate and run YAML missions (RustChain format)",
                         description="Validate, run and resume YAML missions: steps of tools, "
                                     "commands, LLM calls and agents scheduled as a DAG.", handler=_run)
    actions = add_actions(parser, "mission_action")

    validate = actions.add_parser("validate", help="report every problem of a mission (exit 1 if any)")
    validate.add_argument("file", help="the mission YAML file")
    validate.add_argument("--dry-run", action="store_true", help="also print the execution layers")
    validate.add_argument("--input", action="append", default=[], metavar="K=V", help="an input value (repeatable)")
    validate.add_argument("--json", action="store_true", help="print {ok, problems, layers} as JSON")

    run = actions.add_parser("run", help="run a mission with live progress")
    run.add_argument("file", help="the mission YAML file")
    run.add_argument("--input", action="append", default=[], metavar="K=V",
                     help="an input value for {{input.K}} (repeatable; V is parsed as JSON when it can be)")
    run.add_argument("--out", metavar="FILE", help="where to write the run record (default <data_dir>/runs/<run_id>.json)")
    run.add_argument("--run-id", help="the run id (default: a new one)")
    run.add_argument("--dry-run", action="store_true", help="validate and print the execution layers; run nothing")
    run.add_argument("--ray", metavar="ADDRESS", help="run the steps on the Ray cluster at ADDRESS (HOST:PORT of "
                                                      "`ray start --head`, ray://HOST:PORT or auto); "
                                                      "see docs/scaling.md")

    resume = actions.add_parser("resume", help="re-run what did not succeed in a stored run")
    resume.add_argument("run_id", metavar="RUN_ID")
    resume.add_argument("--file", help="the mission file (default: the one the run was started from)")
    resume.add_argument("--out", metavar="FILE", help="where to write the run record")
    resume.add_argument("--approve-in-doubt", action="store_true",
                        help="run again every call the stopped run started but never finished (in doubt)")
    resume.add_argument("--approve", action="append", default=[], metavar="CALL",
                        help="approve one call the run waits for: its call id (STEP@ATTEMPT#N), step, tool name or * "
                             "(repeatable); an in-doubt call runs again")
    resume.add_argument("--deny", action="append", default=[], metavar="CALL",
                        help="deny one call the run waits for (repeatable): it does not run, its step fails")
    resume.add_argument("--reason", default="", help="why (recorded with the decisions)")
    resume.add_argument("--ray", metavar="ADDRESS", help="run the remaining steps on the Ray cluster at ADDRESS")

    listing = actions.add_parser("list", help="recent runs")
    listing.add_argument("--limit", type=int, default=20, help="most runs to show (default 20)")
    listing.add_argument("--json", action="store_true", help="machine-readable output")

    approve = actions.add_parser("approve", help="approve (or --deny) a step that waits for a person")
    approve.add_argument("run_id", metavar="RUN")
    approve.add_argument("step", metavar="STEP")
    approve.add_argument("--deny", action="store_true", help="deny instead: the step fails with approval_denied")
    approve.add_argument("--reason", default="", help="why (recorded with the decision)")

    types = actions.add_parser("types", help="the step types and what they run")
    types.add_argument("--json", action="store_true", help="machine-readable output")


def _run(args: argparse.Namespace) -> int:
    from aikit_components.errors import AikitError

    if args.mission_action == "types":
        return _types(args)
    try:
        inputs = _inputs(getattr(args, "input", []) or [])
    except ValueError as exc:
        return error(str(exc), 2)
    from aikit_components.components import Components

    try:
        with Components.open(session_name=f"aikit mission {args.mission_action}") as components:
            if args.mission_action == "validate":
                return _validate(args, components, inputs)
            if args.mission_action == "run":
                return _run_mission(args, components, inputs)
            if args.mission_action == "resume":
                return _resume(args, components)
            if args.mission_action == "approve":
                return _approve(args, components)
            return _list(args, components)
    except AikitError as exc:
        return error(f"{exc.code}: {exc.message}")


def _inputs(items: list[str]) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--input expects NAME=VALUE, got {item!r}")
        try:
            inputs[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            inputs[key.strip()] = raw
    return inputs


def _approve(args: argparse.Namespace, components: Any) -> int:
    from aikit_components.control.step_approval import decide_step

    decision = "denied" if args.deny else "approved"
    stored = decide_step(components, args.run_id, args.step, decision, args.reason)
    print(f"{decision} step {args.step} of run {args.run_id} (by {stored['who']}); the waiting run goes on")
    return 0


# ---------------------------------------------------------------------------------------------- validate
def _check(file: str, components: Any, inputs: dict[str, Any]) -> tuple[Any, list[str]]:
    from aikit_components.workflows.missions import parse_mission, validate_mission

    mission = parse_mission(file, registry=components.tools)
    servers = {t.split(".", 1)[0] for t in mission.step_types.values() if isinstance(t, str)}
    servers &= set(components.mcp.configured()) if components.mcp_configured() else set()
    if servers:  # steps name tools of MCP servers in aikit.toml: connect them (on first use) and look again
        asyncio.run(components.mcp.connect_each(sorted(servers)))
        mission = parse_mission(file, registry=components.tools)
    return mission, validate_mission(mission, components=components, inputs=inputs)


def _print_problems(file: str, problems: list[str]) -> None:
    print(f"{file}: {len(problems)} problem{'s' if len(problems) != 1 else ''}:", file=sys.stderr)
    for problem in problems:
        print(f"  - {problem}", file=sys.stderr)


def _layers(mission: Any) -> list[list[str]]:
    from aikit_components.workflows import engine

    return engine.layers(mission.workflow)


def _step_label(mission: Any, sid: str) -> str:
    step_type = mission.step_types.get(sid)
    step = next((s for s in mission.workflow.steps if s.id == sid), None)
    target = step.target if step is not None and isinstance(step.target, str) else None
    if step_type and target and target != step_type:
        return f"{sid} [{step_type} -> {target}]"
    return f"{sid} [{step_type or (step.kind if step else '?')}]"


def _print_layers(mission: Any, layers: list[list[str]]) -> None:
    steps = sum(len(layer) for layer in layers)
    print(f"{mission.workflow.name}: {steps} step{'s' if steps != 1 else ''} in {len(layers)} "
          f"layer{'s' if len(layers) != 1 else ''}")
    for number, layer in enumerate(layers, 1):
        print(f"{number:>3}. " + ", ".join(_step_label(mission, sid) for sid in layer))


def _validate(args: argparse.Namespace, components: Any, inputs: dict[str, Any]) -> int:
    mission, problems = _check(args.file, components, inputs)
    if args.json:
        layers = _layers(mission) if not problems else []
        print(json.dumps({"ok": not problems, "problems": problems, "layers": layers}, indent=2))
        return 1 if problems else 0
    if problems:
        _print_problems(args.file, problems)
        return 1
    steps = len(mission.workflow.steps)
    if args.dry_run:
        _print_layers(mission, _layers(mission))
    else:
        print(f"{args.file}: ok ({steps} step{'s' if steps != 1 else ''})")
    return 0


# ---------------------------------------------------------------------------------------------- run
def _run_mission(args: argparse.Namespace, components: Any, inputs: dict[str, Any]) -> int:
    mission, problems = _check(args.file, components, inputs)
    if problems:
        _print_problems(args.file, problems)
        return 1
    if args.dry_run:
        _print_layers(mission, _layers(mission))
        print("dry run: nothing was run")
        return 0
    _on_ray(mission, args.ray)
    return _execute(mission, components, inputs=inputs, run_id=args.run_id, resume=None, out=args.out)


def _resume(args: argparse.Namespace, components: Any) -> int:
    from aikit_components.workflows import engine

    previous = engine.load_run(components, args.run_id)
    if previous is None:
        return error(f"no run {args.run_id!r} in {components.data_dir} (`aikit mission list` shows recent runs)")
    file = args.file or previous.source
    if not file:
        return error(f"run {args.run_id!r} was not started from a mission file; give it with --file")
    if previous.status == "succeeded":
        print(f"run {args.run_id} already succeeded; nothing to resume")
        return 0
    mission, problems = _check(file, components, dict(previous.inputs))
    if problems:
        _print_problems(file, problems)
        return 1
    if args.approve or args.deny:  # decided before anything runs: a name that matches nothing runs nothing
        from aikit_components.control.approvals import who_answers
        from aikit_components.control.workflow_decisions import decide_workflow_calls

        decide_workflow_calls(components, args.run_id, args.approve or None, args.deny or None, args.reason,
                              who_answers())
    done = [sid for sid, rec in previous.steps.items() if rec.status == "succeeded"]
    _on_ray(mission, args.ray)
    print(f"resuming run {args.run_id} ({len(done)} step{'s' if len(done) != 1 else ''} already succeeded)")
    return _execute(mission, components, inputs=dict(previous.inputs), run_id=args.run_id, resume=args.run_id,
                    out=args.out, already=set(done), approve_in_doubt=args.approve_in_doubt)


def _on_ray(mission: Any, address: str | None) -> None:
    """``--ray ADDRESS``: connect now (an address that does not answer is an error before
    anything runs) and place the mission's steps there."""
    if not address:
        return
    from aikit_components.distributed.cluster import connect

    connect(address)
    mission.workflow.executor = "ray"


def _execute(mission: Any, components: Any, *, inputs: dict[str, Any], run_id: str | None, resume: str | None,
             out: str | None, already: set[str] | None = None, approve_in_doubt: bool = False) -> int:
    from aikit_components.interrupts import run_interruptible
    from aikit_components.workflows import engine

    workflow = mission.workflow
    run_id = run_id or uuid.uuid4().hex[:16]
    display = _Display(workflow, already or set())

    def on_event(kind: str, step_id: str | None, rec: Any) -> None:
        if kind == "run.started":  # so `aikit mission list` shows the run even after a crash
            _write_record(components, mission, rec, out)
        display.on_event(kind, step_id, rec)

    display.start()
    try:
        record = run_interruptible(engine.run(workflow, components=components, inputs=inputs, run_id=run_id,
                                              resume=resume, on_event=on_event, approve_in_doubt=approve_in_doubt))
    except KeyboardInterrupt:
        display.stop()
        stored = engine.load_run(components, run_id)  # the engine recorded the cancellation
        if stored is not None:
            _write_record(components, mission, stored, out)
        print(f"interrupted; resume with: aikit mission resume {run_id}", file=sys.stderr)
        raise
    finally:
        display.stop()
    path = _write_record(components, mission, record, out)
    _result_table(workflow, record)
    status = record.status
    duration = f" in {_seconds(record.duration_s)}" if record.duration_s is not None else ""
    print(f"mission {workflow.name!r} {status}{duration} (run {record.run_id})")
    if record.error and status != "succeeded":
        print(f"error: {_error_text(record.error)}")
    if path is not None:
        print(f"run record: {path}")
    if status != "succeeded":
        print(f"resume with: aikit mission resume {record.run_id}")
        return 1
    return 0


def _write_record(components: Any, mission: Any, record: Any, out: str | None) -> Path | None:
    """Write the run record as JSON (with the mission's name, version and step types)."""
    workflow = mission.workflow
    path = Path(out) if out else components.data_dir / "runs" / f"{record.run_id}.json"
    data = record.to_dict()
    data["mission"] = {"name": workflow.name, "version": workflow.version, "source": workflow.source,
                       "step_types": dict(mission.step_types)}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    except OSError as exc:
        error(f"cannot write the run record to {path}: {exc}")
        return None
    return path


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _error_text(err: Any) -> str:
    if isinstance(err, dict):
        code, message = err.get("code"), err.get("message")
        text = f"{code}: {message}" if code and message else str(message or code or err)
    else:
        text = str(err)
    return " ".join(text.split())


class _Display:
    """Live progress: a rich progress bar and a status line per finished step on a terminal,
    plain lines otherwise."""

    def __init__(self, workflow: Any, already: set[str]) -> None:
        self.workflow = workflow
        self.total = len(workflow.steps)
        self.done: set[str] = set(already)
        self.running: set[str] = set()
        self.tty = sys.stdout.isatty()
        self.progress: Any = None
        self.task: Any = None
        self.started = time.monotonic()

    def start(self) -> None:
        steps = f"{self.total} step{'s' if self.total != 1 else ''}"
        if self.tty:
            try:
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    Progress,
                    SpinnerColumn,
                    TextColumn,
                    TimeElapsedColumn,
                )
            except ImportError:
                self.tty = False
            else:
                self.progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                                         MofNCompleteColumn(), TimeElapsedColumn(), transient=False)
                self.progress.start()
                self.progress.console.print(f"[bold]{self.workflow.name}[/] ({steps})")
                self.task = self.progress.add_task(self.workflow.name, total=self.total, completed=len(self.done))
                return
        print(f"mission {self.workflow.name!r} ({steps})", flush=True)

    def stop(self) -> None:
        if self.progress is not None:
            self._describe()
            self.progress.stop()
            self.progress = None

    def on_event(self, kind: str, step_id: str | None, record: Any) -> None:
        try:
            self._on_event(kind, step_id, record)
        except Exception:  # a display problem must never break the run
            pass

    def _on_event(self, kind: str, step_id: str | None, record: Any) -> None:
        if step_id is None:
            return
        status = getattr(record, "status", None)
        if status is None and isinstance(record, dict):
            status = record.get("status")
        if status == "running" or (status not in FINAL and str(kind).endswith(("start", "started", "running"))):
            if step_id not in self.running:
                self.running.add(step_id)
                self._describe()
            return
        if status not in FINAL:
            if str(kind).endswith(("retry", "retrying")) and self.progress is None:
                print(f"  {step_id}: retrying", flush=True)
            return
        self.running.discard(step_id)
        if step_id in self.done:
            return
        self.done.add(step_id)
        duration = getattr(record, "duration_s", None)
        err = getattr(record, "error", None)
        attempts = getattr(record, "attempts", 0) or 0
        extra = f", {attempts} attempts" if attempts > 1 else ""
        tail = f"  {_error_text(err)}" if err and status != "succeeded" else ""
        if self.progress is not None:
            style = STATUS_STYLE.get(status, "")
            self.progress.console.print(f"[{style}]{STATUS_MARK.get(status, '?')}[/] {step_id} "
                                        f"[{style}]{status}[/] [dim]{_seconds(duration)}{extra}[/]"
                                        + (f" [red]{_escape(tail)}[/]" if tail else ""))
            self.progress.update(self.task, completed=len(self.done))
            self._describe()
        else:
            print(f"[{len(self.done)}/{self.total}] {step_id}: {status} ({_seconds(duration) or '-'}{extra}){tail}",
                  flush=True)

    def _describe(self) -> None:
        if self.progress is None:
            return
        running = ", ".join(sorted(self.running))
        text = f"running {running}" if running else self.workflow.name
        self.progress.update(self.task, description=_escape(text[:60]))


def _escape(text: str) -> str:
    try:
        from rich.markup import escape
    except ImportError:
        return text
    return escape(text)


def _result_table(workflow: Any, record: Any) -> None:
    rows = []
    for step in workflow.steps:
        rec = record.steps.get(step.id)
        status = rec.status if rec else "pending"
        attempts = str(rec.attempts) if rec else "0"
        duration = _seconds(rec.duration_s) if rec and rec.duration_s is not None else "-"
        err = _error_text(rec.error) if rec and rec.error else ""
        rows.append((step.id, status, attempts, duration, err))
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(r[i]) for r in rows + [("step", "status", "attempts", "duration", "")]) for i in range(4)]
        print("  ".join(h.ljust(w) for h, w in zip(("step", "status", "attempts", "duration"), widths)) + "  error")
        for row in rows:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[4])
        return
    table = Table(title=f"{workflow.name}: {record.status}", title_justify="left")
    table.add_column("step", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("attempts", justify="right")
    table.add_column("duration", justify="right", no_wrap=True)
    table.add_column("error", overflow="fold")
    for sid, status, attempts, duration, err in rows:
        style = STATUS_STYLE.get(status, "")
        table.add_row(sid, f"[{style}]{status}[/]" if style else status, attempts, duration, _escape(err))
    if sys.stdout.isatty():
        Console().print(table)
        return
    import io  # not a terminal: plain lines without the padding rich puts after the title and cells

    buffer = io.StringIO()
    Console(file=buffer, width=max(100, _columns()), no_color=True).print(table)
    sys.stdout.write("".join(line.rstrip() + "\n" for line in buffer.getvalue().splitlines()))


def _columns() -> int:
    import shutil

    return shutil.get_terminal_size((100, 24)).columns


# ---------------------------------------------------------------------------------------------- list / types
def _list(args: argparse.Namespace, components: Any) -> int:
    from aikit_components.workflows import engine

    folder = components.data_dir / "runs"
    files = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True) if folder.is_dir() else []
    runs = []
    for file in files[: max(args.limit, 0)]:
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        run_id = data.get("run_id", file.stem)
        live = engine.load_run(components, run_id)  # a resumed run's newest state
        if live is not None:
            fresh = live.to_dict()
            steps = {**(data.get("steps") or {}), **(fresh.get("steps") or {})}  # State leaves pending steps out
            data = {**data, **{k: fresh.get(k) for k in ("status", "started_at", "ended_at", "duration_s")}, "steps": steps}
        steps = data.get("steps") or {}
        runs.append({"run_id": run_id, "workflow": data.get("workflow"), "status": data.get("status"),
                     "started_at": data.get("started_at"), "duration_s": data.get("duration_s"),
                     "steps": len(steps), "succeeded": sum(1 for s in steps.values() if s.get("status") == "succeeded"),
                     "source": data.get("source"), "record": str(file)})
    if args.json:
        print(json.dumps(runs, indent=2))
        return 0
    if not runs:
        print(f"no runs recorded in {folder}")
        return 0
    for run in runs:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run["started_at"])) if run["started_at"] else "-"
        print(f"{run['run_id']}  {when}  {run['status'] or '?':<10} {run['succeeded']}/{run['steps']} steps  "
              f"{_seconds(run['duration_s']) or '-':>8}  {run['workflow']}")
    return 0


def _types(args: argparse.Namespace) -> int:
    from aikit_components.workflows.missions import step_type_table

    rows = step_type_table()
    if args.json:
        print(json.dumps([{"step_type": name, "runs": what} for name, what in rows], indent=2))
        return 0
    width = max(len(name) for name, _ in rows)
    for name, what in rows:
        print(f"{name:<{width}}  {what}")
    return 0
