"""Distributed execution benchmark: the per-step overhead of the ``ray`` executor against
in-process execution for a 1,000-step mission, and a projection of throughput on N workers from
the measured per-step costs.

    .venv/bin/python bench/distributed.py [--quick] [--steps N] [--address HOST:PORT] [--markdown]

The mission: N independent steps (``mode="parallel"``, no concurrency limit), each a ``function``
step running :func:`trivial` (returns its params; no work of its own), so what is measured is
the engine's and the executor's cost per step. Runs, through ``engine.run`` on a ``Components``
opened on a temporary data directory (so every run record is really written):

1. **local**: the mission in this process (``executor = "local"``).
2. **ray, one at a time**: ``max_concurrency = 1`` on Ray: the latency of one step's round trip
   (ship the attempt, run it on a worker, bring the result back into the run record).
3. **ray, parallel**: no limit on Ray: throughput with the cluster's CPUs (W).

From 2 and 3 come the per-step costs the projection uses: ``d``, the caller's CPU time per step
(``time.process_time`` of this process during run 3 divided by N; it is serial, so it caps
throughput at ``1/d`` steps/s whatever the cluster), and ``w``, a worker's time per step (the
round trip of run 2 minus ``d``: Ray's task overhead, the transfer and ``execute_step``).
Projected throughput with N workers for steps doing ``t`` seconds of work each:
``X(N, t) = 1 / max(d, (w + t) / N)``.

Ray is started here (``ray.init``, 2 CPUs, loopback, a temporary directory; its start-up time is
reported) unless ``--address`` names a running cluster. The machine these numbers come from has
2 cores shared by the caller, the raylet and the workers, so ``d`` and ``w`` are inflated by
contention; on a real cluster the workers do not compete with the caller.

Exit status 0 (a benchmark, not a test); 2 if a run does not succeed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import REPO  # noqa: F401  (puts this checkout on sys.path)

from aikit_components.components import Components
from aikit_components.config import Config
from aikit_components.workflows import engine
from aikit_components.workflows.model import Step, Workflow

WORKERS = (1, 2, 8, 32, 128)
WORK_S = (0.0, 0.01, 0.1, 1.0)


def trivial(params: Any, ctx: Any) -> Any:
    """A step with no work of its own."""
    return params


def mission(steps: int, executor: str, max_concurrency: int | None) -> Workflow:
    return Workflow(f"bench-{executor}", [Step(f"s{i}", "function", fn=trivial, params={"i": i}) for i in range(steps)],
                    mode="parallel", executor=executor, max_concurrency=max_concurrency)


def timed_run(components: Any, wf: Workflow) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) of one run; exits 2 unless it succeeded."""
    cpu, wall = time.process_time(), time.perf_counter()
    record = asyncio.run(engine.run(wf, components=components, durable_steps=False))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if record.status != "succeeded":
        print(f"run {wf.name} {record.status}: {record.error}", file=sys.stderr)
        sys.exit(2)
    return wall, cpu


def start_ray(address: str | None) -> tuple[Any, float, str | None]:
    if not address:  # a loopback-only cluster of our own: no token written to ~/.ray, no usage stats
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    if address:
        started = time.perf_counter()
        ray.init(address=address, logging_level="WARNING")
        return ray, time.perf_counter() - started, None
    temp = tempfile.mkdtemp(prefix="aikit-ray-bench-", dir="/tmp")
    for attempt in range(3):  # Ray gives its raylet a fixed 30 s to start, too little on a loaded machine
        started = time.perf_counter()
        try:
            ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp, _node_ip_address="127.0.0.1",
                     log_to_driver=False, logging_level="WARNING")
            return ray, time.perf_counter() - started, temp
        except Exception as exc:
            if "timed out during startup" not in str(exc) or attempt == 2:
                raise
            print(f"ray.init timed out ({time.perf_counter() - started:.0f} s); trying again", file=sys.stderr)
            ray.shutdown()
    raise AssertionError("not reached")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 steps instead of 1,000")
    parser.add_argument("--steps", type=int, help="steps in the mission (default 1000; 200 with --quick)")
    parser.add_argument("--address", help="a running Ray cluster (default: start a local one)")
    parser.add_argument("--markdown", action="store_true", help="print the results as Markdown tables")
    args = parser.parse_args(argv)
    steps = args.steps or (200 if args.quick else 1000)
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])

    ray, startup, temp = start_ray(args.address)
    cpus = int(ray.cluster_resources().get("CPU", 0))
    data = Path(tempfile.mkdtemp(prefix="aikit-bench-"))
    try:
        config = Config.load(cwd=data, env={}, user_dir=data / "user-config")
        with Components.open(config=config, data_dir=data / "data", plugins=False) as components:
            timed_run(components, mission(20, "ray", None))  # warm-up: the workers start, open their components
            timed_run(components, mission(20, "local", None))
            local_wall, _ = timed_run(components, mission(steps, "local", None))
            serial_steps = max(50, steps // 5)
            serial_wall, _ = timed_run(components, mission(serial_steps, "ray", 1))
            ray_wall, ray_cpu = timed_run(components, mission(steps, "ray", None))
    finally:
        ray.shutdown()
        if temp:
            shutil.rmtree(temp, ignore_errors=True)
        shutil.rmtree(data, ignore_errors=True)

    local_step = local_wall / steps
    latency = serial_wall / serial_steps
    d = ray_cpu / steps
    w = max(latency - d, 0.0)
    report(args.markdown, steps, cpus, startup, local_step, latency, ray_wall, d, w, serial_steps)
    return 0


def report(markdown: bool, steps: int, cpus: int, startup: float, local_step: float, latency: float,
           ray_wall: float, d: float, w: float, serial_steps: int) -> None:
    load = os.getloadavg()[0]
    measured = [
        ("Ray start-up (ray.init, local cluster)", f"{startup:.1f} s"),
        (f"local: {steps} steps, per step", f"{local_step * 1e3:.2f} ms ({1 / local_step:,.0f} steps/s)"),
        (f"ray, one at a time ({serial_steps} steps): round trip per step", f"{latency * 1e3:.1f} ms"),
        (f"ray, parallel on {cpus} CPUs: {steps} steps", f"{ray_wall:.2f} s ({steps / ray_wall:,.0f} steps/s)"),
        ("ray overhead per step vs local (parallel)", f"{(ray_wall / steps - local_step) * 1e3:.2f} ms"),
        ("d: caller CPU per step (caps throughput at 1/d)", f"{d * 1e3:.2f} ms ({1 / d:,.0f} steps/s)" if d else "-"),
        ("w: worker time per step (round trip - d)", f"{w * 1e3:.1f} ms"),
        ("load average (1 min) at the end", f"{load:.1f}"),
    ]
    header = ["step work t"] + [f"N={n}" for n in WORKERS]
    rows = []
    for t in WORK_S:
        rows.append([f"{t * 1e3:g} ms"] + [f"{1 / max(d, (w + t) / n):,.0f}" for n in WORKERS])
    if markdown:
        print("| measurement | value |\n|---|---|")
        for name, value in measured:
            print(f"| {name} | {value} |")
        print()
        print("Projected steps/s, `X(N, t) = 1 / max(d, (w + t) / N)`:\n")
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in rows:
            print("| " + " | ".join(row) + " |")
        return
    width = max(len(name) for name, _ in measured)
    for name, value in measured:
        print(f"{name:<{width}}  {value}")
    print("\nprojected steps/s with N workers, X(N, t) = 1 / max(d, (w + t) / N):")
    print("  ".join(f"{h:>10}" for h in header))
    for row in rows:
        print("  ".join(f"{c:>10}" for c in row))


if __name__ == "__main__":
    sys.exit(main())
