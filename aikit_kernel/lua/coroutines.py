"""Lua functions run as coroutines that the I/O loop schedules (a workflow's Lua steps).

A driven coroutine runs on the Lua thread in slices: each :meth:`CoroutineDriver.resume` runs it
until it awaits I/O (``internal.await`` yields the id of a future of the I/O loop: ``sleep``, an
async ``Tool.call``, ``agent:run``), returns, fails, or is cancelled. Between slices the Lua
thread is free, so several coroutines (and the cell that started them) make progress at once.
:meth:`CoroutineDriver.run` does all of it from the I/O loop: start, resume, await the futures,
and stop the Lua code when the awaiting task is cancelled (a step's timeout, a cancelled run).

A coroutine is known by a token. :meth:`CoroutineDriver.cancel` stops its Lua code where it runs,
even in a loop that never awaits, through the interrupt hook (see ``interrupt.py``); a token
already released makes that a no-op.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from aikit_components.errors import AikitError, Cancelled

from .convert import lua_to_python, python_to_lua
from .host import text
from .interrupt import Interrupter

if TYPE_CHECKING:
    from .engine import LuaEngine


@dataclass
class Resumed:
    """Where one slice left a coroutine: ``await`` (``value`` is the future id it waits for, or
    None for a plain ``coroutine.yield``), ``done`` (``value`` is its first result as Python),
    ``error`` (``value`` is the AikitError) or ``cancelled`` (:meth:`CoroutineDriver.cancel`)."""

    kind: Literal["await", "done", "error", "cancelled"]
    value: Any = None


class CoroutineDriver:
    """Starts, resumes, cancels and releases the driven coroutines of one engine."""

    def __init__(self, engine: LuaEngine, interrupter: Interrupter) -> None:
        self.engine = engine
        self._interrupter = interrupter
        self._waiting: dict[int, int] = {}  # token -> the future id its coroutine awaits now
        # Fetched once: indexing a Lua table from Python while a coroutine runs (a resume from a
        # safe point inside another driven coroutine) is not safe with lupa.
        self._create = engine.internal[b"step_coroutine"]
        self._resume = engine.internal[b"step_resume"]
        self._close = engine.internal[b"step_release"]

    # ------------------------------------------------------------------ one step at a time (Lua thread)
    def start(self, fn: Any) -> int:
        """Wrap the Lua function ``fn`` in a new coroutine (Lua thread); returns its token."""
        token, address = self._create(fn)
        self._interrupter.step_started(token, address)
        return token

    def resume(self, token: int, *args: Any) -> Resumed:
        """Run the coroutine to its next await, its end, an error or its cancel (Lua thread).
        ``args`` (JSON-like Python values) are passed to the function on the first resume. A
        coroutine that finished (done, error, cancelled) is released."""
        engine = self.engine
        kind, payload = self._resume(token, *[python_to_lua(engine.runtime, a) for a in args])
        if kind == b"await":
            return Resumed("await", payload)
        self.release(token)
        if kind == b"done":
            n = payload[b"n"]
            return Resumed("done", lua_to_python(payload[1], engine.address) if n and n >= 1 else None)
        if kind == b"cancelled":
            return Resumed("cancelled")
        message = text(payload[b"message"]) if payload[b"message"] is not None else "error"
        code = text(payload[b"code"]) if payload[b"code"] is not None else "lua_error"
        traceback = engine.cells.prettify(text(payload[b"traceback"] or b""))
        return Resumed("error", AikitError(engine.cells.prettify(message), code=code, details={"traceback": traceback}))

    def cancel(self, token: int) -> bool:
        """Stop the coroutine's Lua code where it runs (any thread): the interrupt hook raises a
        cancel in that coroutine only, and its next resume reports ``cancelled``. False when it
        was released already."""
        return self._interrupter.cancel_step(token)

    def release(self, token: int) -> None:
        """Forget the coroutine, closing it if suspended (Lua thread; idempotent)."""
        self._interrupter.step_released(token)
        self._close(token)

    # ------------------------------------------------------------------ the whole run (I/O loop)
    async def run(self, fn: Any, *args: Any) -> Any:
        """Run the Lua function ``fn(*args)`` as a driven coroutine and return its first result
        (as Python). A Lua error raises an AikitError; a cancel this task did not ask for raises
        ``Cancelled``. Cancelling the awaiting task stops the Lua code wherever it is: the
        awaited future is cancelled (a subprocess is killed with its tool call), and code
        computing on the Lua thread is stopped by :meth:`cancel` before the cancellation goes on."""
        dispatcher = self.engine.dispatcher
        token = await dispatcher.call_async(self.start, fn)
        try:
            return await self._drive(token, args)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                pending = self._waiting.pop(token, None)
                if pending is not None:
                    self.engine.futures.cancel(pending)
            dispatcher.submit(self.release, token)  # idempotent (a finished coroutine is released)
            raise

    async def _drive(self, token: int, args: tuple[Any, ...]) -> Any:
        first = True
        while True:
            resumed = await self._on_lua_thread(token, lambda start=first: self.resume(token, *(args if start else ())))
            first = False
            if resumed.kind == "done":
                return resumed.value
            if resumed.kind == "error":
                raise resumed.value
            if resumed.kind == "cancelled":  # a cancel this task did not ask for
                raise Cancelled("the step's Lua code was cancelled")
            future = self.engine.futures.get(resumed.value) if resumed.value is not None else None
            if future is not None:
                self._waiting[token] = resumed.value
                waiter = asyncio.wrap_future(future)
                # the coroutine collects the outcome itself (future_result); the copy's exception is
                # marked retrieved so asyncio does not log "Future exception was never retrieved"
                waiter.add_done_callback(lambda w: w.cancelled() or w.exception())
                await asyncio.wait([waiter])
                self._waiting.pop(token, None)
            else:
                await asyncio.sleep(0)

    async def _on_lua_thread(self, token: int, call: Any) -> Resumed:
        """``call()`` on the Lua thread, where it resumes coroutine ``token``. If this task is
        cancelled while the coroutine's code runs there, the coroutine is cancelled through the
        hook, and the cancellation goes on only once the Lua thread has left it."""
        done = self.engine.dispatcher.submit(call)
        try:
            return await asyncio.wrap_future(done)
        except asyncio.CancelledError:
            if done.cancel() or done.done():  # never started, or already back: nothing runs
                raise
            self.cancel(token)
            while not done.done():
                try:
                    await asyncio.wait((asyncio.wrap_future(done),))
                except asyncio.CancelledError:  # cancelled again meanwhile: still wait, then go on
                    continue
            raise
