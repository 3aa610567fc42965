"""Conditions (``Step.when``, ``while_``) and loops (``over``, ``range``, ``while_``) inside a
step."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from typing import Any

from ...errors import InvalidArgument
from ..model import Condition
from ..templates import Template
from ..validation import CONDITION_OPS, _Node, _range_items


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


def _is_break(output: Any) -> bool:
    return isinstance(output, Mapping) and output.get("break") is True


class _Loops:
    """A step's loop iterations and the conditions checked on the way.

    A part of the run's scheduler (``runner._Runner`` mixes it in); it uses the run's state set up
    in ``_Runner.__init__``."""

    async def _work(self, node: _Node, params: Any, attempt: int) -> Any:
        step = node.step
        loop = step.loop
        if loop is None:
            return await self._dispatch(node, params, None, attempt)
        sid = step.id
        outputs: list[Any] = []
        previous: Any = None
        if loop.while_ is not None:
            index = 0
            while index < loop.max_iterations:
                frame = {"item": None, "index": index, "previous": previous}
                if not await self._condition(loop.while_, node.while_ref, node.while_value, sid, frame):
                    break
                previous = await self._iteration(node, frame, attempt)
                outputs.append(previous)
                index += 1
                if _is_break(previous):
                    break
            return outputs
        if loop.range is not None:
            items: Any = _range_items(loop.range)
        elif node.over is not None:
            items = node.over.resolve(self.tctx, sid)
        else:
            items = loop.over
        if isinstance(items, Mapping):
            items = [{"key": k, "value": v} for k, v in items.items()]
        if not isinstance(items, (list, tuple, range)):
            raise InvalidArgument(f"step {sid!r}: loop.over must give a list, got {type(items).__name__}",
                                  details={"step": sid})
        if len(items) > loop.max_iterations:
            raise InvalidArgument(f"step {sid!r}: loop over {len(items)} items exceeds max_iterations "
                                  f"({loop.max_iterations})", details={"step": sid})
        for index, item in enumerate(items):
            frame = {"item": item, "index": index, "previous": previous}
            previous = await self._iteration(node, frame, attempt)
            outputs.append(previous)
            if _is_break(previous):
                break
        return outputs

    async def _iteration(self, node: _Node, frame: dict[str, Any], attempt: int) -> Any:
        ctx = dataclasses.replace(self.tctx, loop=frame)
        params = node.params.resolve(ctx, node.step.id)  # type: ignore[union-attr]
        return await self._dispatch(node, params, frame, attempt)

    async def _condition(self, cond: Condition, ref: Template | None, value: Template | None, sid: str,
                         frame: dict[str, Any] | None) -> bool:
        if cond.fn is not None:
            result = cond.fn(self._context(sid, 0, frame))
            if inspect.isawaitable(result):
                result = await result
            return bool(result)
        return self._declarative(cond, ref, value, sid, frame)

    def _declarative(self, cond: Condition, ref: Template | None, value: Template | None, sid: str,
                     frame: dict[str, Any] | None) -> bool:
        ctx = self.tctx if frame is None else dataclasses.replace(self.tctx, loop=frame)
        left = ref.resolve(ctx, sid) if ref is not None else None
        right = value.resolve(ctx, sid) if value is not None else cond.value
        return _compare(cond.op, left, right)
