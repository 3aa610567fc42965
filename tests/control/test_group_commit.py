"""Group commit (control/group_commit.py) with a real SQLite file: writes queued while a commit is
in flight share the next transaction; a write that fails fails alone; coroutines await it."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from aikit_components.control.group_commit import GroupCommit
from aikit_components.control.offload import to_the_end


class Table:
    """A SQLite table whose commits are counted; the first one waits for ``release``."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = FULL")
        self.conn.execute("CREATE TABLE t (v INTEGER NOT NULL CHECK (v >= 0))")
        self.batches: list[list[int]] = []
        self.in_commit = threading.Event()
        self.release = threading.Event()

    def commit(self, batch: list[int]) -> None:
        self.in_commit.set()
        assert self.release.wait(30)
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.executemany("INSERT INTO t (v) VALUES (?)", [(v,) for v in batch])
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.batches.append(list(batch))

    def values(self) -> list[int]:
        return sorted(v for (v,) in self.conn.execute("SELECT v FROM t"))


@pytest.fixture
def table(tmp_path: Path) -> Iterator[Table]:
    table = Table(tmp_path / "t.sqlite")
    yield table
    table.conn.close()


def test_writes_queued_during_a_commit_share_the_next_transaction(table: Table) -> None:
    group: GroupCommit[int] = GroupCommit(table.commit, "test-writer")
    first = group.submit(0)
    assert table.in_commit.wait(30)  # the writer holds 0; these wait for the next round
    rest = [group.submit(v) for v in range(1, 20)]
    table.release.set()
    for future in [first, *rest]:
        assert future.result(30) is None
    assert table.batches == [[0], list(range(1, 20))]
    assert table.values() == list(range(20))
    group.close()


def test_a_failing_write_fails_alone_and_the_others_are_committed(table: Table) -> None:
    group: GroupCommit[int] = GroupCommit(table.commit, "test-writer")
    first = group.submit(0)
    assert table.in_commit.wait(30)
    good, bad, also_good = group.submit(1), group.submit(-1), group.submit(2)
    table.release.set()
    first.result(30)
    good.result(30)
    also_good.result(30)
    with pytest.raises(sqlite3.IntegrityError):
        bad.result(30)
    assert table.values() == [0, 1, 2]
    group.close()


def test_coroutines_await_the_commit_and_a_closed_writer_refuses(table: Table) -> None:
    table.release.set()
    group: GroupCommit[int] = GroupCommit(table.commit, "test-writer")

    async def main() -> None:
        await asyncio.gather(*(group.aput(v) for v in range(5)))
        with pytest.raises(sqlite3.IntegrityError):
            await group.aput(-5)

    asyncio.run(main())
    assert table.values() == list(range(5))
    group.put(7)  # from a thread, too
    group.close()
    assert table.values() == [0, 1, 2, 3, 4, 7]
    with pytest.raises(Exception, match="closed"):
        group.put(8)


async def cancelled_at_next_await(seen: list[str]) -> None:
    """Wait until cancelled, noting the cancellation's message in ``seen``."""
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError as exc:
        seen.append(f"cancelled at the next await: {exc.args[0]}")
        raise


def test_a_cancellation_during_a_commit_takes_effect_once_it_is_done() -> None:
    """As after a blocking commit: the awaited write's outcome stands, and the task is cancelled at
    its next await, with the cancellation's message (who stopped it)."""
    seen: list[str] = []

    async def main() -> None:
        commit = asyncio.get_running_loop().create_future()

        async def operation() -> None:
            seen.append(f"committed:{await to_the_end(commit)}")
            await cancelled_at_next_await(seen)

        task = asyncio.ensure_future(operation())
        await asyncio.sleep(0)  # the task waits for the commit
        task.cancel("stopped by a test")
        await asyncio.sleep(0)
        commit.set_result("ok")
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert seen == ["committed:ok", "cancelled at the next await: stopped by a test"]


def test_a_coroutine_cancelled_while_its_write_is_committed_is_cancelled_once_it_is_done(table: Table) -> None:
    """aput's future refuses the cancellation (the write is under way in the writer thread): the
    write is committed, aput returns, and the task is cancelled at its next await, with the
    cancellation's message; the batch's other writers are woken as usual."""
    group: GroupCommit[int] = GroupCommit(table.commit, "test-writer")
    seen: list[str] = []

    async def main() -> None:
        async def writer() -> None:
            await group.aput(1)
            seen.append("committed")
            await cancelled_at_next_await(seen)

        task = asyncio.ensure_future(writer())
        other = asyncio.ensure_future(group.aput(2))
        while not table.in_commit.is_set():  # the writer thread holds the first write
            await asyncio.sleep(0.01)
        task.cancel("stopped by a test")
        await asyncio.sleep(0)
        assert not task.done()  # still waiting for its write, as a blocking commit would
        table.release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        await other

    asyncio.run(main())
    assert seen == ["committed", "cancelled at the next await: stopped by a test"]
    assert table.values() == [1, 2]
    group.close()
