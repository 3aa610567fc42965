"""``aikit debug script.lua``: run a script under the debugger, driven by an IDE over DAP.

The script waits until the IDE has attached (or launched) and sent ``configurationDone``, so
breakpoints set at start-up are in place before the first line runs. Its output goes to the
terminal (TCP mode) and to the IDE's debug console as DAP ``output`` events.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from typing import Any

from .. import runtime
from ..debug.server import DapServer
from ..lua.engine import LuaEngine, RunResult
from ..output import TerminalOutput
from .run import EXIT_ERROR, open_script_runtime, report, session_end_status


class _TeeOutput(TerminalOutput):
    """Terminal output (unless serving DAP on stdio) plus DAP ``output`` events."""

    def __init__(self, server: list[DapServer], to_terminal: bool) -> None:
        super().__init__()
        self._server = server
        self._to_terminal = to_terminal

    def write(self, name: str, text: str) -> None:
        if self._to_terminal:
            super().write(name, text)
        if self._server:
            self._server[0].send_event("output", {"category": "stderr" if name == "stderr" else "stdout", "output": text})


def debug_command(script: str | None, script_args: list[str], host: str, port: int, stdio: bool) -> int:
    """Serve DAP, wait for the IDE's configuration, run the script; return the exit status."""
    if script is not None and not os.path.isfile(script):
        print(f"aikit debug: {script}: no such file", file=sys.stderr)
        return 2
    server_box: list[DapServer] = []
    lua = open_script_runtime(script or "debug", _TeeOutput(server_box, not stdio), "debug")
    if isinstance(lua, int):
        return lua
    ran: list[RunResult] = []  # the script's result, once it ran
    try:
        return _serve_and_run(lua.engine, script, script_args, host, port, stdio, server_box, ran)
    finally:  # however serving DAP ended (or failed to start)
        sys.stdout.flush()
        lua.close(session_end_status(ran[0] if ran else None))


def _serve_and_run(engine: LuaEngine, script: str | None, script_args: list[str], host: str, port: int,
                   stdio: bool, server_box: list[DapServer], ran: list[RunResult]) -> int:
    """Serve DAP on ``engine``'s debugger and run the script the IDE launches (its result appended
    to ``ran``); the exit status."""
    program: dict[str, Any] = {"script": script, "args": script_args, "stop_on_entry": False}
    configured = threading.Event()
    terminated = threading.Event()

    async def launch(args: dict[str, Any]) -> None:
        if args.get("program"):
            program["script"] = str(args["program"])
            program["args"] = [str(a) for a in args.get("args") or []]
        program["stop_on_entry"] = bool(args.get("stopOnEntry"))

    def terminate() -> None:
        terminated.set()
        configured.set()
        engine.interrupt()

    server = DapServer(engine.debugger, launcher=launch, on_configured=configured.set, on_terminate=terminate)
    server_box.append(server)
    # A terminate that comes after the check below but before the script's run begins finds
    # nothing running to interrupt: the run, as it begins, sees it instead.
    engine.interrupter.take_pending = terminated.is_set
    if stdio:
        runtime.submit(server.serve_stdio())
    else:
        bound = runtime.run_sync(server.listen(host, port))
        print(f"aikit debug: waiting for a debugger (DAP) on {host}:{bound}", file=sys.stderr, flush=True)
    status = EXIT_ERROR
    try:
        while not configured.wait(0.05):  # serve the debugger's Lua requests while waiting
            engine.dispatcher.service()
        if terminated.is_set():
            return EXIT_ERROR
        target = program["script"]
        if not target or not os.path.isfile(target):
            server.send_event("output", {"category": "important", "output": f"aikit debug: no script to run ({target!r})\n"})
            print(f"aikit debug: no script to run ({target!r})", file=sys.stderr)
            return 2
        if program["stop_on_entry"]:
            engine.debugger.stop_on_entry()
        ran.append(engine.run_script(os.path.abspath(target), program["args"]))
        status = report(ran[0])
        return status
    finally:
        server.send_event("exited", {"exitCode": status})
        server.send_event("terminated", {})
        try:
            runtime.run_sync(asyncio.wait_for(server.disconnected.wait(), 5.0), timeout=6)
        except Exception:  # the IDE did not disconnect: go anyway
            pass
        runtime.run_sync(server.close(), timeout=5)
