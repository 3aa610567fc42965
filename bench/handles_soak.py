"""Handle soak: the memory of one real kernel while cells create and drop Lua handles.

    .venv/bin/python bench/handles_soak.py [--cells N] [--every N] [--quick] [-q]

Starts one aikit kernel (``KernelManager``, kernel name ``aikit``, a throwaway data directory)
and runs N cells (default 5,000) that each create an agent, a workflow, a pull event
subscription and a RAG collection handle (never ingested into, so no embedding model loads) and
drop them. Every ``--every`` cells (default 500) it prints the kernel process's RSS. Handles Lua
collects are released on the Python side, so after warm-up the curve is flat; before that fix it
grew by ~4.5 MB per 1,000 cells. The verdict compares the RSS at the end with the RSS halfway.

Exit status: 0 whether or not the target is met (this is a benchmark, not a test); 1 if the
kernel fails to start; 2 if a cell fails or a reply times out.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from jupyter_client import KernelManager

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BenchError, Row, parse_args, print_section, progress_log, verdict

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 60.0
REPLY_TIMEOUT_S = 30.0
TARGET_GROWTH_MB = 6.0  # RSS growth over the second half of the run (it was ~12 MB before the fix)

CELL = """
local a = Agent.new{name = 'soak', system = 'Answer briefly.'}
local wf = Workflow.new{name = 'soak', steps = {{id = 'a', noop = true}}}
local sub = Event.subscribe('soak.*')
local col = RAG.collection('soak')
"""


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no VmRSS for process {pid}")


def run_cell(kc, code: str) -> None:  # type: ignore[no-untyped-def]
    reply = kc.execute(code, silent=True, store_history=False, reply=True, timeout=REPLY_TIMEOUT_S)
    if reply["content"]["status"] != "ok":
        raise BenchError(f"cell failed: {reply['content'].get('ename')}: {reply['content'].get('evalue')}")


def soak(cells: int, every: int, log) -> list[tuple[int, float]]:  # type: ignore[no-untyped-def]
    """Run the cells; return (cells run, RSS in MB) every ``every`` cells, starting at 0."""
    data = Path(tempfile.mkdtemp(prefix="aikit-soak-"))
    env = {**os.environ, "AIKIT_DATA_DIR": str(data / "data"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    km = KernelManager(kernel_name="aikit")
    km.start_kernel(env=env, cwd=str(data))
    kc = km.client()
    kc.start_channels()
    try:
        try:
            kc.wait_for_ready(timeout=START_TIMEOUT_S)
        except RuntimeError as exc:
            print(f"the kernel did not start: {exc}", file=sys.stderr)
            sys.exit(1)
        pid = km.provisioner.process.pid  # type: ignore[union-attr]
        curve = [(0, rss_mb(pid))]
        started = time.perf_counter()
        for cell in range(1, cells + 1):
            run_cell(kc, CELL)
            if cell % every == 0 or cell == cells:
                curve.append((cell, rss_mb(pid)))
                log(f"  {cell:>6} cells  {curve[-1][1]:7.1f} MB  ({time.perf_counter() - started:.1f} s)")
        return curve
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def main(argv: list[str] | None = None) -> int:
    def extra(ap: argparse.ArgumentParser) -> None:
        ap.add_argument("--cells", type=int, default=None, help="cells to run (default 5000; 1000 with --quick)")
        ap.add_argument("--every", type=int, default=500, help="print the RSS every N cells (default 500)")

    args = parse_args(__doc__, argv, quick_help="1,000 cells instead of 5,000", default_reps=1, quick_reps=1,
                      extra=extra)
    cells = args.cells or (1000 if args.quick else 5000)
    log = progress_log(args.quiet)
    log(f"handle soak: {cells} cells, each creating and dropping an agent, a workflow, a subscription and a collection")
    try:
        curve = soak(cells, max(1, args.every), log)
    except (BenchError, TimeoutError) as exc:
        print(f"measurement failed: {exc}", file=sys.stderr)
        return 2
    rows = [Row(f"after {n} cells", f"{mb:.1f} MB") for n, mb in curve]
    half = min(curve, key=lambda point: abs(point[0] - cells // 2))
    growth = curve[-1][1] - half[1]
    rows.append(Row(f"growth, cells {half[0]}..{curve[-1][0]}", f"{growth:+.1f} MB", f"< {TARGET_GROWTH_MB:g} MB",
                    verdict(growth < TARGET_GROWTH_MB)))
    print_section("Kernel RSS while cells create and drop handles", "RSS", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
