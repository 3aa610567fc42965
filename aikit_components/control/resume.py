"""Deciding a paused agent run's pending calls and resuming it, in any process: what
``Agent.resume(run_id, {approve = {...}, deny = {...}})`` and ``aikit approvals approve|deny`` do.

A decision names pending calls by the call's id (``call_...``; a workflow's: its journal key
``step@attempt#n``), its approval key, its tool name (every pending call of that tool), its
workflow step (every pending call of that step) or ``"*"`` (all). A name that matches no pending call is an
error listing the pending ones: nothing is decided then. Decisions are stored with the run (so a
run resumed later, or resumed again after a crash, keeps them) and each one is published as
``approval.decided``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ..codec import lua_type_name
from ..errors import AikitError, InvalidArgument, NotFound
from .approvals import Answer, ApprovalRequest, decided_payload
from .runs import AgentRunStore


def _matches(item: str, call: dict[str, Any]) -> bool:
    return item in ("*", call.get("call_id"), call.get("key"), call.get("name"), call.get("step"))


def _names(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) and v for v in value):
        return list(value)
    raise InvalidArgument(f"{what} must be a list of call ids, tool names or \"*\" (a string for one), "
                          f"got {lua_type_name(value, article=True)}")


def apply_decisions(what: str, run_id: str, pending: list[dict[str, Any]], stored: dict[str, Any] | None,
                    approve: Any = None, deny: Any = None, reason: str = "", who: str = "",
                    events: Any = None) -> tuple[dict[str, tuple[str, ...]], bool]:
    """Match ``approve`` and ``deny`` (call ids, approval keys, tool names, step ids, ``"*"``)
    against ``pending``, the calls run ``run_id`` (``what``: "agent run", "workflow run") waits
    for; return every decision of the run (``stored`` ones overridden by the new ones: approval
    key -> (decision, reason, who)) and whether any was made. A name that matches no pending call
    is an error listing them, and then nothing is decided. Each decision is published as
    ``approval.decided``."""
    approve_names, deny_names = _names(approve, "approve"), _names(deny, "deny")
    if (approve_names or deny_names) and not pending:
        raise AikitError(f"{what} {run_id!r} has no call waiting for a decision; nothing to approve or deny",
                         code="not_pending", details={"run_id": run_id})
    chosen: dict[str, tuple[str, dict[str, Any]]] = {}
    for decision, names in (("approved", approve_names), ("denied", deny_names)):
        for item in names:
            hits = [p for p in pending if _matches(item, p)]
            if not hits:
                shown = "; ".join(f"{p.get('call_id')} ({p.get('name')})" for p in pending)
                raise AikitError(f"{item!r} is not a call pending in run {run_id!r}; pending: {shown}",
                                 code="not_pending", details={"run_id": run_id, "call": item,
                                                              "pending": [p.get("call_id") for p in pending]})
            for p in hits:
                if p["key"] in chosen and chosen[p["key"]][0] != decision:
                    raise InvalidArgument(f"call {p.get('call_id')} ({p.get('name')}) is both approved and denied")
                chosen[p["key"]] = (decision, p)
    decisions = {k: tuple(v) for k, v in (stored or {}).items()}
    for key, (decision, call) in chosen.items():
        decisions[key] = (decision, reason, who)
        if events is not None:
            request = ApprovalRequest(call.get("kind", "tool"), call.get("name", ""), call.get("args"),
                                      call.get("why", ""), run_id, bool(call.get("in_doubt")))
            events.publish("approval.decided", decided_payload(request, Answer(decision, reason, who)),
                           source="approvals")
    return decisions, bool(chosen)


def decide(store: AgentRunStore, record: dict[str, Any], approve: Any = None, deny: Any = None, reason: str = "",
           who: str = "", events: Any = None) -> dict[str, tuple[str, ...]]:
    """Apply decisions to agent run ``record``'s pending calls (see :func:`apply_decisions`);
    store them with the run; return all the run's decisions."""
    pending = [p for p in record.get("pending") or [] if isinstance(p, dict)]
    decisions, changed = apply_decisions("agent run", record["run_id"], pending, record.get("decisions"), approve,
                                         deny, reason, who, events)
    if changed:
        record["decisions"] = {k: list(v) for k, v in decisions.items()}
        store.save(record)
    return decisions


def undecided(record: dict[str, Any], decisions: dict[str, tuple[str, ...]]) -> list[dict[str, Any]]:
    """The pending calls of ``record`` that still have no decision."""
    return [p for p in record.get("pending") or [] if isinstance(p, dict) and p.get("key") not in decisions]


async def resume_agent_run(components: Any, run_id: Any, build: Callable[[dict[str, Any]], Any],
                           approve: Any = None, deny: Any = None, reason: str = "", who: str = "",
                           on_text: Any = None) -> Any:
    """Resume stored agent run ``run_id`` with these decisions; its ``AgentResult``. The agent is
    rebuilt by ``build(spec_fields)`` from the stored spec (its tools must exist in this process)."""
    store = AgentRunStore(components.state)
    record = store.load_resumable(run_id)
    journal = getattr(components, "journal", None)
    if journal is not None:  # a corrupt journal stops the resume before anything runs or is decided
        journal.entries(record["run_id"])
    decisions = decide(store, record, approve, deny, reason, who, components.events)
    waiting = undecided(record, decisions)
    if record.get("status") == "needs_approval" and waiting and len(waiting) == len(record.get("pending") or []):
        shown = "; ".join(f"{p.get('call_id')} ({p.get('name')} {p.get('args')})" for p in waiting)
        raise AikitError(f"agent run {record['run_id']!r} waits for decisions on: {shown}; pass "
                         "{approve = {...}} or {deny = {...}} (call ids, tool names or \"*\")",
                         code="needs_approval", details={"run_id": record["run_id"], "pending": waiting})
    spec_fields = dict(record.get("spec") or {})
    missing = [t for t in spec_fields.get("tools") or [] if t not in components.tools]
    if missing:
        raise NotFound(f"agent run {record['run_id']!r} uses tools this process does not have: "
                       f"{', '.join(missing)}; define them (Tool.define) before resuming",
                       details={"run_id": record["run_id"], "missing": missing})
    agent = build(spec_fields)
    return await agent.resume(record, decisions, on_text=on_text)


def runs_needing(components: Any, statuses: Iterable[str] = ("needs_approval",)) -> list[dict[str, Any]]:
    """Stored agent runs with one of ``statuses`` (oldest first)."""
    wanted = set(statuses)
    return [r for r in AgentRunStore(components.state).list() if r.get("status") in wanted]
