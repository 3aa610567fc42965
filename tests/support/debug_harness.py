"""An in-process debugging harness: the cell runs on the test's thread (the Lua thread), a
controller thread plays the IDE, reacting to the debugger's events as a DAP client would."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from aikit_kernel.debug.lua_debugger import LuaDebugger
from aikit_kernel.lua.engine import LuaEngine, RunResult
from tests.support.lua import RecordingOutput

TIMEOUT = 15


class DebugHarness:
    """A Lua engine with a debugger, driven from a controller thread that plays the IDE."""

    def __init__(self, engine: LuaEngine) -> None:
        self.engine = engine
        self.debugger: LuaDebugger = engine.debugger
        self.events: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self.debugger.add_listener(lambda event, body: self.events.put((event, body)))
        self.cell_count = 0
        self._seen: list[tuple[str, dict[str, Any]]] = []
        self.output: RecordingOutput | None = None

    # ------------------------------------------------------------------ running
    def dump(self, code: str) -> str:
        """Write the cell's file first, as JupyterLab's dumpCell does; returns its path."""
        return self.engine.cells.dump(code)

    def break_at(self, code: str, line: int) -> str:
        """Dump the cell and set a breakpoint on ``line`` of it; returns its path."""
        path = self.dump(code)
        self.debugger.set_breakpoints(path, [{"line": line}])
        return path

    def run(self, code: str, controller: Callable[[DebugHarness], None] | None = None) -> RunResult:
        """Run a cell here while ``controller`` drives the debugger from another thread."""
        failures: list[BaseException] = []

        def control() -> None:
            try:
                if controller is not None:
                    controller(self)
            except BaseException as exc:  # noqa: BLE001 - re-raised on the test thread
                failures.append(exc)
                self.debugger.clear()
                self.engine.interrupt()

        thread = threading.Thread(target=control, daemon=True)
        thread.start()
        self.cell_count += 1
        result = self.engine.run_cell(code, f"[{self.cell_count}]")
        thread.join(TIMEOUT)
        assert not thread.is_alive(), "the controller did not finish"
        if failures:
            raise failures[0]
        return result

    # ------------------------------------------------------------------ controller helpers
    def event(self, name: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next event called ``name`` (others seen meanwhile stay available, in order)."""
        for i, (event, body) in enumerate(self._seen):
            if event == name:
                del self._seen[i]
                return body
        while True:
            event, body = self.events.get(timeout=timeout)
            if event == name:
                return body
            self._seen.append((event, body))

    def stopped(self) -> dict[str, Any]:
        return self.event("stopped")

    def lua(self, fn: Callable[[], Any]) -> Any:
        return self.debugger.submit(fn).result(TIMEOUT)

    def stack(self) -> list[dict[str, Any]]:
        return self.lua(self.debugger.stack)

    def top(self) -> dict[str, Any]:
        return self.stack()[0]

    def scope(self, name: str, frame_id: int | None = None) -> dict[str, str]:
        """name -> value of one scope (Locals, Upvalues, Globals) of a frame (default: the top)."""
        fid = frame_id if frame_id is not None else self.top()["id"]
        scopes = {s["name"]: s for s in self.lua(lambda: self.debugger.scopes(fid))}
        ref = scopes[name]["variablesReference"]
        return {v["name"]: v["value"] for v in self.lua(lambda: self.debugger.variables(ref))}

    def evaluate(self, expression: str, frame_id: int | None = None) -> str:
        fid = frame_id if frame_id is not None else self.top()["id"]
        return self.lua(lambda: self.debugger.evaluate(expression, fid))["result"]
