"""``aikit approvals list|approve|deny``: decide, from a terminal, the calls that paused agent runs
and workflow (mission) runs (``status = "needs_approval"``) and continue the agent runs.

- ``list [--json]``: the paused runs and each pending call (id, tool, arguments, why).
- ``approve RUN [CALL ...] [--reason R]`` / ``deny RUN [CALL ...] [--reason R]``: decide the named
  calls (call ids, tool names; none: every pending call). The decisions are stored with the run and
  published as ``approval.decided``; then the run continues here when every call is decided and
  this process has all its tools (built-in and plugin tools), else it waits for
  ``Agent.resume(RUN)`` where its Lua tools are defined. ``--no-resume`` only stores. A workflow
  run's decisions are stored; ``aikit mission resume RUN`` or ``wf:resume(RUN)`` continues it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from aikit_kernel.cli.common import Subparsers, add_actions, add_command, error


def register(subparsers: Subparsers) -> None:
    """Add the ``approvals`` subcommand (list, approve, deny) to *subparsers*."""
    parser = add_command(subparsers, "approvals", "decide the calls paused agent runs wait for",
                         description="List the agent runs waiting for a person's approval, approve or "
                                     "deny their pending calls, and continue them.", handler=_run)
    actions = add_actions(parser, "approvals_action")
    listing = actions.add_parser("list", help="paused runs and their pending calls")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    for name, what in (("approve", "approve"), ("deny", "deny")):
        action = actions.add_parser(name, help=f"{what} pending calls of a run and continue it")
        action.add_argument("run_id", metavar="RUN")
        action.add_argument("calls", nargs="*", metavar="CALL", help="call ids or tool names (default: every one)")
        action.add_argument("--reason", default="", help="why (recorded with the decision)")
        action.add_argument("--no-resume", action="store_true", help="store the decisions; do not continue the run")


def _run(args: argparse.Namespace) -> int:
    from aikit_components.components import Components
    from aikit_components.errors import AikitError

    try:
        with Components.open(session_name=f"aikit approvals {args.approvals_action}") as components:
            if args.approvals_action == "list":
                return _list(components, args.json)
            return asyncio.run(_decide(components, args))
    except AikitError as exc:
        return error(exc.message)


def _list(components: Any, as_json: bool) -> int:
    from aikit_components.control.resume import runs_needing
    from aikit_components.control.workflow_decisions import waiting_runs

    runs = runs_needing(components)
    workflows = waiting_runs(components.state.backend)
    if as_json:
        print(json.dumps([{"run_id": r["run_id"], "agent": r.get("agent"), "pending": r.get("pending") or []}
                          for r in runs] + [{"run_id": r["run_id"], "workflow": r.get("workflow"),
                                             "pending": r.get("pending") or []} for r in workflows],
                         indent=2, default=str))
        return 0
    if not runs and not workflows:
        print("no run is waiting for approval")
    for record in runs + workflows:
        where = (f"workflow {record.get('workflow')!r}" if "workflow" in record
                 else f"agent {record.get('agent')!r}  step {record.get('step')}")
        print(f"{record['run_id']}  {where}")
        for call in record.get("pending") or []:
            doubt = ("  (in doubt, denied)" if call.get("denied") else "  (in doubt)") if call.get("in_doubt") else ""
            args = json.dumps(call.get("args"), ensure_ascii=False, default=str)
            print(f"  {call.get('call_id')}  {call.get('name')} {args[:200]}{doubt}\n      why: {call.get('why')}")
    return 0


async def _decide(components: Any, args: argparse.Namespace) -> int:
    from aikit_components.agents import AgentSpec
    from aikit_components.control.approvals import who_answers
    from aikit_components.control.resume import decide, resume_agent_run, undecided
    from aikit_components.control.runs import AgentRunStore
    from aikit_components.control.workflow_decisions import decide_workflow_calls, waiting_runs

    names = args.calls or ["*"]
    chosen = {"approve": names} if args.approvals_action == "approve" else {"deny": names}
    who = who_answers()
    word = "approved" if args.approvals_action == "approve" else "denied"
    if any(r["run_id"] == args.run_id for r in waiting_runs(components.state.backend)):  # a workflow run
        decide_workflow_calls(components, args.run_id, reason=args.reason, who=who, **chosen)
        print(f"{word} {', '.join(names)} in workflow run {args.run_id}; continue it with "
              f"`aikit mission resume {args.run_id}` or wf:resume({args.run_id!r})")
        return 0
    store = AgentRunStore(components.state)
    record = store.load_resumable(args.run_id)
    decisions = decide(store, record, reason=args.reason, who=who, events=components.events, **chosen)
    print(f"{word} {', '.join(names)} in run {record['run_id']}")
    waiting = undecided(record, decisions)
    tools = (record.get("spec") or {}).get("tools") or []
    missing = [t for t in tools if t not in components.tools]
    if args.no_resume or waiting or missing:
        why = ("--no-resume" if args.no_resume else f"{len(waiting)} call(s) still wait" if waiting
               else f"its tools {', '.join(missing)} are defined in Lua")
        print(f"the run waits ({why}); continue it with Agent.resume({record['run_id']!r}) "
              f"or `aikit approvals approve {record['run_id']}`")
        return 0
    try:
        result = await resume_agent_run(components, record["run_id"],
                                        lambda fields: components.new_agent(AgentSpec(**fields)), who=who)
    finally:
        await components.models.aclose()
    print(f"run {result.run_id}: {result.status}")
    if result.text:
        print(result.text)
    for call in result.pending:
        print(f"  waits: {call.get('call_id')} {call.get('name')}: {call.get('why')}")
    return 0
