"""Agents: LLMs with tools, run in a loop (see :mod:`.agent`)."""

from __future__ import annotations

from .agent import Agent, AgentResult, AgentSpec, ToolCallRecord, UsageLedger

__all__ = ["Agent", "AgentResult", "AgentSpec", "ToolCallRecord", "UsageLedger"]
