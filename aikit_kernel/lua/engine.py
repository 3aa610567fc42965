"""The Lua engine: one sandboxed ``lupa.lua54`` runtime, its cells, errors and rendering
(introspection: :mod:`.introspection`).

Runs only on the Lua (main) thread, except :meth:`LuaEngine.interrupt`, which any thread may call,
and :meth:`LuaEngine.close` of an engine nobody closed: by the collector (on whatever thread it
runs, once nothing else can reach the engine) or at interpreter exit.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import re
import weakref
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from lupa import lua54

from aikit_components.errors import Interrupted
from aikit_components.security import SecurityPolicy

from .. import runtime
from ..output import OutputSink
from . import open_engines, source, stdlib_docs
from .cells import CellFiles
from .convert import new_table, python_to_lua, register_table_maker
from .coroutines import CoroutineDriver
from .dispatch import LuaDispatcher
from .futures import LuaFutures, stopped_by_kill_switch
from .host import Host, text
from .interrupt import LUA_MASKLINE, Interrupter
from .introspection import Introspection

LuaError = lua54.LuaError
LuaMemoryError = lua54.LuaMemoryError
lua_type = lua54.lua_type
log = logging.getLogger(__name__)

_LEADING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# `return f(x)` would be a tail call and drop the cell's frame from tracebacks. A trailing
# expression is therefore returned through a collector function held as an upvalue: the chunk
# builds the cell function (same lines, no extra varargs) and hands it back.
_RETURN_PREFIX = b"local __aikit_return = ... return function(...) "
_RETURN_OPEN = b"return __aikit_return("
_RETURN_CLOSE = b"\n) end"
_TRACEBACK_NOISE = re.compile(r"\[aikit(:[^\]]*)?\]|in function 'xpcall'|^\s*\[C\]: in \?$|\(\.\.\.tail calls\.\.\.\)")


AIKIT_BUILTIN_DOCS = {
    "sleep": "sleep(seconds)\n\n"
             "Waits on aikit's I/O loop without blocking the kernel; an interrupt stops the wait at once.\n"
    "Example: sleep(0.5)",
    "arg": "arg\n\nUnder `aikit run script.lua a b`: arg[0] is the script path, arg[1].. its arguments.",
}


def _running_line(traceback: str) -> str:
    """The innermost line of user code in a Lua traceback (``[3]:2``, ``script.lua:7``), or ''."""
    for line in traceback.split("\n")[1:]:
        found = re.match(r"\s*([^\s\[][^:]*:\d+|\[\d+\]:\d+):", line)
        if found and not _TRACEBACK_NOISE.search(line):
            return found.group(1)
    return ""


#: The compiled chunks of this many recent cells are kept (LuaEngine._compile_cell), of cells up
#: to this long (a cell run again is a short one, as a rule).
CELL_CHUNKS_KEPT = 64
CELL_CHUNK_MAX_SOURCE = 8192

#: Python types of Lua values that have no metatable of the user's (numbers, booleans, nil):
#: printing them runs no user code, so it needs no interruptible run.
_INERT = frozenset({int, float, bool, type(None)})

_NIL_GLOBAL = re.compile(r"\(global '([A-Za-z_]\w*)'\)$")


@dataclass
class LuaFailure:
    """An error raised by Lua code, ready for a Jupyter ``error`` message. ``interrupted`` marks
    the interrupt (made only by :meth:`interrupt`; Jupyter shows it as a KeyboardInterrupt)."""

    ename: str
    evalue: str
    traceback: list[str]
    details: Any = None
    interrupted: bool = False

    @classmethod
    def interrupt(cls, where: str = "") -> LuaFailure:
        """The failure of code the user interrupted: where the interrupt sentinel, having
        reached the top of a run, becomes a Python value. ``where`` is the line that was running
        (``[3]:2``), when known."""
        at = f" at {where}" if where else ""
        return cls("KeyboardInterrupt", "interrupted", [_red("KeyboardInterrupt") + f": execution interrupted{at}"],
                   interrupted=True)

    def raise_if_interrupted(self) -> None:
        """Raise :class:`Interrupted` for the interrupt (Lua called back from Python: the
        interrupt goes on to the code that called it)."""
        if self.interrupted:
            raise Interrupted()


@dataclass
class RunResult:
    """What running a chunk produced: its return values (Lua objects) or a failure."""

    values: list[Any] = field(default_factory=list)
    error: LuaFailure | None = None


def _deny_python_attributes(obj: Any, name: Any, is_setting: bool) -> Any:
    """lupa attribute filter: no writes, no private or dunder names on Python objects."""
    if is_setting or not isinstance(name, (str, bytes)):
        raise AttributeError("access to Python objects is not allowed")
    name_s = name.decode() if isinstance(name, bytes) else name
    if name_s.startswith("_"):
        raise AttributeError(f"access to {name_s!r} is not allowed")
    return name_s


class LuaEngine:
    """A sandboxed Lua 5.4 runtime that executes notebook cells."""

    def __init__(self, output: OutputSink, policy: SecurityPolicy | None = None, max_memory: int | None = None) -> None:
        self._closed = True  # until it is built: nothing to close if building it fails
        self.max_memory = max_memory
        self.runtime = lua54.LuaRuntime(
            register_eval=False,
            register_builtins=False,
            unpack_returned_tuples=True,
            encoding=None,
            source_encoding="utf-8",
            attribute_filter=_deny_python_attributes,
            max_memory=max_memory,
        )
        self.policy = policy or SecurityPolicy.default()
        self.cells = CellFiles()
        self.script_paths: list[str] = []  # scripts run (the debugger's loaded sources)
        self._interrupter: Interrupter | None = None
        self._debugger: Any = None  # debug.lua_debugger.LuaDebugger, created on first use
        self.dispatcher = LuaDispatcher()
        #: I/O-loop work Lua awaits by id (``internal.await``)
        self.futures = LuaFutures(self.dispatcher, self.stop_requested)
        self.host = Host(output, self.policy, self.wait, self.stop_requested,
                         details_to_lua=lambda value: python_to_lua(self.runtime, value), start=self.start)
        # Files a script left open, closed (flushed) first when an engine nobody closed is collected:
        # the collector calls this before any finalizer, among which those of the files themselves,
        # whose order would be arbitrary (a raw file closed before its buffer is flushed loses the buffer).
        weakref.finalize(self, self.host.files.close_all).atexit = False
        host_functions = {k.encode(): v for k, v in self.host.functions().items()}
        host_functions[b"rearm"] = lambda: self._interrupter.rearm()  # type: ignore[union-attr]
        host_functions[b"co_enter"] = lambda address, step=False: self._interrupter.co_enter(address, step)  # type: ignore[union-attr]
        host_functions[b"stop_kind"] = lambda: self._interrupter.stop_kind()  # type: ignore[union-attr]
        host_functions[b"co_leave"] = lambda: self._interrupter.co_leave()  # type: ignore[union-attr]
        host_functions[b"future_wait"] = self.host.wrap(self.futures.wait)
        host_functions[b"future_result"] = self.host.wrap(lambda fid: self._future_result_lua(fid))
        lua_load = self.runtime.globals()[b"load"]
        patterns = resources.files(__package__).joinpath("patterns.lua").read_text(encoding="utf-8")
        # without debug information: errors of the C string functions it calls then carry no
        # position inside it (the user's line is in the traceback), as they carry none of C's
        dump = self.runtime.globals()[b"string"][b"dump"]
        host_functions[b"patterns"] = lua_load(dump(lua_load(patterns.encode(), b"=[aikit]", b"t"), True),
                                               b"=[aikit]", b"b")
        bootstrap = resources.files(__package__).joinpath("sandbox.lua").read_text(encoding="utf-8")
        loader = lua_load(bootstrap.encode(), b"=[aikit]", b"t")
        self.internal = loader(self.runtime.table_from(host_functions))
        self._interrupter = Interrupter(self.internal[b"main_thread_address"].decode())
        self.host.coroutine_arguments.resumed = self._interrupter.resumed
        self.host.coroutine_arguments.identity = self.internal[b"anchor"]
        self._table_maker = register_table_maker(self.runtime, self.internal[b"new_table"])
        self.coroutines = CoroutineDriver(self, self._interrupter)
        self.env = self.internal[b"env"]
        self._run = self.internal[b"run"]
        self._compile = self.internal[b"compile"]
        self._repr = self.internal[b"repr"]
        self.address = self.internal[b"address"]  # a table's identity without metamethods
        self._identity = self.runtime.eval(b"function(...) return ... end")
        self._cell_chunks: dict[tuple[str, str], tuple[Any, bool]] = {}  # see _compile_cell
        self.internal[b"cell_functions"] = self.runtime.eval(b"setmetatable({}, {__mode = 'k'})")
        self._compile_in = self.runtime.eval(
            b"function(code, name) local fn, err = load(code, name, 't') return fn, err end")
        #: ``function_origin(fn)``: the chunk name and first and last lines where ``fn`` was defined
        self.function_origin = self.runtime.eval(
            b"(function(getinfo) return function(f) local i = getinfo(f, 'S') "
            b"return i.source, i.linedefined, i.lastlinedefined end end)(debug.getinfo)")
        self.docs: dict[str, str] = {**stdlib_docs.STDLIB_DOCS, **AIKIT_BUILTIN_DOCS}
        #: ``aikit run --strict``: a workflow run that fails is an error (as with ``wf:run{raise = true}``).
        self.strict = False
        #: What the Lua API bindings keep per engine, by binding (``"mcp.exposed"``, ...). Kept on the
        #: engine so that it goes with the engine: a module-level map keyed by the engine whose values
        #: refer back to it (a Lua function, an agent) would keep every engine alive.
        self.bindings: dict[str, Any] = {}
        self.internal[b"prettify"] = lambda message: self.explain(text(message)).encode()
        #: completions, docs and "is this cell complete?" for frontends
        self.introspection = Introspection(self)
        self._closed = False
        open_engines.opened(self)

    # ------------------------------------------------------------------ globals
    def set_global(self, name: str, value: Any, doc: str | None = None) -> None:
        """Expose ``value`` to scripts as the global ``name`` (with an optional inspect doc)."""
        self.env[name.encode()] = value
        if doc:
            self.docs[name] = doc
            if lua_type(value) in ("function", "table"):
                self.internal[b"register_doc"](value, name.encode())

    def register_doc(self, name: str, value: Any, doc: str) -> None:
        """Attach an inspect doc to a Lua value reachable as ``name``."""
        self.docs[name] = doc
        self.internal[b"register_doc"](value, name.encode())

    def table(self, *items: Any, **fields: Any) -> Any:
        """A new Lua table (bytes keys), bound to the main thread (see convert.new_table)."""
        table = new_table(self.runtime)
        for i, item in enumerate(items, 1):
            table[i] = item
        for key, value in fields.items():
            table[key.encode()] = value
        return table

    def compile_trusted(self, code: str, name: str) -> Any:
        """Compile trusted aikit Lua (binding code) in the full global environment; return the chunk.
        Its frames are named ``[aikit:name]`` and left out of user tracebacks."""
        fn, err = self._compile_in(code.encode(), f"=[aikit:{name}]".encode())
        if fn is None:
            raise SyntaxError(text(err))
        return fn

    # ------------------------------------------------------------------ running code
    def run_cell(self, code: str, label: str = "cell", allow_stdin: bool = False) -> RunResult:
        """Compile and run one cell. A trailing expression's values are returned (Lua REPL rule)."""
        code = source.well_formed(code)
        path = self.cells.write(code, label)
        compiled = self._compile_cell(source.persist_top_level_locals(code), "@" + path)
        if isinstance(compiled, LuaFailure):
            return RunResult(error=compiled)
        self.internal[b"cell_functions"][compiled] = True  # the debugger names its frames "cell [N]"
        return self.call(compiled, allow_stdin=allow_stdin)

    def run_script(self, path: str, args: list[str], allow_stdin: bool = True,
                   named: dict[str, str] | None = None) -> RunResult:
        """Run a script file as ``aikit run`` does: ``...`` and the global ``arg`` hold its arguments
        (``named``, from ``--arg k=v``, as the string fields ``arg.k``). Bytes that are not UTF-8
        read as U+FFFD (write binary data in strings with escapes: ``"\\xff"``)."""
        with open(path, encoding="utf-8", errors="replace") as f:
            code = f.read()
        self.script_paths.append(path)
        if code.startswith("#!"):
            code = "--" + code  # keep the line count; Lua's own loader skips a shebang the same way
        # Arguments and paths are handed over as the bytes they were (the OS gives bytes; Python
        # keeps those that are not UTF-8 as surrogates): Lua strings are bytes.
        arg = self.table(*[os.fsencode(a) for a in args])
        arg[0] = os.fsencode(path)
        for name, value in (named or {}).items():
            arg[os.fsencode(name)] = os.fsencode(value)
        self.env[b"arg"] = arg
        fn, err = self._compile(code.encode(), b"@" + os.fsencode(path))
        if fn is None:
            return RunResult(error=self._syntax_failure(err))
        return self.call(fn, *[os.fsencode(a) for a in args], allow_stdin=allow_stdin)

    def evaluate(self, expression: str, allow_stdin: bool = False) -> RunResult:
        """Evaluate one expression (user_expressions, debugger watches)."""
        fn, err = self._compile(("return " + expression).encode(), b"=expression")
        if fn is None:
            return RunResult(error=self._syntax_failure(err))
        return self.call(fn, allow_stdin=allow_stdin)

    def call(self, fn: Any, *args: Any, allow_stdin: bool = False) -> RunResult:
        """Run a Lua function under the sandbox's xpcall with interrupts enabled."""
        interrupter = self._interrupter
        assert interrupter is not None
        self.host.stdin_allowed = allow_stdin
        interrupter.begin()
        try:
            outcome = self._run(fn, *args)
        except LuaMemoryError:
            outcome = None
        except LuaError as exc:
            if interrupter.requested.is_set():
                return RunResult(error=LuaFailure.interrupt())
            return RunResult(error=LuaFailure("LuaError", self.cells.prettify(str(exc)), [str(exc)]))
        finally:
            interrupter.end()
            if self._debugger is not None:
                self._debugger.run_ended()
            self.host.stdin_allowed = False
            self.dispatcher.service()  # a safe point: deliver what arrived while the code ran
        if outcome is None or (not outcome[b"ok"] and outcome[b"traceback"] is None and not outcome[b"interrupt"]):
            return RunResult(error=self._memory_failure())
        if outcome[b"ok"]:
            values = outcome[b"values"]
            return RunResult(values=[values[i] for i in range(1, values[b"n"] + 1)])
        return RunResult(error=self._failure(outcome))

    def interrupt(self) -> bool:
        """Stop the running code as soon as possible (thread-safe); False if nothing runs."""
        return self._interrupter is not None and self._interrupter.interrupt()

    # ------------------------------------------------------------------ debugger support
    @property
    def debugger(self) -> Any:
        """The engine's :class:`~aikit_kernel.debug.lua_debugger.LuaDebugger` (created on first use,
        on the Lua thread; it installs no hook until a breakpoint or step needs one)."""
        if self._debugger is None:
            from ..debug.lua_debugger import LuaDebugger

            self._debugger = LuaDebugger(self)
        return self._debugger

    @property
    def interrupter(self) -> Interrupter:
        """The runtime's :class:`~aikit_kernel.lua.interrupt.Interrupter` (its hooks and states)."""
        assert self._interrupter is not None
        return self._interrupter

    @property
    def debug_library_hook(self) -> int:
        assert self._interrupter is not None
        return self._interrupter.debug_library_hook

    def set_debug_hook(self, hook: int | None, mask: int = LUA_MASKLINE) -> None:
        """Install the debugger's hook on running and future runs (thread-safe)."""
        assert self._interrupter is not None
        self._interrupter.set_base_hook(hook, mask)

    def request_pause(self) -> bool:
        """Ask running code to stop in the debugger (thread-safe); False if nothing runs."""
        return self._interrupter is not None and self._interrupter.pause()

    def take_pause(self) -> bool:
        """From the hook: consume a pending pause request (True) or report an interrupt (False)."""
        return self._interrupter is not None and self._interrupter.take_pause()

    def wait(self, coro: Any, timeout: float | None = None) -> Any:
        """Run a coroutine on the I/O loop from the Lua thread: interruptible, and serving calls
        other threads queued for Lua while waiting."""
        try:
            return runtime.run_sync(coro, timeout, should_stop=self.stop_requested,
                                    service=self.dispatcher.service, wake=self.dispatcher.wake)
        except concurrent.futures.CancelledError:  # the kill switch cancelled the work
            raise stopped_by_kill_switch() from None

    # ------------------------------------------------------------------ futures (await from Lua)
    def start(self, coro: Any) -> int:
        """Start a coroutine on the I/O loop and return an id Lua can await (``internal.await``):
        a workflow's Lua step yields on it so other Lua steps run meanwhile; plain Lua waits."""
        return self.futures.start(coro)

    def _future_result_lua(self, future_id: int) -> Any:
        value = self.futures.result(future_id)
        return python_to_lua(self.runtime, value) if not isinstance(value, _RawLua) else value.value

    def interrupt_requested(self) -> bool:
        """True between an interrupt request and the end of the run it stops."""
        return self._interrupter is not None and self._interrupter.requested.is_set()

    def stop_requested(self) -> bool:
        """True when the code running now must stop waiting: an interrupt, or a cancel of the
        driven coroutine it runs in (see :meth:`CoroutineDriver.cancel`)."""
        return self._interrupter is not None and self._interrupter.stop_requested()

    def _compile_cell(self, code: str, chunkname: str) -> Any:
        """The function a cell runs (its trailing expression's values returned), or its syntax
        failure. The compiled chunks of recent cells are kept: a cell run again (the same source,
        so the same file) is not compiled again. Running a kept chunk makes the same fresh
        function as compiling it again, but for its ``_ENV``, which it keeps: a cell that names
        ``_ENV`` is compiled every time."""
        key = (code, chunkname)
        kept = self._cell_chunks.get(key)
        if kept is None:
            kept = self._compile_cell_chunk(code, chunkname.encode())
            if isinstance(kept, LuaFailure):
                return kept
            if len(code) <= CELL_CHUNK_MAX_SOURCE and "_ENV" not in code:
                if len(self._cell_chunks) >= CELL_CHUNKS_KEPT:
                    del self._cell_chunks[next(iter(self._cell_chunks))]  # the oldest
                self._cell_chunks[key] = kept
        fn, wrapped = kept
        return fn(self._identity) if wrapped else fn

    def _compile_cell_chunk(self, code: str, chunk: bytes) -> tuple[Any, bool] | LuaFailure:
        """The compiled chunk of a cell and whether it is the wrapped form (called with the
        collector function, it makes the cell's function), or the cell's syntax failure."""
        fn, _ = self._compile(_RETURN_PREFIX + _RETURN_OPEN + code.encode() + _RETURN_CLOSE, chunk)
        if fn is not None:
            return fn, True
        fn, err = self._compile(code.encode(), chunk)
        if fn is not None:
            trailing = self._trailing_call(code, chunk)
            return (trailing, True) if trailing is not None else (fn, False)
        split = self._split_trailing_expression(code, chunk)
        return (split, True) if split is not None else self._syntax_failure(err)

    def _trailing_call(self, code: str, chunk: bytes) -> Any:
        r"""Valid statements ending in a call or name (``...\nTool.call(x)``): return its values, as a
        notebook shows a cell's last expression. Only when the last statement starts with a name,
        so no operator can glue it to the line before (``x = 1\n-y`` stays one statement). A
        trailing ``;`` keeps the cell quiet, as in IPython (the wrapped form does not compile).
        The wrapped chunk, or None."""
        lines = code.split("\n")
        last = len(lines) - 1
        while last > 0 and not lines[last].strip():
            last -= 1
        for i in range(last, max(0, last - 20), -1):
            word = _LEADING_NAME.match(lines[i].lstrip())
            if word is None or word.group() in source.KEYWORDS:
                continue
            statements, expression = "\n".join(lines[:i]).encode(), "\n".join(lines[i:]).encode()
            if self._compile(statements, chunk)[0] is None:
                continue
            fn, _ = self._compile(_RETURN_PREFIX + statements + b"\n" + _RETURN_OPEN + expression + _RETURN_CLOSE, chunk)
            if fn is not None:
                return fn  # the wrapped form
        return None

    def _split_trailing_expression(self, code: str, chunk: bytes) -> Any:
        """``stmts\\nexpr`` (invalid as statements): run the statements and return the expression
        (the wrapped chunk, or None)."""
        lines = code.split("\n")
        for i in range(len(lines) - 1, 0, -1):
            statements, expression = "\n".join(lines[:i]).encode(), "\n".join(lines[i:]).encode()
            fn, _ = self._compile(_RETURN_PREFIX + statements + b"\n" + _RETURN_OPEN + expression + _RETURN_CLOSE, chunk)
            if fn is not None:
                return fn  # the wrapped form
        return None

    # ------------------------------------------------------------------ errors
    def _syntax_failure(self, err: Any) -> LuaFailure:
        message = self.cells.prettify(text(err))
        return LuaFailure("LuaSyntaxError", message, [_red("LuaSyntaxError") + ": " + message])

    def _memory_failure(self) -> LuaFailure:
        self.runtime.execute(b"collectgarbage()")
        limit = f" ({self.max_memory // (1024 * 1024)} MiB)" if self.max_memory else ""
        message = (
            f"not enough memory: the Lua memory limit{limit} was exceeded. Free large tables "
            "(set them to nil) or raise the limit: kernel.max_memory_mb in aikit.toml, or AIKIT_MAX_MEMORY_MB."
        )
        return LuaFailure("LuaMemoryError", message, [_red("LuaMemoryError") + ": " + message])

    def _failure(self, outcome: Any) -> LuaFailure:
        if outcome[b"interrupt"]:
            trace = outcome[b"traceback"]
            return LuaFailure.interrupt(_running_line(self.cells.prettify(text(trace))) if trace is not None else "")
        code = outcome[b"code"]
        ename = text(code) if code is not None else "LuaError"
        evalue = self.explain(text(outcome[b"message"]))
        lines = [_red(ename) + ": " + evalue]
        trace = self.cells.prettify(text(outcome[b"traceback"]))
        kept = [ln.replace("\t", "  ") for ln in trace.split("\n") if not _TRACEBACK_NOISE.search(ln)]
        if len(kept) > 1:
            lines += kept
        return LuaFailure(ename, evalue, lines, details=outcome[b"details"])

    def explain(self, message: str) -> str:
        """An error message for the user: cells named by their labels (``[3]:2``), and a nil
        global that is a misspelled one (``Agnet``) followed by the closest global's name."""
        message = self.cells.prettify(message)
        found = _NIL_GLOBAL.search(message)
        if found:
            import difflib

            names = [text(k) for k in self.env if isinstance(k, bytes)]
            close = difflib.get_close_matches(found.group(1), names, n=1, cutoff=0.6)
            if close:
                message += f"; did you mean {close[0]!r}?"
        return message

    # ------------------------------------------------------------------ rendering
    def repr(self, value: Any, **limits: int) -> str:
        """Pretty-print a Lua value (cycle-safe, truncated when huge). Runs ``__tostring``
        metamethods, so it runs interruptibly; raises :class:`RenderFailure` if they fail."""
        opts = self.table(**limits) if limits else None
        return text(self.guarded(self._repr, value, opts)[0])

    def pcall(self, fn: Any, *args: Any) -> RunResult:
        """Call a Lua function protected (xpcall + traceback). Inside a running cell (a callback
        from a component) it joins the running, interruptible run; otherwise it starts one."""
        if self._interrupter is not None and self._interrupter.active:
            outcome = self._run(fn, *args)
            if outcome[b"ok"]:
                values = outcome[b"values"]
                return RunResult(values=[values[i] for i in range(1, values[b"n"] + 1)])
            return RunResult(error=self._failure(outcome))
        return self.call(fn, *args)

    def guarded(self, fn: Any, *args: Any) -> list[Any]:
        """Call trusted Lua that may run user metamethods: interruptible, failures raised as
        :class:`RenderFailure`."""
        if self._interrupter is not None and self._interrupter.active:
            return [fn(*args)]  # already inside a run (a host function called from a cell)
        result = self.call(fn, *args)
        if result.error is not None:
            raise RenderFailure(result.error)
        return result.values

    def all_quiet(self, values: list[Any]) -> bool:
        """True when every value is one a notebook should not echo (io.write's file, display handles)."""
        return bool(self.guarded(self.internal[b"all_quiet"], self.table(*values, n=len(values)))[0])

    def render_result(self, values: list[Any]) -> str | None:
        """A cell's trailing values as its execute_result text, None when :meth:`all_quiet` (one
        interruptible run for both; none for numbers, booleans and nils, which run no
        metamethod of the user's)."""
        if len(values) == 1:  # an integer or a boolean: what Lua's tostring says, without Lua
            value = values[0]
            if type(value) is int:
                return str(value)
            if type(value) is bool:
                return "true" if value else "false"
        args = self.table(*values, n=len(values))
        if all(type(v) in _INERT for v in values):
            rendered = self.internal[b"render_result"](args)
        else:
            rendered = self.guarded(self.internal[b"render_result"], args)[0]
        return None if rendered is None else text(rendered)

    def render_values(self, values: list[Any]) -> str:
        """The text/plain of an execute_result: each value pretty-printed, tab-separated."""
        return text(self.guarded(self.internal[b"render_all"], self.table(*values, n=len(values)))[0])

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran (or building the engine failed)."""
        return self._closed

    def close(self) -> None:
        """Release files opened by scripts, remove this process's cell files and switch off the
        finalizers (``__gc``) of the Lua objects still alive (the garbage is collected first, its
        finalizers run): the Lua state is freed whenever Python collects the engine, perhaps while
        the interpreter exits, when a finalizer calling back into Python would crash it.
        Closing again does nothing. An engine nobody closes is closed when Python collects it
        (:meth:`__del__`) or at interpreter exit (:mod:`.open_engines`)."""
        if self._closed:
            return
        self._closed = True
        open_engines.closed(self)
        try:
            self.internal[b"disarm_finalizers"]()
        except LuaError as exc:  # a finalizer that fails: it does not stop the closing
            log.warning("a Lua finalizer failed while the engine closed: %s", exc)
        self.host.files.close_all()
        self.cells.cleanup()
        register_table_maker(self.runtime, None)
        self._table_maker = None

    def __del__(self) -> None:
        # An engine dropped without close(). The collector calls this before it breaks the cycle
        # the engine is in (runtime -> Lua -> host functions -> engine), while everything the Lua
        # finalizers may call is still whole; the Lua state is freed (lua_close) only afterwards.
        if not getattr(self, "_closed", True):
            try:
                self.close()
            except Exception:  # noqa: BLE001 - nothing may escape a __del__
                pass

    def running(self) -> bool:
        """True while a run (a cell, a script, a shipped step) is in progress: closing the engine
        from another thread would wait for it (lupa locks the runtime for the whole run)."""
        return self._interrupter is not None and self._interrupter.active


class _RawLua:
    """A future result that is already a Lua value (no conversion)."""

    def __init__(self, value: Any) -> None:
        self.value = value


class RenderFailure(Exception):
    """Rendering a value ran user code (``__tostring``) that failed or was interrupted."""

    def __init__(self, failure: LuaFailure) -> None:
        super().__init__(failure.evalue)
        self.failure = failure


def _red(s: str) -> str:
    return f"\x1b[0;31m{s}\x1b[0m"
