"""Lua code that runs until interrupted, each kind a way an interrupt must reach (the tests of
``tests/test_interrupt_and_limits.py`` and ``bench/interrupts.py`` run every case)."""

from __future__ import annotations

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
