"""Lua handles of Python objects (agents, workflows, RAG collections, event subscriptions,
supervisors): their methods and strings, and their release once Lua collects them.

The soak test runs thousands of cells in one real kernel, each creating and dropping one handle
of every kind, and checks that the kernel's memory stays flat (it grew ~4.5 MB per 1,000 cells
before handles were released).
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from pathlib import Path

import pytest

from aikit_components.agents import Agent
from aikit_components.workflows.model import Workflow
from tests.support.kernels import Kernel, start_kernel
from tests.support.lua import Lua

# One cell of the soak: a handle of each kind, dropped when the cell ends. The collection is never
# ingested into or searched, so the embedding model is not loaded.
SOAK_CELL = """
local a = Agent.new{name = 'soak', system = 'Answer briefly.'}
local wf = Workflow.new{name = 'soak', steps = {{id = 'a', noop = true}}}
local sub = Event.subscribe('soak.*')
local col = RAG.collection('soak')
"""
SOAK_CELLS = 5_000
SOAK_CHECK_FROM = 2_500  # RSS after this many cells (warm) against RSS at the end
# What the kernel's warm-up imports (jsonschema), imported by the first cell instead: the warm-up
# runs at the kernel's first idle second, and one that fell inside the measured cells (a pause of
# the test's process under load) added ~6 MB to them.
SOAK_WARM_CELL = "Tool.call('validate_schema', {data = {}, schema = {type = 'object'}})"
# Without the release the kernel grew ~10 MB more over the last 2,500 cells than with it. With it,
# 2-4 MB today (the kernel's replay-protection digests, one per request and bounded at 2**16;
# SQLite caches filling; allocator noise). Agents that referred to themselves added 4-10 MB more
# until they were freed by reference counting (tests/agents/test_agent_lifetime.py). The bound sits
# between the two with room for noise either way.
SOAK_MAX_GROWTH_MB = 8.0


def live(kind: type) -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if type(obj) is kind)


@pytest.fixture
def lua(make_lua: Callable[..., Lua]) -> Lua:
    return make_lua()


class TestRelease:
    def test_dropped_agents_and_workflows_are_released(self, lua: Lua) -> None:
        agents, workflows = live(Agent), live(Workflow)
        lua.run("for i = 1, 200 do Agent.new{name = 'a' .. i} Workflow.new{steps = {{id = 'x', noop = true}}} end")
        lua.run("collectgarbage() collectgarbage()")
        lua.run("return 1")  # a safe point after the collection: the releases are applied
        assert live(Agent) - agents < 10 and live(Workflow) - workflows < 10

    def test_handles_in_use_stay(self, lua: Lua) -> None:
        lua.run("keep = Agent.new{name = 'kept', model = 'test'} "
                "wf = Workflow.new{name = 'w', steps = {{id = 'x', noop = true}}}")
        lua.run("for i = 1, 100 do Agent.new{name = 'a' .. i} end collectgarbage() collectgarbage()")
        assert lua.run("return keep:info().name, tostring(keep), tostring(wf), wf:info().name") == (
            "kept", "agent kept (test)", "workflow w", "w")

    def test_dropped_pull_subscription_is_closed(self, lua: Lua) -> None:
        lua.run("for i = 1, 50 do Event.subscribe('gone.*') end collectgarbage() collectgarbage()")
        lua.run("return 1")
        assert lua.run("return Event.publish('gone.x')") == 0

    def test_subscription_with_a_function_keeps_delivering(self, lua: Lua) -> None:
        lua.run("n = 0 Event.subscribe('ping', function() n = n + 1 end) collectgarbage() collectgarbage()")
        lua.run("Event.publish('ping') Event.publish('ping')")
        assert lua.run("return n") == 2

    def test_closed_subscription_is_not_found(self, lua: Lua) -> None:
        lua.run("sub = Event.subscribe('x.*')")
        assert lua.run("return tostring(sub)") == "subscription 1 (x.*)"
        lua.run("sub:close()")
        failure = lua.fail("sub:pending()")
        assert failure.ename == "not_found" and "no open subscription 1 (closed already?)" in failure.evalue

    def test_collection_handles(self, lua: Lua) -> None:
        lua.run("a = RAG.collection('notes', {tenant = 'acme'}) b = RAG.collection('notes')")
        assert lua.run("return tostring(a), tostring(b), a.kind, b.tenant") == (
            "collection notes (tenant acme)", "collection notes", "collection", None)
        lua.run("RAG.drop('notes')")
        failure = lua.fail("b:stats()")
        assert failure.ename == "not_found" and "was it dropped?" in failure.evalue
        assert lua.run("return a:stats().documents") == 0

    def test_a_missing_argument_arrives_as_nil(self, lua: Lua) -> None:
        failure = lua.fail("Agent.new{name = 'x'}:stream('hi')")
        assert failure.ename == "invalid_argument" and "agent:stream: the callback must be a function" in failure.evalue

    def test_supervisor_handle(self, lua: Lua) -> None:
        lua.run("sup = Supervisor.new{}")
        assert lua.run("return tostring(sup)") == "supervisor supervisor-1 (#1)"
        assert lua.run("return sup:start() == sup")


def kernel_rss_mb(kernel: Kernel) -> float:
    pid = kernel.km.provisioner.process.pid  # type: ignore[union-attr]
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/<pid>/status")


@pytest.mark.slow
def test_soak_handles_keep_the_kernel_flat(tmp_path: Path) -> None:
    kernel = start_kernel(tmp_path / "data", cwd=tmp_path)
    try:
        warm = None
        kernel.ok(SOAK_WARM_CELL, silent=True, store_history=False)
        for cell in range(1, SOAK_CELLS + 1):
            kernel.ok(SOAK_CELL, silent=True, store_history=False)
            if cell == SOAK_CHECK_FROM:
                warm = kernel_rss_mb(kernel)
        assert warm is not None
        growth = kernel_rss_mb(kernel) - warm
        assert growth < SOAK_MAX_GROWTH_MB, \
            f"the kernel grew {growth:.1f} MB over the last {SOAK_CELLS - SOAK_CHECK_FROM} cells"
    finally:
        kernel.shutdown()


def test_releases_from_inside_a_workflow_step(lua: Lua) -> None:
    """A safe point inside a driven coroutine (a wait in a Lua step) applies releases correctly."""
    record = lua.run("""
        keep = Agent.new{name = 'keep'}
        return Workflow.new{name = 'w', steps = {{id = 's', fn = function()
          for i = 1, 50 do Agent.new{name = 'x' .. i} end
          collectgarbage() collectgarbage()
          local sup = Supervisor.new{}:start()  -- waits on the I/O loop: a safe point in the step
          sup:stop()
          return keep:info().name
        end}}}:run()""")
    assert record["steps"]["s"]["status"] == "succeeded", record["steps"]["s"]
    assert record["steps"]["s"]["output"] == "keep"
    assert lua.run("return keep:info().name") == "keep"
