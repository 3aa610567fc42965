"""Workflows: steps scheduled as a DAG, sequence or parallel set, from Lua or YAML missions."""

from __future__ import annotations

from .engine import StepContext, layers, load_run, run, validate
from .model import STEP_KINDS, Condition, Loop, RunRecord, Step, StepRecord, Workflow

__all__ = ["STEP_KINDS", "Condition", "Loop", "RunRecord", "Step", "StepContext", "StepRecord", "Workflow",
           "layers", "load_run", "run", "validate"]
