"""Ctrl-C for command-line runs of a coroutine (``aikit mission run``, a plan run).

:func:`run_interruptible` is ``asyncio.run`` whose SIGINT is seen at once. ``asyncio.run``'s own
SIGINT handler is a Python signal handler, and Python runs those on the main thread only. When
the main thread blocks signals for a moment, as it does around every program start (subprocess
blocks them while a vfork'd child gets to its exec, which takes long on a busy machine), the
kernel hands the SIGINT to another thread. The main thread, asleep in the event loop with
nothing due, does not see it then: a SIGINT given to another thread of ``aikit mission run``
during an 8-s command step stopped the run only once the step had ended. A signal handler of the
loop is told through the loop's wake-up fd, which the C handler writes to on whichever thread it
runs.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_interruptible(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` in a new event loop, as ``asyncio.run`` does, Ctrl-C included: the first
    SIGINT cancels ``main`` (which may record its cancellation) and raises KeyboardInterrupt once
    it has ended so; a second one raises KeyboardInterrupt at once. As with ``asyncio.run``, a
    SIGINT handler the program installed itself is left in charge."""
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return asyncio.run(main)
    return asyncio.run(_cancelled_by_sigint(main))


async def _cancelled_by_sigint(main: Coroutine[Any, Any, T]) -> T:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    interrupts = 0

    def on_sigint() -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts > 1:
            raise KeyboardInterrupt
        task.cancel()

    try:
        loop.add_signal_handler(signal.SIGINT, on_sigint)
    except (ValueError, RuntimeError, NotImplementedError):  # not the main thread, or no signals here
        return await main
    try:
        return await main
    except asyncio.CancelledError:
        if interrupts:
            raise KeyboardInterrupt from None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGINT)
