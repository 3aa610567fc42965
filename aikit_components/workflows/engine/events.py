"""What a run tells the world: events on the bus and the ``on_event`` callback."""

from __future__ import annotations

import logging
from typing import Any

from ..model import Step, StepRecord
from .records import _OK

# One logger for the whole engine, named as before it became a package.
log = logging.getLogger(__package__)


class _Events:
    """Publishing run and step events and calling ``on_event``.

    A part of the run's scheduler (``runner._Runner`` mixes it in); it uses the run's state set up
    in ``_Runner.__init__``."""

    def _publish(self, topic: str, payload: dict[str, Any]) -> None:
        if self.events is not None:
            self.events.publish(topic, payload, source="workflow")

    def _notify(self, kind: str, sid: str | None, record: Any) -> None:
        if self.on_event is not None:
            try:
                self.on_event(kind, sid, record)
            except Exception:
                log.exception("workflow on_event callback failed on %s %s", kind, sid)

    def _started(self, sid: str, step: Step) -> None:
        if self.events is not None:
            self.events.publish("workflow.step.started", {"workflow": self.wf.name, "run_id": self.record.run_id,
                                                          "step": sid, "kind": step.kind}, source="workflow")
        if self.on_event is not None:
            self._notify("step.started", sid, self.records[sid])

    def _announce(self, sid: str, rec: StepRecord) -> None:
        if self.events is not None:
            payload: dict[str, Any] = {"workflow": self.wf.name, "run_id": self.record.run_id, "step": sid,
                                       "status": rec.status, "attempts": rec.attempts,
                                       "duration_ms": round(((rec.ended_at or 0) - (rec.started_at or 0)) * 1000, 3)}
            if rec.status in _OK:
                self.events.publish("workflow.step.finished", payload, source="workflow")
            else:
                error = rec.error or {}
                payload["code"], payload["message"] = error.get("code"), error.get("message")
                self.events.publish("workflow.step.failed", payload, source="workflow")
        if self.on_event is not None:
            self._notify("step.finished", sid, rec)
