"""What launching a program costs: ``/bin/true`` started and awaited on an asyncio loop,

- *pdeathsig*: the launch before the process watchdog, ``start_new_session`` plus a
  ``preexec_fn`` that arms ``PR_SET_PDEATHSIG`` (subprocess must then fork and run Python in the
  child);
- *watchdog*: today's launch, ``start_new_session`` without ``preexec_fn`` (subprocess may use
  ``vfork``/``posix_spawn``) plus the group's registration with the watchdog
  (aikit_components/tools/_children.py);
- *run_argv*: the process tool's whole launch path (pipes, capped capture, group kill);
- *confined*: the same under the Landlock launcher (``security.confine_processes``,
  aikit_components/confinement.py), when this machine has Landlock and a C compiler.

Prints the median and p90 of each, the ratio watchdog / pdeathsig and confined / run_argv.

    python bench/process_launch.py [-n 400]
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import signal
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tempfile  # noqa: E402

from aikit_components.confinement import confinement_for, status  # noqa: E402
from aikit_components.security import SecurityPolicy  # noqa: E402
from aikit_components.tools._children import watch_group  # noqa: E402
from aikit_components.tools.system import run_argv  # noqa: E402

TRUE = "/bin/true"
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl


def _arm_pdeathsig() -> None:
    _PRCTL(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG


async def pdeathsig() -> None:
    proc = await asyncio.create_subprocess_exec(TRUE, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE, start_new_session=True,
                                                preexec_fn=_arm_pdeathsig)
    await proc.communicate()


async def watchdog() -> None:
    proc = await asyncio.create_subprocess_exec(TRUE, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE, start_new_session=True)
    with watch_group(proc.pid):
        await proc.communicate()


async def tool_path() -> None:
    await run_argv([TRUE], cwd=None, env={"PATH": os.defpath}, stdin=None, timeout_s=10, max_output_bytes=4096)


def confined_path() -> Callable[[], Awaitable[None]] | None:
    """``run_argv`` under the default policy's confinement; None where there is none."""
    confinement = confinement_for(SecurityPolicy.default(), "auto", Path(tempfile.mkdtemp(prefix="aikit-bench-")))
    if confinement is None:
        print(f"no confined row: confinement is {status()}")
        return None

    async def launch() -> None:
        await run_argv([TRUE], cwd=None, env={"PATH": os.defpath}, stdin=None, timeout_s=10, max_output_bytes=4096,
                       confinement=confinement)
    return launch


async def measure(fn: Callable[[], Awaitable[None]], n: int) -> list[float]:
    for _ in range(10):  # warm-up (the watchdog starts here)
        await fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        await fn()
        times.append((time.perf_counter() - t0) * 1000)
    return times


async def main(n: int) -> None:
    results = {}
    variants = [("pdeathsig", pdeathsig), ("watchdog", watchdog), ("run_argv", tool_path)]
    confined = confined_path()
    if confined is not None:
        variants.append(("confined", confined))
    for _ in range(2):  # interleaved twice, so drift in the machine's load hits both
        for name, fn in variants:
            results.setdefault(name, []).extend(await measure(fn, n // 2))
    for name, times in results.items():
        times.sort()
        p50, p90 = statistics.median(times), times[int(len(times) * 0.9)]
        print(f"{name:>10}: p50 {p50:.3f} ms  p90 {p90:.3f} ms  (n={len(times)})")
    ratio = statistics.median(results["watchdog"]) / statistics.median(results["pdeathsig"])
    print(f"launch of {TRUE}: watchdog / pdeathsig p50 ratio = {ratio:.2f}")
    if "confined" in results:
        ratio = statistics.median(results["confined"]) / statistics.median(results["run_argv"])
        print(f"launch of {TRUE}: confined / run_argv p50 ratio = {ratio:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=400, help="launches per variant")
    asyncio.run(main(parser.parse_args().n))
