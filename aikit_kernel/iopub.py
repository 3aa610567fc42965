"""Sending messages from any thread, and the IOPub output of a running request.

Frames are built (and signed) on the calling thread, and sent from it whenever the socket allows
(ZMQ sockets are not thread-safe: each is used by one thread at a time):

* IOPub is shared: every thread sends on it directly, holding the Messenger's IOPub lock, so the
  messages of a request go out as they are made (busy, execute_input, streams and displays,
  idle), in the order each thread makes them, and the client reads them while the request is
  still being served.
* shell has one owner at a time (:meth:`Messenger.hand_over`): the I/O loop at first, the thread
  that serves requests once it takes the socket; the owner sends directly.
* control is a :class:`~aikit_kernel.control_channel.ControlChannel`, which any thread may use.
* stdin is an asyncio socket of the I/O loop: what other threads send on it is queued, in FIFO
  order, and sent by the loop.

IOPub is an XPUB socket: every new subscription gets an ``iopub_welcome`` message (JEP 65), so a
client knows from when on it receives everything. Pending subscriptions are answered before any
other IOPub message is sent, so a new subscriber's first message is its welcome.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

import zmq
import zmq.asyncio

from . import runtime
from .output import StdinNotAllowed
from .protocol import Protocol
from .transport import has_message, send_frames

_NOBLOCK = int(zmq.NOBLOCK)

log = logging.getLogger(__name__)

STREAM_FLUSH_INTERVAL_S = 0.05
#: Work handed to the loop with Messenger.later (history writes) runs this long after the
#: request that queued it is answered. Run at once, it delayed the round trip of a trivial cell
#: by ~60 us (interleaved A/B, 500 round trips: the write competes for the CPU with the client).
LATER_S = 0.05
STREAM_FLUSH_BYTES = 64 * 1024


class Messenger:
    """Builds messages with the kernel's Protocol and sends them on the right thread."""

    def __init__(self, protocol: Protocol, sockets: dict[str, Any]) -> None:
        """``sockets``: per channel, a plain ZMQ socket (IOPub: shared under a lock; any other:
        owned by the I/O loop until :meth:`hand_over`), an asyncio socket of the I/O loop, or
        anything else with a ``send_multipart(frames, copy=False)`` that any thread may call
        (the control channel)."""
        self.protocol = protocol
        self.sockets = sockets
        # Messages for the loop's sockets built on other threads wait here, with the calls to run
        # on the loop after them (history writes, see later()); one wake-up sends a whole burst.
        self._pending: list[tuple[str, list[bytes]]] = []
        self._after: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self._pending_lock = threading.Lock()
        self._wake_scheduled = False  # a drain is scheduled on the loop (guarded by the lock)
        self._later_armed = False  # the loop will run what later() queued (guarded by the lock)
        # The thread each owned socket belongs to; None: the I/O loop's.
        self._owners: dict[str, threading.Thread | None] = {}
        for channel, sock in sockets.items():
            if isinstance(sock, zmq.Socket) and not isinstance(sock, zmq.asyncio.Socket) and channel != "iopub":
                self._owners[channel] = None
        # Plain sockets of our own (not asyncio, not the control channel): sent on with send_frames.
        self._plain = {channel for channel, sock in sockets.items()
                       if isinstance(sock, zmq.Socket) and not isinstance(sock, zmq.asyncio.Socket)}
        self._iopub_lock = threading.Lock()
        self._held: list[tuple[str, list[bytes]]] | None = None  # see hold() (guarded by the IOPub lock)
        iopub = sockets.get("iopub")
        self._iopub_shared = isinstance(iopub, zmq.Socket) and not isinstance(iopub, zmq.asyncio.Socket)
        # What hold() may keep: IOPub when shared, and shell, sent only by its owner (which holds).
        self._holdable = {"iopub", "shell"} if self._iopub_shared else set()
        self._xpub: zmq.Socket | None = None  # read for subscriptions (under the IOPub lock)
        if iopub is not None and iopub.getsockopt(zmq.TYPE) == zmq.XPUB:
            self._xpub = iopub if self._iopub_shared else zmq.Socket.shadow(iopub.underlying)

    def hand_over(self, channel: str, thread: threading.Thread | None) -> None:
        """From now on ``channel``'s socket belongs to ``thread`` (None: the I/O loop), which
        alone sends on it. Call on the thread that owns it now, once it stopped using it."""
        if channel not in self._owners:
            raise ValueError(f"the {channel} socket is not one a thread owns")
        self._owners[channel] = thread

    def hold(self) -> None:
        """Keep the IOPub and shell messages sent from now on (by any thread) until
        :meth:`send_held`, which sends them in one burst: the kernel's few messages made in a row
        then cost one wake-up of ZMQ's I/O thread, not one each (on a busy machine each wake-up
        can take the CPU from the thread still making the next message). Only around work that
        runs no user code."""
        with self._iopub_lock:
            self._held = []

    def send_held(self) -> None:
        """Send what was kept since :meth:`hold`, in order, and stop keeping."""
        with self._iopub_lock:
            held, self._held = self._held, None
            if not held:
                return
            self._welcome_locked()
            for channel, frames in held:
                self._put(channel, frames)
            self._welcome_locked()

    def send(
        self,
        channel: str,
        msg_type: str,
        content: dict[str, Any],
        parent: dict[str, Any] | None,
        idents: list[bytes] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        frames = self.protocol.build(msg_type, content, parent, idents, metadata)
        if self._held is not None and channel in self._holdable:
            with self._iopub_lock:
                if self._held is not None:
                    self._held.append((channel, frames))
                    return
        if channel == "iopub" and self._iopub_shared:
            with self._iopub_lock:
                self._welcome_locked()
                self._send_frames(channel, frames)
                self._welcome_locked()  # the send may have taken in a subscription the loop will not see
            return
        if channel in self._owners and self._owners[channel] is not None:
            if threading.current_thread() is self._owners[channel]:
                self._send_frames(channel, frames)
            else:
                log.error("dropping a %s on %s: that socket belongs to thread %s", msg_type, channel,
                          self._owners[channel].name)  # type: ignore[union-attr]
            return
        if not (channel in self._owners or isinstance(self.sockets.get(channel), zmq.asyncio.Socket)):
            self._send_frames(channel, frames)  # callable from any thread (the control channel)
            return
        if runtime.on_io_thread():
            self._drain()  # keep the order with messages queued from other threads
            self._send_frames(channel, frames)
            return
        with self._pending_lock:
            self._pending.append((channel, frames))
            wake = self._need_wake()
        if wake:
            runtime.call_soon(self._drain)

    def later(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the I/O loop later: at once there, else within ``LATER_S`` of
        :meth:`run_later` (work that must not delay a reply, such as a history write).
        Exceptions are logged."""
        if runtime.on_io_thread():
            self._drain()
            self._call(fn, args)
            return
        with self._pending_lock:
            self._after.append((fn, args))

    def run_later(self) -> None:
        """The request is answered: have the loop run what :meth:`later` queued, ``LATER_S``
        from now, with what the requests answered meanwhile queue (one wake-up for them all:
        woken at once, the loop would compete for the CPU with the client reading the reply)."""
        with self._pending_lock:
            arm = bool(self._after) and not self._later_armed
            if arm:
                self._later_armed = True
        if arm:
            runtime.call_soon(self._arm_later)

    def _arm_later(self) -> None:
        runtime.get_loop().call_later(LATER_S, self.run_now)

    def run_now(self) -> None:
        """Run what :meth:`later` queued, now (I/O thread: before a history query, at shutdown)."""
        with self._pending_lock:
            after, self._after = self._after, []
            self._later_armed = False
        for fn, args in after:
            self._call(fn, args)

    def _need_wake(self) -> bool:
        """With the lock held: whether the caller must wake the loop for what it just queued."""
        if self._wake_scheduled:
            return False
        self._wake_scheduled = True
        return True

    def _drain(self) -> bool:
        """Send what is queued, then run the calls queued with it (I/O thread); whether there
        was anything."""
        with self._pending_lock:
            batch, self._pending = self._pending, []
            after, self._after = self._after, []
            self._wake_scheduled = False
        for channel, frames in batch:
            self._send_frames(channel, frames)
        for fn, args in after:
            self._call(fn, args)
        return bool(batch or after)

    @staticmethod
    def _call(fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("error in %r after sending messages", fn)

    def _send_frames(self, channel: str, frames: list[bytes]) -> None:
        if channel == "iopub" and not self._iopub_shared:
            self._welcome_locked()
        self._put(channel, frames)

    def _put(self, channel: str, frames: list[bytes]) -> None:
        sock = self.sockets[channel]
        try:
            if channel in self._plain:
                send_frames(sock, frames)
            else:
                sock.send_multipart(frames, copy=False)
        except Exception:  # a closed socket at shutdown, a full queue: never crash the loop
            log.exception("sending on %s failed", channel)

    def welcome_subscribers(self) -> None:
        """Send ``iopub_welcome`` for every subscription received so far (any thread)."""
        if self._iopub_shared:
            with self._iopub_lock:
                self._welcome_locked()
        else:
            self._welcome_locked()

    def _welcome_locked(self) -> None:
        if self._xpub is None:
            return
        while True:
            try:
                if not has_message(self._xpub):
                    return
                frame = self._xpub.recv(_NOBLOCK)
            except zmq.Again:
                return
            except zmq.ZMQError:  # closed at shutdown
                return
            if not frame or frame[0] != 1:  # 0 = unsubscribe: nothing to say
                continue
            try:
                topic = frame[1:].decode()
            except UnicodeDecodeError:
                log.warning("ignoring an IOPub subscription that is not UTF-8")
                continue
            # A topic-filtered subscriber only receives messages that start with its topic.
            welcome = self.protocol.build("iopub_welcome", {"subscription": topic}, None,
                                          [frame[1:]] if topic else None)
            self._put("iopub", welcome)

    async def serve_subscriptions(self) -> None:
        """Welcome new IOPub subscribers while the kernel is idle (runs on the I/O loop until
        cancelled)."""
        if self._xpub is None:
            return
        if not self._iopub_shared:
            sock = self.sockets["iopub"]
            while True:
                try:
                    events = await sock.poll(flags=zmq.POLLIN)
                except (zmq.ContextTerminated, zmq.ZMQError, asyncio.CancelledError):
                    return
                if events & zmq.POLLIN:
                    self.welcome_subscribers()
        # The socket's file descriptor signals that it has something to process (it is not a
        # level of readiness): every wake-up reads the socket's events, which re-arms it.
        loop = asyncio.get_running_loop()
        fd = self._xpub.getsockopt(zmq.FD)
        loop.add_reader(fd, self.welcome_subscribers)
        try:
            self.welcome_subscribers()
            await loop.create_future()  # until cancelled
        except asyncio.CancelledError:
            pass
        finally:
            loop.remove_reader(fd)

    def publish(self, msg_type: str, content: dict[str, Any], parent: dict[str, Any] | None) -> None:
        self.send("iopub", msg_type, content, parent)

    def status(self, state: str, parent: dict[str, Any] | None) -> None:
        self.publish("status", {"execution_state": state}, parent)


class IOPubOutput:
    """The OutputSink of the request being served: batches streams, sends displays, asks stdin."""

    def __init__(self, messenger: Messenger) -> None:
        self.messenger = messenger
        self.parent: dict[str, Any] | None = None
        self.idents: list[bytes] = []
        self._lock = threading.Lock()
        # Held from taking the buffer until its messages are queued: a timer flush (I/O loop)
        # racing a flush of the Lua thread would otherwise publish the later text first. Held
        # only while frames are built, never while waiting on the loop or on Lua.
        self._flush_lock = threading.Lock()
        self._chunks: list[tuple[str, str]] = []
        self._size = 0
        self._timer_pending = False
        self._stdin_waiter: asyncio.Future[str] | None = None

    def set_parent(self, parent: dict[str, Any] | None, idents: list[bytes]) -> None:
        """Attribute output from now on to ``parent`` (flushing what belonged to the previous one)."""
        self.flush()
        self.parent = parent
        self.idents = idents

    # ------------------------------------------------------------------ streams
    def write(self, name: str, text: str) -> None:
        with self._lock:
            self._chunks.append((name, text))
            self._size += len(text)
            big = self._size >= STREAM_FLUSH_BYTES
            schedule = not big and not self._timer_pending
            if schedule:
                self._timer_pending = True
        if big:
            self.flush()
        elif schedule:
            runtime.call_soon(self._arm_timer)

    def _arm_timer(self) -> None:
        runtime.get_loop().call_later(STREAM_FLUSH_INTERVAL_S, self._timer_flush)

    def _timer_flush(self) -> None:
        with self._lock:
            self._timer_pending = False
        self.flush()

    def flush(self) -> None:
        """Send buffered stream text now: one message per run of the same stream."""
        with self._flush_lock:
            with self._lock:
                chunks, self._chunks, self._size = self._chunks, [], 0
                parent = self.parent
            if not chunks:
                return
            runs: list[tuple[str, list[str]]] = []
            for name, text in chunks:
                if runs and runs[-1][0] == name:
                    runs[-1][1].append(text)
                else:
                    runs.append((name, [text]))
            for name, texts in runs:
                self.messenger.publish("stream", {"name": name, "text": "".join(texts)}, parent)

    # ------------------------------------------------------------------ rich output
    def display(self, data: dict[str, Any], metadata: dict[str, Any], display_id: str | None, update: bool) -> None:
        self.flush()
        content: dict[str, Any] = {"data": data, "metadata": metadata, "transient": {}}
        if display_id is not None:
            content["transient"] = {"display_id": display_id}
        self.messenger.publish("update_display_data" if update else "display_data", content, self.parent)

    def execute_result(self, count: int, data: dict[str, Any], metadata: dict[str, Any]) -> None:
        self.flush()
        self.messenger.publish("execute_result", {"execution_count": count, "data": data, "metadata": metadata}, self.parent)

    def clear(self, wait: bool) -> None:
        self.flush()
        self.messenger.publish("clear_output", {"wait": bool(wait)}, self.parent)

    # ------------------------------------------------------------------ stdin
    def readline(self, prompt: str, password: bool = False) -> str | None:
        parent = self.parent
        if parent is None or not parent.get("content", {}).get("allow_stdin", False):
            raise StdinNotAllowed("the frontend does not accept input requests")
        return runtime.run_sync(self._ask(prompt, password, parent, self.idents), should_stop=self._should_stop)

    def can_ask(self) -> bool:
        """Whether the request being served accepts input requests (``allow_stdin``)."""
        parent = self.parent
        return parent is not None and bool(parent.get("content", {}).get("allow_stdin", False))

    async def aread_line(self, prompt: str) -> str:
        """:meth:`readline` from the I/O loop (an approval asked while an agent runs there)."""
        parent = self.parent
        if parent is None or not parent.get("content", {}).get("allow_stdin", False):
            raise StdinNotAllowed("the frontend does not accept input requests")
        self.flush()
        return await self._ask(prompt, False, parent, self.idents)

    _should_stop = staticmethod(lambda: False)

    def set_stop_check(self, check: Any) -> None:
        """The engine's "interrupt requested" predicate, so a pending input can be abandoned."""
        self._should_stop = check

    async def _ask(self, prompt: str, password: bool, parent: dict[str, Any], idents: list[bytes]) -> str:
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._stdin_waiter = future
        self.messenger.send("stdin", "input_request", {"prompt": prompt, "password": password}, parent, idents)
        try:
            return await future
        finally:
            self._stdin_waiter = None

    def on_input_reply(self, msg: dict[str, Any]) -> None:
        """Called on the I/O loop when an input_reply arrives on the stdin socket."""
        future = self._stdin_waiter
        if future is not None and not future.done():
            future.set_result(str(msg.get("content", {}).get("value", "")))
        else:
            log.warning("dropping an input_reply nobody asked for")
