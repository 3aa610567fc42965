"""Work on the I/O loop that Lua awaits by id: the bridge behind ``internal.await``.

A workflow's Lua step (or a tool call from a coroutine) starts a coroutine on the I/O loop and
yields its id; the coroutine driver resumes the Lua coroutine when the future is done, and plain
Lua code blocks on it instead (interruptibly, serving the calls other threads queued for Lua).
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from typing import Any

from aikit_components.errors import Cancelled, Interrupted

from .. import runtime
from .dispatch import LuaDispatcher


def stopped_by_kill_switch() -> Cancelled:
    """What Lua gets for work the kill switch (``aikit.stop``) cancelled while it waited."""
    return Cancelled("the work was stopped (aikit stop / Event.publish('aikit.stop')) before it finished",
                     details={"reason": "stopped"})


class LuaFutures:
    """I/O-loop futures by id, for the Lua thread."""

    def __init__(self, dispatcher: LuaDispatcher, stop_requested: Callable[[], bool]) -> None:
        self._dispatcher = dispatcher
        self._stop_requested = stop_requested
        self._futures: dict[int, concurrent.futures.Future[Any]] = {}
        self._last_id = 0

    def start(self, coro: Any) -> int:
        """Start ``coro`` on the I/O loop; the id Lua awaits."""
        future = runtime.submit(coro)
        self._last_id += 1
        self._futures[self._last_id] = future
        future.add_done_callback(lambda _: self._dispatcher.wake.set())
        return self._last_id

    def get(self, future_id: int) -> concurrent.futures.Future[Any] | None:
        """The future behind ``future_id`` (None once its result was taken)."""
        return self._futures.get(future_id)

    def cancel(self, future_id: int) -> None:
        """Cancel the work behind ``future_id`` and forget it (any thread)."""
        future = self._futures.pop(future_id, None)
        if future is not None:
            future.cancel()

    def wait(self, future_id: int) -> None:
        """Block (interruptibly, serving queued Lua calls) until the future is done; an interrupt
        cancels it."""
        future = self._futures.get(future_id)
        if future is None:
            return
        try:
            runtime.wait_future(future, should_stop=self._stop_requested,
                                service=self._dispatcher.service, wake=self._dispatcher.wake)
        except Interrupted:
            self._futures.pop(future_id, None)
            future.cancel()
            raise
        except Exception:  # its outcome is collected by result()
            pass

    def result(self, future_id: int) -> Any:
        """The result of a finished future (raises its exception); forgets the future."""
        future = self._futures.pop(future_id)
        try:
            return future.result()
        except concurrent.futures.CancelledError:  # the kill switch cancelled the work
            raise stopped_by_kill_switch() from None
