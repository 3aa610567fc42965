"""What goes into the audit ledger (:mod:`.audit`), and when: the entry of each audited
operation's outcome (:class:`AuditInterceptor`, order ``AUDIT`` in the pipeline), the audited
event topics (:func:`watch_events`), session starts and configuration changes
(:func:`record_session_start`)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Coroutine
from typing import Any

from ..errors import AikitError
from ..operations.interceptor import AUDIT, Interceptor
from ..operations.operation import Operation, OperationKind
from .audit import AuditLedger, canonical, digest, json_string

#: Operation kinds the interceptor records (State writes and cells are not: State is durable
#: itself, and a cell is the user typing).
AUDITED_KINDS = frozenset({"tool", "process", "http", "agent", "llm", "workflow.step"})
_PATH_ARGS = ("path", "dest", "destination", "target", "src", "source")
_TEXT_OR_NONE = (str, type(None))  # the callers a tool call's entry is written directly for


def _status(error: AikitError | None) -> str:
    if error is None:
        return "ok"
    if error.code == "permission_denied":
        return "denied"
    if error.code in ("cancelled", "interrupted"):
        return "cancelled"
    return "error"


def _operation_entry(op: Operation, result: Any, error: AikitError | None) -> tuple[str, dict[str, Any]]:
    """The type and data of the entry for ``op``'s outcome."""
    kind = op.kind.name
    data: dict[str, Any] = {"name": op.name, "status": _status(error)}
    caller = getattr(op.context, "caller", None)
    if caller:
        data["caller"] = caller
    if kind == "tool":
        args = op.payload.get("args")
        data["args_digest"] = digest(args)
        tool = op.meta.get("tool")
        if getattr(tool, "security", None) == "write" and isinstance(args, dict):
            paths = [str(args[k]) for k in _PATH_ARGS if isinstance(args.get(k), str)]
            if paths:
                data["paths"] = paths
            type_ = "file.delete" if "delete" in op.name or "remove" in op.name else "file.write"
        else:
            type_ = "tool"
    elif kind == "process":
        type_ = "process"
        data["argv"] = list(op.payload.get("argv") or [])
        if error is None:
            data["exit_code"] = getattr(result, "exit_code", None)
    elif kind == "http":
        type_ = "http"
        method, _, host = op.name.partition(" ")
        data.update(method=method, host=host)
        if error is None:
            data["http_status"] = getattr(result, "status_code", None)
    else:
        type_ = kind
    if error is not None:
        data["code"] = error.code
        data["message"] = error.message[:500]
        if error.code == "permission_denied":
            type_ = "permission.denied"
            data["operation"] = kind
        elif error.code == "budget_exceeded":
            type_ = "budget.exceeded"
            data["operation"] = kind
            data["details"] = {k: v for k, v in (error.details or {}).items() if k in ("budget", "limit", "used", "rule")}
    return type_, data


class AuditInterceptor(Interceptor):
    """Records each audited operation's outcome (see :data:`AUDITED_KINDS`) in ``ledger``, before
    the caller gets it: ``finished`` and ``failed`` run before the result or error is returned."""

    order = AUDIT
    name = "audit"
    decides = False

    def __init__(self, ledger: AuditLedger, kinds: frozenset[str] = AUDITED_KINDS) -> None:
        self.ledger = ledger
        self.kinds = kinds

    def wants_kind(self, kind: OperationKind) -> bool:
        return kind.name in self.kinds

    def wants(self, op: Operation) -> bool:
        return op.kind.name in self.kinds

    def finished(self, op: Operation, result: Any) -> None:
        if op.kind.name == "tool":  # the entry every tool call makes: _entry's, with less work
            # (_tool_call_text's and _no_outside_effect_of_its_own's tests, the tool's level read once)
            security = getattr(op.meta.get("tool"), "security", None)
            caller = getattr(op.context, "caller", None)
            if security != "write" and isinstance(caller, _TEXT_OR_NONE):
                self.ledger.record_canonical("tool", _tool_text(op.name, caller, op.payload.get("args")),
                                             fsync=security != "safe")
                return
        self.ledger.record_canonical(*_entry(op, result, None), fsync=not _no_outside_effect_of_its_own(op))

    def failed(self, op: Operation, error: AikitError) -> None:
        self.ledger.record_canonical(*_entry(op, None, error), fsync=not _no_outside_effect_of_its_own(op))

    # Async callers (the I/O loop) await the entry's recording, which waits for the commit of an
    # fsynced entry without blocking the loop; entries of concurrent operations share one commit
    # (see AuditLedger.arecord_canonical). The entry is made when these are called; they return
    # the recording itself to await, not a coroutine of their own around it (one per operation).
    def afinished(self, op: Operation, result: Any) -> Coroutine[Any, Any, None]:
        return self._arecord(op, *_entry(op, result, None))

    def afailed(self, op: Operation, error: AikitError) -> Coroutine[Any, Any, None]:
        return self._arecord(op, *_entry(op, None, error))

    def _arecord(self, op: Operation, type_: str, data_text: str) -> Coroutine[Any, Any, None]:
        return self.ledger.arecord_canonical(type_, data_text, fsync=not _no_outside_effect_of_its_own(op))


def _entry(op: Operation, result: Any, error: AikitError | None) -> tuple[str, str]:
    """The type and canonical data text of the entry for ``op``'s outcome."""
    if error is None and op.kind.name == "tool":
        text = _tool_call_text(op)
        if text is not None:
            return "tool", text
    type_, data = _operation_entry(op, result, error)
    return type_, canonical(data)


def _tool_call_text(op: Operation) -> str | None:
    """The canonical data text of a successful call of a tool that writes no files (the entry
    every trivial tool call makes), written directly: the same text as ``canonical`` of
    :func:`_operation_entry`'s data (keys in sorted order), for a third of the cost. None for a
    call that needs the general entry."""
    caller = getattr(op.context, "caller", None)
    if getattr(op.meta.get("tool"), "security", None) == "write" or not isinstance(caller, _TEXT_OR_NONE):
        return None
    return _tool_text(op.name, caller, op.payload.get("args"))


#: ``(tool name, caller) -> (text before, text after)`` the arguments' digest in a tool call's
#: entry (see _tool_text). Bounded: emptied when full (callers such as ``agent:<name>`` vary).
_AROUND_DIGEST: dict[tuple[str, str | None], tuple[str, str]] = {}
_AROUND_DIGEST_MAX = 4096


def _tool_text(name: str, caller: str | None, args: Any) -> str:
    """The canonical data text of a successful call of tool ``name`` (not a ``write`` tool) by
    ``caller``: ``{"args_digest":..., "caller":..., "name":..., "status":"ok"}`` (keys sorted;
    no ``caller`` when it is empty). What surrounds the digest is formatted once per tool and
    caller; the digest is :func:`digest`'s."""
    around = _AROUND_DIGEST.get((name, caller))
    if around is None:
        if len(_AROUND_DIGEST) >= _AROUND_DIGEST_MAX:
            _AROUND_DIGEST.clear()
        caller_text = f'"caller":{json_string(caller)},' if caller else ""
        around = _AROUND_DIGEST[name, caller] = ('{"args_digest":"sha256:',
                                                  f'",{caller_text}"name":{json_string(name)},"status":"ok"}}')
    return around[0] + hashlib.sha256(canonical(args).encode()).hexdigest()[:32] + around[1]


#: Kinds whose effects outside the process are the operations they run, each recorded on its own.
_EFFECTS_RECORDED_BELOW = frozenset({"workflow.step", "agent", "llm"})


def _no_outside_effect_of_its_own(op: Operation) -> bool:
    """An operation that changes nothing outside the process by itself: a call of a ``safe`` tool
    (a pure computation), a workflow step or an agent run (what they do outside, they do through
    tool calls, model calls, programs and requests, each recorded, and fsynced, on its own), or a
    model call (a remote model is asked through an HTTP request, whose own entry is fsynced; an
    in-process model changes nothing outside). Its entry goes to the tail file (see
    :meth:`AuditLedger.record`)."""
    kind = op.kind.name
    if kind == "tool":
        return getattr(op.meta.get("tool"), "security", None) == "safe"
    return kind in _EFFECTS_RECORDED_BELOW


#: Event topics recorded as they are published (approvals and denials, budget stops published by
#: agents and workflows, the kill switch).
AUDITED_TOPICS = ("approval.requested", "approval.decided", "budget.exceeded", "aikit.stop", "aikit.stopped")


def watch_events(ledger: AuditLedger, events: Any) -> list[Any]:
    """Record the audited topics of ``events`` in ``ledger`` as they are published: in the
    publishing thread, before any subscriber sees the event, and an entry that cannot be written
    fails the publish (an approval whose decision cannot be recorded is not acted on). Returns
    the subscriptions that route those topics (the bus shows its taps only routed events)."""
    topics = frozenset(AUDITED_TOPICS)

    def record(event: Any) -> None:
        if event.topic not in topics or ledger.closed:  # closed: the process is shutting down
            return
        payload = event.payload if isinstance(event.payload, dict) else {"value": event.payload}
        ledger.record(event.topic, {**payload, "source": event.source} if event.source else dict(payload))

    events.tap(record)
    return [events.subscribe(topic, _routed) for topic in AUDITED_TOPICS]


def _routed(event: Any) -> None:
    """Keeps an audited topic routed (recording happens in the tap, see watch_events)."""


def config_digests(config: Any) -> dict[str, str]:
    """A digest per configuration section (values themselves are not recorded: they may be secret)."""
    data = config.to_dict() if hasattr(config, "to_dict") else dict(config or {})
    return {str(section): digest(value) for section, value in sorted(data.items())}


def record_session_start(ledger: AuditLedger, session_id: str, config: Any, **fields: Any) -> None:
    """Record a session start, and a configuration change when the configuration's digests differ
    from the ones the previous session start recorded."""
    digests = config_digests(config)
    last = ledger.newest("session.start")
    previous = last.data.get("config") if last is not None else None
    if previous is not None and previous != digests:
        changed = sorted(k for k in set(previous) | set(digests) if previous.get(k) != digests.get(k))
        ledger.record("config.changed", {"sections": changed}, session=session_id)
    ledger.record("session.start", {"session": session_id, "pid": os.getpid(), "config": digests, **fields},
                  session=session_id)
