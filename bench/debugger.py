"""Debugger overhead benchmark: what attaching the Lua debugger costs code that does not stop.

    .venv/bin/python bench/debugger.py [--quick] [--reps N]

Two Lua workloads run as notebook cells (``LuaEngine.run_cell``, in this process, no kernel):

- call-heavy: ``fib(27)`` (about 630,000 recursive calls);
- loop-heavy: a numeric ``for`` loop of 5,000,000 iterations with arithmetic on each.

Each runs in three configurations, in the same process, alternating order per repetition:

1. no debugger: the engine as the kernel runs it when no client uses the debugger;
2. debugger attached, no breakpoints: a DAP session initialised and attached
   (``DapSession.on_initialize``/``on_attach``, as JupyterLab or an IDE does), exception filters
   set to none, nothing else;
3. a breakpoint in another cell: the same, plus a breakpoint at line 2 of a different cell file
   (the workload's line 2 runs all the time, so the line filter sees the same line number and
   must tell the files apart).

Targets (issue 7): (2) <= 1.05x and (3) <= 5x the time of (1). The native C line filter is used
when a C compiler is available (printed); ``AIKIT_DEBUG_NATIVE=0`` measures the Lua fallback.

Method: ``time.perf_counter_ns`` around ``run_cell``; one untimed warm-up per configuration; the
median of ``--reps`` repetitions (default 7; 3 with ``--quick``) is reported with the ratio to
(1) measured in the same run. Other load on the machine (2 shared CPUs) inflates every number;
the ratios are what matter.

Exit status: 0 whether or not the targets are met (a benchmark, not a test), as every benchmark
here; the verdicts are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import NullOutput, Row, median, print_section, verdict  # noqa: E402

WORKLOADS = {
    "call-heavy fib(27)": (
        "local function fib(n)\n  if n < 2 then return n end\n  return fib(n - 1) + fib(n - 2)\nend\nreturn fib(27)\n"
    ),
    "loop-heavy 5M iterations": (
        "local s = 0\nfor i = 1, 5000000 do\n  s = s + i % 7\nend\nreturn s\n"
    ),
}
OTHER_CELL = "local unrelated = 1\nunrelated = unrelated + 1\nreturn unrelated\n"
CONFIGS = ("no debugger", "attached, no breakpoints", "breakpoint in another cell")
TARGETS = {"attached, no breakpoints": 1.05, "breakpoint in another cell": 5.0}


def _run(engine, code: str) -> float:
    start = time.perf_counter_ns()
    result = engine.run_cell(code, "[bench]")
    elapsed = time.perf_counter_ns() - start
    if result.error is not None:
        raise RuntimeError(result.error.evalue)
    return elapsed / 1e9


def measure(reps: int) -> tuple[dict[str, dict[str, float]], bool]:
    from aikit_kernel.debug.dap import DapSession
    from aikit_kernel.lua.engine import LuaEngine

    engines = {config: LuaEngine(NullOutput()) for config in CONFIGS}
    native_used = False
    for config in CONFIGS[1:]:
        engine = engines[config]
        session = DapSession(engine.debugger, lambda message: None)
        asyncio.run(session.on_initialize({}))
        asyncio.run(session.on_attach({}))
        engine.debugger.set_exception_filters([])
        if config == "breakpoint in another cell":
            other = engine.cells.dump(OTHER_CELL)
            engine.debugger.set_breakpoints(other, [{"line": 2}])
            native_used = engine.debugger.native_filter
    times: dict[str, dict[str, list[float]]] = {w: {c: [] for c in CONFIGS} for w in WORKLOADS}
    for workload, code in WORKLOADS.items():
        for config in CONFIGS:
            _run(engines[config], code)  # warm-up
        for rep in range(reps):
            order = CONFIGS if rep % 2 == 0 else tuple(reversed(CONFIGS))
            for config in order:
                times[workload][config].append(_run(engines[config], code))
    for engine in engines.values():
        engine.close()
    return {w: {c: median(v) for c, v in per.items()} for w, per in times.items()}, native_used


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 repetitions")
    ap.add_argument("--reps", type=int, default=None, help="repetitions per configuration (default 7)")
    args = ap.parse_args(argv)
    reps = args.reps or (3 if args.quick else 7)
    os.environ.setdefault("AIKIT_DATA_DIR", tempfile.mkdtemp(prefix="aikit-bench-"))
    results, native_used = measure(reps)
    print(f"Lua debugger overhead ({reps} repetitions, median; line filter: "
          f"{'native C' if native_used else 'Lua fallback'})\n")
    for workload, per in results.items():
        base = per["no debugger"]
        rows = [Row("no debugger", f"{base * 1000:.1f} ms", "baseline")]
        for config in CONFIGS[1:]:
            ratio = per[config] / base
            passed = ratio <= TARGETS[config]
            rows.append(Row(config, f"{per[config] * 1000:.1f} ms",
                            f"{ratio:.2f}x (target <= {TARGETS[config]}x)", verdict(passed)))
        print_section(workload, "time", rows)
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
