"""The language-facing side of the kernel (xeus' ``xinterpreter``): execute, complete, inspect,
is_complete. The protocol core (``kernel.py``) knows nothing about Lua; this module knows nothing
about ZMQ or message framing."""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .lua import source
from .lua.engine import LuaFailure, RenderFailure
from .lua.interrupt import lua_release
from .lua_runtime import LuaRuntime

if TYPE_CHECKING:
    from aikit_components.components import Components


@dataclass
class ExecuteOutcome:
    """The result of one execute request, before it is turned into messages."""

    result: dict[str, Any] | None = None  # MIME bundle of the trailing expression, if any
    error: LuaFailure | None = None
    user_expressions: dict[str, Any] = field(default_factory=dict)
    payload: list[dict[str, Any]] = field(default_factory=list)  # execute_reply payloads (the pager)


class Interpreter(abc.ABC):
    """What a language must provide to be served by :class:`aikit_kernel.kernel.Kernel`."""

    implementation = "aikit"
    implementation_version = "0.1.0"
    language_info: dict[str, Any] = {}
    banner = ""
    help_links: list[dict[str, str]] = []
    debugger: Any = None  # a debug.lua_debugger.LuaDebugger when the language can be debugged

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

    def set_wakeup(self, wakeup: Any) -> None:
        """Give the interpreter a way to wake the idle Lua thread (for work queued from elsewhere)."""

    def service(self) -> None:
        """Run work queued for the Lua thread (called by the kernel when woken while idle)."""

    def shutdown(self) -> None:
        """Release resources before the process exits."""


class LuaInterpreter(Interpreter):
    """Lua 5.4 in the aikit sandbox."""

    banner = "aikit: Lua 5.4 with AI building blocks (Tool, Agent, Workflow, RAG, State, Session, Event, Hook)"
    help_links = [
        {"text": "Lua 5.4 manual", "url": "https://www.lua.org/manual/5.4/"},
        {"text": "aikit Lua API", "url": "https://github.com/aikit/aikit/blob/main/docs/lua-api.md"},
    ]

    def __init__(self, lua: LuaRuntime) -> None:
        """Serve ``lua`` (build it with :func:`aikit_kernel.lua_runtime.open_lua_runtime`)."""
        self.lua = lua
        self.output = lua.output
        self.components = lua.components
        self.startup_error = lua.startup_error
        self.engine = lua.engine
        self.scope = lua.scope
        self.debugger = self.engine.debugger
        self.cells = self.engine.cells
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
        if self.startup_error:
            what = "components are unavailable" if self.components is None else "default kernel settings used"
            self.output.write("stderr", f"aikit: {what}: {self.startup_error}\n")
            self.startup_error = None
        help_request = source.help_request(code)
        if help_request is not None:
            return self._page_help(*help_request)
        label = f"[{execution_count}]" if not silent else "[silent]"
        lifecycle = CellLifecycle(self.components, self.scope, execution_count)
        code, early = lifecycle.before(code)
        if early is not None:
            return early
        run = self.engine.run_cell(code, label, allow_stdin=allow_stdin)
        outcome = ExecuteOutcome(error=run.error)
        try:
            if run.error is None and run.values and not silent and not self.engine.all_quiet(run.values):
                outcome.result = {"text/plain": self.engine.render_values(run.values)}
        except RenderFailure as exc:  # a __tostring that fails or loops until interrupted
            outcome.error = exc.failure
        if outcome.error is None:
            outcome.user_expressions = {name: self._user_expression(expr) for name, expr in user_expressions.items()}
        lifecycle.after(outcome)
        return outcome

    def _page_help(self, name: str, detail_level: int) -> ExecuteOutcome:
        """``name?`` / ``name??``: what ``inspect`` says about ``name``, for the frontend's pager."""
        reply = self.inspect(name, len(name), detail_level)
        if not reply["found"]:
            self.output.write("stdout", f"Object `{name}` not found.\n")
            return ExecuteOutcome()
        return ExecuteOutcome(payload=[{"source": "page", "data": reply["data"], "start": 0}])

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
        doc = self.engine.inspect(code, _clamp(cursor_pos, code), detail_level)
        return {"status": "ok", "found": doc is not None, "data": {"text/plain": doc} if doc else {}, "metadata": {}}

    def is_complete(self, code: str) -> dict[str, Any]:
        status, indent = self.engine.is_complete(code)
        reply: dict[str, Any] = {"status": status}
        if status == "incomplete":
            reply["indent"] = indent
        return reply

    def interrupt(self) -> bool:
        return self.engine.interrupt()

    def set_wakeup(self, wakeup: Any) -> None:
        self.engine.dispatcher.notify = wakeup

    def service(self) -> None:
        self.engine.dispatcher.service()

    def interrupt_requested(self) -> bool:
        return self.engine.interrupt_requested()

    def shutdown(self) -> None:
        self.lua.close()


def _clamp(cursor_pos: int, code: str) -> int:
    """Frontends may send a cursor past the end (JupyterLab does, for a completion's docs)."""
    return max(0, min(int(cursor_pos), len(code)))


class CellLifecycle:
    """Events ``cell.started``/``cell.finished`` and hooks ``cell.before``/``cell.after``/``cell.error``
    around one execution, and a fresh tool budget for it."""

    def __init__(self, components: "Components | None", scope: Any, execution_count: int) -> None:
        self.components = components
        self.count = execution_count
        self.started = time.perf_counter()
        if scope is not None:
            scope.renew()

    def before(self, code: str) -> tuple[str, ExecuteOutcome | None]:
        c = self.components
        if c is None:
            return code, None
        c.events.publish("cell.started", {"execution_count": self.count}, source="kernel")
        if not c.hooks.has("cell.before"):
            return code, None
        decision = c.hooks.run("cell.before", {"code": code, "execution_count": self.count})
        if decision.cancelled:
            failure = LuaFailure("cancelled", f"cell cancelled by a hook: {decision.reason}",
                                 [f"cancelled: cell cancelled by a hook: {decision.reason}"])
            outcome = ExecuteOutcome(error=failure)
            self.after(outcome)
            return code, outcome
        if decision.replaced:
            outcome = ExecuteOutcome(result={"text/plain": str(decision.value)})
            self.after(outcome)
            return code, outcome
        new_code = decision.payload.get("code", code)
        return (new_code if isinstance(new_code, str) else code), None

    def after(self, outcome: ExecuteOutcome) -> None:
        c = self.components
        if c is None:
            return
        status = "ok" if outcome.error is None else "error"
        payload: dict[str, Any] = {"execution_count": self.count, "status": status,
                                   "duration_ms": (time.perf_counter() - self.started) * 1000}
        if outcome.error is not None:
            payload["error"] = {"ename": outcome.error.ename, "evalue": outcome.error.evalue}
            if c.hooks.has("cell.error"):
                c.hooks.run("cell.error", dict(payload))
        if c.hooks.has("cell.after"):
            c.hooks.run("cell.after", dict(payload))
        c.events.publish("cell.finished", payload, source="kernel")
