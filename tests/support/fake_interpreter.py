"""An in-process stand-in for the Lua interpreter (as xeus has a mock interpreter), so the
protocol core (``aikit_kernel/kernel.py``) can be tested without a Lua runtime.

:class:`FakeInterpreter` implements :class:`aikit_kernel.interpreter.Interpreter` with a tiny
command language, one command per line of a cell:

``print TEXT``      write TEXT and a newline to stdout
``warn TEXT``       write TEXT and a newline to stderr
``value TEXT``      the cell's result is TEXT (text/plain); the last ``value`` wins
``fail NAME TEXT``  the cell fails with ename NAME and evalue TEXT
``crash TEXT``      the interpreter itself raises ``RuntimeError(TEXT)`` (a bug, not a user error)
``page TEXT``       an execute_reply payload for the pager, with TEXT
``input PROMPT``    read one line from the frontend (stdin channel) and print it
``wait``            block until interrupted; the cell then fails with ``KeyboardInterrupt``

A user expression is evaluated as a one-line cell: ``value TEXT`` succeeds, ``fail ...`` fails.
Completion offers the names in :attr:`FakeInterpreter.names`, inspection knows
:attr:`FakeInterpreter.docs`; a cell is incomplete while it ends with ``\\`` and invalid when it
starts with ``)``. Every call is recorded in :attr:`FakeInterpreter.calls` (name, thread).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from aikit_kernel.interpreter import ExecuteOutcome, Interpreter
from aikit_kernel.output import OutputSink, StdinNotAllowed


@dataclass
class FakeFailure:
    """What :class:`aikit_kernel.lua.engine.LuaFailure` carries, for the kernel's error replies."""

    ename: str
    evalue: str
    traceback: list[str] = field(default_factory=list)


class FakeInterpreter(Interpreter):
    """A scripted interpreter; see the module docstring for its command language."""

    implementation = "aikit-fake"
    implementation_version = "0.0.1"
    language_info = {"name": "fake", "version": "1.0", "mimetype": "text/x-fake", "file_extension": ".fake"}
    banner = "fake interpreter for protocol tests"
    help_links = [{"text": "nothing", "url": "https://example.invalid/"}]

    names = ("print", "printf", "pairs", "value")
    docs = {"print": "print(...): write to stdout"}

    def __init__(self, output: OutputSink) -> None:
        self.output = output
        self.calls: list[tuple[str, str]] = []
        self.executed: list[dict[str, Any]] = []
        self.shut_down = threading.Event()
        self.end_status: str | None = None  # what shutdown() was told the session ended as
        self.warmed = threading.Event()  # set by warm_up (the kernel calls it once idle)
        self._interrupted = threading.Event()
        self._running = threading.Event()  # a "wait" runs: an interrupt reaches it
        self._take_pending: Any = None  # the kernel's set_interrupt_pending
        #: "gate" waits for this before its run begins: a test interrupts meanwhile
        self.gate = threading.Event()
        self._wakeup: Any = None
        self._queued: list[Any] = []
        self._lock = threading.Lock()

    def _record(self, name: str) -> None:
        self.calls.append((name, threading.current_thread().name))

    # ------------------------------------------------------------------ the interface
    def execute(self, code: str, *, execution_count: int, silent: bool, allow_stdin: bool,
                user_expressions: dict[str, str]) -> ExecuteOutcome:
        self._record("execute")
        self._interrupted.clear()
        self.executed.append({"code": code, "execution_count": execution_count, "silent": silent,
                              "allow_stdin": allow_stdin, "user_expressions": dict(user_expressions)})
        outcome = self._run(code, allow_stdin)
        if outcome.error is None:
            outcome.user_expressions = {name: self._expression(expr) for name, expr in user_expressions.items()}
        return outcome

    def complete(self, code: str, cursor_pos: int) -> dict[str, Any]:
        self._record("complete")
        start = cursor_pos
        while start > 0 and (code[start - 1].isalnum() or code[start - 1] == "_"):
            start -= 1
        word = code[start:cursor_pos]
        return {"status": "ok", "matches": [n for n in self.names if n.startswith(word)],
                "cursor_start": start, "cursor_end": cursor_pos, "metadata": {}}

    def inspect(self, code: str, cursor_pos: int, detail_level: int) -> dict[str, Any]:
        self._record("inspect")
        doc = self.docs.get(code[:cursor_pos].strip())
        if doc is not None and detail_level > 0:
            doc += "\n(detail)"
        return {"status": "ok", "found": doc is not None, "data": {"text/plain": doc} if doc else {}, "metadata": {}}

    def is_complete(self, code: str) -> dict[str, Any]:
        self._record("is_complete")
        if code.lstrip().startswith(")"):
            return {"status": "invalid"}
        if code.rstrip().endswith("\\"):
            return {"status": "incomplete", "indent": "  "}
        return {"status": "complete"}

    def interrupt(self) -> bool:
        self._record("interrupt")
        self._interrupted.set()
        return self._running.is_set()

    def interrupt_requested(self) -> bool:
        return self._interrupted.is_set()

    def set_wakeup(self, wakeup: Any) -> None:
        self._wakeup = wakeup

    def set_interrupt_pending(self, take: Any) -> None:
        self._take_pending = take

    def service(self) -> None:
        self._record("service")
        with self._lock:
            queued, self._queued = self._queued, []
        for fn in queued:
            fn()

    def warm_up(self) -> None:
        self._record("warm_up")
        self.warmed.set()

    def shutdown(self, status: str = "completed") -> None:
        self._record("shutdown")
        self.end_status = status
        self.shut_down.set()

    # ------------------------------------------------------------------ helpers for tests
    def queue(self, fn: Any) -> None:
        """Queue ``fn`` to run on the interpreter's thread (as Lua callbacks from other threads are)."""
        with self._lock:
            self._queued.append(fn)
        if self._wakeup is not None:
            self._wakeup()

    def _run(self, code: str, allow_stdin: bool) -> ExecuteOutcome:
        outcome = ExecuteOutcome()
        for line in code.splitlines():
            command, _, rest = line.strip().partition(" ")
            if command == "print":
                self.output.write("stdout", rest + "\n")
            elif command == "warn":
                self.output.write("stderr", rest + "\n")
            elif command == "value":
                outcome.result = {"text/plain": rest}
            elif command == "page":
                outcome.payload.append({"source": "page", "data": {"text/plain": rest}, "start": 0})
            elif command == "fail":
                name, _, text = rest.partition(" ")
                return ExecuteOutcome(error=FakeFailure(name, text, [f"{name}: {text}"]))  # type: ignore[arg-type]
            elif command == "crash":
                raise RuntimeError(rest)
            elif command == "input":
                try:
                    line_in = self.output.readline(rest)
                except StdinNotAllowed as exc:
                    return ExecuteOutcome(error=FakeFailure("StdinNotAllowed", str(exc)))  # type: ignore[arg-type]
                self.output.write("stdout", f"got {line_in}\n")
            elif command == "wait":
                self._running.set()
                try:
                    self._interrupted.wait()
                finally:
                    self._running.clear()
                return _interrupted()
            elif command == "gate":  # the request is served, its run has not begun: then it begins
                assert self.gate.wait(30)
                if self._take_pending is not None and self._take_pending():
                    return _interrupted()
                outcome.result = {"text/plain": "ran"}
            elif command:
                return ExecuteOutcome(error=FakeFailure("UnknownCommand", command, [command]))  # type: ignore[arg-type]
        return outcome

    def _expression(self, expression: str) -> dict[str, Any]:
        run = self._run(expression, allow_stdin=False)
        if run.error is not None:
            return {"status": "error", "ename": run.error.ename, "evalue": run.error.evalue,
                    "traceback": run.error.traceback}
        return {"status": "ok", "data": run.result or {}, "metadata": {}}


def _interrupted() -> ExecuteOutcome:
    return ExecuteOutcome(error=FakeFailure("KeyboardInterrupt", "interrupted",  # type: ignore[arg-type]
                                            ["KeyboardInterrupt: interrupted"]))
