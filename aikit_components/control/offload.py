"""Blocking durable writes, awaited without holding the event loop.

The control interceptors commit to disk before an operation's result goes back to its caller (the
audit ledger, the effect journal, agent runs' records). A commit waits for an fsync (milliseconds);
made on the event loop it stops everything else the loop serves (other runs, the kernel's control
channel) for that long. :func:`in_thread` runs such a write in one of this module's threads while
the awaiting coroutine is suspended: the caller still gets its result only once the write is done.

The threads are this module's own, not the loop's default executor (which resolves host names for
HTTP connections): a thread blocked on a commit must not hold up a connection. There are many of
them because a thread waits for a whole commit, and the audit ledger puts the entries of all the
threads waiting at once in one transaction (group commit): more threads, fewer fsyncs. Their
results reach the loop in bursts: one call into the loop for all the writes that ended together
(a group commit ends many at once), not one each.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

#: Threads that may wait on a commit at once.
MAX_THREADS = 64

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None
_pid = 0


def executor() -> ThreadPoolExecutor:
    """The threads (made on first use; anew in a forked child, which has none of its parent's)."""
    global _executor, _pid
    with _lock:
        if _executor is None or _pid != os.getpid():
            _executor = ThreadPoolExecutor(max_workers=MAX_THREADS, thread_name_prefix="aikit-commit")
            _pid = os.getpid()
        return _executor


class UncancellableFuture(asyncio.Future[T]):
    """A future its waiter's cancellation leaves alone (``cancel`` refuses): the outcome of a
    write already handed to a thread, which only that thread settles. A task cancelled while it
    awaits one is told so when the write is done (:func:`to_the_end` takes it from there), as it
    would be with ``asyncio.shield``, without a second future and its callbacks per wait."""

    def cancel(self, msg: Any = None) -> bool:
        return False


class _Results:
    """Outcomes of the threads' calls, handed to the loops that wait for them: the first of a
    burst asks its loop to take them all (one system call and one turn of the loop per burst)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}

    def hand(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], ok: bool, value: Any) -> None:
        with self._lock:
            waiting = self._pending.get(loop)
            first = waiting is None
            if first:
                waiting = self._pending[loop] = []
            waiting.append((future, ok, value))  # type: ignore[union-attr]
        if first:
            try:
                loop.call_soon_threadsafe(self._take, loop)
            except RuntimeError:  # the loop is closed: nobody waits there any more
                with self._lock:
                    self._pending.pop(loop, None)

    def _take(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            outcomes = self._pending.pop(loop, [])
        for future, ok, value in outcomes:
            if future.done():  # cancelled (the loop is shutting down)
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)


_results = _Results()


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a commit thread, in the caller's context (context variables: the run an
    operation belongs to); its result or exception once it has returned (see :func:`to_the_end`)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = UncancellableFuture(loop=loop)
    context = contextvars.copy_context()

    def call() -> None:
        try:
            result = context.run(fn, *args)
        except BaseException as exc:  # noqa: BLE001 - the awaiting coroutine raises it
            _results.hand(loop, future, False, exc)
        else:
            _results.hand(loop, future, True, result)

    executor().submit(call)
    return await to_the_end(future)


async def to_the_end(future: asyncio.Future[T]) -> T:
    """Await ``future`` as a blocking call would be made: to its end. When the waiting task is
    cancelled meanwhile, the cancellation takes effect at its next await instead (as it would have
    after a blocking commit): an operation's outcome is recorded and returned the same way whether
    or not a stop arrived during the commit."""
    try:
        return await (future if type(future) is UncancellableFuture else asyncio.shield(future))
    except asyncio.CancelledError as exc:
        return await after_cancellation(future, exc)


async def after_cancellation(future: asyncio.Future[T], cancellation: asyncio.CancelledError) -> T:
    """The rest of :func:`to_the_end` once ``cancellation`` was raised in the task awaiting
    ``future`` (for a caller that awaits an :class:`UncancellableFuture` itself, one coroutine
    fewer per wait): re-raised if the future itself was cancelled; else the future is awaited to
    its end and the task is cancelled again (with the same message) for its next await."""
    if future.done() and future.cancelled():  # the future itself was cancelled
        raise cancellation
    postponed = cancellation.args  # the cancellation's arguments (its message: who stopped it)
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()
    try:
        while not future.done():
            try:
                return await (future if type(future) is UncancellableFuture else asyncio.shield(future))
            except asyncio.CancelledError as exc:
                if future.done() and future.cancelled():
                    raise
                postponed = exc.args
                if task is not None:
                    task.uncancel()
        return future.result()  # it ended as the cancellation came
    finally:
        if task is not None:
            task.cancel(*postponed[:1])
