"""Run records in State: loading a stored run (record merged with its journal) and the
writes that keep it current while the run goes (full record, journal, fallbacks)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from ...errors import AikitError, error_from_exception
from ..model import RunRecord
from ..validation import run_scope

# One logger for the whole engine, named as before it became a package.
log = logging.getLogger(__package__)

PERSIST_INTERVAL_S = 0.25
_OK = frozenset({"succeeded", "skipped"})


def load_run(components: Any, run_id: str) -> RunRecord | None:
    """The stored record of run ``run_id`` (the full record merged with its journal), or None."""
    state = components.state
    scope = run_scope(run_id)
    data = state.get(scope, "run")
    if not isinstance(data, dict):
        return None
    journal = state.get(scope, "journal")
    if isinstance(journal, dict) and journal.get("base") == data.get("persist_seq") and isinstance(journal.get("steps"), dict):
        data["steps"] = {**(data.get("steps") or {}), **journal["steps"]}
    return RunRecord.from_dict(data)


class _Persistence:
    """Writing the run's record to State: at once (durable) or on the interval schedule.

    A part of the run's scheduler (``runner._Runner`` mixes it in); it uses the run's state set up
    in ``_Runner.__init__``."""

    def _schedule_persist(self, durable: bool) -> None:
        if self.state is None:
            return
        loop = self.loop
        if durable:
            if not self.flush_soon:
                self.flush_soon = True
                loop.call_soon(self._flush)  # type: ignore[union-attr]
        elif self.flush_timer is None and not self.flush_soon:
            gap = max(self.interval, 5 * self.last_cost)
            wait = max(0.0, self.last_write + gap - time.monotonic())
            self.flush_timer = loop.call_later(wait, self._flush)  # type: ignore[union-attr]

    def _flush(self) -> None:
        self.flush_soon = False
        if self.flush_timer is not None:
            self.flush_timer.cancel()
            self.flush_timer = None
        if not self.dirty or self.halt is not None or self.record.ended_at is not None:
            return
        if len(self.journal) + len(self.dirty) > self.journal_limit:
            self._persist_full()
            return
        started = time.monotonic()
        for sid in self.dirty:
            self.journal[sid] = self.records[sid].to_dict()
        self.dirty.clear()
        self._write("journal", {"base": self.persist_seq, "steps": self.journal})
        self.last_write = time.monotonic()
        self.last_cost = self.last_write - started

    def _persist_full(self) -> None:
        if self.state is None:
            return
        started = time.monotonic()
        self.persist_seq = max(self.persist_seq + 1, time.time_ns())
        record = self.record
        data = {"run_id": record.run_id, "workflow": record.workflow, "status": record.status,
                "inputs": record.inputs, "error": record.error, "started_at": record.started_at,
                "ended_at": record.ended_at, "duration_s": record.duration_s, "source": record.source,
                "steps": {sid: r.to_dict() for sid, r in self.records.items() if r.status != "pending"},
                "persist_seq": self.persist_seq}
        self.journal = {}
        self.dirty.clear()
        self._write("run", data)
        self.last_write = time.monotonic()
        self.last_cost = self.last_write - started

    def _write(self, key: str, value: Any) -> None:
        try:
            self.state.set(self.scope, key, value)
            return
        except AikitError as exc:
            first = exc
        except Exception as exc:  # noqa: BLE001 - persistence must never break the run
            first = error_from_exception(exc)
        try:  # an output State cannot store (a Python object from a function step): store its text
            self.state.set(self.scope, key, _storable(value))
            return
        except Exception as exc:  # noqa: BLE001
            first = error_from_exception(exc) if not isinstance(exc, AikitError) else exc
        if not self.persist_failed:
            self.persist_failed = True
            log.warning("could not store workflow run %s: %s", self.record.run_id, first)
            self._publish("workflow.persist_failed", {"workflow": self.wf.name, "run_id": self.record.run_id,
                                                      "code": first.code, "message": first.message})


def _storable(value: Any) -> Any:
    """``value`` with anything State cannot store replaced by its text."""
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    if isinstance(value, Mapping):
        return {(k if isinstance(k, (str, int, float, bool)) else str(k)): _storable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_storable(v) for v in value]
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        try:
            return _storable(to_dict())
        except Exception:  # noqa: BLE001
            pass
    return repr(value)
