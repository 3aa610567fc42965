"""Zero-cost interrupts for running Lua code, and the hooks the debugger installs.

No hook is installed while nothing is pending (any active hook slows the VM 2-2.6x). The
bootstrap registers a Lua hook function with ``debug.sethook``; here we read ldblib's C hook with
``lua_gethook`` and immediately disarm it. ``interrupt()`` (called from any thread, like the
stock ``lua`` REPL does from its signal handler) arms a count hook of 1 on the main state and on
every coroutine currently being resumed; the Lua hook then raises the interrupt sentinel.
``pause()`` arms the same way for the debugger, whose handler pauses instead of raising.

While breakpoints exist or a step is pending, the debugger sets a *base hook* (its line hook):
it is installed on the main state for the duration of each run and on every coroutine as it is
resumed, and is what disarming restores, so an interrupt or pause does not lose it.

A *step cancel* stops one workflow step's coroutine (its timeout expired, or its run was
cancelled) while the rest of the run goes on. Step coroutines are registered by token when they
are created and released when they end; ``cancel_step(token)`` arms the count hook on that
coroutine only (and on coroutines it resumed itself, up to the next step coroutine resumed from
inside it), and the hook raises the cancel sentinel there, which ``step_resume`` turns into the
"cancelled" outcome. A token already released makes the cancel a no-op, so a cancel racing the
end of its step never reaches a coroutine that reused the address.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable

from lupa import lua54

LUA_MASKRET = 1 << 1
LUA_MASKLINE = 1 << 2
LUA_MASKCOUNT = 1 << 3
REARM_COUNT = 10_000

# What the hook (or a host call failing with "interrupted") must raise: see Interrupter.stop_kind.
STOP_NONE, STOP_INTERRUPT, STOP_CANCEL = 0, 1, 2

_lib = ctypes.CDLL(lua54.__file__)
_lua_Hook = ctypes.c_void_p
_lib.lua_sethook.argtypes = [ctypes.c_void_p, _lua_Hook, ctypes.c_int, ctypes.c_int]
_lib.lua_sethook.restype = None
_lib.lua_gethook.argtypes = [ctypes.c_void_p]
_lib.lua_gethook.restype = _lua_Hook


def lua_library() -> ctypes.CDLL:
    """The Lua C library inside lupa's lua54 module (exports the Lua C API)."""
    return _lib


class Interrupter:
    """Arms and disarms the interrupt hook of one Lua runtime, thread-safely."""

    def __init__(self, main_state_address: str) -> None:
        self._main = int(main_state_address, 16)
        self._hook = _lib.lua_gethook(self._main)
        if not self._hook:
            raise RuntimeError("the Lua interrupt hook was not registered by the sandbox bootstrap")
        self._lock = threading.Lock()
        self._running: list[int] = []
        #: The states of the resumed coroutines, innermost last (empty on the main thread). The
        #: same list object for the life of the interrupter: read it without the lock, for its
        #: truthiness only.
        self.resumed = self._running
        self._step_frames: set[int] = set()  # indexes in _running where a step coroutine was entered
        self._armed: set[int] = set()
        self._steps: dict[int, int] = {}  # live step coroutines: token -> state address
        self._cancelled: set[int] = set()  # states of live step coroutines asked to stop
        self._active = False
        self._base_hook: int | None = None
        self._base_mask = 0
        self.requested = threading.Event()
        self.pause_requested = threading.Event()
        #: Asked as each run begins: whether an interrupt arrived for it while no run was active
        #: (the kernel had taken its request but the run had not begun); True also forgets it.
        self.take_pending: Callable[[], bool] | None = None
        _lib.lua_sethook(self._main, None, 0, 0)

    @property
    def main_state(self) -> int:
        return self._main

    @property
    def base_hook(self) -> int | None:
        """The debugger's hook installed on every run (None while it needs none)."""
        return self._base_hook

    @property
    def debug_library_hook(self) -> int:
        """ldblib's C hook, which calls the registered Lua hook function."""
        return int(self._hook)

    # --- called on the Lua thread -------------------------------------------------------
    @property
    def active(self) -> bool:
        """True while a run is in progress on the Lua thread."""
        return self._active

    def begin(self) -> None:
        """A run starts: interrupts requested from now on will be delivered, and one that
        arrived for it before any run was active (``take_pending``) is delivered at once."""
        with self._lock:
            if self.requested.is_set():  # (set only under this lock; clear() takes the Event's lock too)
                self.requested.clear()
            self._active = True
            self._set_base_locked(self._main)
            # Asked after _active is set: an interrupt that finds no run active was recorded as
            # pending before it was tried, so one of the two sees it.
            if self.take_pending is not None and self.take_pending():
                self.requested.set()
                self._arm_locked(self._main)

    def end(self) -> None:
        """A run ended: disarm everything and forget a pending request."""
        with self._lock:
            self._active = False
            self._disarm_locked()
            _lib.lua_sethook(self._main, None, 0, 0)
            self._running.clear()
            self._step_frames.clear()
            if self.requested.is_set():
                self.requested.clear()
            if self.pause_requested.is_set():
                self.pause_requested.clear()

    def co_enter(self, address: bytes | str, step: bool = False) -> None:
        """A coroutine is about to be resumed (arm it at once if an interrupt is pending, or a
        cancel of the step it runs in); ``step`` marks a workflow step's own coroutine."""
        state = int(address, 16)
        with self._lock:
            if step:
                self._step_frames.add(len(self._running))
            self._running.append(state)
            interrupting = (self.requested.is_set() or self.pause_requested.is_set()) and self._active
            if interrupting or (self._cancelled and self._top_cancelled_locked()):
                self._arm_locked(state)
            else:
                self._set_base_locked(state)

    def co_leave(self) -> None:
        """The innermost resumed coroutine yielded, returned or failed."""
        with self._lock:
            if self._running:
                state = self._running.pop()
                self._step_frames.discard(len(self._running))
                if state in self._armed:
                    self._set_base_locked(state)
                    self._armed.discard(state)

    def rearm(self) -> int:
        """Called from the Lua hook on a count event: fire again only after a long count, so the
        error handlers run, yet code that swallows the error is stopped again. Returns what the
        hook raises (:meth:`stop_kind`); with nothing to raise the running state is disarmed."""
        with self._lock:
            kind = self._stop_kind_locked()
            if kind == STOP_NONE:
                state = self._running[-1] if self._running else self._main
                if state in self._armed:
                    self._armed.discard(state)
                    self._set_base_locked(state)
                return kind
            for state in self._armed:
                _lib.lua_sethook(state, self._hook, LUA_MASKCOUNT, REARM_COUNT)
            return kind

    def stop_kind(self) -> int:
        """STOP_INTERRUPT while an interrupt is pending, else STOP_CANCEL when the code running
        now belongs to a cancelled step, else STOP_NONE."""
        with self._lock:
            return self._stop_kind_locked()

    def stop_requested(self) -> bool:
        """Should a wait of the code running now be abandoned (an interrupt, or its step's cancel)?"""
        if self.requested.is_set():
            return True
        if not self._cancelled:
            return False
        with self._lock:
            return self._top_cancelled_locked()

    def step_started(self, token: int, address: bytes | str) -> None:
        """A workflow step's coroutine was created: from now on ``cancel_step(token)`` reaches it."""
        with self._lock:
            self._steps[token] = int(address, 16)

    def step_released(self, token: int) -> None:
        """The step's coroutine ended or was closed: a later cancel of ``token`` does nothing."""
        with self._lock:
            state = self._steps.pop(token, None)
            if state is not None:
                self._cancelled.discard(state)

    def take_pause(self) -> bool:
        """Called from the Lua hook on a count event: True when it was a pause request (now
        consumed, the count hooks replaced by the base hook again), False for an interrupt."""
        with self._lock:
            if self.requested.is_set() or not self.pause_requested.is_set():
                return False
            self.pause_requested.clear()
            self._disarm_locked()
            return True

    def cancel_step(self, token: int) -> bool:
        """Stop a workflow step's coroutine where it runs (any thread). If it is running now the
        count hook fires in it at its next instruction; if it is resumed later, at once. Returns
        False when the step already ended (the cancel is a no-op)."""
        with self._lock:
            state = self._steps.get(token)
            if state is None:
                return False
            self._cancelled.add(state)
            for running in self._cancel_targets_locked():
                if running not in self._armed:
                    self._arm_locked(running)
            return True

    # --- called from any thread ---------------------------------------------------------
    def set_base_hook(self, hook: int | None, mask: int = LUA_MASKLINE) -> None:
        """Install (or with None remove) the debugger's hook on the states now running and on
        every state that runs from now on."""
        with self._lock:
            self._base_hook, self._base_mask = hook, (mask if hook else 0)
            if self._active:
                for state in [self._main, *self._running]:
                    if state not in self._armed:
                        self._set_base_locked(state)

    def pause(self) -> bool:
        """Ask the running code to stop in the debugger at the next instruction; False if idle."""
        return self._request(self.pause_requested)

    def interrupt(self) -> bool:
        """Request an interrupt; returns False when no run is active (nothing to stop)."""
        return self._request(self.requested)

    def _request(self, flag: threading.Event) -> bool:
        """Set ``flag`` and arm the count hook on every running state (the hook reads the flags)."""
        with self._lock:
            if not self._active:
                return False
            flag.set()
            for state in [self._main, *self._running]:
                self._arm_locked(state)
            return True

    def _arm_locked(self, state: int) -> None:
        _lib.lua_sethook(state, self._hook, LUA_MASKCOUNT, 1)
        self._armed.add(state)

    def _set_base_locked(self, state: int) -> None:
        _lib.lua_sethook(state, self._base_hook, self._base_mask, 0)

    def _disarm_locked(self) -> None:
        """Drop the interrupt/pause arming; states of a cancelled step stay armed."""
        keep = self._cancel_targets_locked() if self._cancelled else set()
        for state in self._armed - keep:
            self._set_base_locked(state)
        self._armed &= keep

    def _cancel_targets_locked(self) -> set[int]:
        """Running states that belong to a cancelled step: the step's coroutine and the ones it
        resumed, up to the next step coroutine entered inside it (a different step)."""
        targets: set[int] = set()
        cancelled = False
        for index, state in enumerate(self._running):
            if index in self._step_frames:
                cancelled = state in self._cancelled
            if cancelled:
                targets.add(state)
        return targets

    def _top_cancelled_locked(self) -> bool:
        """Does the innermost running coroutine belong to a cancelled step?"""
        for index in range(len(self._running) - 1, -1, -1):
            if index in self._step_frames:
                return self._running[index] in self._cancelled
        return False

    def _stop_kind_locked(self) -> int:
        if self.requested.is_set():
            return STOP_INTERRUPT
        if self._cancelled and self._top_cancelled_locked():
            return STOP_CANCEL
        return STOP_NONE


def lua_release() -> str:
    """The embedded Lua's full version, e.g. "5.4.7" (read from the C library's ``lua_ident``)."""
    try:
        ident = (ctypes.c_char * 64).in_dll(_lib, "lua_ident").value.decode(errors="replace")
    except (ValueError, AttributeError):
        return "5.4"
    parts = ident.split()
    return parts[2] if len(parts) > 2 and parts[1] == "Lua" else "5.4"
