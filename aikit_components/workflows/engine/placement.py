"""Where a run's steps do their work: ``local`` (this process, the default) or ``ray`` (tasks on a
Ray cluster, see :mod:`aikit_components.distributed`).

The seam is the :class:`~.executors.StepExecutors` registry: a placement wraps the run's local
executors and decides, step kind by step kind, where each call runs. Remote placements live above
the workflow layer (``ray``: :mod:`aikit_components.distributed`), so the run's components hand
them over: ``components.step_placement(executor)`` gives the class to build. Everything around a call
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
    placement = getattr(run.components, "step_placement", None)
    if executor in EXECUTORS and placement is not None:
        return placement(executor)(local, run)
    if executor in EXECUTORS:
        raise InvalidArgument(f"workflow {run.plan.workflow.name!r}: executor {executor!r} needs the run's components "
                              "to provide it (Components.step_placement); run it with aikit's Components")
    raise InvalidArgument(f"workflow {run.plan.workflow.name!r}: executor must be one of "
                          f"{', '.join(repr(e) for e in EXECUTORS)}, got {executor!r}")
