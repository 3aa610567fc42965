"""What the dashboard lists: recent runs from the span store (cells, scripts, agents, workflows,
missions: one trace each) and the mission run records ``aikit mission run`` writes as JSON under
``<data_dir>/runs``, merged into one list of plain dicts, errors first.

A run record that names a trace (``trace_id``) already listed is not repeated; any other record
is shown as a run of kind ``mission`` whose waterfall is built from its steps' times
(:func:`record_spans`), so it reads like a trace even when tracing was off.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aikit_components.telemetry.records import SpanRecord, TraceSummary

#: Run record statuses (workflow engine words) -> the dashboard's three.
RECORD_STATUS = {"succeeded": "ok", "failed": "error", "timed_out": "error", "cancelled": "error",
                 "upstream_failed": "error", "running": "running", "pending": "running"}
_STATUS_RANK = {"error": 0, "running": 1}


@dataclass(frozen=True, slots=True)
class RunFilter:
    """Which runs to list: ``kind`` (the root's operation kind), ``status`` ("ok", "error" or
    "running"), ``agent`` (gen_ai.agent.name anywhere in the trace), ``errors_first`` ordering."""

    limit: int = 50
    kind: str | None = None
    status: str | None = None
    agent: str | None = None
    errors_first: bool = True


def trace_run(summary: TraceSummary, now_ns: int | None = None) -> dict[str, Any]:
    """A trace summary as a dashboard run (times in Unix seconds; a running trace's duration is
    its age at ``now_ns``)."""
    running = summary.end_ns is None
    end = (time.time_ns() if now_ns is None else now_ns) if running else summary.end_ns
    # a finished run with a failed span is listed as an error even when its root recovered (a
    # cell whose tool call failed): the dashboard puts errors first
    status = "running" if running else ("error" if summary.error_count or summary.status == "error" else "ok")
    return {"id": summary.trace_id, "trace_id": summary.trace_id, "source": "trace", "name": summary.root_name,
            "kind": summary.root_kind or "other", "status": status, "started_at": summary.start_ns / 1e9,
            "duration_s": max(0, (end or summary.start_ns) - summary.start_ns) / 1e9, "running": running,
            "spans": summary.span_count, "errors": summary.error_count, "input_tokens": summary.input_tokens,
            "output_tokens": summary.output_tokens, "cost_usd": summary.cost_usd}


def read_run_records(runs_dir: Path | None, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` readable JSON run records in ``runs_dir`` (unreadable files skipped)."""
    if runs_dir is None or not runs_dir.is_dir():
        return []
    files = []
    for path in runs_dir.glob("*.json"):
        try:
            files.append((path.stat().st_mtime, path))
        except OSError:
            continue
    records = []
    for _, path in sorted(files, reverse=True)[: max(limit, 0)]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("run_id"), str):
            records.append(data)
    return records


def read_run_record(runs_dir: Path | None, run_id: str) -> dict[str, Any]:
    """The run record of ``run_id`` (``<runs_dir>/<run_id>.json`` as ``aikit mission run`` names it,
    else any record in ``runs_dir`` with that run id); KeyError when there is none."""
    if runs_dir is not None and "/" not in run_id and "\\" not in run_id and not run_id.startswith("."):
        try:
            data = json.loads((runs_dir / f"{run_id}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = None
        if isinstance(data, dict) and data.get("run_id") == run_id:
            return data
    for record in read_run_records(runs_dir, 10_000):  # a record written under another name (--out)
        if record["run_id"] == run_id:
            return record
    raise KeyError(run_id)


def record_run(record: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """A mission run record as a dashboard run."""
    steps = [s for s in (record.get("steps") or {}).values() if isinstance(s, dict)]
    status = RECORD_STATUS.get(str(record.get("status")), "ok")
    started = _number(record.get("started_at"))
    ended = _number(record.get("ended_at"))
    running = status == "running"
    duration = _number(record.get("duration_s"))
    if running and started is not None:
        duration = max(0.0, (time.time() if now is None else now) - started)
    mission = record.get("mission") if isinstance(record.get("mission"), dict) else {}
    return {"id": record["run_id"], "trace_id": record.get("trace_id") if isinstance(record.get("trace_id"), str) else None,
            "source": "record", "name": str(mission.get("name") or record.get("workflow") or record["run_id"]),
            "kind": "mission", "status": status, "started_at": started if started is not None else ended,
            "duration_s": duration, "running": running, "spans": len(steps),
            "errors": sum(1 for s in steps if RECORD_STATUS.get(str(s.get("status"))) == "error"),
            "input_tokens": 0, "output_tokens": 0, "cost_usd": None, "error": _error_text(record.get("error"))}


def merge_runs(traces: Iterable[dict[str, Any]], records: Iterable[dict[str, Any]],
               wanted: RunFilter) -> list[dict[str, Any]]:
    """Traces and records as one list: filtered, records already shown as a trace dropped, errors
    first (when ``wanted.errors_first``) then running, newest first within each group."""
    runs = list(traces)
    listed = {run["trace_id"] for run in runs}
    if wanted.agent is None:  # a run record does not say which agents ran
        runs += [r for r in records if r["trace_id"] is None or r["trace_id"] not in listed]
    runs = [r for r in runs if (wanted.kind is None or r["kind"] == wanted.kind)
            and (wanted.status is None or r["status"] == wanted.status)]
    runs.sort(key=lambda r: -(r["started_at"] or 0.0))
    if wanted.errors_first:
        runs.sort(key=lambda r: _STATUS_RANK.get(r["status"], 2))
    return runs[: wanted.limit]


def record_spans(record: dict[str, Any], now: float | None = None) -> list[SpanRecord]:
    """A mission run record as spans (the mission, then one child per step that started), so its
    steps show as a waterfall; ids derive from the run id, times from the record."""
    run_id = str(record["run_id"])
    trace_id = hashlib.sha256(run_id.encode()).hexdigest()[:32]
    root_id = hashlib.sha256(f"{run_id}/".encode()).hexdigest()[:16]
    current = time.time() if now is None else now
    steps = [s for s in (record.get("steps") or {}).values() if isinstance(s, dict) and _number(s.get("started_at"))]
    started = _number(record.get("started_at")) or min((_number(s["started_at"]) or current for s in steps), default=current)
    status = RECORD_STATUS.get(str(record.get("status")), "ok")
    mission = record.get("mission") if isinstance(record.get("mission"), dict) else {}
    name = str(mission.get("name") or record.get("workflow") or run_id)
    spans = [_span(trace_id, root_id, None, f"invoke_workflow {name}", "mission", started,
                   None if status == "running" else _number(record.get("ended_at")) or current, status,
                   _error_text(record.get("error")), {"aikit.run_id": run_id})]
    for step in steps:
        step_id = str(step.get("id"))
        step_status = RECORD_STATUS.get(str(step.get("status")), "ok")
        span_id = hashlib.sha256(f"{run_id}/{step_id}".encode()).hexdigest()[:16]
        spans.append(_span(trace_id, span_id, root_id, step_id, "workflow.step", _number(step["started_at"]) or started,
                           None if step_status == "running" else _number(step.get("ended_at")) or current, step_status,
                           _error_text(step.get("error")), {"aikit.step.attempts": int(step.get("attempts") or 0)}))
    return spans


def _span(trace_id: str, span_id: str, parent: str | None, name: str, kind: str, start: float, end: float | None,
          status: str, message: str, attributes: dict[str, Any]) -> SpanRecord:
    return SpanRecord(trace_id=trace_id, span_id=span_id, parent_span_id=parent, name=name, kind="INTERNAL",
                      start_ns=int(start * 1e9), end_ns=None if end is None else int(end * 1e9),
                      status={"error": "ERROR", "running": "UNSET"}.get(status, "OK"), status_message=message,
                      attributes={"aikit.operation.kind": kind, **attributes}, events=[])


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _error_text(error: Any) -> str:
    if not error:
        return ""
    if isinstance(error, dict):
        code, message = error.get("code"), error.get("message")
        return f"{code}: {message}" if code and message else str(message or code or "")
    return str(error)
