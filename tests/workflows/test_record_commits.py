"""A workflow run's record is committed off the event loop: while a durable step's record
commits (held by a gate on the real SQLite store), the loop serves other tasks and the run's
other running steps, and a step that starts after a durable step waits for its record to be
committed (the promise: a durable step's record is stored before the next step starts)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import pytest

from aikit_components.components import Components
from aikit_components.config import Config
from aikit_components.workflows import engine
from aikit_components.workflows.engine import StepContext, load_run
from aikit_components.workflows.model import Step, Workflow
from tests.support.commit_gate import CommitGate
from tests.support.processes import start_python
from tests.support.workflows import make_components


@pytest.fixture
def comps(tmp_path: Path) -> Any:
    c = make_components(tmp_path)
    yield c
    c.close()


def stored_status(ctx: StepContext, sid: str) -> str | None:
    loaded = load_run(ctx.components, ctx.run_id)
    return None if loaded is None else loaded.steps[sid].status


def test_the_next_step_starts_once_the_record_is_committed_and_the_loop_serves_meanwhile(
        comps: Components, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = CommitGate(comps.state.backend, monkeypatch, keys={"journal"})  # the first step's record
    seen: dict[str, Any] = {}
    slow_may_end = asyncio.Event()

    async def first(params: Any, ctx: StepContext) -> str:
        return "one"

    async def slow(params: Any, ctx: StepContext) -> str:  # already running when "first" ends
        await slow_may_end.wait()
        seen["slow"] = gate.opened.is_set()
        return "slow"

    async def after(params: Any, ctx: StepContext) -> str:
        seen["after"] = (gate.opened.is_set(), stored_status(ctx, "first"))
        return "two"

    wf = Workflow("gated", mode="parallel", steps=[
        Step("first", kind="function", fn=first), Step("slow", kind="function", fn=slow),
        Step("after", kind="function", fn=after, depends_on=["first"])])

    async def main() -> Any:
        run = asyncio.create_task(engine.run(wf, components=comps, run_id="gated-1"))
        await asyncio.to_thread(gate.wait_entered)  # "first" ended: its record is committing
        slow_may_end.set()  # a running step goes on during the commit
        while "slow" not in seen:
            await asyncio.sleep(0)
        assert "after" not in seen and not run.done()
        gate.open()
        return await run

    record = asyncio.run(main())
    assert record.status == "succeeded"
    assert seen == {"slow": False, "after": (True, "succeeded")}
    loaded = load_run(comps, "gated-1")
    assert loaded is not None and {sid: r.status for sid, r in loaded.steps.items()} == {
        "first": "succeeded", "slow": "succeeded", "after": "succeeded"}


def test_the_run_returns_once_its_final_record_is_committed(comps: Components,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    gate = CommitGate(comps.state.backend, monkeypatch, keys={"run"}, let_through=1)  # the start's goes through
    wf = Workflow("final", steps=[Step("a", kind="function", fn=lambda p, c: "a")])

    async def main() -> Any:
        run = asyncio.create_task(engine.run(wf, components=comps, run_id="final-1"))
        await asyncio.to_thread(gate.wait_entered)  # the final full record is committing
        assert not run.done()
        gate.open()
        return await run

    record = asyncio.run(main())
    loaded = load_run(comps, "final-1")
    assert record.status == "succeeded" and loaded is not None and loaded.status == "succeeded"


CHILD = r"""
import asyncio, sys
from pathlib import Path
from aikit_components.components import Components
from aikit_components.config import Config
from aikit_components.config import Config
from aikit_components.workflows import engine
from aikit_components.workflows.model import Step, Workflow

async def hang(params, ctx):
    print("second started", flush=True)
    await asyncio.Event().wait()  # until the parent kills this process

c = Components.open(config=Config({}), data_dir=Path(sys.argv[1]), plugins=False)
wf = Workflow("killed", steps=[Step("first", kind="function", fn=lambda p, ctx: {"n": 1}),
                               Step("second", kind="function", fn=hang, depends_on=["first"])])
asyncio.run(engine.run(wf, components=c, run_id="killed-1"))
"""


def test_a_durable_step_is_found_after_kill_9_once_the_next_step_started(tmp_path: Path) -> None:
    """The promise across a crash: once the next step has started, the durable step's record is
    on disk; ``kill -9`` then, and a resume finds it succeeded."""
    data = tmp_path / "data"
    proc = start_python(CHILD, str(data))
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "second started", line + (proc.stderr.read() if proc.stderr else "")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    c = Components.open(config=Config({}), data_dir=data, plugins=False)
    try:
        loaded = load_run(c, "killed-1")
        assert loaded is not None and loaded.steps["first"].status == "succeeded"
        assert loaded.steps["first"].output == {"n": 1}
    finally:
        c.close()
