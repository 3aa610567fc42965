"""Run test work on several threads at once."""

from __future__ import annotations

import threading
from collections.abc import Callable


def run_in_threads(count: int, work: Callable[[int], object]) -> None:
    """Start ``count`` threads, thread ``k`` running ``work(k)``, and wait for all of them."""
    threads = [threading.Thread(target=work, args=(k,)) for k in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
