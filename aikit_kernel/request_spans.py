"""What a Jupyter request's span says: which requests get one, their attributes, a cell's outcome."""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from .interpreter import ExecuteOutcome

#: Shell requests that get a span of their own (is_complete_request, kernel_info... are too small
#: and too frequent to be worth one).
TRACED_REQUESTS = frozenset({"execute_request", "complete_request", "inspect_request"})
_REQUEST_KINDS = {"execute_request": "cell", "complete_request": "complete", "inspect_request": "inspect",
                  "debug_request": "debug"}


def request_attributes(msg: dict[str, Any]) -> dict[str, Any]:
    """The attributes of ``msg``'s span: the operation kind and the message's identity."""
    header = msg.get("header") or {}
    msg_type = str(header.get("msg_type", ""))
    return {"aikit.operation.kind": _REQUEST_KINDS.get(msg_type, msg_type), "jupyter.msg_type": msg_type,
            "jupyter.msg_id": str(header.get("msg_id", "")), "jupyter.session_id": str(header.get("session", ""))}


def mark_request(count: int, outcome: ExecuteOutcome) -> None:
    """The execution count and outcome of a cell on its request's span (the current one)."""
    span = trace.get_current_span()
    if not span.is_recording():
        return
    span.set_attribute("jupyter.execution_count", count)
    if outcome.error is not None:
        span.set_attribute("error.type", str(outcome.error.ename))
        span.set_status(Status(StatusCode.ERROR, str(outcome.error.evalue)[:1000]))
