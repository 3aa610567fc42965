"""Blocking durable writes, awaited without holding the event loop.

The control interceptors commit to disk before an operation's result goes back to its caller (the
audit ledger, the effect journal, agent runs' records). A commit waits for an fsync (milliseconds);
made on the event loop it stops everything else the loop serves (other runs, the kernel's control
channel) for that long. :func:`in_thread` runs such a write in one of this module's threads while
the awaiting coroutine is suspended: the caller still gets its result only once the write is done.

The threads are this module's own, not the loop's default executor (which resolves host names for
HTTP connections): a thread blocked on a commit must not hold up a connection. There are many of
them because a thread waits for a whole commit, and the audit ledger puts the entries of all the
threads waiting at once in one transaction (group commit): more threads, fewer fsyncs.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
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


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a commit thread, in the caller's context (context variables: the run an
    operation belongs to); its result or exception once it has returned (see :func:`to_the_end`)."""
    loop = asyncio.get_running_loop()
    call = functools.partial(contextvars.copy_context().run, fn, *args)
    return await to_the_end(loop.run_in_executor(executor(), call))


async def to_the_end(future: asyncio.Future[T]) -> T:
    """Await ``future`` as a blocking call would be made: to its end. When the waiting task is
    cancelled meanwhile, the cancellation takes effect at its next await instead (as it would have
    after a blocking commit): an operation's outcome is recorded and returned the same way whether
    or not a stop arrived during the commit."""
    postponed: tuple[Any, ...] | None = None  # the cancellation's arguments (its message: who stopped it)
    try:
        while True:
            try:
                return await asyncio.shield(future)
            except asyncio.CancelledError as exc:
                if future.done() and future.cancelled():  # the future itself was cancelled
                    raise
                postponed = exc.args
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
                if future.done():  # it ended as the cancellation came
                    return future.result()
    finally:
        if postponed is not None:
            task = asyncio.current_task()
            if task is not None:
                task.cancel(*postponed[:1])
