"""The Lua debugger: breakpoints, stepping, pausing and inspection for one :class:`LuaEngine`.

Control side (any thread: the I/O loop serving Jupyter's control channel or a DAP socket) sets
breakpoints, asks to pause, continue or step, and submits inspection requests. Lua side: the hook
handlers of ``debugger.lua`` call back here on the Lua thread; when the code must stop, the hook
stays inside :meth:`_stop`, a small loop serving queued requests (stack, variables, evaluate)
until a resume request arrives (see docs/architecture.md and docs/debugging.md).

Hooks cost nothing until needed: a line hook is installed only while a breakpoint exists or a
step is pending, and it is the native filter of ``linehook.c`` when a C compiler is available.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import queue
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any

from ..lua.host import text
from ..lua.interrupt import LUA_MASKLINE, LUA_MASKRET, lua_library
from . import native

if TYPE_CHECKING:
    from ..lua.engine import LuaEngine

log = logging.getLogger(__name__)

THREAD_ID = 1
EXCEPTION_FILTERS = [
    {"filter": "raised", "label": "Raised errors", "description": "Stop where an error is raised, even if pcall catches it",
     "default": False},
    {"filter": "uncaught", "label": "Uncaught errors", "description": "Stop where an error that ends the cell is raised",
     "default": False},
]
EXCEPTION_FILTER_IDS = ("raised", "uncaught")
_HIT_CONDITION = re.compile(r"^\s*(==|>=|<=|>|<|%)?\s*(\d+)\s*$")
_LOG_EXPRESSION = re.compile(r"\{([^{}]+)\}")
_STEP_MODES = {"in": native.STEP_IN, "over": native.STEP_OVER, "out": native.STEP_OUT}


class DebuggerError(Exception):
    """A request the debugger cannot serve (unknown frame, not paused, ...): the message says why."""


@dataclass
class Breakpoint:
    id: int
    path: str
    line: int
    condition: str | None = None
    hit_condition: str | None = None
    log_message: str | None = None
    verified: bool = True
    message: str | None = None
    hits: int = 0

    def to_dap(self) -> dict[str, Any]:
        body: dict[str, Any] = {"id": self.id, "verified": self.verified, "line": self.line, "source": {"path": self.path}}
        if self.message:
            body["message"] = self.message
        return body

    def hit_matches(self) -> bool:
        """Count this hit and tell whether the hit condition (``5``, ``>= 3``, ``% 2``) holds."""
        self.hits += 1
        if not self.hit_condition:
            return True
        m = _HIT_CONDITION.match(self.hit_condition)
        if m is None:
            return True
        op, n = m.group(1) or "==", int(m.group(2))
        return {"==": self.hits == n, ">=": self.hits >= n, "<=": self.hits <= n, ">": self.hits > n,
                "<": self.hits < n, "%": n > 0 and self.hits % n == 0}[op]


@dataclass
class StopInfo:
    reason: str
    description: str = ""
    text: str | None = None
    hit_ids: list[int] = field(default_factory=list)
    uncaught: bool = False  # for an exception stop: the error ends the run

    def event_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"reason": self.reason, "threadId": THREAD_ID, "allThreadsStopped": True,
                                "description": self.description or self.reason}
        if self.text:
            body["text"] = self.text
        if self.hit_ids:
            body["hitBreakpointIds"] = self.hit_ids
        return body


@dataclass
class _Resume:
    step: str | None  # None: continue; "in" / "over" / "out"


EventListener = Callable[[str, dict[str, Any]], None]


class LuaDebugger:
    """One debugger per engine; bridges (Jupyter, DAP over TCP) share it."""

    def __init__(self, engine: LuaEngine) -> None:
        self.engine = engine
        self._lock = threading.RLock()
        self._breakpoints: dict[str, list[Breakpoint]] = {}
        self._next_breakpoint_id = 0
        self._filters: set[str] = set()
        self._listeners: list[EventListener] = []
        self._requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._stopped: StopInfo | None = None
        self._step: str | None = None
        self._entry = False  # the pending step is stopOnEntry's
        self._native: native.NativeLineHook | None = None
        self._native_tried = False
        host = engine.runtime.table_from({
            b"line": self._on_line, b"count": self._on_count, b"exception": self._on_exception,
            b"step_return": lambda: self._stop(StopInfo("step")),
        })
        code = resources.files(__package__).joinpath("debugger.lua").read_bytes()
        loader = engine.runtime.globals()[b"load"](code, b"=[aikit:debugger]", b"t")
        self.lua = loader(engine.internal, host)
        self._fn = {name: self.lua[name.encode()] for name in (
            "frames", "scopes", "variables", "evaluate", "describe", "set_variable", "enter", "leave",
            "set_step", "clear_step", "step_anywhere", "set_exception_filters", "copy_to_global")}

    # ------------------------------------------------------------------ events
    def add_listener(self, listener: EventListener) -> None:
        """``listener(event, body)`` receives DAP events (stopped, output, ...) from any thread."""
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: EventListener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def emit(self, event: str, body: dict[str, Any]) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event, body)
            except Exception:  # a broken bridge must not stop the others or the code
                log.exception("debug event listener failed")

    # ------------------------------------------------------------------ control side (any thread)
    @property
    def is_stopped(self) -> bool:
        return self._stopped is not None

    @property
    def stop_info(self) -> StopInfo | None:
        return self._stopped

    def set_breakpoints(self, path: str, specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Replace the breakpoints of one file; returns them as DAP ``Breakpoint`` objects."""
        path = os.path.normpath(path)
        code_lines = _code_lines(path)
        result: list[Breakpoint] = []
        with self._lock:
            for spec in specs:
                line = int(spec.get("line", 0))
                self._next_breakpoint_id += 1
                bp = Breakpoint(self._next_breakpoint_id, path, line, spec.get("condition") or None,
                                spec.get("hitCondition") or None, spec.get("logMessage") or None)
                if code_lines is not None:
                    moved = next((n for n in sorted(code_lines) if n >= line), None)
                    if moved is None:
                        bp.verified, bp.message = False, f"line {line} is past the last line of code"
                    else:
                        bp.line = moved
                result.append(bp)
            if result:
                self._breakpoints[path] = result
            else:
                self._breakpoints.pop(path, None)
            self._update_hooks()
        return [bp.to_dap() for bp in result]

    def breakpoints(self) -> dict[str, list[dict[str, Any]]]:
        with self._lock:
            return {path: [bp.to_dap() for bp in bps] for path, bps in self._breakpoints.items()}

    def clear(self) -> None:
        """Forget all breakpoints and filters and let stopped code run on (a client disconnected)."""
        with self._lock:
            self._breakpoints.clear()
            self._filters.clear()
            self._update_hooks()
        self.submit(lambda: self._fn["set_exception_filters"](False, False))
        if self._stopped is not None:
            self.resume(None)

    def set_exception_filters(self, filters: list[str]) -> None:
        """Stop on errors: ``raised`` (every error where it is raised, caught or not) and/or
        ``uncaught`` (errors that end the run)."""
        unknown = [f for f in filters if f not in EXCEPTION_FILTER_IDS]
        if unknown:
            raise DebuggerError(f"unknown exception filter(s) {unknown}; use 'raised' and/or 'uncaught'")
        with self._lock:
            self._filters = set(filters)
        want = ("uncaught" in filters, "raised" in filters)
        future = self.submit(lambda: self._fn["set_exception_filters"](*want))
        future.result(timeout=None if self._stopped or self.engine.dispatcher.on_lua_thread() else 30)

    def pause(self) -> bool:
        """Stop running code at its next instruction; False when nothing runs."""
        if self._stopped is not None:
            return True
        return self.engine.request_pause()

    def resume(self, step: str | None) -> None:
        """Continue (``step=None``) or step ``in``/``over``/``out`` from the stopped position."""
        if step is not None and step not in _STEP_MODES:
            raise DebuggerError(f"unknown step {step!r}")
        if self._stopped is None:
            raise DebuggerError("the code is not stopped")
        self._requests.put(_Resume(step))

    def submit(self, fn: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        """Run ``fn`` on the Lua thread: at once in the stopped loop, else at the next safe point
        (an idle kernel serves it right away; a busy one when it next waits)."""
        if not self.engine.dispatcher.on_lua_thread():
            with self._lock:  # against _stop's exit: queued before it drains, or not queued at all
                if self._stopped is not None:
                    future: concurrent.futures.Future[Any] = concurrent.futures.Future()
                    self._requests.put((fn, future))
                    return future
        return self.engine.dispatcher.submit(fn)

    # ------------------------------------------------------------------ inspection (Lua thread)
    def stack(self) -> list[dict[str, Any]]:
        self._require_stopped()
        frames = self._fn["frames"]()
        out = []
        for i in range(1, len(frames) + 1):
            f = frames[i]
            source = text(f[b"source"])
            path = source[1:] if source.startswith("@") else None
            label = self.engine.cells.prettify(path) if path else source
            name = text(f[b"name"])
            if path and label != path and (name == "main chunk" or f[b"cell"]):
                name = f"cell {label}"
            frame: dict[str, Any] = {"id": int(f[b"id"]), "name": name, "line": int(f[b"line"] or 0), "column": 1}
            if path:
                frame["source"] = {"name": label if label != path else os.path.basename(path), "path": path}
            out.append(frame)
        return out

    def scopes(self, frame_id: int) -> list[dict[str, Any]]:
        self._require_stopped()
        scopes = self._fn["scopes"](frame_id)
        if len(scopes) == 0:
            raise DebuggerError(f"unknown frame {frame_id}")
        out = []
        for i in range(1, len(scopes) + 1):
            s = scopes[i]
            scope = {"name": text(s[b"name"]), "variablesReference": int(s[b"ref"]),
                     "namedVariables": int(s[b"named"] or 0), "expensive": bool(s[b"expensive"])}
            if scope["name"] == "Locals":
                scope["presentationHint"] = "locals"
            out.append(scope)
        return out

    def variables(self, ref: int, filter_: str | None = None, start: int = 0, count: int = 0) -> list[dict[str, Any]]:
        values = self._fn["variables"](ref, (filter_ or "").encode() or None, start, count)
        if values is None:
            raise DebuggerError(f"unknown variablesReference {ref} (references last until the code resumes)")
        return [_variable(values[i]) for i in range(1, len(values) + 1)]

    def global_variables(self) -> list[dict[str, Any]]:
        """The user's globals (what the cells defined), for a variable explorer; works while stopped
        and while idle (the references it hands out last until the next call or resume)."""
        return self.variables(int(self.lua[b"globals_ref"]()))

    def evaluate(self, expression: str, frame_id: int | None = None) -> dict[str, Any]:
        ok, values = self._fn["evaluate"](frame_id, expression.encode())
        if not ok:
            raise DebuggerError(text(values))
        var = self._fn["describe"](values, expression.encode())
        v = _variable(var)
        return {"result": v["value"], "type": v.get("type", ""), "variablesReference": v["variablesReference"],
                **{k: v[k] for k in ("namedVariables", "indexedVariables") if k in v}}

    def copy_to_global(self, expression: str, name: str, frame_id: int | None = None) -> None:
        ok, message = self._fn["copy_to_global"](frame_id, expression.encode(), name.encode())
        if not ok:
            raise DebuggerError(text(message))

    def set_variable(self, ref: int, name: str, value: str) -> dict[str, Any]:
        ok, var = self._fn["set_variable"](ref, name.encode(), value.encode())
        if not ok:
            raise DebuggerError(text(var))
        v = _variable(var)
        return {"value": v["value"], "type": v.get("type", ""), "variablesReference": v["variablesReference"]}

    # ------------------------------------------------------------------ Lua side: hook callbacks
    def _on_line(self, source: bytes, line: int, step_done: bool) -> Any:
        path = os.path.normpath(text(source)[1:]) if source[:1] == b"@" else None
        reason: StopInfo | None = None
        if path is not None:
            with self._lock:
                candidates = [bp for bp in self._breakpoints.get(path, ()) if bp.line == line and bp.verified]
            for bp in candidates:
                if self._breakpoint_fires(bp):
                    reason = reason or StopInfo("breakpoint", f"breakpoint at line {line}")
                    reason.hit_ids.append(bp.id)
        if reason is None and step_done and self._step is not None:
            reason = StopInfo("entry" if self._entry else "step")
        if reason is None:
            return None
        return self._stop(reason)

    def _on_count(self) -> Any:
        if not self.engine.take_pause():
            return False
        return self._stop(StopInfo("pause", "paused")) or True

    def _on_exception(self, kind: bytes, message: bytes) -> Any:
        kind_s = text(kind)
        if kind_s not in self._filters and "raised" not in self._filters:
            return None
        description = self.engine.cells.prettify(text(message))
        return self._stop(StopInfo("exception", description, description, uncaught=kind_s == "uncaught"))

    def _breakpoint_fires(self, bp: Breakpoint) -> bool:
        """Condition, hit count and log message of a breakpoint reached on the Lua thread."""
        if bp.condition is None and bp.log_message is None:
            return bp.hit_matches()
        self._fn["enter"]()
        try:
            self._fn["frames"]()
            if bp.condition is not None:
                ok, values = self._fn["evaluate"](1, bp.condition.encode())
                if not ok:
                    self.emit("output", {"category": "console",
                                         "output": f"breakpoint condition {bp.condition!r} failed: {text(values)}\n"})
                    return True  # a broken condition stops, so the user sees it
                if not (values[b"n"] > 0 and values[1] not in (None, False)):
                    return False
            if not bp.hit_matches():
                return False
            if bp.log_message is not None:
                self.emit("output", {"category": "console", "output": self._interpolate(bp.log_message) + "\n",
                                     "source": {"path": bp.path}, "line": bp.line})
                return False
            return True
        finally:
            self._fn["leave"]()

    def _interpolate(self, message: str) -> str:
        def value(m: re.Match[str]) -> str:
            ok, values = self._fn["evaluate"](1, m.group(1).encode())
            if not ok:
                return f"<error: {text(values)}>"
            return _variable(self._fn["describe"](values, None))["value"]
        return _LOG_EXPRESSION.sub(value, message)

    def _stop(self, info: StopInfo) -> Any:
        """Stopped on the Lua thread: serve requests until resumed. Returns b"interrupted" when the
        kernel is interrupted meanwhile (debugger.lua turns it into the interrupt)."""
        self._fn["enter"]()
        self._set_step(None)
        self._stopped = info
        self.emit("stopped", info.event_body())
        interrupted = self.engine.interrupt_requested
        try:
            while True:
                if interrupted():
                    return b"interrupted"
                try:
                    item = self._requests.get(timeout=0.05)
                except queue.Empty:
                    continue
                if isinstance(item, _Resume):
                    if item.step is not None:
                        self._set_step(item.step)
                    return None
                fn, future = item
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(fn())
                    except BaseException as exc:  # noqa: BLE001 - handed to the requester
                        future.set_exception(exc)
        finally:
            with self._lock:
                self._stopped = None
            self._fn["leave"]()
            self._drain_requests()

    def _drain_requests(self) -> None:
        """Requests that arrived as the code resumed go to the dispatcher (served at safe points)."""
        while True:
            try:
                item = self._requests.get_nowait()
            except queue.Empty:
                return
            if not isinstance(item, _Resume):
                fn, future = item
                self.engine.dispatcher.submit(fn).add_done_callback(lambda f, out=future: _copy_future(f, out))

    def stop_on_entry(self) -> None:
        """Stop at the first line of the next run (Lua thread, before it starts)."""
        self._fn["step_anywhere"]()
        self._step, self._entry = "in", True
        with self._lock:
            self._update_hooks()  # loads the native filter on first use
        if self._native is not None:
            self._native.set_step(native.STEP_IN)

    def run_ended(self) -> None:
        """A run finished (Lua thread): a pending step ends with it."""
        if self._step is not None:
            self._set_step(None)

    # ------------------------------------------------------------------ hooks
    def _set_step(self, mode: str | None) -> None:
        self._entry = False
        if mode is None:
            self._fn["clear_step"]()
            self._step = None
            if self._native is not None:
                self._native.set_step(native.STEP_NONE)
        else:
            depth, state = self._fn["set_step"](mode.encode())
            self._step = mode
            if self._native is not None:
                self._native.set_step(_STEP_MODES[mode], int(text(state), 16), int(depth))
        with self._lock:
            self._update_hooks()

    def _update_hooks(self) -> None:
        """Install the line hook while breakpoints or a step need it; remove it otherwise."""
        needed = bool(self._breakpoints) or self._step is not None
        if not needed:
            self.engine.set_debug_hook(None)
            return
        if not self._native_tried:
            self._native_tried = True
            self._native = native.load(lua_library())
            if self._native is not None:
                self._native.set_forward(self.engine.debug_library_hook)
        if self._native is not None:
            names = [b"@" + path.encode() for path in self._breakpoints]
            lines = {bp.line for bps in self._breakpoints.values() for bp in bps if bp.verified}
            self._native.set_breakpoints(names, lines)
            self.engine.set_debug_hook(self._native.address, self._hook_mask())
        else:
            self.engine.set_debug_hook(self.engine.debug_library_hook, self._hook_mask())

    def _hook_mask(self) -> int:
        """Lines; plus returns while stepping over or out (a step can end on a return)."""
        return LUA_MASKLINE | (LUA_MASKRET if self._step in ("over", "out") else 0)

    @property
    def native_filter(self) -> bool:
        """True when the C line filter is in use (False: the slower Lua fallback, or not needed yet)."""
        return self._native is not None

    def _require_stopped(self) -> None:
        if self._stopped is None:
            raise DebuggerError("the code is not stopped (stack and scopes exist only while stopped)")


def _variable(v: Any) -> dict[str, Any]:
    var: dict[str, Any] = {"name": text(v[b"name"]), "value": text(v[b"value"]), "type": text(v[b"type"]),
                           "variablesReference": int(v[b"ref"] or 0)}
    if v[b"evaluate_name"] is not None:
        var["evaluateName"] = text(v[b"evaluate_name"])
    if var["variablesReference"]:
        var["indexedVariables"] = int(v[b"indexed"] or 0)
        var["namedVariables"] = int(v[b"named"] or 0)
    return var


def _copy_future(source: concurrent.futures.Future[Any], target: concurrent.futures.Future[Any]) -> None:
    if not target.set_running_or_notify_cancel():
        return
    exc = source.exception()
    if exc is not None:
        target.set_exception(exc)
    else:
        target.set_result(source.result())


def _code_lines(path: str) -> set[int] | None:
    """Lines of a file that hold code (not blank, not only a comment); None if it cannot be read."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            source = f.read()
    except OSError:
        return None
    from ..lua.source import tokenize

    lines: set[int] = set()
    for tok in tokenize(source):
        if tok.kind != "comment":
            first = source.count("\n", 0, tok.start) + 1
            last = first + tok.text.count("\n")
            lines.update(range(first, last + 1))
    return lines
