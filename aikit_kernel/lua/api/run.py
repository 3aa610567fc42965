"""The per-run context of Lua code: one budget of tool calls and wall time per cell or script."""

from __future__ import annotations

from aikit_components.components import Components
from aikit_components.tools import ToolContext


class RunScope:
    """Holds the ToolContext of the current run; the kernel renews it before every cell."""

    def __init__(self, components: Components) -> None:
        self.components = components
        self.context: ToolContext = components.tool_context(caller="lua")

    def renew(self) -> ToolContext:
        """Start a new run (fresh budget)."""
        self.context = self.components.tool_context(caller="lua")
        return self.context
