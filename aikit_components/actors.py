"""Actors: asyncio tasks with a bounded mailbox, the workers a :class:`~aikit_components.supervision.Supervisor` runs.

An :class:`Actor` is defined by a *handler*:

- an object (or a class, instantiated once per actor) with ``handle(msg, ctx)`` (sync or
  ``async``) and optional ``init(ctx)`` and ``terminate(reason, ctx)``;
- or a plain function ``handle(msg, ctx)`` (sync or ``async``).

``actor.send(msg)`` queues a message without waiting (:class:`MailboxFull` when the mailbox is
full, :class:`ActorStopped` when the actor is gone). ``await actor.call(msg, timeout)`` waits for
the reply: the handler's return value, or what it passed to ``ctx.reply(value)`` earlier. A call
fails with :class:`~aikit_components.errors.Timeout` on timeout and with :class:`ActorCrashed` when
the actor dies while handling it. ``ctx.stop()`` ends the actor normally after the current message.

Exit reasons: ``"normal"`` (the actor ended itself), ``"shutdown"`` (someone stopped it), or the
exception that crashed it; states go ``starting -> running -> stopped | crashed``. Exit listeners
(monitors) are told of every exit; that is how a supervisor learns about it.

Everything here must be used from the one event loop it runs on (the I/O loop in aikit).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable
from typing import Any

from .errors import (
    ActorCrashed,
    ActorStopped,
    AikitError,
    InvalidArgument,
    MailboxFull,
    Timeout,
)

__all__ = [
    "CRASHED", "DEFAULT_CALL_TIMEOUT", "DEFAULT_MAILBOX_SIZE", "DEFAULT_SHUTDOWN_TIMEOUT", "INTENSITY_EXCEEDED", "NORMAL",
    "RUNNING", "SHUTDOWN", "STARTING", "STOPPED", "Actor", "ActorContext", "is_normal_exit", "notify_exit_listeners",
    "reason_text",
]

log = logging.getLogger(__name__)

NORMAL = "normal"
SHUTDOWN = "shutdown"
INTENSITY_EXCEEDED = "shutdown: restart intensity exceeded"

STARTING, RUNNING, STOPPED, CRASHED = "starting", "running", "stopped", "crashed"


DEFAULT_MAILBOX_SIZE = 1000
DEFAULT_CALL_TIMEOUT = 5.0
DEFAULT_SHUTDOWN_TIMEOUT = 5.0


# ------------------------------------------------------------------------------------ errors
def is_normal_exit(reason: Any) -> bool:
    """``"normal"`` and ``"shutdown"`` are normal exits; anything else (an exception, another
    string such as ``"shutdown: restart intensity exceeded"``) is abnormal."""
    return isinstance(reason, str) and reason in (NORMAL, SHUTDOWN)


def reason_text(reason: Any) -> str | None:
    """An exit reason as text (exceptions as ``code: message`` or ``Type: message``)."""
    if reason is None or isinstance(reason, str):
        return reason
    if isinstance(reason, AikitError):
        return str(reason)
    if isinstance(reason, BaseException):
        return f"{type(reason).__name__}: {reason}" if str(reason) else type(reason).__name__
    return str(reason)


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def notify_exit_listeners(listeners: list[Callable[[Any, Any], Any]], process: Any, reason: Any) -> None:
    """Tell every exit listener that ``process`` exited with ``reason`` (a failing one is logged)."""
    for listener in list(listeners):
        try:
            listener(process, reason)
        except Exception:  # a broken monitor must not break the exit
            log.exception("exit listener of %s failed", getattr(process, "name", process))


# ------------------------------------------------------------------------------------ actor
class ActorContext:
    """What a handler gets with every message: ``reply``, ``stop``, ``actor``, ``name``."""

    __slots__ = ("actor", "_future", "_exit")

    def __init__(self, actor: Actor) -> None:
        self.actor = actor
        self._future: asyncio.Future[Any] | None = None
        self._exit: Any = None

    @property
    def name(self) -> str:
        return self.actor.name

    @property
    def is_call(self) -> bool:
        """True when the current message came from :meth:`Actor.call` (a reply is awaited)."""
        return self._future is not None

    def reply(self, value: Any) -> bool:
        """Answer the current call now (the handler may go on); False when there is nothing to
        answer (a ``send``, or already answered/timed out)."""
        future = self._future
        if future is None or future.done():
            return False
        future.set_result(value)
        return True

    def stop(self, reason: Any = NORMAL) -> None:
        """End the actor after the current message (reason ``"normal"`` unless given)."""
        self._exit = reason


class Actor:
    """An asyncio task with a bounded mailbox running a handler (see the module docstring)."""

    def __init__(self, handler: Any, *, name: str | None = None, mailbox_size: int = DEFAULT_MAILBOX_SIZE) -> None:
        if isinstance(mailbox_size, bool) or not isinstance(mailbox_size, int) or mailbox_size < 1:
            raise InvalidArgument(f"mailbox_size must be a positive integer, got {mailbox_size!r}")
        if inspect.isclass(handler):
            handler = handler()
        handle = getattr(handler, "handle", None)
        if callable(handle):
            self._handle = handle
            self._init = getattr(handler, "init", None)
            self._terminate = getattr(handler, "terminate", None)
        elif callable(handler):
            self._handle, self._init, self._terminate = handler, None, None
        else:
            raise InvalidArgument("an actor handler must be a function or have handle(msg, ctx), "
                                  f"got {type(handler).__name__}")
        self.handler = handler
        self.name = name or getattr(handler, "name", None) or getattr(handler, "__name__", None) or type(handler).__name__
        self.mailbox_size = mailbox_size
        self.state = STARTING
        self.exit_reason: Any = None
        self.exited_at: float | None = None  # perf_counter() at exit
        self.messages = 0  # messages handled
        self.ctx = ActorContext(self)
        self._mailbox: asyncio.Queue[tuple[Any, asyncio.Future[Any] | None]] = asyncio.Queue(mailbox_size)
        self._listeners: list[Callable[[Any, Any], Any]] = []
        self._task: asyncio.Task[None] | None = None
        self._started: asyncio.Future[None] | None = None
        self._done: asyncio.Event | None = None
        self._stop_reason: Any = None
        self._busy = False
        self._killed = False
        self._initialised = False

    def __repr__(self) -> str:
        return f"<Actor {self.name} {self.state}>"

    # -------------------------------------------------------------- lifecycle
    @property
    def started(self) -> bool:
        """True once :meth:`start` was called (whatever happened since)."""
        return self._task is not None or self.state in (STOPPED, CRASHED)

    @property
    def alive(self) -> bool:
        return self.state in (STARTING, RUNNING) and self._stop_reason is None

    async def start(self) -> Actor:
        """Start the task and wait until ``init`` finished; ``init``'s exception is raised."""
        if self.started:
            raise InvalidArgument(f"actor {self.name!r} was already started (start a new Actor to restart)")
        loop = asyncio.get_running_loop()
        self._started = loop.create_future()
        self._done = asyncio.Event()
        self._task = loop.create_task(self._run(), name=f"actor:{self.name}")
        await asyncio.shield(self._started)
        return self

    async def stop(self, reason: Any = SHUTDOWN, timeout: float | None = DEFAULT_SHUTDOWN_TIMEOUT) -> None:
        """Stop the actor: at once when idle, after the current message otherwise; a handler still
        busy after ``timeout`` seconds is cancelled (then ``terminate`` is skipped)."""
        if self.state in (STOPPED, CRASHED):
            return
        if self._task is None:  # never started
            self._finish(reason)
            return
        if self._stop_reason is None:
            self._stop_reason = reason
        if self._task is asyncio.current_task():
            return  # stopping itself from its handler: ends after this message
        if not self._busy or self._init_pending():
            self._task.cancel()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except TimeoutError:
            self._killed = True
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _init_pending(self) -> bool:
        return self._started is not None and not self._started.done()

    async def wait(self) -> Any:
        """Wait until the actor exited; returns its exit reason."""
        if self._done is not None:
            await self._done.wait()
        return self.exit_reason

    def add_exit_listener(self, listener: Callable[[Any, Any], Any]) -> None:
        """Call ``listener(actor, reason)`` on the loop when the actor exits (a monitor)."""
        self._listeners.append(listener)

    def remove_exit_listener(self, listener: Callable[[Any, Any], Any]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    # -------------------------------------------------------------- messages
    def _check_alive(self) -> None:
        if not self.alive:
            raise ActorStopped(f"actor {self.name!r} is {self.state if self._stop_reason is None else 'stopping'}",
                               details={"actor": self.name, "state": self.state,
                                        "reason": reason_text(self.exit_reason)})

    def _put(self, item: tuple[Any, asyncio.Future[Any] | None]) -> None:
        self._check_alive()
        try:
            self._mailbox.put_nowait(item)
        except asyncio.QueueFull:
            raise MailboxFull(f"the mailbox of actor {self.name!r} is full ({self.mailbox_size} messages)",
                              details={"actor": self.name, "mailbox_size": self.mailbox_size}) from None

    def send(self, msg: Any) -> None:
        """Queue ``msg`` without waiting (MailboxFull / ActorStopped on failure)."""
        self._put((msg, None))

    async def call(self, msg: Any, timeout: float | None = DEFAULT_CALL_TIMEOUT) -> Any:
        """Send ``msg`` and wait for the reply (Timeout, ActorCrashed, ActorStopped, MailboxFull)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._put((msg, future))
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            if future.done() and not future.cancelled():
                return future.result()
            raise Timeout(f"call to actor {self.name!r} timed out after {timeout:g} s",
                          details={"actor": self.name, "timeout": timeout}) from None

    def pending(self) -> int:
        """Messages waiting in the mailbox."""
        return self._mailbox.qsize()

    # -------------------------------------------------------------- the task
    async def _run(self) -> None:
        ctx = self.ctx
        reason: Any = NORMAL
        fatal: BaseException | None = None
        try:
            if self._init is not None:
                await _maybe_await(self._init(ctx))
            self._initialised = True
            self.state = RUNNING
            assert self._started is not None
            if not self._started.done():
                self._started.set_result(None)
            while True:
                if self._stop_reason is not None:
                    reason = self._stop_reason
                    break
                msg, future = await self._mailbox.get()
                self._busy = True
                ctx._future = future  # left set on failure: _cleanup fails the call
                result = await _maybe_await(self._handle(msg, ctx))
                ctx._future = None
                self._busy = False
                self.messages += 1
                if future is not None and not future.done():
                    future.set_result(result)
                if ctx._exit is not None:
                    reason = ctx._exit
                    break
        except asyncio.CancelledError:
            reason = self._stop_reason if self._stop_reason is not None else SHUTDOWN
        except BaseException as exc:  # noqa: BLE001 - every failure is an exit reason
            reason = exc
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                fatal = exc
        await self._cleanup(reason)
        if fatal is not None:
            raise fatal

    async def _cleanup(self, reason: Any) -> None:
        ctx = self.ctx
        if ctx._future is not None and not ctx._future.done():
            error = (ActorCrashed if not is_normal_exit(reason) else ActorStopped)(
                f"actor {self.name!r} exited while handling this call: {reason_text(reason)}",
                details={"actor": self.name, "reason": reason_text(reason)})
            ctx._future.set_exception(error)
        ctx._future = None
        if self._started is not None and not self._started.done():
            if isinstance(reason, BaseException):
                self._started.set_exception(reason)
            else:
                self._started.set_exception(ActorStopped(f"actor {self.name!r} stopped while starting ({reason})"))
        self._drain(reason)
        if self._terminate is not None and self._initialised and not self._killed:
            try:
                await _maybe_await(self._terminate(reason, ctx))
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("terminate of actor %s failed", self.name)
        self._finish(reason)

    def _drain(self, reason: Any) -> None:
        while True:
            try:
                _, future = self._mailbox.get_nowait()
            except asyncio.QueueEmpty:
                return
            if future is not None and not future.done():
                future.set_exception(ActorStopped(f"actor {self.name!r} exited before handling this call: "
                                                  f"{reason_text(reason)}",
                                                  details={"actor": self.name, "reason": reason_text(reason)}))

    def _finish(self, reason: Any) -> None:
        self.exit_reason = reason
        self.exited_at = time.perf_counter()
        self.state = STOPPED if is_normal_exit(reason) else CRASHED
        if self._started is not None and not self._started.done():
            self._started.set_exception(ActorStopped(f"actor {self.name!r} stopped before it started"))
        if self._done is not None:
            self._done.set()
        notify_exit_listeners(self._listeners, self, reason)
