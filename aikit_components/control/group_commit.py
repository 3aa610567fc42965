"""Group commit: the writes of many callers at once, one transaction (and one fsync) per round.

A durable write waits for an fsync (milliseconds). A thousand agent runs each writing in turn wait
for a thousand fsyncs one after another; written together, they wait for a few. A caller hands its
write to :meth:`GroupCommit.submit` (or waits for it with :meth:`put` from a thread, :meth:`aput`
from a coroutine, which leaves the event loop free); one writer thread takes every write queued so
far and commits them with ``commit(batch)`` in one transaction. When that fails, each write of the
batch is committed alone, so each caller gets its own write's error (and the others succeed).
A write is durable when its caller's wait returns, as if it had committed it itself. The writer
thread ends after :data:`IDLE_S` without writes (the next write starts another).

Coroutines waiting on a batch are woken together: one call into their event loop per batch (not
one per write), since each wake-up from a thread is a system call and a turn of the loop.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Generic, TypeVar

from ..errors import IOFailure
from .offload import UncancellableFuture, after_cancellation

T = TypeVar("T")

#: Seconds without writes after which the writer thread ends.
IDLE_S = 5.0

# Bumped in a forked child (which has none of its parent's threads): a writer started before the
# fork is not this process's. (Asking os.getpid() at every write is a system call each time.)
_forks = 0


def _forked() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_forked)

#: Who waits for a write: a thread (a ``concurrent.futures.Future``) or a coroutine (its loop
#: and an ``asyncio.Future`` of that loop).
Waiter = Future[None] | tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]


class GroupCommit(Generic[T]):
    """Writes of type ``T`` committed in groups by ``commit(batch)`` (which must write the whole
    batch in one transaction, or raise and write nothing) in a writer thread named ``name``."""

    def __init__(self, commit: Callable[[list[T]], None], name: str) -> None:
        self._commit = commit
        self._name = name
        self._queue: list[tuple[T, Waiter]] = []
        # a plain lock, entered directly where nothing waits (a Condition's own enter is Python code)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._forks = -1  # the value of _forks when the writer thread was started
        self._closed = False

    def submit(self, item: T) -> Future[None]:
        """Queue ``item``; the future is done once it is committed (or failed)."""
        future: Future[None] = Future()
        self._enqueue(item, future)
        return future

    def _enqueue(self, item: T, waiter: Waiter) -> None:
        with self._lock:
            if self._closed:
                raise IOFailure(f"the writer {self._name} has been closed")
            self._queue.append((item, waiter))
            if self._thread is None or self._forks != _forks:  # none yet, or forked: none here
                self._thread = threading.Thread(target=self._write_forever, name=self._name, daemon=True)
                self._forks = _forks
                self._thread.start()
            elif len(self._queue) == 1:  # the writer waits only on an empty queue; else it comes back for it
                self._cond.notify()

    def put(self, item: T) -> None:
        """Commit ``item`` (with others queued at the same time); raises its write's error."""
        self.submit(item).result()

    async def aput(self, item: T) -> None:
        """:meth:`put` for coroutines: the loop serves others while the commit is in flight (a
        cancellation meanwhile takes effect once it is done: :func:`~.offload.to_the_end`)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = UncancellableFuture(loop=loop)
        self._enqueue(item, (loop, future))
        try:  # (to_the_end, inline: one coroutine fewer per write)
            await future
        except asyncio.CancelledError as exc:
            await after_cancellation(future, exc)

    def close(self) -> None:
        """Commit what is queued, then stop the writer (a later write raises)."""
        with self._lock:
            self._closed = True
            self._cond.notify()
            thread = self._thread if self._forks == _forks else None
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _write_forever(self) -> None:
        while True:
            with self._lock:
                if not self._queue and not self._closed:
                    self._cond.wait(IDLE_S)
                batch, self._queue = self._queue, []
                if not batch:  # closed and drained, or idle: the next write starts a writer
                    self._thread = None
                    return
            if batch:
                self._write(batch)

    def _write(self, batch: list[tuple[T, Waiter]]) -> None:
        try:
            self._commit([item for item, _ in batch])
        except BaseException as exc:  # noqa: BLE001 - handed to the callers waiting for these writes
            if len(batch) == 1:
                _settle_all([(batch[0][1], exc)])
                return
            # each alone: each caller gets its own write's error
            _settle_all([(waiter, _error_of(self._commit, item)) for item, waiter in batch])
            return
        _settle_all([(waiter, None) for _, waiter in batch])


def _error_of(commit: Callable[[list[T]], None], item: T) -> BaseException | None:
    try:
        commit([item])
    except BaseException as exc:  # noqa: BLE001 - handed to the caller waiting for this write
        return exc
    return None


def _settle_all(outcomes: list[tuple[Waiter, BaseException | None]]) -> None:
    """Tell each waiter its write's outcome: threads at once, coroutines in one call into each
    loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[None], BaseException | None]]] = {}
    for waiter, error in outcomes:
        if isinstance(waiter, tuple):
            loop, future = waiter
            by_loop.setdefault(loop, []).append((future, error))
        else:
            _settle(waiter, error)
    for loop, futures in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle_futures, futures)
        except RuntimeError:  # the loop is closed: nobody waits there any more
            pass


def _settle_futures(futures: list[tuple[asyncio.Future[None], BaseException | None]]) -> None:
    for future, error in futures:
        if not future.done():  # done: its waiter was cancelled (the write stands)
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)


def _settle(future: Future[None], error: BaseException | None) -> None:
    if future.set_running_or_notify_cancel():  # False: its waiter was cancelled (the write stands)
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
