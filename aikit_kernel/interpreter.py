"""The language-facing side of the kernel (xeus' ``xinterpreter``): execute, complete, inspect,
is_complete. The protocol core (``kernel.py``) knows nothing about Lua; this module knows nothing
about ZMQ or message framing."""

from __future__ import annotations

import abc
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aikit_components.errors import AikitError, Cancelled
from aikit_components.operations import Operation, OperationKind, honours

from .lua import source
from .lua.engine import LuaFailure, RenderFailure
from .lua.interrupt import lua_release
from .lua_runtime import LuaRuntime

#: The text before the cursor inside ``Tool.call("`` / ``Tool.info("``: group 1 is the name typed so far.
_TOOL_NAME_ARG = re.compile(r"Tool\.(?:call|info)\(\s*[\"']([\w-]*)$")

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
    #: Whether instances have a ``debugger`` (what kernel_info says before one is built).
    has_debugger = False

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

    def stop(self, by: str) -> int:
        """The kill switch (``aikit stop``): stop everything running, not only the cell; how many
        tasks were cancelled."""
        self.interrupt()
        return 0

    def set_wakeup(self, wakeup: Any) -> None:  # noqa: B027  optional hook: doing nothing is the right default
        """Give the interpreter a way to wake the idle Lua thread (for work queued from elsewhere)."""

    def set_interrupt_pending(self, take: Callable[[], bool]) -> None:  # noqa: B027  optional hook: doing nothing is the right default
        """Give the interpreter a way to learn, as each run begins, that an interrupt arrived for
        the request being served before any run was active (:meth:`interrupt` then returned
        False); ``take()`` also forgets it."""

    def service(self) -> None:  # noqa: B027  optional hook: doing nothing is the right default
        """Run work queued for the Lua thread (called by the kernel when woken while idle)."""

    def warm_up(self) -> None:  # noqa: B027  optional hook: doing nothing is the right default
        """Prepare what first uses would otherwise wait for (imports); the kernel calls it once,
        on the interpreter's thread, when it has been idle for a while."""

    def shutdown(self, status: str = "completed") -> None:  # noqa: B027  optional hook: doing nothing is the right default
        """Release resources before the process exits; the session ends as ``status`` (``completed``,
        or ``interrupted`` when the process was told to stop from outside: SIGTERM)."""


_HTML_OF = """
local value = ...
local mt = type(value) == "table" and getmetatable(value)
if type(mt) == "table" and type(mt.__html) == "function" then return mt.__html(value) end
return nil
"""


class LuaInterpreter(Interpreter):
    """Lua 5.4 in the aikit sandbox."""

    banner = "aikit: Lua 5.4 with AI building blocks (Tool, Agent, Workflow, RAG, State, Session, Event, Hook)"
    has_debugger = True
    language_info = {
        "name": "lua",
        "version": lua_release(),
        "mimetype": "text/x-lua",
        "file_extension": ".lua",
        "pygments_lexer": "lua",
        "codemirror_mode": "lua",
        "nbconvert_exporter": "script",
    }
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
        self.notices = list(lua.notices)  # shown once, by the first cell
        self.engine = lua.engine
        self.scope = lua.scope
        self.debugger = self.engine.debugger
        self.cells = self.engine.cells
        self.stop_switch = getattr(self.components, "stop_switch", None)
        if self.stop_switch is not None:  # a stop from elsewhere also interrupts the running cell
            self.stop_switch.on_stop.append(lambda by: self.engine.interrupt())
        version = self.engine.runtime.lua_version
        assert version[:2] == (5, 4), f"aikit needs Lua 5.4, lupa gave {version}"
        self._html_fn: Any = None

    def execute(self, code: str, *, execution_count: int, silent: bool, allow_stdin: bool,
                user_expressions: dict[str, str]) -> ExecuteOutcome:
        if self.startup_error:
            what = "components are unavailable" if self.components is None else "default kernel settings used"
            self.output.write("stderr", f"aikit: {what}: {self.startup_error}\n")
            self.startup_error = None
        for notice in self.notices:
            self.output.write("stderr", f"aikit: warning: {notice}\n")
        self.notices = []
        help_request = source.help_request(code)
        if help_request is not None:
            return self._page_help(*help_request)
        label = f"[{execution_count}]" if not silent else "[silent]"
        lifecycle = CellLifecycle(self.components, self.scope, execution_count)

        def execute(code: str) -> ExecuteOutcome:
            run = self.engine.run_cell(code, label, allow_stdin=allow_stdin)
            outcome = ExecuteOutcome(error=run.error)
            try:
                rendered = self.engine.render_result(run.values) if run.error is None and run.values and not silent else None
                if rendered is not None:
                    outcome.result = self._result_bundle(run.values, rendered)
                    html = self._html_of(run.values) if len(run.values) == 1 and not _plain(run.values[0]) else None
                    if html is not None:
                        outcome.result["text/html"] = html
                    self.engine.env[b"_"] = run.values[0]  # the last result, as in Python's REPL
            except RenderFailure as exc:  # a __tostring that fails or loops until interrupted
                outcome.error = exc.failure
            if outcome.error is None:
                outcome.user_expressions = {name: self._user_expression(expr) for name, expr in user_expressions.items()}
            return outcome

        return lifecycle.run(code, execute)

    def _result_bundle(self, values: list[Any], rendered: str) -> dict[str, Any]:
        """The execute_result of a cell's trailing values (``rendered``: their text/plain), and for
        one list of records the same rich bundle as ``display()`` (an HTML table and JSON)."""
        if len(values) == 1 and not _plain(values[0]):
            from .lua.convert import lua_type
            from .lua.display import DisplayBinding

            if lua_type(values[0]) == "table":
                bundle = DisplayBinding(self.engine).bundle("value", values[0])
                if "text/html" in bundle:
                    return {**bundle, "text/plain": rendered}
        return {"text/plain": rendered}

    def _page_help(self, name: str, detail_level: int) -> ExecuteOutcome:
        """``name?`` / ``name??``: what ``inspect`` says about ``name``, for the frontend's pager."""
        reply = self.inspect(name, len(name), detail_level)
        if not reply["found"]:
            self.output.write("stdout", f"Object `{name}` not found.\n")
            return ExecuteOutcome()
        return ExecuteOutcome(payload=[{"source": "page", "data": reply["data"], "start": 0}])

    def _user_expression(self, expression: Any) -> dict[str, Any]:
        if not isinstance(expression, str):  # the protocol says strings; one bad entry spoils no other
            kind = {dict: "an object", list: "an array", bool: "a boolean", type(None): "null"}.get(
                type(expression), "a number")
            return {"status": "error", "ename": "TypeError", "traceback": [],
                    "evalue": f"a user expression must be a string of Lua code, got {kind}"}
        run = self.engine.evaluate(expression)
        error = run.error
        if error is None:
            try:
                return {"status": "ok", "data": {"text/plain": self.engine.render_values(run.values)}, "metadata": {}}
            except RenderFailure as exc:
                error = exc.failure
        return {"status": "error", "ename": error.ename, "evalue": error.evalue, "traceback": error.traceback}

    def _html_of(self, values: list[Any]) -> str | None:
        """The HTML of a cell's single value whose metatable has ``__html`` (a trace shows as its
        waterfall), else None."""
        if self._html_fn is None:
            self._html_fn = self.engine.compile_trusted(_HTML_OF, "html_of")
        try:
            html = self._html_fn(values[0])
        except Exception:  # noqa: BLE001 - a failing __html leaves the text/plain result
            return None
        return html.decode("utf-8", "replace") if isinstance(html, bytes) else None

    def complete(self, code: str, cursor_pos: int) -> dict[str, Any]:
        cursor_pos = _clamp(cursor_pos, code)
        matches, start, end, typed = self.engine.introspection.complete(code, cursor_pos)
        if not matches:  # inside Tool.call("|: the tool names
            matches, start, end, typed = self._complete_tool_name(code, cursor_pos, (matches, start, end, typed))
        return {"status": "ok", "matches": matches, "cursor_start": start, "cursor_end": end,
                "metadata": {"_jupyter_types_experimental": typed}}

    def _complete_tool_name(self, code: str, cursor: int, default: tuple[Any, ...]) -> tuple[Any, ...]:
        found = _TOOL_NAME_ARG.search(code[:cursor])
        if found is None or self.components is None:
            return default
        prefix = found.group(1)
        names = sorted(t.name for t in self.components.tools.list() if t.name.startswith(prefix))
        start = cursor - len(prefix)
        return names, start, cursor, [{"start": start, "end": cursor, "text": n, "type": "tool"} for n in names]

    def _tool_doc(self, code: str) -> str | None:
        """``?read_file``: the documentation of a tool named like that (when no Lua name is)."""
        name = code.strip().strip("?").strip("\"'")
        if self.components is None or not name or name not in self.components.tools:
            return None
        return str(self.components.tools.get(name).doc())

    def inspect(self, code: str, cursor_pos: int, detail_level: int) -> dict[str, Any]:
        doc = self.engine.introspection.inspect(code, _clamp(cursor_pos, code), detail_level) or self._tool_doc(code)
        return {"status": "ok", "found": doc is not None, "data": {"text/plain": doc} if doc else {}, "metadata": {}}

    def is_complete(self, code: str) -> dict[str, Any]:
        status, indent = self.engine.introspection.is_complete(code)
        reply: dict[str, Any] = {"status": status}
        if status == "incomplete":
            reply["indent"] = indent
        return reply

    def interrupt(self) -> bool:
        if self.stop_switch is not None:  # what the cell started goes too, background work included
            self.stop_switch.stop_cell()
        return self.engine.interrupt()

    def stop(self, by: str) -> int:
        if self.stop_switch is None:
            self.engine.interrupt()
            return 0
        return self.stop_switch.stop(by)

    def set_wakeup(self, wakeup: Any) -> None:
        self.engine.dispatcher.notify = wakeup

    def set_interrupt_pending(self, take: Callable[[], bool]) -> None:
        self.engine.interrupter.take_pending = take

    def warm_up(self) -> None:
        if self.components is not None:
            self.components.warm()  # the tool registry and jsonschema

    def service(self) -> None:
        self.engine.dispatcher.service()

    def interrupt_requested(self) -> bool:
        return self.engine.interrupt_requested()

    def shutdown(self, status: str = "completed") -> None:
        self.lua.close(status)


def _plain(value: Any) -> bool:
    """A Lua number, boolean, string or nil: no metatable of its own, no table to show richly."""
    return type(value) in (int, float, bool, bytes, type(None))


def _clamp(cursor_pos: int, code: str) -> int:
    """Frontends may send a cursor past the end (JupyterLab does, for a completion's docs)."""
    return max(0, min(int(cursor_pos), len(code)))


class CellFailed(AikitError):
    """A cell ended in an error: carries its outcome through the operation pipeline."""

    code = "cell_error"

    def __init__(self, outcome: ExecuteOutcome) -> None:
        error = outcome.error
        super().__init__(f"{error.ename}: {error.evalue}" if error else "the cell failed")
        self.outcome = outcome


def _cell_status(op: Operation, error: Any = None) -> dict[str, Any]:
    fields: dict[str, Any] = {"execution_count": op.payload.get("execution_count"),
                              "status": "ok" if error is None else "error",
                              "duration_ms": (time.perf_counter() - op.meta["started"]) * 1000}
    if isinstance(error, CellFailed) and error.outcome.error is not None:
        fields["error"] = {"ename": error.outcome.error.ename, "evalue": error.outcome.error.evalue}
    elif error is not None:
        fields["error"] = {"ename": error.code, "evalue": error.message}
    return fields


CELL = OperationKind(
    "cell",
    hook_prefix="cell",
    honours=honours(before="cancel replace"),
    topics=("cell.started", "cell.finished", "cell.finished"),
    source="kernel",
    describe=lambda op: "cell",
    event_fields=lambda op: {"execution_count": op.payload.get("execution_count")},
    finished_fields=lambda op, outcome: _cell_status(op),
    failed_fields=lambda op, error: _cell_status(op, error),
    after_payload=lambda op, outcome: _cell_status(op),
    error_payload=lambda op, error: _cell_status(op, error),
    replaced=lambda op, value: ExecuteOutcome(result={"text/plain": str(value)}),
    after_on_error=True,
    subscribes_while_running=True,
)


class CellLifecycle:
    """One execution as an operation of kind :data:`CELL` through the components' pipeline
    (events ``cell.started``/``cell.finished``, hooks ``cell.before``/``cell.after``/``cell.error``),
    and a fresh tool budget for it."""

    def __init__(self, components: Components | None, scope: Any, execution_count: int) -> None:
        self.components = components
        self.count = execution_count
        if scope is not None:
            scope.renew()

    def run(self, code: str, execute: Callable[[str], ExecuteOutcome]) -> ExecuteOutcome:
        """``execute(code)`` (the code as the hooks left it) wrapped by the pipeline."""
        c = self.components
        if c is None:
            return execute(code)
        op = Operation(CELL, f"[{self.count}]", {"code": code, "execution_count": self.count},
                       meta={"started": time.perf_counter()})

        def handler(op: Operation) -> ExecuteOutcome:
            new_code = op.payload.get("code", code)
            outcome = execute(new_code if isinstance(new_code, str) else code)
            if outcome.error is not None:
                raise CellFailed(outcome)
            return outcome

        try:
            return c.pipeline.run(op, handler)
        except CellFailed as failed:
            return failed.outcome
        except Cancelled as exc:
            return ExecuteOutcome(error=LuaFailure("cancelled", exc.message, [f"cancelled: {exc.message}"]))
