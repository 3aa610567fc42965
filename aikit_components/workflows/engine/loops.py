"""A step's work: one call of its executor, or its loop's iterations (``over``, ``range``,
``while_``) one after another."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ...codec import lua_type_name
from ...errors import InvalidArgument
from ..templates import TemplateContext
from ..validation import StepNode, range_items
from .conditions import ConditionEvaluator
from .executors import StepCall, StepExecutors


def _is_break(output: Any) -> bool:
    return isinstance(output, Mapping) and output.get("break") is True


class StepWork:
    """Does one attempt's work of a step: calls its executor once, or once per loop iteration
    (the output is then the list of iteration outputs)."""

    def __init__(self, templates: TemplateContext, conditions: ConditionEvaluator, executors: StepExecutors) -> None:
        self._templates = templates
        self._conditions = conditions
        self._executors = executors

    async def __call__(self, node: StepNode, params: Any, attempt: int) -> Any:
        """The output of ``node`` given its resolved ``params`` (a looping step's are still
        templates, resolved per iteration)."""
        step = node.step
        loop = step.loop
        if loop is None:
            return await self._executors.run(StepCall(node, params, None, attempt))
        sid = step.id
        outputs: list[Any] = []
        previous: Any = None
        if loop.while_ is not None:
            index = 0
            while index < loop.max_iterations:
                frame = {"item": None, "index": index, "previous": previous}
                if not await self._conditions.check(loop.while_, node.while_ref, node.while_value, sid, frame):
                    break
                previous = await self._iteration(node, frame, attempt)
                outputs.append(previous)
                index += 1
                if _is_break(previous):
                    break
            return outputs
        if loop.range is not None:
            items: Any = range_items(loop.range)
        elif node.over is not None:
            items = node.over.resolve(self._templates, sid)
        else:
            items = loop.over
        if isinstance(items, Mapping):
            items = [{"key": k, "value": v} for k, v in items.items()]
        if not isinstance(items, (list, tuple, range)):
            raise InvalidArgument(f"step {sid!r}: loop.over must give a list, got {lua_type_name(items)}",
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

    async def _iteration(self, node: StepNode, frame: dict[str, Any], attempt: int) -> Any:
        ctx = dataclasses.replace(self._templates, loop=frame)
        params = node.params.resolve(ctx, node.step.id)  # type: ignore[union-attr]
        return await self._executors.run(StepCall(node, params, frame, attempt))
