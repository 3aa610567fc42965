"""The tool registry. A call is looked up and validated (every problem in one error), then runs
as an operation of kind :data:`TOOL_CALL` through the operation pipeline
(:mod:`aikit_components.operations`): budget, hooks ``tool.before/after/error``, events
``tool.called/finished/failed``.

A call of an existing tool rejected before it runs (invalid arguments, a used-up budget) is a
failure too: hook ``tool.error`` (replace; a retry would fail the same way, so it is ignored) and
event ``tool.failed`` with the error's code. An unknown tool name is only ``not_found``: there is
no tool whose failure to report.
"""

from __future__ import annotations

import asyncio
import difflib
import fnmatch
import importlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from importlib.metadata import entry_points
from typing import Any

from ..codec import lua_type_name
from ..control.budgets import BudgetInterceptor
from ..errors import AikitError, NotFound, ValidationError
from ..operations import Operation, OperationKind, Pipeline, honours
from ..operations.standard import standard_pipeline
from .base import Tool, ToolContext

log = logging.getLogger(__name__)

BUILTIN_MODULES = ("filesystem", "data", "text", "web", "system", "database", "git", "archives")
ENTRY_POINT_GROUP = "aikit.tools"


class ToolRegistry:
    """Named tools by category; see the module docstring for the call pipeline."""

    def __init__(self, events: Any = None, hooks: Any = None, pipeline: Pipeline | None = None) -> None:
        self._tools: dict[str, Tool] = {}
        self.events = events
        self.hooks = hooks
        self.pipeline = pipeline if pipeline is not None else standard_pipeline(events, hooks, BudgetInterceptor())
        self.plugin_errors: list[str] = []
        # Asked, on the I/O loop, about a tool name or category not (yet) registered: a resolver
        # may register tools (an MCP server of the config connected on first use) and says so.
        self._resolvers: list[Callable[[str], Awaitable[bool]]] = []
        # Told ``(name, tool or None)`` after a tool is registered, replaced or removed, on the
        # thread that changed it (an MCP server announcing notifications/tools/list_changed).
        self._change_listeners: list[Callable[[str, Tool | None], None]] = []

    # ------------------------------------------------------------------ registration
    def register(self, item: Tool, *, replace: bool = False) -> Tool:
        if not isinstance(item, Tool):
            raise TypeError(f"expected a Tool (use the @tool decorator), got {type(item).__name__}")
        if item.name in self._tools and not replace:
            raise ValueError(f"a tool named {item.name!r} already exists (pass replace=True to redefine it)")
        self._tools[item.name] = item
        self._changed(item.name, item)
        return item

    def register_all(self, items: Iterable[Tool], *, replace: bool = False) -> None:
        for item in items:
            self.register(item, replace=replace)

    def unregister(self, name: str) -> bool:
        removed = self._tools.pop(name, None) is not None
        if removed:
            self._changed(name, None)
        return removed

    def add_change_listener(self, listener: Callable[[str, Tool | None], None]) -> None:
        """Call ``listener(name, tool)`` after each registration (``tool`` None: removed)."""
        if listener not in self._change_listeners:
            self._change_listeners.append(listener)

    def remove_change_listener(self, listener: Callable[[str, Tool | None], None]) -> None:
        if listener in self._change_listeners:
            self._change_listeners.remove(listener)

    def _changed(self, name: str, item: Tool | None) -> None:
        for listener in list(self._change_listeners):
            try:
                listener(name, item)
            except Exception:  # a broken listener must not break a registration
                log.exception("tool change listener failed for %s", name)

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

    def find(self, name: str) -> Tool | None:
        """The tool named ``name``, or None (:meth:`get` raises with suggestions instead)."""
        return self._tools.get(name)

    def list(self, category: str | None = None) -> list[Tool]:
        tools = sorted(self._tools.values(), key=lambda t: (t.category, t.name))
        return [t for t in tools if category is None or t.category == category]

    def categories(self) -> list[str]:
        return sorted({t.category for t in self._tools.values()})

    def expand(self, names: Iterable[str]) -> list[str]:
        """Tool names with glob patterns (``files.*``) replaced by the matching tools, in order and
        without duplicates; a pattern matching nothing is an error (as an unknown name is)."""
        found: list[str] = []
        for name in names:
            if isinstance(name, str) and any(c in name for c in "*?["):
                matching = sorted(n for n in self._tools if fnmatch.fnmatchcase(n, name))
                if not matching:
                    raise NotFound(f"no tool matches {name!r}; Tool.list() shows what exists", details={"pattern": name})
            else:
                matching = [name]
            found.extend(n for n in matching if n not in found)
        return found

    # ------------------------------------------------------------------ resolvers
    def add_resolver(self, resolver: Callable[[str], Awaitable[bool]]) -> None:
        """Register ``resolver(name_or_category) -> registered_something`` (see ``__init__``)."""
        self._resolvers.append(resolver)

    @property
    def has_resolvers(self) -> bool:
        return bool(self._resolvers)

    async def aresolve_missing(self, names: Iterable[str]) -> None:
        """Ask the resolvers about each of ``names`` (tool names or patterns) that names no
        registered tool (an agent's tools from an MCP server of the config, on first use)."""
        if not self._resolvers:
            return
        for name in names:
            pattern = any(c in name for c in "*?[")
            if (pattern and not any(fnmatch.fnmatchcase(n, name) for n in self._tools)) or (
                    not pattern and name not in self._tools):
                await self.aresolve(name)

    async def aresolve(self, name: str) -> bool:
        """Ask the resolvers about ``name`` (a tool name, pattern or category) missing here."""
        for resolver in list(self._resolvers):
            if await resolver(name):
                return True
        return False

    # ------------------------------------------------------------------ calling
    def _checked_args(self, item: Tool, args: Any) -> dict[str, Any]:
        """Validation of a call of ``item``: its bound arguments."""
        name = item.name
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise ValidationError(f"arguments for tool {name!r} must be a table of named parameters",
                                  [f"(arguments): expected a table, got {lua_type_name(args)}"], details={"tool": name})
        if {} in args.values():
            args = item.coerce_empty_tables(dict(args))
        problems = item.validate(args)
        if problems:
            raise ValidationError(f"invalid arguments for tool {name!r}:", problems, details={"tool": name})
        return item.bind_args(args)

    def _operation(self, item: Tool, args: Any, ctx: ToolContext, call_id: str | None = None) -> Operation:
        meta: dict[str, Any] = {"tool": item, **item.operation_meta} if item.operation_meta else {"tool": item}
        if call_id:
            meta["call_id"] = call_id
        return Operation(TOOL_CALL, item.name, {"name": item.name, "args": args}, ctx, 1, meta)  # attempt 1

    def call(self, name: str, args: Any, ctx: ToolContext) -> Any:
        """Call a tool synchronously (plain ``def`` tools and Lua-defined tools; an async tool
        needs :meth:`acall`)."""
        item = self._tools.get(name) or self.get(name)  # get() raises, with suggestions
        try:
            bound = self._checked_args(item, args)
        except AikitError as exc:
            return self.pipeline.reject(self._operation(item, args, ctx), exc)
        if item.is_async:
            raise AikitError(f"tool {name!r} is async: call it with acall() on the I/O loop", code="internal_error")
        return self.pipeline.run(self._operation(item, bound, ctx), _run_sync)

    async def acall(self, name: str, args: Any, ctx: ToolContext, *, call_id: str | None = None) -> Any:
        """Call any tool from async code (async tools run here, on the calling loop). ``call_id``:
        the model's id of the call, when an agent makes it (traces show it)."""
        if name not in self._tools and self._resolvers:
            await self.aresolve(name)
        item = self.get(name)
        try:
            bound = self._checked_args(item, args)
        except AikitError as exc:
            return await self.pipeline.areject(self._operation(item, args, ctx, call_id), exc)
        return await self.pipeline.arun(self._operation(item, bound, ctx, call_id), self._run_any)

    # ------------------------------------------------------------------ handlers
    def _run_any(self, op: Operation) -> Any:
        item: Tool = op.meta["tool"]
        bound = op.payload["args"]
        if item.async_fn is not None:
            return item.async_fn(**bound)
        if item.is_async:
            return self._within_budget(item, bound, op.context)
        return self._invoke_sync(item, bound, op.context)

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


def _run_sync(op: Operation) -> Any:
    """The handler of a synchronous tool call."""
    item: Tool = op.meta["tool"]
    return item.fn(op.context, **op.payload["args"]) if item.wants_ctx else item.fn(**op.payload["args"])


def _rebind_modified_args(op: Operation, previous: dict[str, Any]) -> None:
    """A tool.before hook gave new arguments: check them as a call's are checked, then bind them."""
    new_args = op.payload.get("args")
    if new_args is previous.get("args"):
        return
    item: Tool = op.meta["tool"]
    problems = item.validate(new_args) if isinstance(new_args, dict) else ["(arguments): expected object"]
    if problems:
        raise ValidationError(f"a tool.before hook gave {item.name!r} invalid arguments:", problems)
    op.payload = {**op.payload, "args": item.bind_args(new_args)}


TOOL_CALL = OperationKind(
    "tool",
    hook_prefix="tool",
    honours=honours(before="cancel replace", after="retry replace", error="retry replace"),
    topics=("tool.called", "tool.finished", "tool.failed"),
    source="tools",
    describe=lambda op: f"tool {op.name!r}",
    event_fields=lambda op: {"name": op.name, "caller": getattr(op.context, "caller", None)},
    after_payload=lambda op, result: {"name": op.name, "args": op.payload["args"], "result": result,
                                      "attempt": op.attempt},
    error_payload=lambda op, error: {"name": op.name, "args": op.payload["args"], "error": error.to_dict(),
                                     "attempt": op.attempt},
    modified=_rebind_modified_args,
)
