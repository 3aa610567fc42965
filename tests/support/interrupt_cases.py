"""Lua code that runs until interrupted, each kind a way an interrupt must reach, and how to
interrupt it in a real kernel (``tests/test_interrupt_and_limits.py`` and ``bench/interrupts.py``)."""

from __future__ import annotations

import time
from typing import Any

from tests.support.kernels import Kernel

SETTLE_S = 0.3  # let the cell get going before interrupting it
REPLY_TIMEOUT_S = 60  # only bounds a hang: the reply's KeyboardInterrupt says the interrupt landed

INTERRUPT_CASES = {
    "busy_loop": "while true do end",
    "coroutine": "local co = coroutine.wrap(function() while true do end end) co()",
    "pcall_loop": "while true do pcall(function() while true do end end) end",
    "sleep": "sleep(30)",
    "xpcall_loop": "while true do xpcall(function() while true do end end, function(e) return e end) end",
    "nested_coroutines": (
        "local outer = coroutine.create(function()\n"
        "  local inner = coroutine.wrap(function() while true do coroutine.yield() end end)\n"
        "  while true do inner() end\n"
        "end)\n"
        "while true do coroutine.resume(outer) end"
    ),
    # coroutine.close runs the pending __close on the coroutine's own thread
    "close_metamethod_loop": (
        "local co = coroutine.create(function()\n"
        "  local x <close> = setmetatable({}, {__close = function() while true do end end})\n"
        "  coroutine.yield()\n"
        "end)\n"
        "coroutine.resume(co)\n"
        "coroutine.close(co)"
    ),
}


def interrupt_running(kernel: Kernel, code: str, **execute_kwargs: Any) -> tuple[dict, list[dict], float]:
    """Run ``code``, interrupt it once it runs; return (reply, iopub, seconds from the interrupt
    to the reply)."""
    execute_kwargs.setdefault("allow_stdin", False)
    msg_id = kernel.kc.execute(code, **execute_kwargs)
    kernel.wait_for_iopub(msg_id, "execute_input", timeout=REPLY_TIMEOUT_S)
    time.sleep(SETTLE_S)
    started = time.perf_counter()
    kernel.km.interrupt_kernel()
    reply = kernel.shell_reply(msg_id, timeout=REPLY_TIMEOUT_S)
    elapsed = time.perf_counter() - started
    iopub = kernel.collect_iopub([msg_id], timeout=REPLY_TIMEOUT_S)[msg_id]
    return reply, iopub, elapsed
