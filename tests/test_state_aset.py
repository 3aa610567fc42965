"""State.aset: a durable write from a coroutine whose commit (and fsync) runs in the store's
writer thread while the event loop serves other tasks; writes made meanwhile share one commit;
the operation's hooks and events run on the loop, the after-stage once the write is committed.
Real SQLite under ``tmp_path``; the commit is held by a gate the test opens (no timing)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from aikit_components.errors import ResourceExhausted
from aikit_components.events import EventBus
from aikit_components.hooks import HookRegistry
from aikit_components.state import State
from aikit_components.storage import MemoryStateBackend, SQLiteStateBackend
from tests.support.commit_gate import CommitGate


@pytest.fixture
def state(tmp_path: Path) -> Any:
    s = State(SQLiteStateBackend(tmp_path / "state.sqlite"))
    yield s
    s.close()


def test_the_loop_serves_other_tasks_while_the_write_commits(state: State, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = CommitGate(state.backend, monkeypatch)

    async def main() -> None:
        write = asyncio.create_task(state.aset("global", "k", {"v": 1}))
        await asyncio.to_thread(gate.wait_entered)  # the commit is in flight, held at the gate
        other = asyncio.create_task(asyncio.sleep(0, result="served"))
        assert await other == "served"  # scheduled during the commit, done before it
        assert not write.done()
        gate.open()
        await write

    asyncio.run(main())
    assert state.get("global", "k") == {"v": 1}
    reopened = SQLiteStateBackend(state.backend.path)  # on disk: another connection reads it
    assert reopened.get("global", "k") == (True, {"v": 1})
    reopened.close()


def test_writes_made_during_a_commit_share_the_next_one(state: State, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = CommitGate(state.backend, monkeypatch, keys={"first"})

    async def main() -> None:
        first = asyncio.create_task(state.aset("global", "first", 1))
        await asyncio.to_thread(gate.wait_entered)
        later = [asyncio.create_task(state.aset("workflow:w", f"k{i}", i)) for i in range(3)]
        await asyncio.sleep(0)  # each queues its write (its first step), then this resumes
        gate.open()
        await asyncio.gather(first, *later)

    asyncio.run(main())
    assert gate.batches == [[("first", "1")], [("k0", "0"), ("k1", "1"), ("k2", "2")]]
    assert [state.get("workflow:w", f"k{i}") for i in range(3)] == [0, 1, 2]


def test_the_value_is_taken_when_the_write_is_made(state: State, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = CommitGate(state.backend, monkeypatch)
    value = {"steps": ["a"]}

    async def main() -> None:
        write = asyncio.create_task(state.aset("global", "k", value))
        await asyncio.to_thread(gate.wait_entered)
        value["steps"].append("b")  # changed while the commit is in flight: not stored
        gate.open()
        await write

    asyncio.run(main())
    assert state.get("global", "k") == {"steps": ["a"]}


def test_hooks_and_events_run_on_the_loop_after_hook_once_committed(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    events, hooks = EventBus(), HookRegistry()
    state = State(SQLiteStateBackend(tmp_path / "state.sqlite"), events=events, hooks=hooks)
    gate = CommitGate(state.backend, monkeypatch)
    seen: list[tuple[str, bool, bool]] = []
    loop_thread = threading.current_thread()

    def observe(point: str) -> Any:
        def hook(ctx: Any) -> None:
            seen.append((point, threading.current_thread() is loop_thread, gate.opened.is_set()))
        return hook

    hooks.register("state.write.before", observe("before"))
    hooks.register("state.write.after", observe("after"))
    events.subscribe("state.written", lambda event: seen.append(
        ("state.written", threading.current_thread() is loop_thread, gate.opened.is_set())))

    async def main() -> None:
        write = asyncio.create_task(state.aset("global", "k", 5))
        await asyncio.to_thread(gate.wait_entered)
        assert seen == [("before", True, False)]  # the after-stage waits for the commit
        gate.open()
        await write

    asyncio.run(main())
    assert seen == [("before", True, False), ("after", True, True), ("state.written", True, True)]
    assert state.get("global", "k") == 5
    state.close()


def test_a_value_too_large_fails_on_the_loop_and_stores_nothing(tmp_path: Path) -> None:
    state = State(SQLiteStateBackend(tmp_path / "state.sqlite"), max_value_bytes=64)
    with pytest.raises(ResourceExhausted):
        asyncio.run(state.aset("global", "big", "x" * 100))
    assert state.get("global", "big") is None
    state.close()


def test_a_store_in_memory_is_written_at_once() -> None:
    state = State(MemoryStateBackend())
    asyncio.run(state.aset("global", "k", [1, 2]))
    assert state.get("global", "k") == [1, 2]


@pytest.mark.parametrize("kind", ["memory", "sqlite", "postgres"])
def test_concurrent_writes_land_in_order_on_every_store(kind: str, tmp_path: Path,
                                                        request: pytest.FixtureRequest) -> None:
    if kind == "postgres":
        from aikit_components.storage.postgres import PostgresDatabase
        from aikit_components.storage.postgres_state import PostgresStateBackend
        backend: Any = PostgresStateBackend(PostgresDatabase(request.getfixturevalue("pg_url"), pool_max=4))
    elif kind == "sqlite":
        backend = SQLiteStateBackend(tmp_path / "state.sqlite")
    else:
        backend = MemoryStateBackend()
    state = State(backend)

    async def main() -> None:
        await asyncio.gather(*(state.aset("workflow:r", "key", i) for i in range(20)),
                             *(state.aset(f"user:u{i}", "k", {"i": i}) for i in range(5)),
                             state.aset("global", "ttl", "x", ttl=3600))

    asyncio.run(main())
    assert state.get("workflow:r", "key") == 19  # the last write made
    assert [state.get(f"user:u{i}", "k") for i in range(5)] == [{"i": i} for i in range(5)]
    assert state.get("global", "ttl") == "x"
    state.close()
