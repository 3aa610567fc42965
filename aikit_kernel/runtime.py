"""The one long-lived asyncio I/O loop of the process (thread "aikit-io").

Everything that does I/O (ZMQ sockets, HTTP, databases, subprocesses, timers) runs on this loop.
The Lua runtime lives on the main thread and never runs here; Lua reaches the loop through
:func:`run_sync`, which waits in short slices so an interrupt can cancel the wait.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import signal
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from aikit_components.errors import Interrupted

T = TypeVar("T")

_WAIT_SLICE_S = 0.02

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None


def get_loop() -> asyncio.AbstractEventLoop:
    """Return the global I/O loop, starting its thread on first use."""
    global _loop, _thread
    with _lock:
        if _loop is not None and _thread is not None and _thread.is_alive():
            return _loop
        loop = asyncio.new_event_loop()
        started = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(started.set)
            loop.run_forever()

        thread = threading.Thread(target=serve, name="aikit-io", daemon=True)
        thread.start()
        started.wait()
        _loop, _thread = loop, thread
        return loop


def on_io_thread() -> bool:
    """True when called from the I/O loop's thread."""
    return _thread is not None and threading.current_thread() is _thread


def submit(coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
    """Schedule ``coro`` on the I/O loop from any thread; return a concurrent future."""
    return asyncio.run_coroutine_threadsafe(coro, get_loop())


def call_soon(fn: Callable[..., Any], *args: Any) -> None:
    """Run ``fn(*args)`` on the I/O loop, in FIFO order with other ``call_soon`` calls."""
    get_loop().call_soon_threadsafe(fn, *args)


def run_sync(
    coro: Coroutine[Any, Any, T],
    timeout: float | None = None,
    should_stop: Callable[[], bool] | None = None,
    service: Callable[[], Any] | None = None,
    wake: threading.Event | None = None,
) -> T:
    """Run ``coro`` on the I/O loop and wait for its result from a non-loop thread.

    The wait happens in short slices; when ``should_stop()`` becomes true the coroutine is
    cancelled and :class:`~aikit_components.errors.Interrupted` is raised; ``timeout`` raises ``TimeoutError``.
    ``service()`` runs after every slice and whenever ``wake`` is set (the Lua thread uses this
    to run calls other threads queued for it while it waits).
    """
    if on_io_thread():
        coro.close()
        raise RuntimeError("run_sync called on the I/O thread: that would deadlock the loop")
    return wait_future(submit(coro), timeout, should_stop, service, wake)


def wait_future(
    future: concurrent.futures.Future[T],
    timeout: float | None = None,
    should_stop: Callable[[], bool] | None = None,
    service: Callable[[], Any] | None = None,
    wake: threading.Event | None = None,
) -> T:
    """Wait for a future of the I/O loop from another thread (see :func:`run_sync`)."""
    event = wake if wake is not None else threading.Event()
    future.add_done_callback(lambda _: event.set())
    deadline = None if timeout is None else time.monotonic() + timeout
    if service is not None:
        service()
    while not future.done():
        event.wait(_WAIT_SLICE_S)
        event.clear()
        if future.done():
            break
        if service is not None:
            service()
        if should_stop is not None and should_stop():
            future.cancel()
            raise Interrupted()
        if deadline is not None and time.monotonic() >= deadline:
            future.cancel()
            raise TimeoutError(f"operation timed out after {timeout:g} s")
    if service is not None:
        service()  # every wait is a safe point, however short
    return future.result()


def stop_loop() -> None:
    """Stop the I/O loop and join its thread (used at process exit and in tests)."""
    global _loop, _thread
    with _lock:
        loop, thread = _loop, _thread
        _loop = _thread = None
    if loop is None or thread is None:
        return
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=5)


_sigint_sockets: tuple[socket.socket, socket.socket] | None = None
_signal_callbacks: dict[int, Callable[[], Any]] = {}  # other signals seen through the same wake-up fd


def on_sigint(callback: Callable[[], Any]) -> None:
    """Call ``callback`` on the I/O loop whenever SIGINT arrives. Must be called on the main thread.

    Python runs signal handlers only on the main thread between bytecodes, so never while Lua is
    busy there; ``signal.set_wakeup_fd`` lets the I/O loop see the signal at once instead.
    """
    global _sigint_sockets
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    _sigint_sockets = (reader, writer)
    restore_sigint()

    def on_wakeup() -> None:
        try:
            data = reader.recv(64)
        except BlockingIOError:
            return
        if signal.SIGINT in data:
            callback()
        for signum, other in list(_signal_callbacks.items()):
            if signum in data:
                other()

    loop = get_loop()
    loop.call_soon_threadsafe(loop.add_reader, reader.fileno(), on_wakeup)


def on_signal(signum: int, callback: Callable[[], Any]) -> None:
    """Call ``callback`` on the I/O loop whenever ``signum`` (SIGTERM, say) arrives, even while Lua
    is busy on the main thread. Main thread only, after :func:`on_sigint`."""
    _signal_callbacks[signum] = callback
    signal.signal(signum, lambda signum, frame: None)


def restore_sigint() -> None:
    """Point SIGINT back at the I/O loop after something else took it (an asyncio loop on the main
    thread, such as prompt_toolkit's, installs its own handler and wake-up fd, and resets both when
    it closes). Main thread only; a no-op before :func:`on_sigint`."""
    if _sigint_sockets is None:
        return
    signal.signal(signal.SIGINT, lambda signum, frame: None)
    signal.set_wakeup_fd(_sigint_sockets[1].fileno(), warn_on_full_buffer=False)
