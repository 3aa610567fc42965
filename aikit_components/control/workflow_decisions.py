"""Per-call decisions for a workflow (or mission) run that waits: its in-doubt calls, and the calls
of its steps that needed a person's approval when nobody could be asked.

A run whose only failures are steps that wait for such a decision ends with ``status =
"needs_approval"``; its waiting calls (``pending``: each with ``call_id``, its journal key
``step@attempt#n`` for an in-doubt call, the step's id otherwise; ``step``; ``name``; ``args``;
``why``; ``in_doubt``) are kept in State (scope ``workflow:~waiting``, key: the run id) so that
``aikit approvals list`` shows them; so are the in-doubt calls a denial kept from running (the run
failed: their steps fail with ``approval_denied``), which a later approval may still let run.
Decisions name calls as for agent runs (call id, approval key, tool name, step id or ``"*"``;
see :func:`~.resume.apply_decisions`) and are stored with the run (``workflow:<run_id>``, key
``decisions``): ``wf:resume(run_id, {approve = {...}, deny = {...}})``, ``aikit mission resume
RUN --approve CALL --deny CALL`` and ``aikit approvals approve|deny RUN`` store them; the
resumed run applies them (:func:`stored_decisions`), one call at a time: an approved in-doubt
call runs again, a denied one does not (its step fails with ``approval_denied``), a call still
undecided holds its step again.
"""

from __future__ import annotations

import time
from typing import Any

from ..errors import NotFound
from .resume import apply_decisions

WAITING_SCOPE = "workflow:~waiting"
DECISIONS_KEY = "decisions"


def _scope(run_id: str) -> str:
    return f"workflow:{run_id}"


def pending_calls(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The calls the steps of run ``record`` (a ``RunRecord.to_dict()``) wait a decision for, and
    the in-doubt calls a decision kept from running (``denied``: still decidable, a later
    approval runs them)."""
    pending = []
    for sid, step in (record.get("steps") or {}).items():
        error = step.get("error") if isinstance(step, dict) else None
        if not isinstance(error, dict) or error.get("code") not in ("needs_approval", "approval_denied"):
            continue
        request = (error.get("details") or {}).get("request")
        if not isinstance(request, dict) or not request.get("key"):
            continue
        if error["code"] == "approval_denied" and not request.get("in_doubt"):
            continue  # a person refused it as it was asked: that step failed, as decided
        pending.append({**request, "step": sid, "call_id": request.get("call_id") or sid,
                        "message": error.get("message", ""), "denied": error["code"] == "approval_denied"})
    return pending


def note_run(backend: Any, record: dict[str, Any]) -> None:
    """Keep the waiting entry of the run that just ended while it has calls to decide (it is
    ``needs_approval``, or failed because an in-doubt call was denied); drop it otherwise."""
    run_id = str(record.get("run_id"))
    pending = pending_calls(record)
    if pending:
        backend.set(WAITING_SCOPE, run_id, {"run_id": run_id, "workflow": record.get("workflow"),
                                            "source": record.get("source"), "status": record.get("status"),
                                            "pending": pending, "updated_at": time.time()})
    else:
        backend.delete(WAITING_SCOPE, run_id)


def waiting_runs(backend: Any) -> list[dict[str, Any]]:
    """The workflow runs with calls to decide (oldest first)."""
    runs = []
    for run_id in backend.keys(WAITING_SCOPE):
        found, value = backend.get(WAITING_SCOPE, run_id)
        if found and isinstance(value, dict):
            runs.append(value)
    return sorted(runs, key=lambda r: r.get("updated_at", 0))


def stored_decisions(backend: Any, run_id: str) -> dict[str, tuple[str, ...]]:
    """The decisions stored for run ``run_id`` (approval key -> (decision, reason, who))."""
    found, value = backend.get(_scope(run_id), DECISIONS_KEY)
    if not found or not isinstance(value, dict):
        return {}
    return {str(k): tuple(v) for k, v in value.items() if isinstance(v, (list, tuple)) and v}


def decide_workflow_calls(components: Any, run_id: Any, approve: Any = None, deny: Any = None, reason: str = "",
                          who: str = "") -> dict[str, tuple[str, ...]]:
    """Decide calls workflow run ``run_id`` waits for (an error naming what waits when a name
    matches none of them, or when the run waits for nothing); store the decisions with the run."""
    backend = components.state.backend
    rid = str(run_id)
    found, waiting = backend.get(WAITING_SCOPE, rid)
    if not found or not isinstance(waiting, dict):
        if not backend.get(_scope(rid), "run")[0]:
            raise NotFound(f"no workflow run {rid!r} (`aikit mission list` shows the runs)", details={"run_id": rid})
        pending: list[dict[str, Any]] = []
    else:
        pending = [p for p in waiting.get("pending") or [] if isinstance(p, dict)]
    decisions, changed = apply_decisions("workflow run", rid, pending, stored_decisions(backend, rid), approve, deny,
                                         reason, who, getattr(components, "events", None))
    if changed:
        backend.set(_scope(rid), DECISIONS_KEY, {k: list(v) for k, v in decisions.items()})
    return decisions
