"""One measurement run for ``bench/pipeline.py``: prints a JSON object of timings (ns per call).

    python bench/pipeline_probe.py N_CALLS N_STATE

It imports aikit from ``sys.path`` as given (``bench/pipeline.py`` sets ``PYTHONPATH`` to the tree
under test: this checkout or a worktree of the baseline commit), so it uses only APIs that exist on
both sides of the pipeline change: ``Components.open``, ``LuaEngine``, ``install_globals``, ``State``
over ``MemoryStateBackend``, the workflow engine's ``run``.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

perf_ns = time.perf_counter_ns
BLOCKS, WIDTH = 100, 99  # the DAG of bench/workflows.py: 10,000 noop steps


class _Quiet:
    """An OutputSink that discards everything."""

    def write(self, name: str, text: str) -> None: ...
    def display(self, *args: Any) -> None: ...
    def clear(self, wait: bool) -> None: ...
    def flush(self) -> None: ...
    def readline(self, prompt: str, password: bool = False) -> None: ...


def lua_runtime(components: Any) -> Any:
    """A Lua engine with aikit's globals, built the way this tree builds one."""
    from aikit_kernel.lua.api import install_globals
    from aikit_kernel.lua.engine import LuaEngine

    engine = LuaEngine(_Quiet(), components.policy)
    install_globals(engine, components)
    return engine


def lua_per_call(engine: Any, body: str, n: int) -> float:
    """ns per iteration of ``body`` in a Lua loop, minus an empty loop run the same way."""
    def timed(code: str) -> int:
        gc.collect()
        t0 = perf_ns()
        result = engine.run_cell(code, "[probe]")
        elapsed = perf_ns() - t0
        if result.error is not None:
            raise RuntimeError(f"Lua failed: {result.error.evalue}")
        return elapsed

    loop = f"for i = 1, {n} do {body} end"
    empty = f"for i = 1, {n} do end"
    timed(loop), timed(empty)  # warm-up
    return (timed(loop) - timed(empty)) / n


def python_per_call(fn: Any, n: int) -> float:
    gc.collect()
    t0 = perf_ns()
    for i in range(n):
        fn(i)
    return (perf_ns() - t0) / n


def measure(n_calls: int, n_state: int) -> dict[str, float]:
    from aikit_components.components import Components
    from aikit_components.hooks import HookRegistry
    from aikit_components.state import State
    from aikit_components.storage.memory import MemoryStateBackend
    from aikit_components.tools import tool
    from aikit_components.workflows import Step, Workflow
    from aikit_components.workflows import engine as wf_engine

    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        components = Components.open(data_dir=Path(tmp) / "data", plugins=False)
        only = os.environ.get("AIKIT_PROBE_INTERCEPTORS")
        pipeline = getattr(components, "pipeline", None)
        if only and pipeline is not None:  # the tree before the pipeline has no chain to trim
            for interceptor in [i for i in pipeline.interceptors if i.name not in only.split(",")]:
                pipeline.remove(interceptor)

        @tool(name="bench_add")
        def add(a: int, b: int) -> int:
            """Add two integers."""
            return a + b

        components.tools.register(add, replace=True)
        components.policy.max_tool_calls = None
        engine = lua_runtime(components)
        call = 'Tool.call("bench_add", {a = i, b = 1})'
        out["lua_tool_call"] = lua_per_call(engine, call, n_calls)
        hook_id = components.hooks.register("tool.before", lambda ctx: None)
        out["lua_tool_call_hooked"] = lua_per_call(engine, call, n_calls)
        components.hooks.unregister(hook_id)

        engine.run_cell('State.set("global", "k", {n = 1})', "[probe]")
        out["lua_state_get"] = lua_per_call(engine, 'State.get("global", "k")', n_calls)

        hooks = HookRegistry()
        state = State(MemoryStateBackend(), hooks=hooks)
        value = {"n": 1, "text": "hello"}
        state.set("global", "k", value)
        out["py_state_get"] = python_per_call(lambda i: state.get("global", "k"), n_state)
        out["py_state_set"] = python_per_call(lambda i: state.set("global", "k", value), n_state)
        hooks.register("state.write.before", lambda ctx: None)
        out["py_state_set_hooked"] = python_per_call(lambda i: state.set("global", "k", value), n_state)

        steps: list[Any] = []
        for b in range(BLOCKS):
            hub = f"h{b}"
            steps.append(Step(hub, kind="noop", depends_on=[f"l{b - 1}_{j}" for j in range(WIDTH)] if b else []))
            steps.extend(Step(f"l{b}_{j}", kind="noop", depends_on=[hub]) for j in range(WIDTH))
        wf = Workflow(name="probe_dag", steps=steps, mode="dag")

        async def dag(run_id: str) -> int:
            gc.collect()
            t0 = perf_ns()
            record = await wf_engine.run(wf, components=components, run_id=run_id)
            elapsed = perf_ns() - t0
            if record.status != "succeeded":
                raise RuntimeError(f"the DAG run {record.status}")
            return elapsed

        asyncio.run(dag("warm"))
        out["dag_10000"] = float(asyncio.run(dag("timed")))
        engine.close()
        components.close()
    return out


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]), int(sys.argv[2]))))
