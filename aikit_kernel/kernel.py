"""The protocol core: serves shell requests in order on the Lua thread.

Threads (see docs/architecture.md): the main thread owns the interpreter, and, once it is built,
the shell socket: it reads each request, serves it and sends its reply itself, with no hand-off
to another thread on the way (a hand-off costs a thread wake-up and a GIL switch each way, more
than the rest of a trivial cell). Requests sent while a cell runs wait in the socket until it
ends, as in ipykernel. IOPub is shared (see ``iopub.Messenger``): the main thread publishes a
request's messages as it makes them. stdin is read and written on the I/O loop. The control
socket has a thread of its own (``control_channel.ControlChannel``), which answers
``kernel_info`` itself, so a frontend sees the kernel alive however busy the loop is; it hands
the other control requests (interrupt, shutdown, debug, ``aikit stop``) to the I/O loop, which
answers them at once, so they work while a cell runs.

The kernel may serve its sockets before the interpreter exists (``early_info``): the main thread
builds it (the Lua runtime, the components and their stores) while the I/O loop reads shell and
already answers ``kernel_info`` (whose content does not depend on the build), so a frontend sees
the kernel ready sooner; other requests wait in a queue until it is built, when the main thread
takes the shell socket over from the loop (``shell_intake.ShellIntake``: how requests, and work
other threads post, reach the main thread).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

import zmq
from opentelemetry.trace import SpanKind

from . import runtime
from .collector import freeze_heap
from .history import HistoryRecorder, HistoryStore, PostgresHistoryStore
from .interpreter import ExecuteOutcome, Interpreter
from .iopub import IOPubOutput, Messenger
from .protocol import PROTOCOL_VERSION, BadRequest, Protocol, ProtocolError, field
from .request_spans import TRACED_REQUESTS, mark_request, request_attributes
from .settings import KernelSettings
from .shell_intake import ShellIntake
from .transport import Transport

log = logging.getLogger(__name__)

#: The interpreter's GIL switch interval in a kernel process (see kernel_process.run_kernel).
SWITCH_INTERVAL_S = 0.0001
#: The interpreter's warm-up (Interpreter.warm_up) runs once nothing has arrived for this long.
IDLE_BEFORE_WARM_UP_S = 1.0

_STOP = object()
_SERVICE = object()

@dataclass
class NotStarted:
    """The failure of a cell interrupted while it waited for the interpreter to be built or
    warmed up (an interpreter's own failures look the same to the kernel)."""

    ename: str = "KeyboardInterrupt"
    evalue: str = "interrupted before it started"
    traceback: list[str] = dataclass_field(
        default_factory=lambda: ["KeyboardInterrupt: interrupted before it started (the kernel was still starting)"])


class Kernel:
    """Dispatches Jupyter requests to an :class:`Interpreter`."""

    def __init__(self, transport: Transport, protocol: Protocol, interpreter_factory: Callable[[IOPubOutput], Interpreter],
                 history: HistoryStore | PostgresHistoryStore | None,
                 max_message_bytes: int = KernelSettings().max_message_bytes, *,
                 early_info: type[Interpreter] | None = None, freeze_heap: bool = False) -> None:
        """``early_info``: build the interpreter later, on the main thread when :meth:`serve_forever`
        starts, and answer ``kernel_info`` from this class's description until then.
        ``freeze_heap``: once the interpreter is built, and again after its warm-up, move every
        object alive to the garbage collector's permanent generation (see :func:`freeze_heap`);
        for a kernel process, not for a kernel inside another program."""
        self._freeze_heap = freeze_heap
        self.transport = transport
        self.max_message_bytes = max_message_bytes
        self.protocol = protocol
        self.messenger = Messenger(protocol, {
            "shell": transport.shell, "control": transport.control, "stdin": transport.stdin, "iopub": transport.iopub,
        })
        self.output = IOPubOutput(self.messenger)
        self._interpreter_factory = interpreter_factory
        self._early_info = early_info
        self.interpreter: Interpreter = None  # type: ignore[assignment]  # set by _build_interpreter
        self.debugger: Any = None
        self._built: asyncio.Event | None = None  # set on the I/O loop once the interpreter exists
        self._only_kernel_info = True  # no shell request other than kernel_info arrived yet (I/O thread)
        # Control requests handed to the I/O loop and not yet answered there: a kernel_info that
        # arrives meanwhile goes there too, so control replies keep their order.
        self._control_on_loop = 0
        self._control_lock = threading.Lock()
        # The Lua thread builds or warms up the interpreter: queued requests wait, and an interrupt
        # that arrives meanwhile stops the next cell before it starts (_interrupt_waiting).
        self._preparing = early_info is not None
        self._interrupt_waiting = False
        self._dispatched = 0  # the last shell request taken from the queue (main thread)
        self._cells_run = 0  # execute requests served (main thread)
        self.history = (HistoryRecorder(history, self.messenger.later, self.messenger.run_now)
                        if history is not None else None)
        self.execution_count = 0
        # Shell requests, and work other threads post for the main thread (_SERVICE, _STOP).
        self.intake = ShellIntake(transport.shell, self._accept, on_request=self._on_shell,
                                  on_taken=lambda thread: self.messenger.hand_over("shell", thread), touch=self._touch)
        self._abort_through = 0  # shell requests up to this number are aborted (stop_on_error)
        self._shutting_down = False
        self._end_status = "completed"
        self.busy = False  # a shell request is being served (the Lua thread is working)
        self.last_activity = time.monotonic()  # for --idle-timeout: the last request or reply
        self.shell_handlers: dict[str, Callable[[list[bytes], dict[str, Any], int], None]] = {
            "execute_request": self.execute_request,
            "complete_request": self._simple(lambda c: self.interpreter.complete(
                field(c, "code", str, ""), field(c, "cursor_pos", int, len(field(c, "code", str, ""))))),
            "inspect_request": self._simple(lambda c: self.interpreter.inspect(
                field(c, "code", str, ""), field(c, "cursor_pos", int, 0), field(c, "detail_level", int, 0))),
            "is_complete_request": self._simple(lambda c: self.interpreter.is_complete(field(c, "code", str, ""))),
            "kernel_info_request": self._simple(lambda c: self.kernel_info()),
            "history_request": self._simple(self.history_reply),
            "comm_info_request": self._simple(lambda c: {"status": "ok", "comms": {}}),
            "comm_open": self.comm_open,
            "comm_msg": lambda idents, msg, seq: None,
            "comm_close": lambda idents, msg, seq: None,
        }
        if early_info is None:
            self._build_interpreter()

    def _build_interpreter(self) -> None:
        interpreter = self._interpreter_factory(self.output)
        self.output.set_stop_check(interpreter.interrupt_requested)
        interpreter.set_wakeup(lambda: self.intake.post(_SERVICE))
        interpreter.set_interrupt_pending(self._take_interrupt_waiting)
        # The debugger first: kernel_info (answered on the control thread) reads both.
        self.debugger = self._debug_bridge(interpreter)
        self.interpreter = interpreter
        runtime.call_soon(self._mark_built)

    def _mark_built(self) -> None:
        if self._built is None:
            self._built = asyncio.Event()
        self._built.set()

    async def _wait_built(self) -> None:
        if self.interpreter is not None:
            return
        if self._built is None:
            self._built = asyncio.Event()
        await self._built.wait()

    @property
    def ready(self) -> bool:
        """Whether the interpreter has been built (see ``early_info``)."""
        return self.interpreter is not None

    @property
    def requests_received(self) -> int:
        """Shell requests read so far, in arrival order (by the I/O loop, then the main thread)."""
        return self.intake.received

    # ------------------------------------------------------------------ I/O loop side
    async def serve_sockets(self) -> None:
        """Read shell, control and stdin, and welcome IOPub subscribers, until shutdown (runs on
        the I/O loop)."""
        control = self.transport.control
        control.start(self._on_control_thread)
        try:
            await asyncio.gather(
                self.messenger.serve_subscriptions(),
                self.intake.serve_until_taken(),
                self._read(self.transport.stdin, self._on_stdin),
            )
        finally:
            control.stop()

    def _accept(self, frames: list[bytes]) -> tuple[list[bytes], dict[str, Any]] | None:
        """A received message, checked (size, signature, format); None (logged) to drop it."""
        size = sum(map(len, frames))
        if size > self.max_message_bytes:
            log.warning("dropping a %d-byte message (limit %d bytes, kernel.max_message_mb)", size,
                        self.max_message_bytes)
            return None
        try:
            return self.protocol.parse(frames)
        except ProtocolError as exc:
            log.warning("dropping an invalid message: %s", exc)
            return None

    async def _read(self, sock: Any, handle: Callable[[list[bytes], dict[str, Any]], Any]) -> None:
        while not self._shutting_down:
            try:
                frames = await sock.recv_multipart(copy=True)
            except (zmq.ContextTerminated, zmq.ZMQError, asyncio.CancelledError):
                return
            accepted = self._accept(frames)
            if accepted is None:
                continue
            idents, msg = accepted
            try:
                result = handle(idents, msg)
                if asyncio.iscoroutine(result):
                    await result
            except Exception:
                log.exception("error handling %s", msg["header"].get("msg_type"))

    def _touch(self) -> None:
        self.last_activity = time.monotonic()

    def _on_shell(self, idents: list[bytes], msg: dict[str, Any]) -> None:
        """A shell request read on the I/O loop (before the main thread takes the socket)."""
        self.last_activity = time.monotonic()
        if self._only_kernel_info and msg["header"]["msg_type"] == "kernel_info_request" and self.interpreter is None:
            self._answer_on_loop("shell", idents, msg, self.kernel_info())  # nothing queued ahead of it
            return
        self._only_kernel_info = False
        self.intake.queue(idents, msg)

    def _on_stdin(self, idents: list[bytes], msg: dict[str, Any]) -> None:
        if msg["header"]["msg_type"] == "input_reply":
            self.output.on_input_reply(msg)
        else:
            log.warning("unexpected %s on the stdin channel", msg["header"]["msg_type"])

    def _debug_bridge(self, interpreter: Interpreter) -> Any:
        debugger = getattr(interpreter, "debugger", None)
        if debugger is None:
            return None
        from .debug.jupyter import JupyterDebugger

        return JupyterDebugger(debugger, interpreter.cells,  # type: ignore[attr-defined]
                               lambda event, parent: self.messenger.publish("debug_event", event, parent))

    async def _debug_request(self, idents: list[bytes], msg: dict[str, Any]) -> None:
        """One debug_request, served as a task so the control channel keeps reading (an interrupt
        must get through while a request waits for the Lua thread)."""
        telemetry = self._telemetry()
        if telemetry is None:
            await self._serve_debug_request(idents, msg)
            return
        with telemetry.span("debug_request", kind=SpanKind.SERVER, attributes=request_attributes(msg)):
            await self._serve_debug_request(idents, msg)

    async def _serve_debug_request(self, idents: list[bytes], msg: dict[str, Any]) -> None:
        await self._wait_built()
        self.messenger.status("busy", msg)
        try:
            request = msg["content"]
            if not isinstance(request, dict) or not isinstance(request.get("command"), str):
                response = {"type": "response", "success": False, "seq": 0, "request_seq": 0, "command": "",
                            "message": "a debug_request's content must be a DAP request: an object with a "
                                       "string 'command' (and 'arguments', an object)"}
            else:
                response = await self.debugger.handle(request, msg)
            self._reply("control", msg, idents, response)
            self.debugger.after_reply()
        except Exception:
            log.exception("debug_request failed")
            self._reply("control", msg, idents, {"type": "response", "success": False, "command": "",
                                                 "message": "internal error in the debugger (see the kernel log)"})
        finally:
            self.messenger.status("idle", msg)

    def _on_control_thread(self, frames: list[bytes]) -> None:
        """A control message (control thread): kernel_info is answered here, the rest on the I/O
        loop (behind the requests already handed to it)."""
        accepted = self._accept(frames)
        if accepted is None:
            return
        idents, msg = accepted
        self.last_activity = time.monotonic()
        with self._control_lock:
            answer_here = msg["header"]["msg_type"] == "kernel_info_request" and not self._control_on_loop
            if not answer_here:
                self._control_on_loop += 1
        if not answer_here:
            runtime.call_soon(self._on_control_from_thread, idents, msg)
            return
        # The reply first, then busy and idle: the reply is what the frontend waits for.
        try:
            self.transport.control.send_multipart(self.protocol.build("kernel_info_reply", self.kernel_info(), msg, idents))
        finally:
            self.messenger.status("busy", msg)
            self.messenger.status("idle", msg)

    def _on_control_from_thread(self, idents: list[bytes], msg: dict[str, Any]) -> None:
        try:
            self._on_control(idents, msg)
        except Exception:
            log.exception("error handling %s", msg["header"].get("msg_type"))
        finally:
            with self._control_lock:
                self._control_on_loop -= 1

    def _on_control(self, idents: list[bytes], msg: dict[str, Any]) -> None:
        """A control request on the I/O loop."""
        msg_type = msg["header"]["msg_type"]
        if msg_type == "debug_request" and (self.debugger is not None or self._debugger_coming()):
            asyncio.ensure_future(self._debug_request(idents, msg))
            return
        self.messenger.status("busy", msg)
        try:
            it = self.interpreter  # None while it is being built: nothing runs yet to stop
            if msg_type == "kernel_info_request":
                self._reply("control", msg, idents, self.kernel_info())
            elif msg_type == "interrupt_request":
                self._interrupt()
                self._reply("control", msg, idents, {"status": "ok"})
            elif msg_type == "aikit_stop_request":  # `aikit stop` (docs/lua-api.md, Control)
                by = str(msg["content"].get("by") or "aikit stop")
                self._reply("control", msg, idents, {"status": "ok", "cancelled": it.stop(by) if it is not None else 0})
            elif msg_type == "shutdown_request":
                restart = bool(msg["content"].get("restart", False))
                self._reply("control", msg, idents, {"status": "ok", "restart": restart})
                self.request_shutdown()
            else:
                self._unknown("control", idents, msg)
        finally:
            self.messenger.status("idle", msg)

    def _debugger_coming(self) -> bool:
        """The interpreter being built will have a debugger (``early_info`` says so)."""
        return self.interpreter is None and self._early_info is not None and self._early_info.has_debugger

    def _answer_on_loop(self, channel: str, idents: list[bytes], msg: dict[str, Any], content: dict[str, Any]) -> None:
        """busy, the reply, idle, sent from the I/O loop."""
        self.messenger.status("busy", msg)
        self._reply(channel, msg, idents, content)
        self.messenger.status("idle", msg)

    def interrupt_from_signal(self) -> None:
        """SIGINT arrived (seen on the I/O loop through the wakeup fd)."""
        self._interrupt()

    def _interrupt(self) -> None:
        """Stop the running cell; while the interpreter is being built or warmed up, the cell
        queued next (the one the user sees as running) instead."""
        # Once the main thread reads shell, a request sent during the warm-up is still in the
        # socket: the warm-up keeps the mark only if one is there when it ends (_warm_up).
        if self._preparing and (self.intake.received > self._dispatched or self.intake.taken):
            self._interrupt_waiting = True
        # A request is being served but its run may not have begun (or a later run of it may
        # follow): marked before the interpreter is tried, so the run's beginning sees the mark
        # if the interpreter found nothing running (set_interrupt_pending). Forgotten when the
        # request ends.
        serving = self.busy
        if serving:
            self._interrupt_waiting = True
        if self.interpreter is not None and self.interpreter.interrupt() and serving:
            self._interrupt_waiting = False  # delivered to the run in progress

    def _take_interrupt_waiting(self) -> bool:
        """Whether an interrupt waits for the run that begins (asked on the Lua thread); forgets it.
        Only for a request's runs: one marked for a queued request while the interpreter warms up
        is for that request (execute_request), not for the warm-up's runs."""
        if not (self.busy and self._interrupt_waiting):
            return False
        self._interrupt_waiting = False
        return True

    @property
    def shutting_down(self) -> bool:
        """Whether :meth:`request_shutdown` was called."""
        return self._shutting_down

    def request_shutdown(self, end_status: str = "completed") -> None:
        """Stop serving: interrupt any running cell and let the main loop exit; the session ends as
        ``end_status`` (``interrupted`` for SIGTERM: the kernel was stopped from outside)."""
        if self._shutting_down:
            return
        self._shutting_down = True
        self._end_status = end_status
        if self.interpreter is not None:
            self.interpreter.interrupt()
        self.intake.post(_STOP)

    # ------------------------------------------------------------------ Lua thread side
    def serve_forever(self) -> None:
        """Serve queued shell requests until shutdown (runs on the main thread), building the
        interpreter first if that was left for now (``early_info``)."""
        if self.interpreter is None:
            self._build_interpreter()
        if self._freeze_heap:
            freeze_heap(collect=False)  # a collection here would delay the first cell
        self.intake.take()
        self._preparing = False
        try:
            self._serve_requests()
        except BaseException:
            self._end_status = "failed"  # the session says the kernel did not end as asked
            raise
        finally:
            self._finish()

    def _serve_requests(self) -> None:
        """Take shell requests (and work posted for the main thread) until told to stop."""
        warm_up_pending = True
        while True:
            # The warm-up waits for the first idle second: on a thread of its own it would hold
            # the GIL while cells run; here a request that arrives meanwhile waits for it, once,
            # and no cell is slowed while the kernel is kept busy.
            item = self.intake.next(IDLE_BEFORE_WARM_UP_S if warm_up_pending else None)
            if item is None:
                warm_up_pending = False
                self._warm_up()
                continue
            if item is _STOP:
                return
            if item is _SERVICE:  # Lua work queued from another thread while we were idle
                try:
                    self.interpreter.service()
                except Exception:  # the interpreter's own bug: the kernel goes on serving
                    log.exception("error running work queued for the interpreter")
                continue
            idents, msg, seq = item
            self._dispatched = seq
            self._dispatch_shell(idents, msg, seq)

    def _finish(self) -> None:
        """The last output and history written, the interpreter shut down (its session ended,
        its stores closed): run however serving ended, an error included."""
        try:
            self.output.flush()
            if self.history is not None:  # before the stores are closed
                runtime.run_sync(self.history.flush(), timeout=10)
        except Exception:
            log.exception("could not write the last output or cells' history")
        try:
            self.interpreter.shutdown(self._end_status)
        finally:
            self.intake.close()

    def _warm_up(self) -> None:
        self._preparing = True
        try:
            self.interpreter.warm_up()
            if self._freeze_heap and not self._cells_run:  # nothing of the user's is frozen
                freeze_heap(collect=True)  # idle: only what was made since the last freeze is traversed
        except Exception:  # what the warm-up would have prepared is then prepared on first use
            log.exception("the interpreter's warm-up failed")
        finally:
            self._preparing = False
            # An interrupt during the warm-up was for a request sent meanwhile, if any.
            if self._interrupt_waiting and not self.intake.waiting():
                self._interrupt_waiting = False

    def _telemetry(self) -> Any:
        components = getattr(self.interpreter, "components", None)
        telemetry = getattr(components, "telemetry", None)
        return telemetry if telemetry is not None and telemetry.enabled else None

    def _dispatch_shell(self, idents: list[bytes], msg: dict[str, Any], seq: int) -> None:
        try:
            telemetry = self._telemetry()
            msg_type = msg["header"]["msg_type"]
            if telemetry is None or msg_type not in TRACED_REQUESTS:
                self._dispatch_shell_untraced(idents, msg, seq)
                return
            with telemetry.span(msg_type, kind=SpanKind.SERVER, attributes=request_attributes(msg)):
                self._dispatch_shell_untraced(idents, msg, seq)
        finally:
            # Work left for the loop (history writes) once the reply and idle are out: waking
            # it earlier would have it compete with this thread for the GIL.
            self.messenger.run_later()

    def _dispatch_shell_untraced(self, idents: list[bytes], msg: dict[str, Any], seq: int) -> None:
        msg_type = msg["header"]["msg_type"]
        self.output.set_parent(msg, idents)
        if msg_type == "execute_request":
            self.messenger.hold()  # busy and execute_input go out together, before the cell runs
        self.busy = True  # before busy is seen: an interrupt sent upon it finds the request served
        self.messenger.status("busy", msg)
        try:
            handler = self.shell_handlers.get(msg_type)
            if handler is None:
                self._unknown("shell", idents, msg)
            elif msg_type == "execute_request" and seq <= self._abort_through:
                self._reply("shell", msg, idents, {"status": "aborted", "execution_count": self.execution_count})
            else:
                handler(idents, msg, seq)
        except Exception as exc:
            if isinstance(exc, BadRequest):
                log.warning("bad %s: %s", msg_type, exc)
                exc = BadRequest(f"{msg_type}: {exc}")
            else:
                log.exception("error handling %s", msg_type)
            if msg_type.endswith("_request"):
                error = {"ename": type(exc).__name__, "evalue": str(exc), "traceback": [f"{type(exc).__name__}: {exc}"]}
                content: dict[str, Any] = {"status": "error", **error}
                if msg_type == "execute_request":
                    self.messenger.publish("error", error, msg)
                    content.update(execution_count=self.execution_count, user_expressions={}, payload=[])
                self._reply("shell", msg, idents, content)
        finally:
            self.busy = False
            self._interrupt_waiting = False  # an interrupt for this request goes no further
            self.last_activity = time.monotonic()
            self.output.flush()
            self.messenger.status("idle", msg)
            self.messenger.send_held()

    def _reply(self, channel: str, parent: dict[str, Any], idents: list[bytes], content: dict[str, Any],
               metadata: dict[str, Any] | None = None) -> None:
        reply_type = parent["header"]["msg_type"].rsplit("_", 1)[0] + "_reply"
        self.messenger.send(channel, reply_type, content, parent, idents, metadata)

    def _simple(self, compute: Callable[[dict[str, Any]], dict[str, Any]]
                ) -> Callable[[list[bytes], dict[str, Any], int], None]:
        def handler(idents: list[bytes], msg: dict[str, Any], seq: int) -> None:
            self._reply("shell", msg, idents, compute(msg["content"]))
        return handler

    def _unknown(self, channel: str, idents: list[bytes], msg: dict[str, Any]) -> None:
        msg_type = msg["header"]["msg_type"]
        log.warning("unknown message type %r on %s", msg_type, channel)
        if msg_type.endswith("_request"):
            self._reply(channel, msg, idents, {
                "status": "error", "ename": "UnknownMessageType",
                "evalue": f"aikit does not handle {msg_type!r}", "traceback": [],
            })

    # ------------------------------------------------------------------ handlers
    def kernel_info(self) -> dict[str, Any]:
        it: Any = self.interpreter if self.interpreter is not None else self._early_info
        debugger = self.debugger is not None if self.interpreter is not None else it.has_debugger
        return {
            "status": "ok",
            "protocol_version": PROTOCOL_VERSION,
            "implementation": it.implementation,
            "implementation_version": it.implementation_version,
            "language_info": it.language_info,
            "banner": it.banner,
            "help_links": it.help_links,
            "debugger": debugger,
            "supported_features": ["debugger"] if debugger else [],
        }

    def execute_request(self, idents: list[bytes], msg: dict[str, Any], seq: int) -> None:
        content = msg["content"]
        code = content.get("code", "")
        if not isinstance(code, str):
            self._reply("shell", msg, idents, {"status": "error", "ename": "InvalidRequest",
                                               "evalue": "execute_request content.code must be a string",
                                               "traceback": [], "execution_count": self.execution_count})
            return
        try:
            silent = field(content, "silent", bool, False)
            store_history = field(content, "store_history", bool, not silent) and not silent
            allow_stdin = field(content, "allow_stdin", bool, False)
            stop_on_error = field(content, "stop_on_error", bool, True)
            user_expressions = field(content, "user_expressions", dict, {})
        except BadRequest as exc:
            log.warning("bad execute_request: %s", exc)
            self._reply("shell", msg, idents, {"status": "error", "ename": "BadRequest",
                                               "evalue": f"execute_request: {exc}", "traceback": [],
                                               "execution_count": self.execution_count})
            return
        self._cells_run += 1
        if store_history:
            self.execution_count += 1
            if self.history is not None:
                self.history.record_input(self.execution_count, code)
        count = self.execution_count
        if not silent:
            self.messenger.publish("execute_input", {"code": code, "execution_count": count}, msg)
        self.messenger.send_held()  # what the frontend sees before the cell runs (it may run long)
        if self._interrupt_waiting:  # interrupted while it waited for the interpreter
            self._interrupt_waiting = False
            outcome = ExecuteOutcome(error=NotStarted())  # type: ignore[arg-type]
        else:
            outcome = self.interpreter.execute(code, execution_count=count, silent=silent, allow_stdin=allow_stdin,
                                               user_expressions=user_expressions)
        # The result, the reply and idle go out together (no user code runs from here on).
        self.messenger.hold()
        mark_request(count, outcome)
        if outcome.result is not None and not silent:  # a silent request broadcasts no result
            self.output.execute_result(count, outcome.result, {})
            if store_history and self.history is not None:
                self.history.record_output(count, outcome.result.get("text/plain", ""))
        if outcome.error is None:
            reply = {"status": "ok", "execution_count": count, "user_expressions": outcome.user_expressions,
                     "payload": outcome.payload}
        else:
            err = outcome.error
            self.output.flush()
            self.messenger.publish("error", {"ename": err.ename, "evalue": err.evalue, "traceback": err.traceback}, msg)
            reply = {"status": "error", "execution_count": count, "ename": err.ename, "evalue": err.evalue,
                     "traceback": err.traceback, "user_expressions": {}, "payload": []}
            if stop_on_error:  # what was sent before the error, and waits behind it, is aborted
                if self.intake.taken:
                    self.intake.read()
                self._abort_through = self.intake.received
        self.output.flush()
        self._reply("shell", msg, idents, reply, metadata={"status": reply["status"]})

    def history_reply(self, content: dict[str, Any]) -> dict[str, Any]:
        return self.history.reply(content) if self.history is not None else {"status": "ok", "history": []}

    def comm_open(self, idents: list[bytes], msg: dict[str, Any], seq: int) -> None:
        # No comm targets yet: tell the frontend the comm is closed, as the spec asks.
        comm_id = msg["content"].get("comm_id", "")
        self.messenger.publish("comm_close", {"comm_id": comm_id, "data": {}}, msg)
