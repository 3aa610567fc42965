"""Calling Lua from other threads: requests queue up and the Lua thread runs them at safe points.

The Lua runtime may only be entered from the Lua (main) thread. Code on the I/O loop that must run
a Lua function (a Lua hook around an async tool, a Lua-defined tool called by an agent) submits it
here; the Lua thread runs queued calls whenever it is at a safe point: while it waits for the I/O
loop (``run_sync`` services this queue between wait slices), between cells, and when a script
calls ``Event.dispatch()``. Lua event subscribers are delivered at the same safe points.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import queue
import threading
from collections.abc import Callable
from typing import Any

from aikit_components.errors import ResourceExhausted

#: How deep queued calls may nest (each level is a queued call waiting for the I/O loop).
MAX_NESTED = 16


class LuaDispatcher:
    """A queue of calls for the Lua thread, and the safe-point services that drain it."""

    def __init__(self) -> None:
        self.thread = threading.current_thread()
        self._calls: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...], concurrent.futures.Future[Any]]] = (
            queue.SimpleQueue())
        self._services: list[Callable[[], int]] = []
        self._depth = 0  # how many service() calls are running (nested: a queued call that waits)
        self.wake = threading.Event()  # set when a call is queued; run_sync waits on it
        self.notify: Callable[[], None] | None = None  # wakes an idle Lua thread (the kernel's queue)

    def on_lua_thread(self) -> bool:
        return threading.current_thread() is self.thread

    def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        """Run ``fn(*args)`` on the Lua thread (at once when already there), in a copy of the
        caller's context variables (so a trace's current span follows the call)."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        if self.on_lua_thread():
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                future.set_exception(exc)
            return future
        self._calls.put((contextvars.copy_context().run, (fn, *args), future))
        self.wake.set()
        if self.notify is not None:
            self.notify()
        return future

    async def call_async(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Await ``fn(*args)`` run on the Lua thread (from the I/O loop)."""
        return await asyncio.wrap_future(self.submit(fn, *args))

    def add_service(self, service: Callable[[], int]) -> None:
        """Run ``service()`` at every safe point (e.g. delivering Lua event subscriptions)."""
        self._services.append(service)

    def service(self) -> int:
        """Run queued calls and services (Lua thread only); returns how much work was done.

        A queued call may itself wait for the I/O loop (a Lua model function that calls a tool,
        whose Lua hook is queued here in turn): the wait services the queue again, nested, or the
        two would wait for each other. Services (event deliveries) run only at the outermost level.
        Past :data:`MAX_NESTED` levels a queued call is refused with a ResourceExhausted error
        (its waiter gets it) rather than left waiting forever."""
        if not self.on_lua_thread():
            return 0
        if self._depth >= MAX_NESTED:
            return self._refuse_queued()
        outermost = self._depth == 0
        self._depth += 1
        done = 0
        try:
            while True:
                try:
                    fn, args, future = self._calls.get_nowait()
                except queue.Empty:
                    break
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(fn(*args))
                    except BaseException as exc:  # noqa: BLE001 - handed to the caller
                        future.set_exception(exc)
                done += 1
            if outermost:
                for service in self._services:
                    done += service()
        finally:
            self._depth -= 1
        return done

    def _refuse_queued(self) -> int:
        refused = 0
        while True:
            try:
                _, _, future = self._calls.get_nowait()
            except queue.Empty:
                return refused
            if future.set_running_or_notify_cancel():
                future.set_exception(ResourceExhausted(
                    f"Lua code run for aikit's I/O loop waits for work that needs Lua again, {MAX_NESTED} levels "
                    "deep (a Lua model function or worker calling tools or agents that call back into Lua); "
                    "flatten the chain", details={"limit": MAX_NESTED}))
            refused += 1

    def pending(self) -> bool:
        return not self._calls.empty()
