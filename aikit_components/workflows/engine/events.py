"""What a run tells the world: events on the bus and the ``on_event`` callback (a step's
``workflow.step.started`` comes from the operation pipeline, see ``steps``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..model import PASSING_STATUSES, RunRecord, StepRecord

# One logger for the whole engine, named as before it became a package.
log = logging.getLogger(__package__)


class RunEvents:
    """Publishes one run's events (source ``workflow``) and calls its ``on_event`` callback."""

    def __init__(self, bus: Any, on_event: Callable[[str, str | None, Any], Any] | None, workflow: str,
                 run_id: str) -> None:
        self._bus = bus
        self._on_event = on_event
        self._workflow = workflow
        self._run_id = run_id

    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        """Publish ``payload`` on ``topic`` (nothing without a bus)."""
        if self._bus is not None:
            self._bus.publish(topic, payload, source="workflow")

    def _notify(self, kind: str, sid: str | None, record: Any) -> None:
        if self._on_event is not None:
            try:
                self._on_event(kind, sid, record)
            except Exception:
                log.exception("workflow on_event callback failed on %s %s", kind, sid)

    def run_started(self, record: RunRecord, resumed: bool) -> None:
        self.publish("workflow.started", {"workflow": self._workflow, "run_id": self._run_id,
                                          "steps": len(record.steps), "resumed": resumed})
        self._notify("run.started", None, record)

    def run_finished(self, record: RunRecord) -> None:
        self.publish("workflow.finished", {"workflow": self._workflow, "run_id": self._run_id, "status": record.status,
                                           "duration_ms": round((record.duration_s or 0.0) * 1000, 3),
                                           "error": record.error})
        self._notify("run.finished", None, record)

    def step_started(self, sid: str, rec: StepRecord) -> None:
        """The step starts running (its event ``workflow.step.started`` is the operation
        pipeline's, published when its work starts)."""
        self._notify("step.started", sid, rec)

    def step_retrying(self, sid: str, kind: str, attempt: int, delay_s: float, error: dict[str, Any]) -> None:
        self.publish("workflow.step.retrying", {"workflow": self._workflow, "run_id": self._run_id, "step": sid,
                                                "kind": kind, "attempt": attempt, "delay_s": delay_s,
                                                "code": error.get("code"), "message": error.get("message")})

    def step_ended(self, sid: str, rec: StepRecord) -> None:
        """``workflow.step.finished`` (succeeded or skipped) or ``workflow.step.failed``."""
        if self._bus is not None:
            payload: dict[str, Any] = {"workflow": self._workflow, "run_id": self._run_id, "step": sid,
                                       "status": rec.status, "attempts": rec.attempts,
                                       "duration_ms": round(((rec.ended_at or 0) - (rec.started_at or 0)) * 1000, 3)}
            if rec.status in PASSING_STATUSES:
                self.publish("workflow.step.finished", payload)
            else:
                error = rec.error or {}
                payload["code"], payload["message"] = error.get("code"), error.get("message")
                self.publish("workflow.step.failed", payload)
        self._notify("step.finished", sid, rec)
