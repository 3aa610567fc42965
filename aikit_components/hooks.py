"""Hooks: named interception points around operations (tool calls, agent runs, LLM calls,
workflow steps, state writes, cell execution, errors).

A hook is ``fn(ctx) -> None | HookResult``, registered on a point with a priority (higher runs
first; equal priorities run in registration order). ``ctx`` is a :class:`HookContext` with the
point name and a mutable ``payload`` dict. A hook may:

- continue (return None or ``CONTINUE``), possibly after changing ``ctx.payload`` in place, or
  return ``HookResult.modify(new_payload)`` to replace it;
- cancel: ``HookResult.cancel("reason")`` -> the operation fails with code ``cancelled``;
- ask for a retry: ``HookResult.retry(delay=0.5)`` (meaningful on ``*.after`` and ``*.error``; an
  operation is retried at most :data:`aikit_components.operations.MAX_RETRIES` times, then its last outcome stands);
- replace the result: ``HookResult.replace(value)`` -> the operation returns ``value`` (on
  ``*.before`` the operation itself is skipped).

A hook that raises is reported (logged, and published as ``hook.failed`` when an event bus is
attached) and skipped; it never breaks the operation it observes.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .listeners import ChangeListeners

log = logging.getLogger(__name__)

# The points components fire. Custom points are allowed; these are documented.
POINTS = (
    "tool.before", "tool.after", "tool.error",
    "agent.before", "agent.after", "agent.error",
    "llm.before", "llm.after", "llm.error",
    "workflow.step.before", "workflow.step.after", "workflow.step.error",
    "state.write.before", "state.write.after", "state.write.error",
    "cell.before", "cell.after", "cell.error",
)



@dataclass
class HookResult:
    """What a hook asks for. Build with the class methods."""

    action: str = "continue"  # continue | modify | cancel | retry | replace
    payload: dict[str, Any] | None = None
    reason: str = ""
    value: Any = None
    delay: float = 0.0

    @classmethod
    def modify(cls, payload: dict[str, Any]) -> HookResult:
        return cls("modify", payload=payload)

    @classmethod
    def cancel(cls, reason: str) -> HookResult:
        return cls("cancel", reason=reason)

    @classmethod
    def retry(cls, delay: float = 0.0, reason: str = "") -> HookResult:
        return cls("retry", delay=delay, reason=reason)

    @classmethod
    def replace(cls, value: Any) -> HookResult:
        return cls("replace", value=value)


CONTINUE = HookResult()


@dataclass
class HookContext:
    """Passed to every hook of one firing."""

    point: str
    payload: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class HookOutcome:
    """The combined decision of all hooks of one firing."""

    payload: dict[str, Any]
    action: str = "continue"  # continue | cancel | retry | replace
    reason: str = ""
    value: Any = None
    delay: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def cancelled(self) -> bool:
        return self.action == "cancel"

    @property
    def replaced(self) -> bool:
        return self.action == "replace"

    @property
    def retry(self) -> bool:
        return self.action == "retry"


@dataclass(order=True)
class _Entry:
    sort_key: tuple[int, int]
    point: str = field(compare=False)
    fn: Callable[[HookContext], Any] = field(compare=False)
    name: str = field(compare=False)
    hook_id: str = field(compare=False)


class HookRegistry:
    """Registered hooks by point; thread-safe registration, ordered by priority."""

    def __init__(self, on_error: Callable[[str, str, BaseException], None] | None = None) -> None:
        self._hooks: dict[str, list[_Entry]] = {}
        self._lock = threading.Lock()
        self._order = itertools.count()
        self.on_error = on_error
        self.listeners = ChangeListeners()  # told after every (un)registration

    def register(self, point: str, fn: Callable[[HookContext], Any], *, priority: int = 0, name: str | None = None) -> str:
        """Add ``fn`` to ``point``; returns the hook's id for :meth:`unregister`."""
        if not callable(fn):
            raise TypeError("a hook must be callable")
        hook_id = f"{point}#{next(self._order)}"
        entry = _Entry((-priority, next(self._order)), point, fn, name or getattr(fn, "__name__", hook_id), hook_id)
        with self._lock:
            entries = list(self._hooks.get(point, []))
            entries.append(entry)
            entries.sort()
            self._hooks[point] = entries
        self._changed()
        return hook_id

    def unregister(self, hook_id: str) -> bool:
        with self._lock:
            for point, entries in self._hooks.items():
                kept = [e for e in entries if e.hook_id != hook_id]
                if len(kept) != len(entries):
                    self._hooks[point] = kept
                    break
            else:
                return False
        self._changed()
        return True

    def _changed(self) -> None:
        self.listeners.notify()

    def has(self, point: str) -> bool:
        return bool(self._hooks.get(point))

    def list(self, point: str | None = None) -> list[tuple[str, str]]:
        """(point, name) of registered hooks, in firing order."""
        with self._lock:
            points = [point] if point else sorted(self._hooks)
            return [(p, e.name) for p in points for e in self._hooks.get(p, [])]

    def run(self, point: str, payload: dict[str, Any], **extra: Any) -> HookOutcome:
        """Fire ``point`` synchronously (async hooks are not allowed here)."""
        outcome = HookOutcome(payload=payload)
        for entry in self._hooks.get(point, ()):
            try:
                result = entry.fn(HookContext(point, outcome.payload, extra))
                if result is None:  # the common case: a hook that only observes or edits in place
                    continue
                if inspect.isawaitable(result):
                    if asyncio.iscoroutine(result):
                        result.close()
                    raise TypeError("async hook fired from a synchronous operation; use a plain function")
            except Exception as exc:
                self._report(point, entry.name, exc, outcome)
                continue
            if self._apply(result, outcome):
                break
        return outcome

    async def arun(self, point: str, payload: dict[str, Any], **extra: Any) -> HookOutcome:
        """Fire ``point`` from async code: sync and async hooks both run."""
        outcome = HookOutcome(payload=payload)
        for entry in self._hooks.get(point, ()):
            try:
                result = entry.fn(HookContext(point, outcome.payload, extra))
                if result is None:
                    continue
                if inspect.isawaitable(result):
                    result = await result
            except Exception as exc:
                self._report(point, entry.name, exc, outcome)
                continue
            if self._apply(result, outcome):
                break
        return outcome

    def _apply(self, result: Any, outcome: HookOutcome) -> bool:
        """Fold one hook's result into the outcome; True when later hooks must not run."""
        if result is None or result is CONTINUE:
            return False
        if not isinstance(result, HookResult):
            outcome.errors.append(f"hook returned {type(result).__name__}, expected None or HookResult")
            return False
        if result.action == "modify" and result.payload is not None:
            outcome.payload = result.payload
            return False
        if result.action in ("cancel", "retry", "replace"):
            outcome.action, outcome.reason = result.action, result.reason
            outcome.value, outcome.delay = result.value, result.delay
            return True
        return False

    def _report(self, point: str, name: str, exc: BaseException, outcome: HookOutcome) -> None:
        message = f"hook {name!r} on {point} raised {type(exc).__name__}: {exc}"
        outcome.errors.append(message)
        log.warning("%s (ignored; the operation continues)", message)
        if self.on_error is not None:
            try:
                self.on_error(point, name, exc)
            except Exception:
                log.exception("hook error reporter failed")
