"""The effect journal's group commit writes a batch in fewer statements (merged_statements): the
starts of different calls in one, their finishes in another. What it leaves in the file must be
what the batch's statements leave run one by one, whatever the batch interleaves."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from aikit_components.control import journal
from aikit_components.control.journal import EffectJournal, merged_statements

_PLACE = "DELETE FROM effects WHERE run_id = ? AND call_key LIKE ? ESCAPE '\\'"

_write = st.tuples(st.sampled_from(["start", "finish", "forget", "place"]), st.sampled_from(["r1", "r2"]),
                   st.integers(0, 6), st.integers(0, 3))


def _statement(kind: str, run_id: str, n: int, v: int) -> tuple[str, tuple]:
    key = f"{n}.0#0"
    if kind == "start":
        return journal.start_statement(run_id, key, "tool", f"tool{v}", f"digest{v}")
    if kind == "finish":
        return journal.finish_statement(run_id, key, {"result": v})
    if kind == "forget":
        return journal.forget_statement(run_id, key)
    return _PLACE, (run_id, f"{n}%")


def _table(conn: sqlite3.Connection) -> list[tuple]:
    return conn.execute("SELECT * FROM effects ORDER BY run_id, call_key").fetchall()


@settings(max_examples=150, deadline=None)
@given(before=st.lists(_write, max_size=8), batch=st.lists(_write, min_size=2, max_size=60))
def test_merged_statements_leave_what_the_batch_leaves(before: list, batch: list) -> None:
    one_by_one = sqlite3.connect(":memory:", isolation_level=None)
    merged = sqlite3.connect(":memory:", isolation_level=None)
    earlier = [_statement(*write) for write in before]  # (made once: a start holds its time)
    for conn in (one_by_one, merged):
        conn.executescript(journal.SCHEMA)
        for sql, params in earlier:
            conn.execute(sql, params)
    statements = [_statement(*write) for write in batch]
    for sql, params in statements:
        one_by_one.execute(sql, params)
    for sql, params in merged_statements(statements):
        merged.execute(sql, params)
    assert _table(merged) == _table(one_by_one)


def test_a_batch_of_many_calls_is_a_few_statements(tmp_path: Path) -> None:
    starts = [journal.start_statement(f"run-{i}", "1.0#0", "tool", "calculate", "d") for i in range(250)]
    finishes = [journal.finish_statement(f"run-{i}", "1.0#0", {"result": i}) for i in range(250)]
    assert len(merged_statements(starts + finishes)) == (6 if sqlite3.sqlite_version_info >= (3, 33, 0) else 3 + 250)

    store = EffectJournal(tmp_path / "journal.sqlite")

    async def calls() -> None:  # written together: group commits of many starts, then of many finishes
        await asyncio.gather(*(store.astarted(f"run-{i}", "1.0#0", "tool", "calculate", "d") for i in range(250)))
        await asyncio.gather(*(store.afinished(f"run-{i}", "1.0#0", {"result": i}) for i in range(250)))

    try:
        asyncio.run(calls())
        entries = [store.get(f"run-{i}", "1.0#0") for i in range(250)]
    finally:
        store.close()
    assert [(e.status, e.outcome) if e is not None else None for e in entries] == [
        ("finished", {"result": i}) for i in range(250)]
