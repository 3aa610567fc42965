"""The language-facing side of the kernel (xeus' ``xinterpreter``): execute, complete, inspect,
is_complete. The protocol core (``kernel.py``) knows nothing about Lua; this module knows nothing
about ZMQ or message framing."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

from aikit_components.config import env_int
from aikit_components.security import SecurityPolicy

from .lua.api import install_globals
from .lua.engine import LuaEngine, LuaFailure, RenderFailure
from .lua.interrupt import lua_release
from .output import OutputSink

DEFAULT_MAX_MEMORY_MB = 2048


@dataclass
class ExecuteOutcome:
    """The result of one execute request, before it is turned into messages."""

    result: dict[str, Any] | None = None  # MIME bundle of the trailing expression, if any
    error: LuaFailure | None = None
    user_expressions: dict[str, Any] = field(default_factory=dict)


class Interpreter(abc.ABC):
    """What a language must provide to be served by :class:`aikit_kernel.kernel.Kernel`."""

    implementation = "aikit"
    implementation_version = "0.1.0"
    language_info: dict[str, Any] = {}
    banner = ""
    help_links: list[dict[str, str]] = []

    @abc.abstractmethod
    def execute(self, code: str, *, execution_count: int, silent: bool, allow_stdin: bool,
                user_expressions: dict[str, str]) -> ExecuteOutcome: ...

    @abc.abstractmethod
    def complete(self, code: str, cursor_pos: int) -> dict[str, Any]: ...

    @abc.abstractmethod
    def inspect(self, code: str, cursor_pos: int, detail_level: int) -> dict[str, Any]: ...

    @abc.abstractmethod
    def is_complete(self, code: str) -> dict[str, Any]: ...

    @abc.abstractmethod
    def interrupt(self) -> bool:
        """Stop the running execution; callable from any thread."""

    def interrupt_requested(self) -> bool:
        return False

    def shutdown(self) -> None:
        """Release resources before the process exits."""


class LuaInterpreter(Interpreter):
    """Lua 5.4 in the aikit sandbox."""

    banner = "aikit: Lua 5.4 with AI building blocks (Tool, Agent, Workflow, RAG, State, Session, Event, Hook)"
    help_links = [
        {"text": "Lua 5.4 manual", "url": "https://www.lua.org/manual/5.4/"},
        {"text": "aikit Lua API", "url": "https://github.com/aikit/aikit/blob/main/docs/lua-api.md"},
    ]

    def __init__(self, output: OutputSink, policy: SecurityPolicy | None = None, max_memory_mb: int | None = None) -> None:
        mb = max_memory_mb if max_memory_mb is not None else env_int("AIKIT_MAX_MEMORY_MB", DEFAULT_MAX_MEMORY_MB)
        self.engine = LuaEngine(output, policy, max_memory=mb * 1024 * 1024 if mb > 0 else None)
        install_globals(self.engine)
        version = self.engine.runtime.lua_version
        self.language_info = {
            "name": "lua",
            "version": lua_release(),
            "mimetype": "text/x-lua",
            "file_extension": ".lua",
            "pygments_lexer": "lua",
            "codemirror_mode": "lua",
            "nbconvert_exporter": "script",
        }
        assert version[:2] == (5, 4), f"aikit needs Lua 5.4, lupa gave {version}"

    def execute(self, code: str, *, execution_count: int, silent: bool, allow_stdin: bool,
                user_expressions: dict[str, str]) -> ExecuteOutcome:
        label = f"[{execution_count}]" if not silent else "[silent]"
        run = self.engine.run_cell(code, label, allow_stdin=allow_stdin)
        outcome = ExecuteOutcome(error=run.error)
        try:
            if run.error is None and run.values and not silent and not self.engine.all_quiet(run.values):
                outcome.result = {"text/plain": self.engine.render_values(run.values)}
        except RenderFailure as exc:  # a __tostring that fails or loops until interrupted
            outcome.error = exc.failure
        if outcome.error is None:
            outcome.user_expressions = {name: self._user_expression(expr) for name, expr in user_expressions.items()}
        return outcome

    def _user_expression(self, expression: str) -> dict[str, Any]:
        run = self.engine.evaluate(expression)
        error = run.error
        if error is None:
            try:
                return {"status": "ok", "data": {"text/plain": self.engine.render_values(run.values)}, "metadata": {}}
            except RenderFailure as exc:
                error = exc.failure
        return {"status": "error", "ename": error.ename, "evalue": error.evalue, "traceback": error.traceback}

    def complete(self, code: str, cursor_pos: int) -> dict[str, Any]:
        cursor_pos = _clamp(cursor_pos, code)
        matches, start, end, typed = self.engine.complete(code, cursor_pos)
        return {"status": "ok", "matches": matches, "cursor_start": start, "cursor_end": end,
                "metadata": {"_jupyter_types_experimental": typed}}

    def inspect(self, code: str, cursor_pos: int, detail_level: int) -> dict[str, Any]:
        doc = self.engine.inspect(code, _clamp(cursor_pos, code))
        return {"status": "ok", "found": doc is not None, "data": {"text/plain": doc} if doc else {}, "metadata": {}}

    def is_complete(self, code: str) -> dict[str, Any]:
        status, indent = self.engine.is_complete(code)
        reply: dict[str, Any] = {"status": status}
        if status == "incomplete":
            reply["indent"] = indent
        return reply

    def interrupt(self) -> bool:
        return self.engine.interrupt()

    def interrupt_requested(self) -> bool:
        return self.engine.interrupt_requested()

    def shutdown(self) -> None:
        self.engine.close()


def _clamp(cursor_pos: int, code: str) -> int:
    """Frontends may send a cursor past the end (JupyterLab does, for a completion's docs)."""
    return max(0, min(int(cursor_pos), len(code)))
