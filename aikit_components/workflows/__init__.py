"""Workflows: steps scheduled as a DAG, sequence or parallel set, from Lua or YAML missions."""

from __future__ import annotations

from .model import STEP_KINDS, Condition, Loop, RunRecord, Step, StepRecord, Workflow

__all__ = ["STEP_KINDS", "Condition", "Loop", "RunRecord", "Step", "StepRecord", "Workflow"]
