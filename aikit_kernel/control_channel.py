"""The control socket, read on a thread of its own (as ipykernel does).

The I/O loop can be busy for tens of milliseconds at a time (a thousand agents' HTTP work); a
``kernel_info_request`` on control, which frontends use to see whether the kernel is alive, must
not wait for it. The control thread owns the socket (ZMQ sockets are not thread-safe): it alone
receives and sends on it. Other threads hand it what they send with :meth:`ControlChannel.send_multipart`
(queued, then the thread is woken through a pipe it polls with the socket), so a reply built on
the I/O loop (interrupt, shutdown, debug) still goes out in the order it was sent.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
from collections.abc import Callable

import zmq

log = logging.getLogger(__name__)

#: How long :meth:`ControlChannel.stop` waits for the thread (it only has to notice the wake-up).
JOIN_TIMEOUT_S = 5.0


class ControlChannel:
    """A ROUTER socket served by its own thread; :meth:`send_multipart` is callable from any thread."""

    def __init__(self, socket: zmq.Socket) -> None:
        self.socket = socket
        self._outbox: collections.deque[list[bytes]] = collections.deque()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._closed = False

    def start(self, on_frames: Callable[[list[bytes]], None]) -> None:
        """Serve the socket on a new thread: ``on_frames(frames)`` runs there for every message
        received (exceptions are logged). Call once."""
        if self._thread is not None:
            raise RuntimeError("the control channel is already served")
        self._thread = threading.Thread(target=self._serve, args=(on_frames,), name="aikit-control", daemon=True)
        self._thread.start()

    @property
    def serving(self) -> bool:
        """Whether the control thread is running."""
        return self._thread is not None and self._thread.is_alive()

    def on_thread(self) -> bool:
        """Whether the caller is the control thread."""
        return self._thread is not None and threading.current_thread() is self._thread

    def send_multipart(self, frames: list[bytes], copy: bool = False) -> None:
        """Send ``frames`` on the control socket: at once on the control thread, otherwise after
        everything queued before (the thread is woken to send it). Same signature as zmq's."""
        if self.on_thread():
            self._flush()
            self._send(frames)
            return
        self._outbox.append(frames)
        if not self.serving:  # not started yet or stopped: sent by start's thread or by close
            return
        self._wake()

    def stop(self) -> None:
        """Stop the thread (after it sent what is queued) and wait for it; idempotent."""
        thread = self._thread
        if thread is None or self._stopping:
            if thread is not None and not self.on_thread():
                thread.join(JOIN_TIMEOUT_S)
            return
        self._stopping = True
        self._wake()
        if not self.on_thread():
            thread.join(JOIN_TIMEOUT_S)
            if thread.is_alive():
                log.warning("the control thread did not stop within %g s", JOIN_TIMEOUT_S)

    def close(self, linger: int = 200) -> None:
        """Stop the thread, send what is still queued and close the socket."""
        if self._closed:
            return
        self.stop()
        if self.serving:  # stuck in a handler: closing the socket under it would be unsafe
            return
        self._closed = True
        self._flush()
        self.socket.close(linger=linger)
        os.close(self._wake_r)
        os.close(self._wake_w)

    # ------------------------------------------------------------------ the control thread
    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:  # the pipe is full: the thread has wake-ups enough pending
            pass
        except OSError:  # closed at shutdown
            pass

    def _serve(self, on_frames: Callable[[list[bytes]], None]) -> None:
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        while not self._stopping:
            self._flush()  # what was queued before start or since the last pass
            try:
                ready = dict(poller.poll())
            except zmq.ZMQError:  # the context is being terminated
                break
            if self._wake_r in ready:
                try:
                    os.read(self._wake_r, 4096)
                except BlockingIOError:
                    pass
                self._flush()
            if self.socket in ready:
                self._receive_all(on_frames)
        self._flush()

    def _receive_all(self, on_frames: Callable[[list[bytes]], None]) -> None:
        while not self._stopping:
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            except zmq.ZMQError:
                return
            try:
                on_frames(frames)
            except Exception:
                log.exception("error handling a control message")

    def _flush(self) -> None:
        while self._outbox:
            self._send(self._outbox.popleft())

    def _send(self, frames: list[bytes]) -> None:
        try:
            self.socket.send_multipart(frames, copy=False)
        except zmq.ZMQError:  # a closed socket at shutdown: never crash the thread
            log.exception("sending on control failed")
