"""What a ``function`` step (and a ``Condition.fn``) receives as ``ctx``."""

from __future__ import annotations

from typing import Any

from ..model import StepRecord


class StepContext:
    """What a ``function`` step (and a ``Condition.fn``) receives as ``ctx``."""

    __slots__ = ("run_id", "workflow", "step", "attempt", "inputs", "loop", "components", "_records")

    def __init__(self, run_id: str, workflow: str, step: str, attempt: int, inputs: dict[str, Any],
                 loop: dict[str, Any] | None, components: Any, records: dict[str, StepRecord]) -> None:
        self.run_id = run_id
        self.workflow = workflow
        self.step = step
        self.attempt = attempt
        self.inputs = inputs
        self.loop = loop
        self.components = components
        self._records = records

    def output(self, step_id: str) -> Any:
        """The output of a finished step (None if it has not produced one)."""
        record = self._records.get(step_id)
        return record.output if record is not None else None

    def status(self, step_id: str) -> str | None:
        record = self._records.get(step_id)
        return record.status if record is not None else None

    @property
    def outputs(self) -> dict[str, Any]:
        """Outputs of every finished step, by id."""
        return {sid: r.output for sid, r in self._records.items() if r.status not in ("pending", "running")}

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "workflow": self.workflow, "step": self.step, "attempt": self.attempt,
                "inputs": self.inputs, "loop": self.loop,
                "steps": {sid: {"status": r.status, "output": r.output} for sid, r in self._records.items()
                          if r.status not in ("pending", "running")}}

    def __repr__(self) -> str:
        return f"StepContext(run_id={self.run_id!r}, step={self.step!r}, attempt={self.attempt})"


class StepContexts:
    """Makes the :class:`StepContext` of any step of one run."""

    def __init__(self, run_id: str, workflow: str, inputs: dict[str, Any], components: Any,
                 records: dict[str, StepRecord]) -> None:
        self._run_id = run_id
        self._workflow = workflow
        self._inputs = inputs
        self._components = components
        self._records = records

    def __call__(self, step: str, attempt: int, loop: dict[str, Any] | None) -> StepContext:
        """The context of ``step`` in ``attempt`` (0 for a condition), inside loop frame ``loop``."""
        return StepContext(self._run_id, self._workflow, step, attempt, self._inputs, loop, self._components,
                           self._records)
