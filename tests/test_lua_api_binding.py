"""Binding Python components into Lua (aikit_kernel.lua.api): conversion, errors, async, interrupts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aikit_components.errors import InvalidArgument
from aikit_kernel.lua.api import expose
from aikit_kernel.lua.engine import LuaEngine
from tests.support.lua import LateInterrupt, RecordingOutput


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LuaEngine]:
    monkeypatch.setenv("AIKIT_DATA_DIR", str(tmp_path / "data"))
    engine = LuaEngine(RecordingOutput())

    def describe(record: dict) -> dict:
        if not isinstance(record, dict) or "name" not in record:
            raise InvalidArgument("describe needs a table with a name", details={"got": record})
        return {"greeting": f"hello {record['name']}", "tags": sorted(record.get("tags", []))}

    async def slow_double(x: int, delay: float) -> int:
        await asyncio.sleep(delay)
        return x * 2

    expose(engine, "Demo", {"describe": describe, "slow_double": slow_double},
           docs={"": "Demo\n\nA test component.", "describe": "Demo.describe(record) -> table"})
    yield engine
    engine.close()


def run(engine: LuaEngine, code: str) -> str:
    result = engine.run_cell(code, "[1]")
    assert result.error is None, result.error
    return engine.render_values(result.values)


def test_tables_cross_in_both_directions(engine: LuaEngine) -> None:
    assert run(engine, "Demo.describe({name = 'Ada', tags = {'b', 'a'}})") == '{greeting = "hello Ada", tags = {"a", "b"}}'


def test_component_errors_arrive_as_structured_tables(engine: LuaEngine) -> None:
    assert run(engine, "local ok, e = pcall(Demo.describe, {}) return e.code, e.message") == \
        '"invalid_argument"\t"describe needs a table with a name"'
    failure = engine.run_cell("Demo.describe(42)", "[2]").error
    assert failure is not None and failure.ename == "invalid_argument"


def test_async_functions_run_on_the_io_loop(engine: LuaEngine) -> None:
    assert run(engine, "Demo.slow_double(21, 0.01)") == "42"


def test_interrupt_cancels_an_async_wait(engine: LuaEngine) -> None:
    LateInterrupt(engine, 0.2)
    started = time.perf_counter()
    failure = engine.run_cell("Demo.slow_double(1, 30)", "[3]").error
    assert failure is not None and failure.ename == "KeyboardInterrupt"
    assert time.perf_counter() - started < 20  # the 30 s wait did not run out


def test_inspect_shows_component_docs(engine: LuaEngine) -> None:
    assert engine.introspection.inspect("Demo.describe", 8) == "Demo.describe(record) -> table"
    assert engine.introspection.inspect("Demo", 2).startswith("Demo\n")
