"""The Debug Adapter Protocol over the Lua debugger: one request handler for both bridges.

:class:`DapSession` turns DAP requests into :class:`~.lua_debugger.LuaDebugger` calls and builds
the responses; the bridges only move messages (Jupyter's control channel and IOPub, or a socket
with ``Content-Length`` framing, :func:`read_message` / :func:`encode_message`). Requests that
read Lua state run on the Lua thread through ``debugger.submit``; the session awaits them on the
I/O loop, with a timeout when the kernel is busy and not stopped.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from .lua_debugger import EXCEPTION_FILTER_IDS, EXCEPTION_FILTERS, THREAD_ID, DebuggerError, LuaDebugger

log = logging.getLogger(__name__)

BUSY_TIMEOUT = 5.0  # seconds to wait for a busy (running, not stopped) kernel to reach a safe point

CAPABILITIES: dict[str, Any] = {
    "supportsConfigurationDoneRequest": True,
    "supportsConditionalBreakpoints": True,
    "supportsHitConditionalBreakpoints": True,
    "supportsLogPoints": True,
    "supportsEvaluateForHovers": True,
    "supportsSetVariable": True,
    "supportsExceptionInfoRequest": True,
    "supportsLoadedSourcesRequest": True,
    "supportsDelayedStackTraceLoading": True,
    "supportsTerminateRequest": True,
    "supportsModulesRequest": True,
    "supportsFunctionBreakpoints": False,
    "supportsStepBack": False,
    "supportsRestartFrame": False,
    "supportsGotoTargetsRequest": False,
    "supportsStepInTargetsRequest": False,
    "supportsCompletionsRequest": False,
    "supportsValueFormattingOptions": False,
    "supportsSteppingGranularity": False,
    "exceptionBreakpointFilters": EXCEPTION_FILTERS,
}

EventSink = Callable[[dict[str, Any]], None]



def malformed_arguments(command: str, exc: Exception) -> str:
    """What a client is told when a request's arguments do not have the shape DAP gives them."""
    if isinstance(exc, KeyError):
        return f"{command!r} request: missing argument {exc}"
    detail = str(exc) or type(exc).__name__
    return f"{command!r} request: malformed arguments ({detail}); see the Debug Adapter Protocol's {command} request"

class DapSession:
    """Serves one DAP client. ``send`` delivers event messages (from any thread)."""

    def __init__(self, debugger: LuaDebugger, send: EventSink,
                 launcher: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
                 on_configured: Callable[[], None] | None = None,
                 on_terminate: Callable[[], None] | None = None) -> None:
        self.debugger = debugger
        self._send = send
        self._seq = itertools.count(1)
        self._launcher = launcher
        self._on_configured = on_configured
        self._on_terminate = on_terminate
        self._after: list[Callable[[], None]] = []
        self.started = False  # launch or attach received: events go to the client
        self._configuration_done = False
        self._ran = False  # on_configured was called
        self._listening = False
        self._listen()

    # ------------------------------------------------------------------ messages
    def event(self, event: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        message: dict[str, Any] = {"seq": next(self._seq), "type": "event", "event": event}
        if body is not None:
            message["body"] = body
        return message

    def send_event(self, event: str, body: dict[str, Any] | None = None) -> None:
        self._send(self.event(event, body))

    def _listen(self) -> None:
        if not self._listening:
            self._listening = True
            self.debugger.add_listener(self._forward)

    def _forward(self, event: str, body: dict[str, Any]) -> None:
        if self.started or event == "output":
            self.send_event(event, body)

    def close(self) -> None:
        """The client went away: stop forwarding events, drop its breakpoints, let code run on.
        (A Jupyter kernel keeps its session: the next ``initialize`` starts listening again.)"""
        self.debugger.remove_listener(self._forward)
        self._listening = False
        if self.started:
            self.started = False
            self.debugger.clear()

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """Serve one request; returns the response (the events and resumes it implies happen right
        after the response is sent, see :meth:`flush_after`)."""
        command = str(request.get("command", ""))
        response: dict[str, Any] = {"seq": next(self._seq), "type": "response", "request_seq": request.get("seq", 0),
                                    "command": command, "success": True}
        handler = getattr(self, "on_" + command, None) if command.isidentifier() else None
        if handler is None:
            response.update(success=False, message=f"aikit's debugger does not support the {command!r} request")
            return response
        args = request.get("arguments") or {}
        if not isinstance(args, dict):
            response.update(success=False, message=f"the arguments of {command!r} must be an object")
            return response
        try:
            body = await handler(args)
        except DebuggerError as exc:
            response.update(success=False, message=str(exc) or type(exc).__name__)
            return response
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:  # malformed arguments
            response.update(success=False, message=malformed_arguments(command, exc))
            return response
        except TimeoutError:
            response.update(success=False, message="the kernel is busy running code; pause it first")
            return response
        if body is not None:
            response["body"] = body
        return response

    def flush_after(self) -> None:
        """Do what a response implies, once it is sent: the ``initialized`` event after
        ``initialize``, and resuming the code after ``continue``/``next``/``stepIn``/``stepOut``
        (so the next ``stopped`` event cannot reach the client before the response)."""
        after, self._after = self._after, []
        for action in after:
            try:
                action()
            except DebuggerError as exc:  # the code was resumed meanwhile (a disconnect, an interrupt)
                log.debug("deferred debugger action dropped: %s", exc)

    def _resume_after_response(self, step: str | None) -> None:
        if not self.debugger.is_stopped:
            raise DebuggerError("the code is not stopped")
        self._after.append(lambda: self.debugger.resume(step) if self.debugger.is_stopped else None)

    def _start_when_ready(self) -> None:
        """Let the debuggee start once the client has both configured the session and attached (or
        launched). DAP does not order ``configurationDone`` against ``launch``/``attach``: starting
        on ``configurationDone`` alone ran the script before ``attach`` and so before its ``stopped``
        events were forwarded (a launch's ``program`` would have been ignored too)."""
        if self.started and self._configuration_done and not self._ran:
            self._ran = True
            if self._on_configured is not None:
                self._on_configured()

    async def run_on_lua(self, fn: Callable[[], Any]) -> Any:
        future = self.debugger.submit(fn)
        timeout = None if self.debugger.is_stopped else BUSY_TIMEOUT
        return await asyncio.wait_for(asyncio.wrap_future(future), timeout)

    # ------------------------------------------------------------------ session
    async def on_initialize(self, args: dict[str, Any]) -> dict[str, Any]:
        self._listen()
        self._after.append(lambda: self.send_event("initialized", {}))
        return dict(CAPABILITIES)

    async def on_attach(self, args: dict[str, Any]) -> None:
        self._listen()
        self.started = True
        self._start_when_ready()

    async def on_launch(self, args: dict[str, Any]) -> None:
        if self._launcher is None:
            raise DebuggerError("this debug server runs a kernel: use 'attach' (or `aikit debug script.lua` to launch)")
        await self._launcher(args)
        self.started = True
        self._start_when_ready()

    async def on_configurationDone(self, args: dict[str, Any]) -> None:
        self._configuration_done = True
        self._start_when_ready()

    async def on_disconnect(self, args: dict[str, Any]) -> None:
        if args.get("terminateDebuggee") and self._on_terminate is not None:
            self._on_terminate()
        self.close()

    async def on_terminate(self, args: dict[str, Any]) -> None:
        if self._on_terminate is not None:
            self._on_terminate()
        else:
            self.debugger.engine.interrupt()
        if self.debugger.is_stopped:
            self.debugger.resume(None)

    # ------------------------------------------------------------------ breakpoints
    async def on_setBreakpoints(self, args: dict[str, Any]) -> dict[str, Any]:
        source = args.get("source") or {}
        path = source.get("path")
        if not path:
            raise DebuggerError("setBreakpoints needs source.path")
        specs = args.get("breakpoints")
        if specs is None:
            specs = [{"line": line} for line in args.get("lines") or []]
        return {"breakpoints": self.debugger.set_breakpoints(path, list(specs))}

    async def on_setExceptionBreakpoints(self, args: dict[str, Any]) -> dict[str, Any]:
        filters = [str(f) for f in args.get("filters") or []]
        filters += [str(o.get("filterId")) for o in args.get("filterOptions") or [] if isinstance(o, dict)]
        known = [f for f in filters if f in EXCEPTION_FILTER_IDS]  # others (a client's defaults) are not verified
        await asyncio.get_running_loop().run_in_executor(None, self.debugger.set_exception_filters, known)
        return {"breakpoints": [{"verified": f in EXCEPTION_FILTER_IDS} if f in EXCEPTION_FILTER_IDS else
                                {"verified": False, "message": f"aikit has no {f!r} exception filter"} for f in filters]}

    # ------------------------------------------------------------------ execution
    async def on_threads(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"threads": [{"id": THREAD_ID, "name": "Lua"}]}

    async def on_continue(self, args: dict[str, Any]) -> dict[str, Any]:
        if self.debugger.is_stopped:
            self._resume_after_response(None)
        return {"allThreadsContinued": True}

    async def on_next(self, args: dict[str, Any]) -> None:
        self._resume_after_response("over")

    async def on_stepIn(self, args: dict[str, Any]) -> None:
        self._resume_after_response("in")

    async def on_stepOut(self, args: dict[str, Any]) -> None:
        self._resume_after_response("out")

    async def on_pause(self, args: dict[str, Any]) -> None:
        if not self.debugger.pause():
            raise DebuggerError("nothing is running to pause")

    # ------------------------------------------------------------------ inspection
    async def on_stackTrace(self, args: dict[str, Any]) -> dict[str, Any]:
        frames = await self.run_on_lua(self.debugger.stack)
        start = int(args.get("startFrame") or 0)
        levels = int(args.get("levels") or 0)
        shown = frames[start:start + levels] if levels > 0 else frames[start:]
        return {"stackFrames": shown, "totalFrames": len(frames)}

    async def on_scopes(self, args: dict[str, Any]) -> dict[str, Any]:
        frame_id = int(args["frameId"])
        return {"scopes": await self.run_on_lua(lambda: self.debugger.scopes(frame_id))}

    async def on_variables(self, args: dict[str, Any]) -> dict[str, Any]:
        ref = int(args["variablesReference"])
        filter_, start, count = args.get("filter"), int(args.get("start") or 0), int(args.get("count") or 0)
        return {"variables": await self.run_on_lua(lambda: self.debugger.variables(ref, filter_, start, count))}

    async def on_evaluate(self, args: dict[str, Any]) -> dict[str, Any]:
        expression = str(args.get("expression", ""))
        frame_id = args.get("frameId")
        if frame_id is not None and not self.debugger.is_stopped:
            frame_id = None  # a watch refreshed after the code went on: evaluate in the globals
        fid = int(frame_id) if frame_id is not None else None
        return await self.run_on_lua(lambda: self.debugger.evaluate(expression, fid))

    async def on_setVariable(self, args: dict[str, Any]) -> dict[str, Any]:
        ref, name, value = int(args["variablesReference"]), str(args["name"]), str(args["value"])
        return await self.run_on_lua(lambda: self.debugger.set_variable(ref, name, value))

    async def on_exceptionInfo(self, args: dict[str, Any]) -> dict[str, Any]:
        info = self.debugger.stop_info
        if info is None or info.reason != "exception":
            raise DebuggerError("not stopped on an error")
        return {"exceptionId": "LuaError", "description": info.description,
                "breakMode": "unhandled" if info.uncaught else "always"}

    async def on_source(self, args: dict[str, Any]) -> dict[str, Any]:
        path = (args.get("source") or {}).get("path")
        if not path:
            raise DebuggerError("only sources with a path can be shown")
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                return {"content": f.read(), "mimeType": "text/x-lua"}
        except OSError as exc:
            raise DebuggerError(f"cannot read {path}: {exc.strerror}") from exc

    async def on_loadedSources(self, args: dict[str, Any]) -> dict[str, Any]:
        engine = self.debugger.engine
        sources = [{"name": engine.cells.prettify(p), "path": p} for p in engine.cells.paths()]
        sources += [{"name": os.path.basename(p), "path": p} for p in engine.script_paths]
        return {"sources": sources}

    async def on_modules(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"modules": [], "totalModules": 0}


async def read_message(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """One ``Content-Length``-framed DAP message; None at end of stream. Raises ValueError on a
    malformed header or body."""
    length = None
    while True:
        line = await reader.readline()
        if not line:
            return None
        line = line.strip()
        if not line:
            if length is None:
                continue
            break
        name, _, value = line.decode("ascii", errors="replace").partition(":")
        if name.strip().lower() == "content-length":
            try:
                length = int(value.strip())
            except ValueError:
                raise ValueError(f"bad Content-Length header: {value.strip()!r}") from None
    if length < 0 or length > 64 * 1024 * 1024:
        raise ValueError(f"unreasonable Content-Length {length}")
    body = await reader.readexactly(length)
    message = json.loads(body)
    if not isinstance(message, dict):
        raise ValueError("a DAP message must be a JSON object")
    return message


def encode_message(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":"), default=str).encode("utf-8")
    return b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
