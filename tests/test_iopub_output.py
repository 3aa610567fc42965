"""IOPubOutput's stream batching: a flush on the I/O loop's timer racing a flush on the Lua
thread (a full buffer) must never publish the later text first."""

from __future__ import annotations

import threading
import time
from typing import Any

from aikit_kernel.iopub import IOPubOutput


class RecordingMessenger:
    """Stands in for Messenger: keeps what is published, in order, and yields the GIL between
    taking and recording so that racing flushes interleave as they do in a busy kernel."""

    def __init__(self) -> None:
        self.published: list[str] = []
        self._lock = threading.Lock()

    def publish(self, msg_type: str, content: dict[str, Any], parent: Any) -> None:
        time.sleep(0)
        with self._lock:
            self.published.append(content["text"])


def test_racing_flushes_keep_stream_order() -> None:
    messenger = RecordingMessenger()
    output = IOPubOutput(messenger)  # type: ignore[arg-type]
    n = 60_000
    done = threading.Event()

    def timer_flushes() -> None:
        while not done.is_set():
            output.flush()

    flusher = threading.Thread(target=timer_flushes)
    flusher.start()
    try:
        for i in range(n):
            output.write("stdout", f"{i}\n")
            if i % 50 == 0:
                output.flush()  # the Lua thread's own flush (buffer full, a display, the reply)
    finally:
        done.set()
        flusher.join()
    output.flush()
    assert "".join(messenger.published).split() == [str(i) for i in range(n)]
