"""Conditions: a step's ``when`` and a loop's ``while_``."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

from ...errors import InvalidArgument
from ..model import Condition
from ..templates import Template, TemplateContext
from ..validation import CONDITION_OPS
from .context import StepContexts


def _compare(op: str, left: Any, right: Any) -> bool:
    try:
        if op == "truthy":
            return bool(left)
        if op == "falsy":
            return not left
        if op == "eq":
            return left == right
        if op == "ne":
            return left != right
        if op == "lt":
            return left < right
        if op == "le":
            return left <= right
        if op == "gt":
            return left > right
        if op == "ge":
            return left >= right
        if op == "in":
            return right is not None and left in right
        if op == "contains":
            return left is not None and right in left
    except TypeError as exc:
        raise InvalidArgument(f"condition {op}: cannot compare {left!r} with {right!r} ({exc})") from None
    raise InvalidArgument(f"unknown condition op {op!r}; ops: {', '.join(CONDITION_OPS)}")


class ConditionEvaluator:
    """Checks a step's ``when`` and a loop's ``while_``: a predicate function, or a declarative
    ``{ref, op, value}`` against the run's template context."""

    def __init__(self, templates: TemplateContext, contexts: StepContexts) -> None:
        self._templates = templates
        self._contexts = contexts

    async def check(self, cond: Condition, ref: Template | None, value: Template | None, sid: str,
                    frame: dict[str, Any] | None) -> bool:
        """Whether ``cond`` holds for step ``sid`` (in loop frame ``frame``)."""
        if cond.fn is not None:
            result = cond.fn(self._contexts(sid, 0, frame))
            if inspect.isawaitable(result):
                result = await result
            return bool(result)
        return self.check_declarative(cond, ref, value, sid, frame)

    def check_declarative(self, cond: Condition, ref: Template | None, value: Template | None, sid: str,
                          frame: dict[str, Any] | None) -> bool:
        """Whether a condition without a predicate function holds (no await needed)."""
        ctx = self._templates if frame is None else dataclasses.replace(self._templates, loop=frame)
        left = ref.resolve(ctx, sid) if ref is not None else None
        right = value.resolve(ctx, sid) if value is not None else cond.value
        return _compare(cond.op, left, right)
