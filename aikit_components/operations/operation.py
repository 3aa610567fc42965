"""What one operation is (:class:`Operation`), what an interceptor may decide about it
(:class:`Decision`), and what differs between kinds of operation (:class:`OperationKind`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import AikitError

# The three decision stages and the actions each may honour at most (a kind may honour fewer).
STAGES = ("before", "after", "error")
ACTIONS = ("continue", "cancel", "retry", "replace")

# How many times one operation honours a retry before its last outcome stands: the same bound for
# every kind, so an interceptor (a hook) that always says "retry" cannot loop forever.
MAX_RETRIES = 3


@dataclass(slots=True)
class Operation:
    """One operation on its way through the pipeline.

    ``payload`` is what the hooks see at the before-point and what the handler reads: a hook's
    modification replaces it. ``context`` is the caller's context (a tool call's
    :class:`~aikit_components.tools.base.ToolContext`, say); ``meta`` is scratch space that
    interceptors share with each other and with the handler (a span, a journal entry)."""

    kind: OperationKind
    name: str
    payload: dict[str, Any]
    context: Any = None
    attempt: int = 1
    meta: dict[str, Any] = field(default_factory=dict)
    started: float = 0.0  # perf_counter() when the current attempt started

    def describe(self) -> str:
        """How messages name this operation (``tool 'hash'``)."""
        return self.kind.describe(self)


@dataclass(frozen=True, slots=True)
class Decision:
    """What an interceptor decides at a stage. Build with the class methods; ``None`` (or
    :data:`CONTINUE`) lets the operation go on."""

    action: str = "continue"
    value: Any = None
    reason: str = ""
    delay: float = 0.0

    @classmethod
    def cancel(cls, reason: str) -> Decision:
        return cls("cancel", reason=reason)

    @classmethod
    def retry(cls, delay: float = 0.0, reason: str = "") -> Decision:
        return cls("retry", delay=delay, reason=reason)

    @classmethod
    def replace(cls, value: Any) -> Decision:
        return cls("replace", value=value)


CONTINUE = Decision()


def _default_describe(op: Operation) -> str:
    return f"{op.kind.name} {op.name!r}"


def _default_after_payload(op: Operation, result: Any) -> dict[str, Any]:
    return {**op.payload, "result": result, "attempt": op.attempt}


def _default_error_payload(op: Operation, error: AikitError) -> dict[str, Any]:
    return {**op.payload, "error": error.to_dict(), "attempt": op.attempt}


def _identity(op: Operation, value: Any) -> Any:
    return value


def _name_fields(op: Operation) -> dict[str, Any]:
    return {"name": op.name}


def _error_fields(op: Operation, error: AikitError) -> dict[str, Any]:
    return {"code": error.code, "message": error.message}


@dataclass(frozen=True, eq=False)  # kinds are compared (and hashed) by identity
class OperationKind:
    """What differs between kinds of operation; everything else the pipeline does the same way.

    - ``hook_prefix``: the hook points are ``<prefix>.before``, ``.after`` and ``.error``
      (``None``: no hook points).
    - ``honours``: per stage, the hook decisions the points honour (docs/lua-api.md's Hook
      table); a decision not listed is ignored there.
    - ``topics``: the events published when an attempt starts, finishes and fails
      (``None`` for one the kind does not publish); ``event_fields`` are the identifying fields of
      every one of them (a new dict on each call: the events interceptor adds to it).
    - ``finished_fields``: what the finished-topic adds about the result (``duration_ms`` is
      always there); None: nothing.
    - ``failed_fields``: what the failed-topic says about the error (its ``code`` and
      ``message`` unless the kind says otherwise).
    - ``after_on_error``: the after-point fires after a failure too (with the error payload),
      as ``cell.after`` does.
    - ``after_payload`` / ``error_payload``: the hook payloads of the after- and error-points.
    - ``replaced``: a hook's replacement value turned into the operation's result.
    - ``modified``: called after the before-hooks let the operation go on, with the payload
      they were given (the same object when they edited it in place); it may check the new
      payload and raise, or update ``op`` from it.
    - ``happened``: whether a finished attempt did something to report (a delete of a key that
      was not there did not): otherwise the after-point and the finished-topic are skipped.
      None: every finished attempt did.
    - ``converts_errors``: a handler's exception that is not an AikitError reaches the caller
      as the AikitError it maps to (True) or unchanged (False).
    - ``subscribes_while_running``: the operation may subscribe to its own events while it runs
      (a cell can): its events are published to whoever subscribed by then. For other kinds the
      events interceptor joins only when someone subscribes to the kind's topics before the
      operation starts (nobody listening costs nothing).
    - ``defers_before``: the before-stage runs inside the handler, which calls
      :meth:`Pipeline.run_before` once the payload is known (``State.update`` computes the value
      inside its atomic section).
    """

    name: str
    hook_prefix: str | None = None
    honours: Mapping[str, frozenset[str]] = field(default_factory=dict)
    topics: tuple[str | None, str | None, str | None] = (None, None, None)
    source: str = ""
    describe: Callable[[Operation], str] = _default_describe
    event_fields: Callable[[Operation], dict[str, Any]] = _name_fields
    finished_fields: Callable[[Operation, Any], dict[str, Any]] | None = None
    failed_fields: Callable[[Operation, AikitError], dict[str, Any]] = _error_fields
    after_payload: Callable[[Operation, Any], dict[str, Any]] = _default_after_payload
    error_payload: Callable[[Operation, AikitError], dict[str, Any]] = _default_error_payload
    replaced: Callable[[Operation, Any], Any] = _identity
    modified: Callable[[Operation, dict[str, Any]], None] | None = None
    happened: Callable[[Operation, Any], bool] | None = None
    defers_before: bool = False
    subscribes_while_running: bool = False
    after_on_error: bool = False
    converts_errors: bool = True
    #: The before-, after- and error-point names (from ``hook_prefix``), or None.
    points: tuple[str, str, str] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        p = self.hook_prefix
        object.__setattr__(self, "points", None if p is None else (f"{p}.before", f"{p}.after", f"{p}.error"))

    def honoured(self, stage: str, action: str) -> bool:
        return action in self.honours.get(stage, ())


def honours(before: str = "", after: str = "", error: str = "") -> dict[str, frozenset[str]]:
    """``honours(before="cancel replace", after="retry replace")``: the Hook table's last column."""
    return {"before": frozenset(before.split()), "after": frozenset(after.split()), "error": frozenset(error.split())}
