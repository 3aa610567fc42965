"""Tools: typed, validated, policy-checked functions that scripts and agents call.

Public API: :func:`tool` (declare), :class:`Tool`, :class:`ToolContext`, :class:`Budget`,
:class:`ToolRegistry` (register, list, call/acall), :func:`default_registry`.
Built-in tools live in one module per category (``filesystem``, ``data``, ``text``, ``web``,
``system``, ``database``, ``git``, ``archives``), each exporting ``TOOLS``.
"""

from __future__ import annotations

from ._fsutil import checked as checked_path
from .base import SECURITY_LEVELS, Budget, Tool, ToolContext, tool
from .registry import ToolRegistry

__all__ = ["SECURITY_LEVELS", "Budget", "Tool", "ToolContext", "ToolRegistry", "checked_path", "default_registry", "tool"]


def default_registry(events: object = None, hooks: object = None, plugins: bool = True,
                     pipeline: object = None) -> ToolRegistry:
    """A registry with every built-in tool (and the ``aikit.tools`` plugins); its calls run
    through ``pipeline`` (else a standard pipeline for ``events`` and ``hooks``)."""
    registry = ToolRegistry(events=events, hooks=hooks, pipeline=pipeline).load_builtins()  # type: ignore[arg-type]
    if plugins:
        registry.load_plugins()
    return registry
