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
"""

from __future__ import annotations

import ctypes
import threading

from lupa import lua54

LUA_MASKRET = 1 << 1
LUA_MASKLINE = 1 << 2
LUA_MASKCOUNT = 1 << 3
REARM_COUNT = 10_000

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
        self._armed: set[int] = set()
        self._active = False
        self._base_hook: int | None = None
        self._base_mask = 0
        self.requested = threading.Event()
        self.pause_requested = threading.Event()
        _lib.lua_sethook(self._main, None, 0, 0)

    @property
    def main_state(self) -> int:
        return self._main

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
        """A run starts: interrupts requested from now on will be delivered."""
        with self._lock:
            self.requested.clear()
            self._active = True
            self._set_base_locked(self._main)

    def end(self) -> None:
        """A run ended: disarm everything and forget a pending request."""
        with self._lock:
            self._active = False
            self._disarm_locked()
            _lib.lua_sethook(self._main, None, 0, 0)
            self._running.clear()
            self.requested.clear()
            self.pause_requested.clear()

    def co_enter(self, address: bytes | str) -> None:
        """A coroutine is about to be resumed (arm it at once if an interrupt is pending)."""
        state = int(address, 16)
        with self._lock:
            self._running.append(state)
            if (self.requested.is_set() or self.pause_requested.is_set()) and self._active:
                self._arm_locked(state)
            else:
                self._set_base_locked(state)

    def co_leave(self) -> None:
        """The innermost resumed coroutine yielded, returned or failed."""
        with self._lock:
            if self._running:
                state = self._running.pop()
                if state in self._armed:
                    self._set_base_locked(state)
                    self._armed.discard(state)

    def rearm(self) -> None:
        """Called from the Lua hook itself before it raises: fire again only after a long count,
        so the error handlers run, yet code that swallows the interrupt is stopped again."""
        with self._lock:
            for state in self._armed:
                _lib.lua_sethook(state, self._hook, LUA_MASKCOUNT, REARM_COUNT)

    def take_pause(self) -> bool:
        """Called from the Lua hook on a count event: True when it was a pause request (now
        consumed, the count hooks replaced by the base hook again), False for an interrupt."""
        with self._lock:
            if self.requested.is_set() or not self.pause_requested.is_set():
                return False
            self.pause_requested.clear()
            self._disarm_locked()
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
        for state in self._armed:
            self._set_base_locked(state)
        self._armed.clear()


def lua_release() -> str:
    """The embedded Lua's full version, e.g. "5.4.7" (read from the C library's ``lua_ident``)."""
    try:
        ident = (ctypes.c_char * 64).in_dll(_lib, "lua_ident").value.decode(errors="replace")
    except (ValueError, AttributeError):
        return "5.4"
    parts = ident.split()
    return parts[2] if len(parts) > 2 and parts[1] == "Lua" else "5.4"
