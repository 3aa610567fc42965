"""A person's approval inside workflows and missions: the ``approval`` step kind, and steps
declared with ``approval = true``.

When a person can be asked here (a notebook with stdin, a terminal) the question is asked at once.
Otherwise the step waits for a decision stored with the run, from any process (``aikit mission
approve RUN STEP``, ``Workflow.approve(run_id, step)``): the wait is a coroutine polling State, so
it holds no thread and (for the ``approval`` kind) no slot of the run's concurrency limit; it
survives a restart (a resumed run waits again and finds a decision given meanwhile). After
``timeout_s`` the step's ``default`` decision stands (``"deny"`` unless said otherwise).

An approved ``approval`` step succeeds with ``{decision, who, reason}``; a denied one fails with
``approval_denied`` (its dependents do not run). A step with ``approval = true`` runs once approved
and fails with ``approval_denied`` when denied.

The run's State scope (``workflow:<run_id>``) holds ``approval_wait:<step>`` (the question, while
the step waits) and ``approval:<step>`` (the decision).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ..errors import AikitError, InvalidArgument
from .approvals import Answer, ApprovalDenied, ApprovalRequest, decided_payload, now_iso, who_answers

POLL_INTERVAL_S = 0.2
DEFAULTS = {"deny": "denied", "denied": "denied", "approve": "approved", "approved": "approved"}


def _scope(run_id: str) -> str:
    return f"workflow:{run_id}"


def step_request(run_id: str, workflow: str, step_id: str, message: str, params: Any = None) -> ApprovalRequest:
    why = message or f"step {step_id!r} of workflow {workflow!r} waits for a person's approval"
    return ApprovalRequest("workflow.step", step_id, params if params is not None else {}, why, run_id)


def check_params(params: Any) -> list[str]:
    """Problems with an ``approval`` step's params ``{message, timeout_s, default}``."""
    if not isinstance(params, dict):
        return ["params must be a table {message, timeout_s, default}"]
    problems = []
    unknown = sorted(set(params) - {"message", "timeout_s", "default"})
    if unknown:
        problems.append(f"unknown approval parameter(s) {', '.join(unknown)} (known: message, timeout_s, default)")
    timeout = params.get("timeout_s")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
        problems.append("params.timeout_s must be a number of seconds > 0")
    default = params.get("default", "deny")
    if default not in DEFAULTS:
        problems.append(f"params.default must be \"approve\" or \"deny\", got {default!r}")
    return problems


async def wait_for_decision(components: Any, request: ApprovalRequest, timeout_s: float | None = None,
                            default: str = "deny") -> Answer:
    """Ask a person if one is here, else wait for a stored decision (see the module docstring)."""
    approvals = getattr(components, "approvals", None)
    if approvals is not None:
        given = await approvals.ask_person(request)
        if given is not None:
            return given
    backend = components.state.backend
    scope, step = _scope(str(request.run_id)), request.name
    found, stored = backend.get(scope, f"approval:{step}")
    if found and isinstance(stored, dict):  # decided while the run was down
        backend.delete(scope, f"approval_wait:{step}")
        return Answer(stored.get("decision", "denied"), stored.get("reason", ""), stored.get("who", ""))
    backend.set(scope, f"approval_wait:{step}", {**request.to_dict(), "at": now_iso(), "timeout_s": timeout_s,
                                                 "default": DEFAULTS.get(default, "denied")})
    if approvals is not None:
        approvals.requested(request)
    deadline = None if timeout_s is None else time.monotonic() + float(timeout_s)
    try:
        while True:
            found, stored = backend.get(scope, f"approval:{step}")
            if found and isinstance(stored, dict):
                return Answer(stored.get("decision", "denied"), stored.get("reason", ""), stored.get("who", ""))
            if deadline is not None and time.monotonic() >= deadline:
                answer = Answer(DEFAULTS.get(default, "denied"), f"no decision within {timeout_s:g} s: the default "
                                f"({default}) stands", "timeout")
                backend.set(scope, f"approval:{step}", {"decision": answer.decision, "reason": answer.reason,
                                                        "who": answer.who, "at": now_iso()})
                if approvals is not None:
                    approvals.decided(request, answer)
                return answer
            await asyncio.sleep(POLL_INTERVAL_S)
    finally:
        backend.delete(scope, f"approval_wait:{step}")


def decide_step(components: Any, run_id: Any, step: Any, decision: str, reason: str = "", who: str = "") -> dict[str, Any]:
    """Store a decision for step ``step`` of run ``run_id``, which must be waiting for one (an
    error naming the steps that wait otherwise); published as ``approval.decided``."""
    if not isinstance(run_id, str) or not run_id or not isinstance(step, str) or not step:
        raise InvalidArgument("a step decision needs the run id and the step id (strings)")
    if decision not in ("approved", "denied"):
        raise InvalidArgument(f"decision must be approved or denied, got {decision!r}")
    backend = components.state.backend
    scope = _scope(run_id)
    found, waiting = backend.get(scope, f"approval_wait:{step}")
    if not found or not isinstance(waiting, dict):
        waits = [k.removeprefix("approval_wait:") for k in backend.keys(scope, "approval_wait:")]
        known_run = backend.get(scope, "run")[0] or bool(waits)
        if not known_run:
            raise AikitError(f"no workflow run {run_id!r} (`aikit mission list` shows the runs)", code="not_found",
                             details={"run_id": run_id})
        hint = f"; waiting: {', '.join(waits)}" if waits else "; no step of it waits for a decision"
        raise AikitError(f"step {step!r} of run {run_id!r} is not waiting for a decision{hint}", code="not_pending",
                         details={"run_id": run_id, "step": step, "waiting": waits})
    stored = {"decision": decision, "reason": reason, "who": who or who_answers(), "at": now_iso()}
    backend.set(scope, f"approval:{step}", stored)
    request = ApprovalRequest("workflow.step", step, waiting.get("args"), str(waiting.get("why", "")), run_id)
    events = getattr(components, "events", None)
    if events is not None:
        events.publish("approval.decided", decided_payload(request, Answer(decision, reason, stored["who"])),
                       source="approvals")
    return stored


def waiting_steps(components: Any, run_id: str) -> list[dict[str, Any]]:
    """The questions of the steps of run ``run_id`` that wait for a decision."""
    backend = components.state.backend
    scope = _scope(run_id)
    out = []
    for key in backend.keys(scope, "approval_wait:"):
        found, value = backend.get(scope, key)
        if found and isinstance(value, dict):
            out.append(value)
    return out


class ApprovalExecutor:
    """The ``approval`` step kind (see the module docstring)."""

    def __init__(self, components: Any, workflow: str, run_id: str) -> None:
        self._components = components
        self._workflow = workflow
        self._run_id = run_id

    async def __call__(self, call: Any) -> Any:
        params = call.params if isinstance(call.params, dict) else {}
        step_id = call.node.step.id
        request = step_request(self._run_id, self._workflow, step_id, str(params.get("message") or ""), params)
        answer = await wait_for_decision(self._components, request, params.get("timeout_s"),
                                         str(params.get("default", "deny")))
        if answer.decision == "denied":
            raise ApprovalDenied(f"step {step_id!r} was denied by {answer.who or 'a person'}"
                                 + (f": {answer.reason}" if answer.reason else ""),
                                 details={"decision": answer.decision, "who": answer.who, "reason": answer.reason})
        return {"decision": answer.decision, "who": answer.who, "reason": answer.reason}
