"""A gate on a real SQLite state store's commits: the writer thread's commits of chosen keys wait
until the test opens the gate, so a test can look at the world while a commit is in flight."""

from __future__ import annotations

import threading
from typing import Any

import pytest

#: Upper bound on a wait for the other side (a safety net against a hang, never reached when the
#: code under test works).
WAIT_S = 30.0


class CommitGate:
    """Holds every ``set_rows`` commit of ``backend`` that writes one of ``keys`` (all keys when
    None), but the first ``let_through`` of them, until :meth:`open`; records each batch it saw."""

    def __init__(self, backend: Any, monkeypatch: pytest.MonkeyPatch, keys: set[str] | None = None,
                 let_through: int = 0) -> None:
        self.keys = keys
        self.let_through = let_through
        self.entered = threading.Event()  # a held commit is waiting at the gate
        self.opened = threading.Event()
        self.batches: list[list[tuple[str, Any]]] = []
        original = backend.set_rows

        def set_rows(rows: list[tuple[str, str, Any, float | None]]) -> None:
            self.batches.append([(key, getattr(value, "text", value)) for _, key, value, _ in rows])
            if self.keys is None or any(key in self.keys for _, key, _, _ in rows):
                if self.let_through > 0:
                    self.let_through -= 1
                    original(rows)
                    return
                self.entered.set()
                assert self.opened.wait(WAIT_S), "the test never opened the gate"
            original(rows)

        monkeypatch.setattr(backend, "set_rows", set_rows)

    def wait_entered(self) -> None:
        """Block until a held commit waits at the gate (call from a thread: asyncio.to_thread)."""
        assert self.entered.wait(WAIT_S), "no commit reached the gate"

    def open(self) -> None:
        self.opened.set()
