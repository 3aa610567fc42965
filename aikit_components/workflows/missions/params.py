"""Checking a step's mapped parameters against the target tool's JSON Schema."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .mapping import Mapped

if TYPE_CHECKING:
    from ...tools import ToolRegistry


def has_template(value: Any) -> bool:
    """Whether ``value`` (or anything inside it) holds a ``{{...}}`` template."""
    if isinstance(value, str):
        return "{{" in value
    if isinstance(value, list):
        return any(has_template(v) for v in value)
    if isinstance(value, dict):
        return any(has_template(v) for v in value.values())
    return False


_FIELD = re.compile(r"^([^\s\[\].:]+)")


def check_tool_params(mapped: Mapped, registry: ToolRegistry,
                      report: Callable[[str | None, str], None]) -> None:
    """Report (by mission parameter name) what the target tool's JSON Schema refuses in
    ``mapped``'s params; values holding templates are checked when they resolve."""
    name = mapped.schema_tool
    if name not in registry:
        close = difflib.get_close_matches(str(name), [t.name for t in registry.list()], n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; `aikit tools list` shows what exists"
        report(None, f"no tool named {name!r}{hint}")
        return
    item = registry.get(name)
    params = dict(mapped.params)
    if mapped.kind == "command" and "check" in params:  # the engine's own flag: accept non-zero exits
        check = params.pop("check")
        if not isinstance(check, bool) and not has_template(check):
            report(mapped.names.get("check", "check"), f"expected true or false, got {check!r}")
    templated = {k for k, v in params.items() if has_template(v)}
    for problem in item.validate(params):
        match = _FIELD.match(problem)
        key = match.group(1) if match else None
        if key in templated:
            continue  # known only when the step runs
        shown = mapped.names.get(key, key) if key else None
        if key and shown != key:
            problem = shown + problem[len(key):]
        if shown and problem.startswith(shown):
            report(shown, problem[len(shown):].lstrip(": ").strip() or problem)
        else:
            report(None, f"parameters: {problem}")
