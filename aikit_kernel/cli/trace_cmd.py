"""``aikit trace list|show|export``: the local span store from a terminal (docs/observability.md)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import Any

from aikit_kernel.cli.common import Subparsers, add_actions, add_command, error


def register(subparsers: Subparsers) -> None:
    """Add the ``trace`` subcommand (list, show, export) to *subparsers*."""
    parser = add_command(subparsers, "trace", "list, show and export recorded traces",
                         description="Traces recorded in the local span store (cells, scripts, agents, "
                                     "workflows).", handler=_run)
    actions = add_actions(parser, "trace_action")
    listing = actions.add_parser("list", help="recent traces, newest first")
    listing.add_argument("--last", type=int, default=20, metavar="N", help="at most N traces (default 20)")
    listing.add_argument("--agent", metavar="NAME", help="only traces where this agent ran")
    listing.add_argument("--errors", action="store_true", help="only traces with a failed span")
    listing.add_argument("--all", action="store_true",
                         help="also completion, inspection and debugger requests (left out by default)")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    show = actions.add_parser("show", help="a trace as a tree: durations, tokens, cost, errors")
    show.add_argument("id", help="trace id (or a unique prefix of 8+ hex digits)")
    export = actions.add_parser("export", help="a trace as OTLP/JSON")
    export.add_argument("id", help="trace id (or a unique prefix of 8+ hex digits)")
    export.add_argument("--format", default="otlp-json", choices=["otlp-json"], help="output format")
    export.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")


# Root kinds of the requests an editor sends as you type: not runs, so not listed by default.
_EDITOR_REQUESTS = ("complete", "inspect", "debug")


def _open_store() -> Any:
    from aikit_components.config import Config, data_dir
    from aikit_components.telemetry import TelemetrySettings, open_span_store

    settings = TelemetrySettings.from_config(Config.load(), data_dir())
    if settings.storage is None and (settings.store_path is None or not settings.store_path.exists()):
        return None
    return open_span_store(settings)


def _when(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9).strftime("%Y-%m-%d %H:%M:%S")


def _duration(start: int, end: int | None) -> str:
    if end is None:
        return "running"
    ms = (end - start) / 1e6
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.2f} s"


def _run(args: argparse.Namespace) -> int:
    from aikit_components.errors import AikitError

    try:
        store = _open_store()
    except AikitError as exc:
        return error(f"{exc.code}: {exc.message}")
    if store is None:
        if args.trace_action == "list":
            print("no traces recorded yet (tracing writes them as cells, scripts and agents run)", file=sys.stderr)
            return 0
        return error(f"trace: no trace {args.id!r}: nothing has been recorded yet")
    try:
        if args.trace_action == "list":
            return _list(store, args)
        try:
            spans = store.trace(args.id)
        except KeyError:
            return error(f"trace: no trace {args.id!r} (give the full id or a unique prefix of 8+ hex digits; "
                         f"`aikit trace list` shows recent ones)")
        if args.trace_action == "show":
            return _show(store, spans)
        from aikit_components.telemetry.otlp_json import to_otlp_json

        text = json.dumps(to_otlp_json(spans), indent=2, ensure_ascii=False)
        if args.output:
            with open(args.output, "w", encoding="utf-8") as f:
                f.write(text + "\n")
        else:
            print(text)
        return 0
    finally:
        store.close()


def _list(store: Any, args: argparse.Namespace) -> int:
    limit = max(1, args.last)
    found = store.traces(limit=limit if args.all else limit + 50, agent=args.agent, errors_only=args.errors)
    if not args.all:
        found = [s for s in found if s.root_kind not in _EDITOR_REQUESTS][:limit]
    if args.json:
        print(json.dumps([s.to_dict() for s in found], indent=2))
        return 0
    if not found:
        print("no traces match", file=sys.stderr)
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for column in ("trace", "started", "root", "kind", "status", "duration", "spans", "errors", "tokens", "cost"):
        table.add_column(column, justify="right" if column in ("spans", "errors", "tokens", "cost") else "left")
    for s in found:
        status = {"error": "[red]error[/]", "running": "[yellow]running[/]"}.get(s.status, "ok")
        table.add_row(s.trace_id[:16], _when(s.start_ns), s.root_name, s.root_kind, status,
                      _duration(s.start_ns, s.end_ns), str(s.span_count),
                      f"[red]{s.error_count}[/]" if s.error_count else "0",
                      f"{s.input_tokens}→{s.output_tokens}" if s.input_tokens or s.output_tokens else "",
                      f"${s.cost_usd:.4f}" if s.cost_usd is not None else "")
    Console(width=None if sys.stdout.isatty() else 200).print(table)
    return 0


def _show(store: Any, spans: list[Any]) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.tree import Tree

    from aikit_components.telemetry.view import describe_span, rows

    summary = store.summary(spans[0].trace_id)
    head = (f"[bold]trace {summary.trace_id}[/]  {escape(summary.root_name)}  {summary.status}  "
            f"{_duration(summary.start_ns, summary.end_ns)}  {summary.span_count} spans")
    if summary.input_tokens or summary.output_tokens:
        head += f"  tokens {summary.input_tokens}→{summary.output_tokens}"
    if summary.cost_usd is not None:
        head += f"  ${summary.cost_usd:.6f}"
    tree = Tree(head)
    nodes: dict[str, Any] = {}
    for row in rows(spans):
        span = row.span
        label = escape(describe_span(span))
        if span.status == "ERROR":
            label = f"[red]{label}[/]"
        parent = nodes.get(span.parent_span_id or "", tree)
        nodes[span.span_id] = parent.add(label)
    Console(width=None if sys.stdout.isatty() else 200).print(tree)
    return 0
