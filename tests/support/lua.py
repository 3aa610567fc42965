"""A Lua engine in process with every aikit global, wired as the kernel wires it (minus ZMQ).

``RecordingOutput`` is the engine's output sink that keeps everything; ``Lua`` is an engine bound
to its own components with helpers to run cells. A pytest plugin: the ``make_lua`` factory and
``lua`` fixtures give each test components on a private data directory under ``tmp_path``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aikit_components.components import Components
from aikit_components.config import Config
from aikit_kernel import runtime
from aikit_kernel.lua.convert import lua_to_python
from aikit_kernel.lua.engine import LuaEngine, LuaFailure
from aikit_kernel.lua_runtime import build_lua_runtime
from tests.support.factories import closing_factory
from tests.support.trust import trusting_env


class RecordingOutput:
    """An OutputSink that keeps everything (no stdin, like a frontend with allow_stdin false)."""

    def __init__(self) -> None:
        self.streams: list[tuple[str, str]] = []
        self.displays: list[tuple[dict, str | None, bool]] = []
        self.clears: list[bool] = []

    def write(self, name: str, text: str) -> None:
        self.streams.append((name, text))

    def display(self, data, metadata, display_id, update) -> None:
        self.displays.append((data, display_id, update))

    def clear(self, wait: bool) -> None:
        self.clears.append(wait)

    def flush(self) -> None:
        pass

    def readline(self, prompt: str, password: bool = False):
        raise AssertionError("not reached: stdin is not allowed")


class Lua:
    """An engine with every aikit global, bound to its own components."""

    def __init__(self, engine: LuaEngine, components: Components, scope: Any, out: RecordingOutput) -> None:
        self.engine = engine
        self.components = components
        self.scope = scope
        self.out = out
        self.cells = 0

    def run(self, code: str) -> Any:
        """Run a cell that must succeed; its values as Python (one value: the value itself)."""
        self.cells += 1
        result = self.engine.run_cell(code, f"[{self.cells}]")
        assert result.error is None, f"cell failed: {result.error}"
        values = [lua_to_python(v, self.engine.internal[b"address"]) for v in result.values]
        return values[0] if len(values) == 1 else tuple(values)

    def fail(self, code: str) -> LuaFailure:
        """Run a cell that must fail; its failure."""
        self.cells += 1
        result = self.engine.run_cell(code, f"[{self.cells}]")
        assert result.error is not None, f"cell unexpectedly succeeded: {result.values}"
        return result.error

    @property
    def stdout(self) -> str:
        return "".join(text for name, text in self.out.streams if name == "stdout")

    def close(self, *, close_models: bool = False) -> None:
        """Close the engine and the components (``close_models``: the model clients too, for
        components that talked to a server)."""
        self.engine.close()
        try:
            if close_models:
                runtime.submit(self.components.models.aclose()).result(5)
        finally:
            self.components.close()


def open_lua(cwd: Path, env: dict[str, str] | None = None, max_tool_calls: int | None = None) -> Lua:
    """A ``Lua`` whose config is read from ``cwd`` (its aikit.toml, no user config, overrides from
    ``env`` only) and whose data directory is ``cwd/data``; ``max_tool_calls`` overrides the
    policy's budget."""
    config = Config.load(cwd=cwd, env=trusting_env(env), user_dir=cwd / "user-config")
    components = Components.open(config=config, data_dir=cwd / "data", plugins=False, loop_getter=runtime.get_loop)
    if max_tool_calls is not None:
        components.policy.max_tool_calls = max_tool_calls
    out = RecordingOutput()
    built = build_lua_runtime(out, components)
    return Lua(built.engine, components, built.scope, out)


def later(seconds: float, fn: Callable[[], Any]) -> threading.Timer:
    """Call ``fn`` on a daemon timer thread after ``seconds`` (e.g. an interrupt while a cell runs)."""
    timer = threading.Timer(seconds, fn)
    timer.daemon = True
    timer.start()
    return timer


@pytest.fixture
def make_lua(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Lua]]:
    """Factory: ``make_lua(env={...}, max_tool_calls=n)``; config is read from ``tmp_path``
    (aikit.toml there, no user config), overrides come from ``env`` only."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AIKIT_DATA_DIR", str(tmp_path / "data"))

    def make(env: dict[str, str] | None = None, max_tool_calls: int | None = None) -> Lua:
        return open_lua(tmp_path, env, max_tool_calls)

    yield from closing_factory(make, Lua.close)


@pytest.fixture
def lua(make_lua: Callable[..., Lua]) -> Lua:
    return make_lua()


class LateInterrupt:
    """Interrupt an engine's cell once it has run for ``after_s`` seconds, from a daemon thread.

    ``LuaEngine.interrupt`` drops a request when no cell runs (it returns False). A plain timer
    started just before the cell therefore hangs a cell that never ends whenever the test thread is
    held up for longer than the delay before the cell starts, as happens on a busy machine. This
    waits for a running cell, lets it run ``after_s`` seconds (so the interrupt lands where the
    test means it to, not on the cell's first line) and asks again until a running cell takes it,
    for at most ``deadline_s`` or until :meth:`cancel`."""

    def __init__(self, engine: LuaEngine, after_s: float, deadline_s: float = 60.0) -> None:
        self._engine = engine
        self._after_s = after_s
        self._deadline = time.monotonic() + deadline_s
        self._stop = threading.Event()
        self.landed = False  #: a running cell took the interrupt
        self._thread = threading.Thread(target=self._run, name="late-interrupt", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        interrupter = self._engine.interrupter
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            if not interrupter.active:
                self._stop.wait(0.005)
                continue
            if self._stop.wait(self._after_s):
                return
            if self._engine.interrupt():
                self.landed = True
                return

    def cancel(self) -> None:
        """Ask no more."""
        self._stop.set()

    def join(self) -> None:
        """Ask no more (the cell has ended) and wait for the thread."""
        self._stop.set()
        self._thread.join()
