"""Change listeners held weakly (the hook registry and the event bus tell the operation pipeline
when what it cached may be stale)."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable


class ChangeListeners:
    """Methods to call when something changes, held weakly: a listener whose object is gone is
    dropped, so short-lived listeners (a pipeline per test registry) do not pile up."""

    def __init__(self) -> None:
        self._refs: list[weakref.WeakMethod[Callable[[], None]]] = []
        self._lock = threading.Lock()

    def append(self, method: Callable[[], None]) -> None:
        """Listen with a bound method (held weakly)."""
        with self._lock:
            self._refs = [r for r in self._refs if r() is not None] + [weakref.WeakMethod(method)]

    def notify(self) -> None:
        for ref in list(self._refs):
            method = ref()
            if method is not None:
                method()

    def __len__(self) -> int:
        return sum(1 for r in self._refs if r() is not None)
