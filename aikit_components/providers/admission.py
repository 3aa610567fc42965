"""Back-pressure from the event loop: new model requests wait while the loop is behind.

A thousand agents asking a model at once get a thousand answers at about the same time, and each
answer is work on the event loop (parse it, call the tool, record it, ask again). Started all at
once, that work piles up in the loop's queue: everything else the loop serves (the kernel's
control channel, timers, other requests) waits behind the pile. Waiting to *send* costs nothing,
so :class:`Admission` sends new requests at the pace the loop keeps up with: at most
:data:`BURST` per :data:`TICK_S` while the loop is on time (its lag, how late a timer fires, at
most :data:`MAX_LAG_S`), none while it is behind. A loop that keeps up (answers that take seconds,
as real models' do) never makes a request wait more than a tick.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque

#: How often the loop's lag is measured while requests are being sent.
TICK_S = 0.005
#: Requests sent per tick at most while the loop is on time (6,400/s). Measured with 1,000 agent
#: runs at once (bench/many_agents.py), kernel_info now answered on its own thread: 8 (1,600/s)
#: made the runs wait for admission (2.5-2.9 s against 2.3-2.5 s); no limit at all gave the same
#: wall time with kernel_info's p95 at 20 ms instead of 7-11 ms.
BURST = 32
#: The loop is "behind" when a timer fires later than this.
MAX_LAG_S = 0.010
#: Ticks without a request after which the measuring stops (it starts again with the next one).
IDLE_TICKS = 200


class Admission:
    """The admission of new requests on one event loop (see the module docstring); used on that
    loop only (it keeps no reference to it)."""

    def __init__(self) -> None:
        self._tokens = BURST
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._ticking = False
        self._due = 0.0
        self._idle = 0

    def take(self) -> bool:
        """Admit a request now if one may be sent without waiting (False: :meth:`wait` for it)."""
        if not self._ticking:
            self._start()
        self._idle = 0
        if self._tokens > 0 and not self._waiters:
            self._tokens -= 1
            return True
        return False

    async def wait(self) -> None:
        """Return when the request :meth:`take` did not admit may be sent."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._tokens += 1  # admitted, then cancelled: the slot goes to the next one
            raise

    def _start(self) -> None:
        self._ticking = True
        self._tokens = BURST
        loop = asyncio.get_running_loop()
        self._due = loop.time() + TICK_S
        loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        on_time = now - self._due <= MAX_LAG_S
        self._tokens = BURST if on_time else 0
        while self._tokens > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._tokens -= 1
        self._idle += 1
        if self._idle > IDLE_TICKS and not self._waiters:
            self._ticking = False
            return
        self._due = now + TICK_S
        loop.call_at(self._due, self._tick)


_admissions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Admission] = weakref.WeakKeyDictionary()


async def admit() -> None:
    """Wait until the running loop may take one more request (see :class:`Admission`)."""
    loop = asyncio.get_running_loop()
    admission = _admissions.get(loop)
    if admission is None:
        admission = _admissions[loop] = Admission()
    if not admission.take():  # most requests need not wait: no coroutine of Admission's for them
        await admission.wait()
