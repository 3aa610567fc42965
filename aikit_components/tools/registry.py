"""The tool registry and the one call pipeline every tool call goes through:

lookup -> validate (every problem in one error) -> budget -> hook ``tool.before`` (cancel /
modify / replace) -> event ``tool.called`` -> run -> hook ``tool.after`` (replace / retry) ->
event ``tool.finished``; on failure hook ``tool.error`` (retry / replace) and event ``tool.failed``.

A call of an existing tool rejected before it runs (invalid arguments, a used-up budget) is a
failure too: hook ``tool.error`` (replace; a retry would fail the same way, so it is ignored) and
event ``tool.failed`` with the error's code. An unknown tool name is only ``not_found``: there is
no tool whose failure to report.
"""

from __future__ import annotations

import asyncio
import difflib
import importlib
import logging
import time
from collections.abc import Iterable
from importlib.metadata import entry_points
from typing import Any

from ..errors import AikitError, Cancelled, NotFound, ValidationError, error_from_exception
from ..hooks import MAX_HOOK_RETRIES
from .base import Tool, ToolContext

log = logging.getLogger(__name__)

BUILTIN_MODULES = ("filesystem", "data", "text", "web", "system", "database", "git", "archives")
ENTRY_POINT_GROUP = "aikit.tools"


class ToolRegistry:
    """Named tools by category; see the module docstring for the call pipeline."""

    def __init__(self, events: Any = None, hooks: Any = None) -> None:
        self._tools: dict[str, Tool] = {}
        self.events = events
        self.hooks = hooks
        self.plugin_errors: list[str] = []

    # ------------------------------------------------------------------ registration
    def register(self, item: Tool, *, replace: bool = False) -> Tool:
        if not isinstance(item, Tool):
            raise TypeError(f"expected a Tool (use the @tool decorator), got {type(item).__name__}")
        if item.name in self._tools and not replace:
            raise ValueError(f"a tool named {item.name!r} already exists (pass replace=True to redefine it)")
        self._tools[item.name] = item
        return item

    def register_all(self, items: Iterable[Tool], *, replace: bool = False) -> None:
        for item in items:
            self.register(item, replace=replace)

    def unregister(self, name: str) -> bool:
        return self._tools.pop(name, None) is not None

    def load_builtins(self) -> ToolRegistry:
        """Register every built-in tool (modules ``aikit_components.tools.<category>``)."""
        for module_name in BUILTIN_MODULES:
            try:
                module = importlib.import_module(f"{__package__}.{module_name}")
            except ImportError as exc:  # a missing third-party library must not hide every other tool
                if getattr(exc, "name", None) == f"{__package__}.{module_name}":
                    continue
                message = f"built-in tools {module_name!r} unavailable: {exc}"
                self.plugin_errors.append(message)
                log.warning(message)
                continue
            self.register_all(getattr(module, "TOOLS", []), replace=True)
        return self

    def load_plugins(self) -> list[str]:
        """Register tools from the ``aikit.tools`` entry-point group; returns the loaded names.

        An entry point may name a Tool, a list of Tools, or a module with a ``TOOLS`` list. A plugin
        that fails to load is reported in ``plugin_errors`` and skipped.
        """
        loaded: list[str] = []
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                target = ep.load()
                items = getattr(target, "TOOLS", target)
                items = [items] if isinstance(items, Tool) else list(items)
                for item in items:
                    item.source = f"plugin:{ep.dist.name if ep.dist else ep.name}"
                    self.register(item, replace=True)
                    loaded.append(item.name)
            except Exception as exc:
                message = f"plugin {ep.name!r} ({ep.value}) failed to load: {type(exc).__name__}: {exc}"
                self.plugin_errors.append(message)
                log.warning(message)
        return loaded

    # ------------------------------------------------------------------ lookup
    def get(self, name: str) -> Tool:
        found = self._tools.get(name)
        if found is None:
            close = difflib.get_close_matches(str(name), list(self._tools), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else "; Tool.list() shows what exists"
            raise NotFound(f"no tool named {name!r}{hint}", details={"name": name, "suggestions": close})
        return found

    def __contains__(self, name: str) -> bool:
        return name in self._tools

    def list(self, category: str | None = None) -> list[Tool]:
        tools = sorted(self._tools.values(), key=lambda t: (t.category, t.name))
        return [t for t in tools if category is None or t.category == category]

    def categories(self) -> list[str]:
        return sorted({t.category for t in self._tools.values()})

    # ------------------------------------------------------------------ calling
    def prepare(self, name: str, args: Any, ctx: ToolContext) -> tuple[Tool, dict[str, Any]]:
        """Lookup, validation and budget: everything before hooks."""
        item = self.get(name)
        return item, self._checked_args(item, args, ctx)

    def _checked_args(self, item: Tool, args: Any, ctx: ToolContext) -> dict[str, Any]:
        """Validation and budget for a call of ``item``: its bound arguments."""
        name = item.name
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise ValidationError(f"arguments for tool {name!r} must be a table of named parameters",
                                  [f"(arguments): expected object, got {type(args).__name__}"], details={"tool": name})
        if {} in args.values():
            args = item.coerce_empty_tables(dict(args))
        problems = item.validate(args)
        if problems:
            raise ValidationError(f"invalid arguments for tool {name!r}:", problems, details={"tool": name})
        ctx.budget.charge_tool_call(name)
        return item.bind_args(args)

    def call(self, name: str, args: Any, ctx: ToolContext) -> Any:
        """Call a tool synchronously (plain ``def`` tools and Lua-defined tools; an async tool
        needs :meth:`acall`)."""
        item = self.get(name)
        hooks, events = self.hooks, self.events
        try:
            bound = self._checked_args(item, args, ctx)
        except AikitError as exc:
            outcome = (hooks.run("tool.error", {"name": name, "args": args, "error": exc.to_dict()})
                       if hooks and hooks.has("tool.error") else None)
            return self._rejected(item, exc, outcome)
        if item.is_async:
            raise AikitError(f"tool {name!r} is async: call it with acall() on the I/O loop", code="internal_error")
        if hooks is None and events is None:  # the fast path: nothing observes this call
            return self._invoke_sync(item, bound, ctx)
        for attempt in range(MAX_HOOK_RETRIES + 1):
            before = hooks.run("tool.before", {"name": name, "args": bound}) if hooks and hooks.has("tool.before") else None
            action, value = self._before(item, bound, ctx, before)
            if action == "replace":
                return value
            bound = value
            started = time.perf_counter()
            try:
                result = self._invoke_sync(item, bound, ctx)
            except Exception as exc:
                error = error_from_exception(exc)
                outcome = (hooks.run("tool.error", {"name": name, "args": bound, "error": error.to_dict()})
                           if hooks and hooks.has("tool.error") else None)
                decision = self._after_error(item, error, outcome, started, attempt)
                if decision == "retry":
                    time.sleep(outcome.delay if outcome else 0)  # type: ignore[union-attr]
                    continue
                if decision == "replace":
                    return outcome.value  # type: ignore[union-attr]
                raise error from exc
            outcome = (hooks.run("tool.after", {"name": name, "args": bound, "result": result})
                       if hooks and hooks.has("tool.after") else None)
            decision = self._after(item, outcome, started, attempt)
            if decision == "retry":
                time.sleep(outcome.delay if outcome else 0)  # type: ignore[union-attr]
                continue
            return outcome.value if decision == "replace" else result  # type: ignore[union-attr]
        raise AssertionError("unreachable")

    async def acall(self, name: str, args: Any, ctx: ToolContext) -> Any:
        """Call any tool from async code (async tools run here, on the calling loop)."""
        item = self.get(name)
        hooks = self.hooks
        try:
            bound = self._checked_args(item, args, ctx)
        except AikitError as exc:
            outcome = await hooks.arun("tool.error", {"name": name, "args": args, "error": exc.to_dict()}) if hooks else None
            return self._rejected(item, exc, outcome)
        for attempt in range(MAX_HOOK_RETRIES + 1):
            outcome = await hooks.arun("tool.before", {"name": name, "args": bound}) if hooks else None
            action, value = self._before(item, bound, ctx, outcome)
            if action == "replace":
                return value
            bound = value
            started = time.perf_counter()
            try:
                if item.async_fn is not None:
                    result = await item.async_fn(**bound)
                elif item.is_async:
                    result = await self._within_budget(item, bound, ctx)
                else:
                    result = self._invoke_sync(item, bound, ctx)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = error_from_exception(exc)
                payload = {"name": name, "args": bound, "error": error.to_dict()}
                outcome = await hooks.arun("tool.error", payload) if hooks else None
                decision = self._after_error(item, error, outcome, started, attempt)
                if decision == "retry":
                    if outcome and outcome.delay:
                        await asyncio.sleep(outcome.delay)
                    continue
                if decision == "replace":
                    return outcome.value  # type: ignore[union-attr]
                raise error from exc
            outcome = await hooks.arun("tool.after", {"name": name, "args": bound, "result": result}) if hooks else None
            decision = self._after(item, outcome, started, attempt)
            if decision == "retry":
                if outcome and outcome.delay:
                    await asyncio.sleep(outcome.delay)
                continue
            return outcome.value if decision == "replace" else result  # type: ignore[union-attr]
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ pipeline pieces
    async def _within_budget(self, item: Tool, bound: dict[str, Any], ctx: ToolContext) -> Any:
        """Await an async Python tool, cut off when the run's wall-time budget runs out (the
        budget is a deadline for the run, not only a check before each call)."""
        call = item.fn(ctx, **bound) if item.wants_ctx else item.fn(**bound)
        remaining = ctx.budget.remaining_time()
        if remaining is None:
            return await call
        deadline = asyncio.timeout(remaining)
        try:
            async with deadline:
                return await call
        except TimeoutError:
            if deadline.expired():
                raise ctx.budget.wall_time_exceeded(f"while {item.name!r} was running") from None
            raise

    def _invoke_sync(self, item: Tool, bound: dict[str, Any], ctx: ToolContext) -> Any:
        return item.fn(ctx, **bound) if item.wants_ctx else item.fn(**bound)

    def _before(self, item: Tool, bound: dict[str, Any], ctx: ToolContext, outcome: Any) -> tuple[str, Any]:
        """("replace", result) when a hook supplied the result, else ("run", arguments)."""
        if outcome is not None:
            if outcome.cancelled:
                self._publish("tool.failed", {"name": item.name, "code": "cancelled", "message": outcome.reason})
                raise Cancelled(f"tool {item.name!r} cancelled by a hook: {outcome.reason}", details={"tool": item.name})
            if outcome.replaced:
                return "replace", outcome.value
            if outcome.payload.get("args") is not bound:
                new_args = outcome.payload.get("args")
                problems = item.validate(new_args) if isinstance(new_args, dict) else ["(arguments): expected object"]
                if problems:
                    error = ValidationError(f"a tool.before hook gave {item.name!r} invalid arguments:", problems)
                    self._publish("tool.failed", {"name": item.name, "code": error.code, "message": error.message})
                    raise error
                bound = item.bind_args(new_args)
        self._publish("tool.called", {"name": item.name, "caller": ctx.caller})
        return "run", bound

    def _after(self, item: Tool, outcome: Any, started: float, attempt: int) -> str:
        if outcome is not None and outcome.retry and attempt < MAX_HOOK_RETRIES:
            return "retry"
        self._publish("tool.finished", {"name": item.name, "duration_ms": (time.perf_counter() - started) * 1000})
        if outcome is not None and outcome.replaced:
            return "replace"
        return "done"

    def _after_error(self, item: Tool, error: AikitError, outcome: Any, started: float, attempt: int) -> str:
        self._publish("tool.failed", {"name": item.name, "code": error.code, "message": error.message})
        if outcome is not None and outcome.retry and attempt < MAX_HOOK_RETRIES:
            return "retry"
        if outcome is not None and outcome.replaced:
            return "replace"
        return "raise"

    def _rejected(self, item: Tool, error: AikitError, outcome: Any) -> Any:
        """Report a call rejected before it ran; return a hook's replacement or raise ``error``."""
        self._publish("tool.failed", {"name": item.name, "code": error.code, "message": error.message})
        if outcome is not None and outcome.replaced:
            return outcome.value
        raise error

    def _publish(self, topic: str, payload: dict[str, Any]) -> None:
        if self.events is not None:
            self.events.publish(topic, payload, source="tools")

