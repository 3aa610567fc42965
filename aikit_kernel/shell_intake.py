"""How shell requests reach the main thread (the Lua thread), which serves them in order.

Until the interpreter is built, the I/O loop reads the shell socket (:meth:`ShellIntake.serve_until_taken`)
and queues what it reads; the main thread then takes the socket over (:meth:`ShellIntake.take`)
and from there on reads it itself, polling the socket and a wake-up pipe: a request crosses no
thread on its way in. Other threads queue work for the main thread with :meth:`ShellIntake.post`,
which wakes it. :meth:`ShellIntake.next` gives the main thread its next item: posted work first,
then the requests read before, then one read now."""

from __future__ import annotations

import asyncio
import collections
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq

from . import runtime
from .transport import has_message, recv_frames

__all__ = ["Request", "ShellIntake"]

log = logging.getLogger(__name__)

#: A shell request as the main thread serves it: routing identities, the parsed message, and its
#: number in arrival order.
Request = tuple[list[bytes], dict[str, Any], int]


class ShellIntake:
    """The shell socket's requests and other threads' work, for the main thread.

    ``accept(frames)`` checks a received message (None drops it); ``on_request(idents, msg)`` is
    called on the I/O loop for each request read there (it may answer it or :meth:`queue` it);
    ``on_taken(thread)`` runs on the I/O loop when the main thread takes the socket over;
    ``touch()`` is called for each request the main thread reads (the kernel's last activity)."""

    def __init__(self, shell: Any, accept: Callable[[list[bytes]], tuple[list[bytes], dict[str, Any]] | None], *,
                 on_request: Callable[[list[bytes], dict[str, Any]], None],
                 on_taken: Callable[[threading.Thread], None], touch: Callable[[], None]) -> None:
        self._shell = shell
        self._accept = accept
        self._on_request = on_request
        self._on_taken = on_taken
        self._touch = touch
        self._work: queue.SimpleQueue[Any] = queue.SimpleQueue()  # posted by other threads
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        # Requests read from the socket by the main thread and not served yet (main thread).
        self._backlog: collections.deque[Request] = collections.deque()
        self._fd: int | None = None  # the loop watches the socket on this fd
        self._poller: zmq.Poller | None = None  # the socket and the wake-up pipe (main thread)
        #: The main thread reads the socket (set on the I/O loop).
        self.taken = False
        #: Shell requests read so far, numbered in arrival order (I/O thread, then main thread).
        self.received = 0

    # ------------------------------------------------------------------ any thread
    def post(self, item: Any) -> None:
        """Queue work for the main thread and wake it."""
        self._work.put(item)
        try:
            self._wake_w.send(b"\0")
        except OSError:  # the pipe is full (it is awake anyway), or closed at shutdown
            pass

    # ------------------------------------------------------------------ I/O loop side
    def queue(self, idents: list[bytes], msg: dict[str, Any]) -> None:
        """Queue a request read on the I/O loop for the main thread (numbered in arrival order)."""
        self.received += 1
        self.post((idents, msg, self.received))

    async def serve_until_taken(self) -> None:
        """Read the socket on the I/O loop until the main thread takes it over."""
        if self.taken:
            return
        loop = asyncio.get_running_loop()
        self._fd = self._shell.getsockopt(zmq.FD)
        # The descriptor signals that the socket has something to process; reading until
        # nothing is left re-arms it.
        loop.add_reader(self._fd, self._read_on_loop)
        try:
            self._read_on_loop()
            await loop.create_future()  # until cancelled (the reader is removed once taken)
        except asyncio.CancelledError:
            pass
        finally:
            if self._fd is not None:
                loop.remove_reader(self._fd)
                self._fd = None

    def _read_on_loop(self) -> None:
        while not self.taken:
            try:
                frames = self._shell.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            except zmq.ZMQError:  # closed at shutdown
                return
            accepted = self._accept(frames)
            if accepted is None:
                continue
            try:
                self._on_request(*accepted)
            except Exception:
                log.exception("error handling %s", accepted[1]["header"].get("msg_type"))

    async def _hand_over(self, thread: threading.Thread) -> None:
        self.taken = True
        if self._fd is not None:
            asyncio.get_running_loop().remove_reader(self._fd)
            self._fd = None
        self._on_taken(thread)

    # ------------------------------------------------------------------ main thread
    def take(self) -> None:
        """Take the socket over from the I/O loop (the requests it read before are served first)."""
        runtime.run_sync(self._hand_over(threading.current_thread()), timeout=30)
        poller = zmq.Poller()
        poller.register(self._shell, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        self._poller = poller

    def read(self) -> bool:
        """Read every request waiting in the socket into the backlog; whether there was any."""
        got = False
        while True:
            try:
                if not has_message(self._shell):  # (a receive that finds nothing costs twice as much)
                    return got
            except zmq.ZMQError:  # closed at shutdown
                return got
            got = self._receive() or got

    def _receive(self) -> bool:
        """Read one message (one is known to wait) into the backlog; whether it was a request."""
        try:
            frames = recv_frames(self._shell)
        except zmq.ZMQError:  # nothing after all (zmq.Again), or closed at shutdown
            return False
        accepted = self._accept(frames)
        if accepted is None:
            return False
        self._touch()
        self.received += 1
        self._backlog.append((*accepted, self.received))
        return True

    def waiting(self) -> bool:
        """Whether a request waits to be served (reading the socket first)."""
        return bool(self.read() or self._backlog)

    def next(self, timeout: float | None) -> Any:
        """The next thing to serve: work other threads posted, a request read before, or one read
        now (a :data:`Request`); None after ``timeout`` seconds of nothing."""
        deadline = None if timeout is None else time.monotonic() + timeout
        poller, wake = self._poller, self._wake_r
        assert poller is not None, "take() the socket first"
        while True:
            if not self._work.empty():
                return self._work.get()
            if self._backlog or self.read():
                return self._backlog.popleft()
            wait_ms = -1 if deadline is None else int(max(0.0, deadline - time.monotonic()) * 1000)
            if wait_ms == 0 and deadline is not None:
                return None
            for ready, _ in poller.poll(wait_ms):
                if ready is wake:
                    try:
                        while wake.recv(4096):
                            pass
                    except OSError:  # nothing (more) to read
                        pass
                else:  # the poll says a message waits: read it without asking the socket first
                    self._receive()

    def close(self) -> None:
        """Close the wake-up pipe (at shutdown)."""
        self._wake_r.close()
        self._wake_w.close()
