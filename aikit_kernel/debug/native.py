"""The native line hook (``linehook.c``): built once with the system C compiler, loaded with ctypes.

Why C: a line hook written in Lua runs a Lua function on every line (4-9x slower code); the C
filter forwards only lines that carry a breakpoint number or can end a pending step (1.9-3x;
``bench/debugger.py``). The library is compiled on first use into the user cache directory,
keyed by the source's hash and the Lua module, so a build happens once per machine. Without a
compiler the debugger falls back to the debug library's hook with a Lua-level filter: same
behaviour, slower while breakpoints exist.
"""

from __future__ import annotations

import ctypes
import logging
import os
import subprocess
import sysconfig
import threading
from importlib import resources
from pathlib import Path

from lupa import lua54

from aikit_components.native_build import build_c

log = logging.getLogger(__name__)

MAX_LINES = 1 << 16
MAX_SOURCES = 256
STEP_NONE, STEP_IN, STEP_OVER, STEP_OUT = 0, 1, 2, 3

_lock = threading.Lock()
_loaded: NativeLineHook | None | bool = False  # False: not tried yet; None: unavailable


class NativeLineHook:
    """The loaded library: its hook's address and the shared filter state (breakpoint lines, step)."""

    def __init__(self, lib: ctypes.CDLL, lua_lib: ctypes.CDLL) -> None:
        self._lib = lib
        self.address = ctypes.cast(lib.aikit_line_hook, ctypes.c_void_p).value
        self._lines = (ctypes.c_ubyte * MAX_LINES).in_dll(lib, "aikit_breakpoint_lines")
        self._mode = ctypes.c_int.in_dll(lib, "aikit_step_mode")
        self._state = ctypes.c_void_p.in_dll(lib, "aikit_step_state")
        self._depth = ctypes.c_int.in_dll(lib, "aikit_step_depth")
        self._sources = (ctypes.c_char_p * MAX_SOURCES).in_dll(lib, "aikit_sources")
        self._source_lengths = (ctypes.c_ulong * MAX_SOURCES).in_dll(lib, "aikit_source_lengths")
        self._source_count = ctypes.c_int.in_dll(lib, "aikit_source_count")
        self._source_buffers: list[ctypes.Array[ctypes.c_char]] = []  # keeps the strings alive
        self._retired: list[ctypes.Array[ctypes.c_char]] = []
        ctypes.c_void_p.in_dll(lib, "aikit_getstack").value = ctypes.cast(lua_lib.lua_getstack, ctypes.c_void_p).value
        ctypes.c_void_p.in_dll(lib, "aikit_getinfo").value = ctypes.cast(lua_lib.lua_getinfo, ctypes.c_void_p).value

    def set_forward(self, hook_address: int) -> None:
        """The debug library's C hook, to which interesting events are forwarded."""
        ctypes.c_void_p.in_dll(self._lib, "aikit_forward").value = hook_address

    def set_breakpoints(self, chunk_names: list[bytes], lines: set[int]) -> bool:
        """Filter on exactly these chunk names (``b"@" + path``) and line numbers; False when
        there are more files than the filter holds (every marked line is then forwarded)."""
        self._source_count.value = 0
        buffers = [ctypes.create_string_buffer(name) for name in chunk_names[:MAX_SOURCES]]
        for i, (name, buffer) in enumerate(zip(chunk_names, buffers)):
            self._sources[i] = ctypes.cast(buffer, ctypes.c_char_p)
            self._source_lengths[i] = len(name)
        fits = len(chunk_names) <= MAX_SOURCES
        ctypes.memset(self._lines, 0, MAX_LINES)
        for line in lines:
            if 0 <= line < MAX_LINES:
                self._lines[line] = 1
        self._source_count.value = len(buffers) if fits else 0
        # The Lua thread may still be reading the previous strings: free them one update later.
        self._retired, self._source_buffers = self._source_buffers, buffers
        return fits

    def set_step(self, mode: int, state: int = 0, depth: int = 0) -> None:
        """Arm (or clear, with STEP_NONE) a step; ``state`` is the lua_State address it belongs to."""
        self._mode.value = STEP_NONE
        self._state.value = state or None
        self._depth.value = depth
        self._mode.value = mode


def load(lua_lib: ctypes.CDLL) -> NativeLineHook | None:
    """The native hook, built on first use; None when no C compiler is available (logged once)."""
    global _loaded
    if os.environ.get("AIKIT_DEBUG_NATIVE", "1") == "0":  # force the Lua fallback (tests, diagnosis)
        return None
    with _lock:
        if _loaded is False:
            try:
                _loaded = NativeLineHook(ctypes.CDLL(str(_build())), lua_lib)
            except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
                log.warning("debugger: native line hook unavailable (%s); using the slower Lua hook", exc)
                _loaded = None
        return _loaded  # type: ignore[return-value]


def _build() -> Path:
    source = resources.files(__package__).joinpath("linehook.c").read_bytes()
    return build_c(source, "linehook", suffix=sysconfig.get_config_var("SHLIB_SUFFIX") or ".so",
                   flags=("-O2", "-shared", "-fPIC"), salt=os.fsencode(lua54.__file__ or ""))
