"""The Lua engines of this process that are not closed yet, and their closing at interpreter exit.

``atexit`` runs :func:`close_left_open` before the interpreter tears its objects down: a Lua
state freed after that runs its pending finalizers, and one that calls back into Python
(``print``, a tool, an open file's close) would find Python half freed and crash the process.
"""

from __future__ import annotations

import atexit
import logging
import time
import weakref
from typing import Protocol

log = logging.getLogger(__name__)

#: At exit, how long to wait for a run on another thread to stop once interrupted.
EXIT_WAIT_S = 2.0


class Closable(Protocol):
    """What this module needs of an engine (``aikit_kernel.lua.engine.LuaEngine``)."""

    def running(self) -> bool: ...

    def interrupt(self) -> bool: ...

    def close(self) -> None: ...


# Weakly: an engine dropped without close() is closed when Python collects it (LuaEngine.__del__).
_open: weakref.WeakSet[Closable] = weakref.WeakSet()


def opened(engine: Closable) -> None:
    """``engine`` is built: close it at exit unless :func:`closed` is called first."""
    _open.add(engine)


def closed(engine: Closable) -> None:
    """``engine`` is closed: nothing left to do for it at exit."""
    _open.discard(engine)


def close_left_open() -> None:
    """Close the engines still open. An engine still running code on another thread (a daemon
    thread) is interrupted first; if the run has not stopped within :data:`EXIT_WAIT_S` it is left
    open (closing it would wait for that run)."""
    for engine in list(_open):
        if engine.running():
            engine.interrupt()
            deadline = time.monotonic() + EXIT_WAIT_S
            while engine.running() and time.monotonic() < deadline:
                time.sleep(0.01)
            if engine.running():
                log.warning("a Lua engine still running at exit was left open")
                continue
        try:
            engine.close()
        except Exception:
            log.exception("could not close a Lua engine at exit")


atexit.register(close_left_open)
