"""Where a run's steps do their work: ``local`` (this process, the default) or ``ray`` (tasks on a
Ray cluster, see :mod:`aikit_components.distributed`).

The seam is the :class:`~.executors.StepExecutors` registry: a placement wraps the run's local
executors and decides, step kind by step kind, where each call runs. Everything around a call
(conditions, loops, retries, timeouts, hooks, events, the run record) stays in this process, so
it keeps its meaning whatever the placement. ``ray`` is imported only when a run asks for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...errors import InvalidArgument
from ..model import EXECUTORS
from ..validation import WorkflowPlan
from .context import StepContexts
from .executors import StepExecutors

@dataclass(frozen=True, slots=True)
class RunPlacement:
    """What a placement needs to know about the run whose steps it places."""

    plan: WorkflowPlan
    components: Any
    run_id: str
    contexts: StepContexts


def place(executor: str, local: StepExecutors, run: RunPlacement) -> StepExecutors:
    """The executors of a run placed on ``executor``: ``local`` itself, or a remote placement
    around it. A remote placement checks, before anything runs, that it can reach its cluster
    and that every step can be shipped there (an error naming what to fix otherwise)."""
    if executor == "local":
        return local
    if executor == "ray":
        from ...distributed.steps import RayStepExecutors

        return RayStepExecutors(local, run)
    raise InvalidArgument(f"workflow {run.plan.workflow.name!r}: executor must be one of "
                          f"{', '.join(repr(e) for e in EXECUTORS)}, got {executor!r}")
