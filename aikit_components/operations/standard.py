"""The interceptors every process has: events and hooks (budgets: ``control/budgets.py``)."""

from __future__ import annotations

import copy
import logging
import time
from typing import Any

from ..errors import AikitError
from ..events import EventBus
from ..hooks import HookOutcome, HookRegistry
from .interceptor import EVENTS, HOOKS, Interceptor
from .operation import Decision, Operation, OperationKind

log = logging.getLogger(__name__)


class EventInterceptor(Interceptor):
    """Publishes the kind's events: ``started`` -> its first topic (``tool.called``),
    ``finished`` -> the second (with ``duration_ms``), ``failed`` -> the third (with the error's
    ``code`` and ``message``). Each carries the kind's identifying fields."""

    order = EVENTS
    name = "events"
    decides = False

    def __init__(self, events: EventBus) -> None:
        self.events = events
        events.listeners.append(self.changed)  # a subscription changes who listens to what

    def wants_kind(self, kind: OperationKind) -> bool:
        if kind.subscribes_while_running:  # a cell may subscribe to its own events
            return kind.topics != (None, None, None)
        has = self.events.has_subscribers
        return any(topic is not None and has(topic) for topic in kind.topics)

    def wants(self, op: Operation) -> bool:
        return self.wants_kind(op.kind)

    def started(self, op: Operation) -> None:
        topic = op.kind.topics[0]
        if topic is not None and self.events.has_subscribers(topic):
            self.events.publish(topic, op.kind.event_fields(op), source=op.meta.get("source") or op.kind.source)

    def finished(self, op: Operation, result: Any) -> None:
        kind = op.kind
        topic = kind.topics[1]
        if topic is None or not self.events.has_subscribers(topic) or (
                kind.happened is not None and not kind.happened(op, result)):
            return
        payload = kind.event_fields(op)
        if kind.finished_fields is not None:
            payload.update(kind.finished_fields(op, result))
        payload["duration_ms"] = (time.perf_counter() - op.started) * 1000 if op.started else 0.0
        self.events.publish(topic, payload, source=op.meta.get("source") or kind.source)

    def failed(self, op: Operation, error: AikitError) -> None:
        topic = op.kind.topics[2]
        if topic is not None and self.events.has_subscribers(topic):
            self.events.publish(topic, {**op.kind.event_fields(op), **op.kind.failed_fields(op, error)},
                                source=op.meta.get("source") or op.kind.source)


class HookInterceptor(Interceptor):
    """Users' hooks at the kind's points (``<prefix>.before/after/error``): the payloads of
    docs/lua-api.md's Hook table, and only the decisions a point honours there."""

    order = HOOKS
    name = "hooks"

    def __init__(self, hooks: HookRegistry) -> None:
        self.hooks = hooks
        hooks.listeners.append(self.changed)  # a (un)registration changes which points have hooks

    def wants_kind(self, kind: OperationKind) -> bool:
        points = kind.points
        return points is not None and any(self.hooks.has(p) for p in points)

    def wants(self, op: Operation) -> bool:
        return self.wants_kind(op.kind)

    def for_kind(self, kind: OperationKind) -> HookInterceptor:
        """A copy that joins only the stages whose points have hooks now (the pipeline asks
        again after every (un)registration)."""
        if kind.points is None:
            return self
        before, after, error = kind.points
        has = self.hooks.has
        narrowed = copy.copy(self)
        narrowed.has_before = has(before)
        narrowed.has_after = has(after)
        narrowed.has_error = has(error) or (kind.after_on_error and has(after))
        return narrowed

    # Each stage: the point's name and payload, the hooks' outcome, the decision it means.
    def before(self, op: Operation) -> Decision | None:
        point = op.kind.points[0]  # type: ignore[index]
        if not self.hooks.has(point):
            return None
        outcome = self.hooks.run(point, op.payload)
        if outcome.action != "continue":
            return self._decision(op, "before", outcome)
        if outcome.payload is not op.payload or op.kind.modified is not None:
            self._modified(op, outcome)
        return None

    async def abefore(self, op: Operation) -> Decision | None:
        point = op.kind.points[0]  # type: ignore[index]
        if not self.hooks.has(point):
            return None
        return self._before(op, await self.hooks.arun(point, op.payload))

    def after(self, op: Operation, result: Any) -> Decision | None:
        point = op.kind.points[1]  # type: ignore[index]
        if not self.hooks.has(point) or (op.kind.happened is not None and not op.kind.happened(op, result)):
            return None
        return self._decision(op, "after", self.hooks.run(point, op.kind.after_payload(op, result)))

    async def aafter(self, op: Operation, result: Any) -> Decision | None:
        point = op.kind.points[1]  # type: ignore[index]
        if not self.hooks.has(point) or (op.kind.happened is not None and not op.kind.happened(op, result)):
            return None
        return self._decision(op, "after", await self.hooks.arun(point, op.kind.after_payload(op, result)))

    def error(self, op: Operation, error: AikitError, retryable: bool) -> Decision | None:
        _, after, point = op.kind.points  # type: ignore[misc]
        decision = None
        if self.hooks.has(point):
            decision = self._decision(op, "error", self.hooks.run(point, op.kind.error_payload(op, error)))
        if op.kind.after_on_error and self.hooks.has(after):
            self.hooks.run(after, op.kind.error_payload(op, error))  # observes only
        return decision

    async def aerror(self, op: Operation, error: AikitError, retryable: bool) -> Decision | None:
        _, after, point = op.kind.points  # type: ignore[misc]
        decision = None
        if self.hooks.has(point):
            decision = self._decision(op, "error", await self.hooks.arun(point, op.kind.error_payload(op, error)))
        if op.kind.after_on_error and self.hooks.has(after):
            await self.hooks.arun(after, op.kind.error_payload(op, error))  # observes only
        return decision

    def _before(self, op: Operation, outcome: HookOutcome) -> Decision | None:
        if outcome.action == "continue":
            self._modified(op, outcome)
            return None
        return self._decision(op, "before", outcome)

    @staticmethod
    def _modified(op: Operation, outcome: HookOutcome) -> None:
        if outcome.payload is not op.payload:  # a hook returned HookResult.modify(new_payload)
            previous, op.payload = op.payload, outcome.payload
            if op.kind.modified is not None:
                op.kind.modified(op, previous)
        elif op.kind.modified is not None:  # hooks may have edited the payload in place
            op.kind.modified(op, op.payload)

    def _decision(self, op: Operation, stage: str, outcome: HookOutcome) -> Decision | None:
        action = outcome.action
        if action == "continue":
            return None
        if not op.kind.honoured(stage, action):
            log.debug("%s: a %s hook asked to %s, which that point does not honour", op.describe(), stage, action)
            return None
        return Decision(action, value=outcome.value, reason=outcome.reason, delay=outcome.delay)


def standard_pipeline(events: EventBus | None = None, hooks: HookRegistry | None = None,
                      *more: Interceptor) -> Any:
    """A pipeline with the standard interceptors for ``events`` and ``hooks`` (either may be
    None), and ``more`` (the budgets' interceptor, ``control.budgets.BudgetInterceptor``, which
    a tool registry without a pipeline of its own adds)."""
    from .pipeline import Pipeline

    items: list[Interceptor] = list(more)
    if events is not None:
        items.append(EventInterceptor(events))
    if hooks is not None:
        items.append(HookInterceptor(hooks))
    return Pipeline(items)
