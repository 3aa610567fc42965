"""Workflow engine benchmark: the scheduler's own cost on a big DAG of no-ops, and concurrency of
steps waiting on I/O (Python and Lua function steps).

    .venv/bin/python bench/workflows.py [--quick] [--reps N] [-q]

Everything runs in this process (no kernel), on a ``Components`` opened on a temporary data
directory (``plugins=False``; State is the usual SQLite store there, so every run record is
really written). Each measurement is printed next to a bare asyncio baseline measured in the
same run:

1. DAG of 10,000 ``noop`` steps with fan-out and fan-in: 100 blocks of one hub step and 99 leaf
   steps that depend on it; each hub (but the first) depends on the 99 leaves of the block before
   (a root, fan-out to 99, a join, ..., 19,701 dependency edges, 200 layers). Timed end to end:
   ``await engine.run(wf, components=c)``, which validates the workflow (the same analysis as
   ``validate``), schedules it and writes the run record to State (at the start, on the
   ``persist_interval_s`` schedule, and the full record at the end). Target: <= 1 s (100 us per
   step). Baselines, the same ``Workflow.steps`` run by minimal hand-written asyncio schedulers in
   the same run: (a) Kahn's order, then one task per step that awaits its dependencies' tasks and
   returns its (empty) params; (b) Kahn's layers, ``asyncio.gather`` of the layer's coroutines per
   layer. ``validate(wf, components=c)`` is timed alone too, and one extra (untimed-for-the-target)
   run with State writes instrumented splits the run into validation, State writes and the rest
   (scheduling, step records, events).
2. 100 independent ``function`` steps (``async def fn(params, ctx): await asyncio.sleep(0.1)``),
   ``mode="parallel"``, ``max_concurrency=100``, through ``engine.run``. Target <= 0.3 s.
   Baseline: ``asyncio.gather`` of 100 ``asyncio.sleep(0.1)``.
3. The same with Lua function steps through the Lua ``Workflow`` global (a runtime from
   ``build_lua_runtime(output, components)``, as the kernel wires it): ``Workflow.new{mode =
   "parallel", max_concurrency = 100, steps = {{id = ..., fn = function() sleep(0.1) end}, ...}}``
   built in one cell, then ``wf:run()`` timed as a cell of its own (``run_cell``, from the call to
   its return; the engine runs on the I/O loop thread, the Lua steps as coroutines on the Lua
   thread). Target <= 0.3 s, which they can only meet by waiting concurrently. Reference: one
   ``sleep(0.1)`` cell (a lone Lua sleep through the I/O loop). For both 2 and 3 the step records
   of the last run tell how long it took to start every step and how spread their ends are.

Method: ``time.perf_counter_ns``; one untimed warm-up of each measurement; then ``--reps``
repetitions (default 5; 3 with ``--quick``) alternating the order of each measurement and its
baselines, median reported (max too for the end-to-end runs). The garbage collector stays enabled;
the objects loaded by the set-up are frozen (``gc.freeze``) and a collection runs before each timed
run. Other work on the machine (2 CPUs here, often shared) inflates every number: the load average
is printed at the end.

Exit status: 0 whether or not the targets are met (this is a benchmark, not a test);
2 if a measurement fails (a run that does not succeed, a step lost, a record not stored).
"""

from __future__ import annotations

import asyncio
import gc
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import (  # imported first: it puts this checkout on sys.path
    BenchError,
    NullOutput,
    Row,
    chosen_sizes,
    median,
    ms,
    parse_args,
    print_section,
    print_verdicts,
    progress_log,
    us,
    verdict,
)

from aikit_components.components import Components  # noqa: E402
from aikit_components.storage.base import encode_value  # noqa: E402
from aikit_components.workflows import RunRecord, Step, Workflow, load_run, validate  # noqa: E402
from aikit_components.workflows import engine as wf_engine  # noqa: E402
from aikit_kernel import runtime  # noqa: E402
from aikit_kernel.lua.api._util import py  # noqa: E402
from aikit_kernel.lua_runtime import build_lua_runtime  # noqa: E402

perf_ns = time.perf_counter_ns

TARGET_DAG_S = 1.0
TARGET_SLEEPS_S = 0.3

BLOCKS, WIDTH = 100, 99  # 100 x (1 hub + 99 leaves) = 10,000 steps
SLEEP_STEPS, SLEEP_S = 100, 0.1


@dataclass(frozen=True)
class Sizes:
    reps: int  # timed repetitions of every measurement


NORMAL = Sizes(reps=5)
QUICK = Sizes(reps=3)


# ---------------------------------------------------------------------- helpers
def s(ns: float) -> float:
    return ns / 1e9


async def arepeat(reps: int, *measures: Callable[[], Awaitable[int]]) -> list[list[int]]:
    """Run the (async) measures ``reps`` times, alternating their order; one list per measure."""
    out: list[list[int]] = [[] for _ in measures]
    order = list(range(len(measures)))
    for r in range(reps):
        for j in (order if r % 2 == 0 else order[::-1]):
            out[j].append(await measures[j]())
    return out


def spreads(steps: dict[str, Any]) -> tuple[float, float, float]:
    """From step records (dicts or StepRecords): (first start -> last start, first end -> last end,
    first start -> last end), in seconds."""
    def get(rec: Any, key: str) -> float:
        return float(rec[key] if isinstance(rec, dict) else getattr(rec, key))

    starts = [get(r, "started_at") for r in steps.values()]
    ends = [get(r, "ended_at") for r in steps.values()]
    return max(starts) - min(starts), max(ends) - min(ends), max(ends) - min(starts)


# ---------------------------------------------------------------------- 1. 10,000-step DAG
def build_dag() -> Workflow:
    steps: list[Step] = []
    for b in range(BLOCKS):
        hub = f"h{b}"
        steps.append(Step(hub, kind="noop", depends_on=[f"l{b - 1}_{j}" for j in range(WIDTH)] if b else []))
        steps.extend(Step(f"l{b}_{j}", kind="noop", depends_on=[hub]) for j in range(WIDTH))
    return Workflow(name="bench_dag", steps=steps, mode="dag")


def kahn(steps: list[Step]) -> list[list[str]]:
    """Topological layers of the steps (the baselines' own ordering)."""
    deps = {st.id: st.depends_on for st in steps}
    dependents: dict[str, list[str]] = {sid: [] for sid in deps}
    indeg = {}
    for sid, ds in deps.items():
        indeg[sid] = len(ds)
        for d in ds:
            dependents[d].append(sid)
    current = [sid for sid, n in indeg.items() if n == 0]
    out = []
    while current:
        out.append(current)
        following = []
        for sid in current:
            for nxt in dependents[sid]:
                indeg[nxt] -= 1
                if indeg[nxt] == 0:
                    following.append(nxt)
        current = following
    return out


async def bare_tasks(steps: list[Step]) -> dict[str, Any]:
    """Baseline (a): a task per step, created in topological order, awaiting its dependencies."""
    loop = asyncio.get_running_loop()
    by_id = {st.id: st for st in steps}
    tasks: dict[str, asyncio.Task[Any]] = {}

    async def one(step: Step, upstream: list[asyncio.Task[Any]]) -> Any:
        for t in upstream:
            await t
        return dict(step.params)

    for layer in kahn(steps):
        for sid in layer:
            step = by_id[sid]
            tasks[sid] = loop.create_task(one(step, [tasks[d] for d in step.depends_on]))
    await asyncio.gather(*tasks.values())
    return {sid: t.result() for sid, t in tasks.items()}


async def bare_layers(steps: list[Step]) -> dict[str, Any]:
    """Baseline (b): asyncio.gather of each topological layer's steps, one layer after another."""
    by_id = {st.id: st for st in steps}
    outputs: dict[str, Any] = {}

    async def one(step: Step) -> Any:
        return dict(step.params)

    for layer in kahn(steps):
        results = await asyncio.gather(*(one(by_id[sid]) for sid in layer))
        outputs.update(zip(layer, results))
    return outputs


def check_record(record: RunRecord, n: int, what: str) -> None:
    if record.status != "succeeded":
        raise BenchError(f"{what}: run {record.status}: {record.error}")
    bad = [sid for sid, r in record.steps.items() if r.status != "succeeded"]
    if len(record.steps) != n or bad:
        raise BenchError(f"{what}: {len(record.steps)} step records, not succeeded: {bad[:5]}")


async def bench_dag(components: Components, sizes: Sizes, log: Callable[[str], None]) -> tuple[list[Row], bool]:
    wf = build_dag()
    n = len(wf.steps)
    reps = sizes.reps
    layers = kahn(wf.steps)
    edges = sum(len(st.depends_on) for st in wf.steps)
    run = wf_engine.run

    # checks: the workflow is valid, the engine's layers are the baseline's, every step runs
    problems = validate(wf, components=components)
    if problems:
        raise BenchError(f"the DAG is invalid: {problems[:3]}")
    if wf_engine.layers(wf) != layers:
        raise BenchError("the engine's topological layers differ from the baseline's")
    record = await run(wf, components=components, run_id="bench-dag-check")
    check_record(record, n, "DAG")
    stored = load_run(components, "bench-dag-check")
    if stored is None:
        raise BenchError("the DAG's run record was not stored in State")
    check_record(stored, n, "stored DAG record")
    for bare in (bare_tasks, bare_layers):
        outputs = await bare(wf.steps)
        if len(outputs) != n:
            raise BenchError(f"{bare.__name__} ran {len(outputs)} steps, not {n}")

    runs = iter(range(10**9))

    async def engine_run() -> int:
        gc.collect()
        t0 = perf_ns()
        rec = await run(wf, components=components, run_id=f"bench-dag-{next(runs)}")
        elapsed = perf_ns() - t0
        if rec.status != "succeeded":
            raise BenchError(f"DAG run {rec.status}: {rec.error}")
        return elapsed

    def timed(bare: Callable[[list[Step]], Awaitable[Any]]) -> Callable[[], Awaitable[int]]:
        async def measure() -> int:
            gc.collect()
            t0 = perf_ns()
            await bare(wf.steps)
            return perf_ns() - t0
        return measure

    async def validation() -> int:
        gc.collect()
        t0 = perf_ns()
        validate(wf, components=components)
        return perf_ns() - t0

    log(f"DAG: {n} noop steps, {edges} edges, {len(layers)} layers; warm-up, then {reps} repetitions")
    for m in (engine_run, timed(bare_tasks), timed(bare_layers), validation):
        await m()
    eng, tasks, lay, val = await arepeat(reps, engine_run, timed(bare_tasks), timed(bare_layers), validation)

    # one instrumented run: time spent in State writes (the record persistence)
    state = components.state
    writes: list[tuple[str, int]] = []
    final: list[tuple[str, str, Any]] = []
    original_aset = state.aset  # the engine writes its records through State.aset

    async def timed_aset(scope: str, key: str, value: Any, *args: Any, **kwargs: Any) -> Any:
        t0 = perf_ns()
        try:
            return await original_aset(scope, key, value, *args, **kwargs)
        finally:
            writes.append((key, perf_ns() - t0))
            if key == "run":
                final[:] = [(scope, key, value)]

    state.aset = timed_aset  # type: ignore[method-assign]
    try:
        gc.collect()
        t0 = perf_ns()
        rec = await run(wf, components=components, run_id="bench-dag-instrumented")
        inst_total = perf_ns() - t0
    finally:
        del state.aset  # back to the class's method
    check_record(rec, n, "instrumented DAG run")
    write_ns = sum(t for _, t in writes)
    # the final record's encoding alone (State's codec, as its SQLite backend does it): the rest of
    # that write is SQLite (INSERT OR REPLACE, commit, fsync with synchronous=FULL)
    limit = state.backend.max_value_bytes
    encodes = []
    for _ in range(3):
        t0 = perf_ns()
        text = encode_value(final[0][2], limit, final[0][0], final[0][1])
        encodes.append(perf_ns() - t0)
    encode_ns = median(encodes)
    record_mb = len(text.encode()) / 1e6
    full_ns = [t for k, t in writes if k == "run"]
    journal_ns = [t for k, t in writes if k == "journal"]

    eng_p50, tasks_p50, lay_p50, val_p50 = median(eng), median(tasks), median(lay), median(val)
    ok = s(eng_p50) <= TARGET_DAG_S
    rows = [
        Row("(a) bare asyncio: task per step awaiting its deps (baseline)", f"{ms(tasks_p50):.1f}"),
        Row("      per step (us)", f"{us(tasks_p50) / n:.1f}"),
        Row("(b) bare asyncio: gather per topological layer (baseline)", f"{ms(lay_p50):.1f}"),
        Row("      per step (us)", f"{us(lay_p50) / n:.1f}"),
        Row("engine.run end to end (validate + run + State record) p50", f"{ms(eng_p50):.1f}",
            f"target <= {TARGET_DAG_S * 1000:g} ms", verdict(ok)),
        Row("engine.run end to end max", f"{ms(max(eng)):.1f}"),
        Row("      per step p50 (us)", f"{us(eng_p50) / n:.1f}",
            f"target <= {TARGET_DAG_S * 1e6 / n:g} us", verdict(ok)),
        Row("  ratio engine.run / (a) tasks", f"{eng_p50 / tasks_p50:.2f}x"),
        Row("  ratio engine.run / (b) gather per layer", f"{eng_p50 / lay_p50:.2f}x"),
        Row("validate(wf, components=c) alone p50", f"{ms(val_p50):.1f}"),
        Row("      per step (us)", f"{us(val_p50) / n:.1f}"),
        Row("  engine.run minus validate p50 (scheduling + records)", f"{ms(eng_p50 - val_p50):.1f}"),
        Row("one instrumented run: total", f"{ms(inst_total):.1f}"),
        Row(f"  State writes, call to commit: {len(writes)} ({len(full_ns)} full record, {len(journal_ns)} journal)",
            f"{ms(write_ns):.1f}"),
        Row("    of which the final full record (10,000 steps)", f"{ms(full_ns[-1]) if full_ns else 0:.1f}"),
        Row(f"      encoding it alone (codec; {record_mb:.1f} MB of JSON)", f"{ms(encode_ns):.1f}"),
        Row("      the rest of that write (SQLite insert + commit, in the writer thread)",
            f"{ms(full_ns[-1] - encode_ns):.1f}"),
        Row("  rest: total - validate p50 - State writes", f"{ms(inst_total - val_p50 - write_ns):.1f}"),
    ]
    return rows, ok


# ---------------------------------------------------------------------- 2. 100 sleeping steps (Python)
async def bench_sleeps(components: Components, sizes: Sizes,
                       log: Callable[[str], None]) -> tuple[list[Row], bool, float]:
    reps = sizes.reps

    async def nap(params: Any, ctx: Any) -> None:
        await asyncio.sleep(SLEEP_S)

    wf = Workflow(name="bench_sleeps", mode="parallel", max_concurrency=SLEEP_STEPS,
                  steps=[Step(f"s{i}", kind="function", fn=nap) for i in range(SLEEP_STEPS)])
    last: list[RunRecord] = []

    async def engine_run() -> int:
        gc.collect()
        t0 = perf_ns()
        rec = await wf_engine.run(wf, components=components)
        elapsed = perf_ns() - t0
        check_record(rec, SLEEP_STEPS, "sleeping steps")
        last[:] = [rec]
        return elapsed

    async def bare() -> int:
        gc.collect()
        t0 = perf_ns()
        await asyncio.gather(*(asyncio.sleep(SLEEP_S) for _ in range(SLEEP_STEPS)))
        return perf_ns() - t0

    log(f"sleeps (Python steps): {SLEEP_STEPS} x asyncio.sleep({SLEEP_S:g}); warm-up, then {reps} repetitions")
    await engine_run()
    await bare()
    eng, base = await arepeat(reps, engine_run, bare)
    eng_p50, base_p50 = median(eng), median(base)
    start_spread, end_spread, span = spreads(last[0].steps)
    ok = s(eng_p50) <= TARGET_SLEEPS_S
    rows = [
        Row(f"asyncio.gather of {SLEEP_STEPS} sleeps (baseline) p50", f"{ms(base_p50):.1f}"),
        Row(f"engine.run, {SLEEP_STEPS} function steps p50", f"{ms(eng_p50):.1f}",
            f"target <= {TARGET_SLEEPS_S * 1000:g} ms", verdict(ok)),
        Row("engine.run max", f"{ms(max(eng)):.1f}"),
        Row("  ratio engine.run / gather", f"{eng_p50 / base_p50:.2f}x"),
        Row("  overhead (engine.run - gather) p50", f"{ms(eng_p50 - base_p50):.1f}"),
        Row("last run's records: first -> last step start", f"{start_spread * 1000:.1f}"),
        Row("  first -> last step end", f"{end_spread * 1000:.1f}"),
        Row("  first start -> last end", f"{span * 1000:.1f}"),
    ]
    return rows, ok, base_p50


# ---------------------------------------------------------------------- 3. 100 sleeping steps (Lua)
LUA_BUILD = f"""
local steps = {{}}
for i = 1, {SLEEP_STEPS} do
  steps[i] = {{id = "s" .. i, fn = function() sleep({SLEEP_S}) end}}
end
bench_wf = Workflow.new{{name = "bench_lua_sleeps", mode = "parallel", max_concurrency = {SLEEP_STEPS}, steps = steps}}
"""
LUA_RUN = "return bench_wf:run()"
LUA_ONE_SLEEP = f"sleep({SLEEP_S})"


def bench_lua_sleeps(components: Components, sizes: Sizes, base_p50: float,
                     log: Callable[[str], None]) -> tuple[list[Row], bool]:
    reps = sizes.reps
    engine = build_lua_runtime(NullOutput(), components).engine
    try:

        def cell(code: str) -> tuple[int, list[Any]]:
            gc.collect()
            t0 = perf_ns()
            result = engine.run_cell(code, "[bench]")
            elapsed = perf_ns() - t0
            if result.error is not None:
                raise BenchError(f"Lua cell failed: {result.error.ename}: {result.error.evalue}\n  {code.strip()}")
            return elapsed, result.values

        build_ns, _ = cell(LUA_BUILD)
        last: list[dict[str, Any]] = []
        durations: list[float] = []

        def lua_run() -> int:
            elapsed, values = cell(LUA_RUN)
            rec = py(engine, values[0])
            bad = [sid for sid, r in rec["steps"].items() if r["status"] != "succeeded"]
            if rec["status"] != "succeeded" or len(rec["steps"]) != SLEEP_STEPS or bad:
                raise BenchError(f"Lua workflow {rec['status']} ({rec.get('error')}); "
                                 f"{len(rec['steps'])} steps, not succeeded: {bad[:5]}")
            last[:] = [rec]
            durations.append(rec["duration_s"])
            return elapsed

        def one_sleep() -> int:
            return cell(LUA_ONE_SLEEP)[0]

        log(f"sleeps (Lua steps via Workflow): warm-up, then {reps} repetitions")
        lua_run()
        one_sleep()
        durations.clear()
        runs: list[int] = []
        sleeps: list[int] = []
        for r in range(reps):
            pair = (lua_run, one_sleep) if r % 2 == 0 else (one_sleep, lua_run)
            for m in pair:
                (runs if m is lua_run else sleeps).append(m())
    finally:
        engine.close()

    run_p50, sleep_p50 = median(runs), median(sleeps)
    start_spread, end_spread, span = spreads(last[0]["steps"])
    ok = s(run_p50) <= TARGET_SLEEPS_S
    rows = [
        Row(f"asyncio.gather of {SLEEP_STEPS} sleeps (baseline, part 2) p50", f"{ms(base_p50):.1f}"),
        Row(f"one Lua sleep({SLEEP_S:g}) cell (reference) p50", f"{ms(sleep_p50):.1f}"),
        Row(f"Workflow.new{{...}} cell ({SLEEP_STEPS} Lua fn steps, validated)", f"{ms(build_ns):.1f}"),
        Row(f"wf:run() cell, {SLEEP_STEPS} Lua steps, p50", f"{ms(run_p50):.1f}",
            f"target <= {TARGET_SLEEPS_S * 1000:g} ms", verdict(ok)),
        Row("wf:run() cell max", f"{ms(max(runs)):.1f}"),
        Row("  the engine's own duration_s (record) p50", f"{median(durations) * 1000:.1f}"),
        Row("  ratio wf:run() / gather", f"{run_p50 / base_p50:.2f}x"),
        Row("  if run one after another it would take", f"{SLEEP_STEPS * SLEEP_S * 1000:.0f}"),
        Row("last run's records: first -> last step start", f"{start_spread * 1000:.1f}"),
        Row("  first -> last step end", f"{end_spread * 1000:.1f}"),
        Row("  first start -> last end", f"{span * 1000:.1f}"),
    ]
    return rows, ok


# ---------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, argv, quick_help="3 repetitions instead of 5 (under ~10 s)", default_reps=5, quick_reps=3)
    sizes = chosen_sizes(args, NORMAL, QUICK)
    log = progress_log(args.quiet)

    t_begin = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="aikit-bench-") as tmp_name:
        tmp = Path(tmp_name)
        components = Components.open(data_dir=tmp / "data", plugins=False, loop_getter=runtime.get_loop)
        try:
            gc.collect()
            gc.freeze()
            log(f"set-up (Components.open): {time.perf_counter() - t_begin:.1f} s")

            async def async_parts() -> tuple[Any, ...]:
                dag_rows, dag_ok = await bench_dag(components, sizes, log)
                sleep_rows, sleep_ok, base_p50 = await bench_sleeps(components, sizes, log)
                return dag_rows, dag_ok, sleep_rows, sleep_ok, base_p50

            dag_rows, dag_ok, sleep_rows, sleep_ok, base_p50 = asyncio.run(async_parts())
            lua_rows, lua_ok = bench_lua_sleeps(components, sizes, base_p50, log)
        except BenchError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        finally:
            gc.unfreeze()
            components.close()
            runtime.stop_loop()

    print()
    print_section(f"1. DAG of {BLOCKS * (WIDTH + 1):,} noop steps (root, fan-out {WIDTH}, join, ...), "
                  "engine.run vs bare asyncio", "ms", dag_rows)
    print_section(f"2. {SLEEP_STEPS} parallel Python function steps awaiting asyncio.sleep({SLEEP_S:g})",
                  "ms", sleep_rows)
    print_section(f"3. {SLEEP_STEPS} parallel Lua function steps (Workflow global) calling sleep({SLEEP_S:g})",
                  "ms", lua_rows)
    verdicts = [
        (f"10,000-step DAG end to end <= {TARGET_DAG_S:g} s", dag_ok),
        (f"{SLEEP_STEPS} x 100 ms Python I/O steps <= {TARGET_SLEEPS_S:g} s", sleep_ok),
        (f"{SLEEP_STEPS} x 100 ms Lua I/O steps <= {TARGET_SLEEPS_S:g} s", lua_ok),
    ]
    print(f"{sizes.reps} repetitions per measurement (median reported), alternating with the baselines")
    print_verdicts(verdicts)
    overall = all(ok for _, ok in verdicts)
    print(f"overall: {verdict(overall)}   (total benchmark time {time.perf_counter() - t_begin:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
