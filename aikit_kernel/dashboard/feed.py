"""Live updates: one thread polls the span store (``SpanStore.changed_since``) and the run-record
folder, and wakes every event-stream client waiting on it; clients then send what changed since
their own cursor. One poller however many browser tabs are open."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("aikit.dashboard")

_HISTORY = 256  # changes kept for clients that fell behind; older ones get a full refresh


@dataclass(frozen=True, slots=True)
class Change:
    """One batch of changes: ``seq`` grows by one per batch; ``traces`` written since the last
    batch; ``records`` true when the run-record folder changed."""

    seq: int
    traces: tuple[str, ...]
    records: bool


class ChangeFeed:
    """Polls ``changed_since`` (through ``call``, which runs a function on the store's thread)
    every ``interval`` seconds and keeps the recent changes for :meth:`wait`."""

    def __init__(self, changed_since: Callable[[int], tuple[int, list[str]]], start_cursor: int,
                 runs_dir: Path | None, interval: float = 0.5) -> None:
        self._changed_since = changed_since
        self._cursor = start_cursor
        self._runs_dir = runs_dir
        self._records_sig = self._records_signature()
        self._interval = interval
        self._changes: deque[Change] = deque(maxlen=_HISTORY)
        self._seq = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="aikit-dashboard-feed", daemon=True)

    @property
    def seq(self) -> int:
        """The number of the newest change batch (0 before any)."""
        with self._cond:
            return self._seq

    def start(self) -> None:
        """Start polling."""
        self._thread.start()

    def stop(self) -> None:
        """Stop polling and wake every waiting client."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    @property
    def stopped(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stop.is_set()

    def wait(self, after: int, timeout: float) -> tuple[int, list[Change] | None]:
        """Wait up to ``timeout`` s for changes newer than batch ``after``; return (newest seq,
        the changes, or None when some were already dropped and the client must refresh all)."""
        with self._cond:
            self._cond.wait_for(lambda: self._seq > after or self._stop.is_set(), timeout=timeout)
            if self._seq <= after:
                return self._seq, []
            if not self._changes or self._changes[0].seq > after + 1:
                return self._seq, None
            return self._seq, [c for c in self._changes if c.seq > after]

    def _run(self) -> None:
        failing = False
        while not self._stop.wait(self._interval):
            try:
                self.poll()
            except Exception as exc:  # noqa: BLE001 - a locked or vanished store must not kill the feed
                if not failing:  # once per outage, not twice a second
                    log.warning("dashboard: cannot read the span store (live updates paused): %s", exc)
                failing = True
            else:
                if failing:
                    log.warning("dashboard: the span store is readable again (live updates resumed)")
                failing = False

    def poll(self) -> None:
        """Look for changes once (the poller thread does this every ``interval``)."""
        cursor, traces = self._changed_since(self._cursor)
        self._cursor = cursor
        signature = self._records_signature()
        records = signature != self._records_sig
        self._records_sig = signature
        if traces or records:
            with self._cond:
                self._seq += 1
                self._changes.append(Change(self._seq, tuple(traces), records))
                self._cond.notify_all()

    def _records_signature(self) -> tuple[int, int]:
        if self._runs_dir is None or not self._runs_dir.is_dir():
            return (0, 0)
        count, newest = 0, 0
        try:
            for path in self._runs_dir.glob("*.json"):
                count += 1
                newest = max(newest, path.stat().st_mtime_ns)
        except OSError:
            pass
        return (count, newest)
