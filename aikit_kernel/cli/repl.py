"""``aikit repl``: an interactive Lua prompt on the kernel's interpreter, in a terminal.

The REPL is one more frontend of :class:`aikit_kernel.interpreter.LuaInterpreter`, like the kernel:
the same sandbox, globals, completion, inspection and completeness check, with no ZMQ. On a
terminal it uses prompt_toolkit (Lua highlighting, Tab completion, multi-line input decided by the
Lua parser, history kept in the data directory); with piped input it reads chunks the same way
and prints what a terminal user would see, so it also works in scripts and tests.

Lua always runs on the main thread (docs/architecture.md, "Threads and loops"): prompt_toolkit's completer
is called synchronously on that thread, never in a worker thread.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .. import runtime
from ..lua import source
from ..output import TerminalOutput

if TYPE_CHECKING:
    from prompt_toolkit.completion import CompleteEvent, Completion
    from prompt_toolkit.document import Document

    from ..interpreter import LuaInterpreter

EXIT_WORDS = frozenset({"exit", "quit", "exit()", "quit()"})
HELP_TEXT = """\
Lua 5.4 with aikit's globals (Tool, Agent, Workflow, RAG, State, Session, Event, Hook, display, ...).
  Enter        run the input when it is a complete chunk, else start a new line
  Alt+Enter    always start a new line (Esc then Enter on some terminals)
  Tab          complete globals, fields (a.b) and methods (a:b)
  ?name        show the documentation of a name (also name?; ??name adds a function's source)
  Ctrl+C       interrupt the running code, or clear the input at the prompt
  Ctrl+D, exit leave the REPL
"""


@dataclass
class Chunk:
    """One unit of input: Lua code, a help request, or a request to leave."""

    kind: str  # "code", "help" (a name's docs), "keys" (the REPL's own help) or "exit"
    text: str
    detail: int = 0  # for "help": 1 when asked with ``??`` (the source of a function too)


def classify(text: str) -> Chunk:
    """Decide what a complete input means (``?name`` and ``name?`` ask for help)."""
    stripped = text.strip()
    if stripped in EXIT_WORDS:
        return Chunk("exit", stripped)
    if stripped == "?help":
        return Chunk("keys", stripped)
    help_request = source.help_request(text)  # the grammar the kernel's pager uses
    if help_request is not None:
        return Chunk("help", *help_request)
    return Chunk("code", text)


class Repl:
    """Runs chunks of input on a :class:`LuaInterpreter` and prints what they produce."""

    def __init__(self, interpreter: LuaInterpreter, stdout: TextIO, stderr: TextIO) -> None:
        self.interpreter = interpreter
        self.stdout = stdout
        self.stderr = stderr
        self.execution_count = 0
        self.failures = 0

    def is_complete(self, text: str) -> bool:
        """Whether ``text`` should run now: complete Lua, invalid Lua (to show the error) or a command."""
        if classify(text).kind != "code" or not text.strip():
            return True
        return self.interpreter.is_complete(text)["status"] != "incomplete"

    def indent(self, text: str) -> str:
        """The indentation for the line after ``text`` when it is incomplete."""
        return str(self.interpreter.is_complete(text).get("indent", ""))

    def handle(self, text: str) -> bool:
        """Run one complete input; return False when the user asked to leave."""
        chunk = classify(text)
        if chunk.kind == "exit":
            return False
        if chunk.kind == "keys":
            self.stdout.write(HELP_TEXT)
        elif chunk.kind == "help":
            self.show_help(chunk.text, chunk.detail)
        elif chunk.text.strip():
            self.run(chunk.text)
        self.interpreter.service()  # Lua callbacks queued meanwhile (events, workers)
        return True

    def run(self, code: str) -> None:
        """Execute ``code`` and print its value or its error."""
        self.execution_count += 1
        outcome = self.interpreter.execute(code, execution_count=self.execution_count, silent=False,
                                           allow_stdin=True, user_expressions={})
        self.interpreter.output.flush()
        if outcome.error is not None:
            self.failures += 1
            lines = outcome.error.traceback or [f"{outcome.error.ename}: {outcome.error.evalue}"]
            self._print(self.stderr, "\n".join(lines))
        elif outcome.result is not None:
            from ..terminal_render import render_bundle

            self._print(self.stdout, render_bundle(outcome.result, color=self.stdout.isatty()))

    def show_help(self, name: str, detail_level: int = 0) -> None:
        """Print the documentation ``inspect`` gives for ``name``."""
        reply = self.interpreter.inspect(name, len(name), detail_level)
        if reply["found"]:
            self._print(self.stdout, reply["data"]["text/plain"])
        else:
            self._print(self.stderr, f"no documentation for {name!r}")

    def _print(self, stream: TextIO, text: str) -> None:
        if not stream.isatty():
            text = re.sub(r"\x1b\[[0-9;]*m", "", text)
        stream.write(text.rstrip("\n") + "\n")
        stream.flush()


def read_chunks(lines: Iterable[str], is_complete: Any) -> Iterator[str]:
    """Group input lines into chunks the way the terminal REPL does: a chunk ends at the first
    line where the accumulated text is complete (or invalid) Lua."""
    pending: list[str] = []
    for line in lines:
        pending.append(line.rstrip("\n"))
        text = "\n".join(pending)
        if is_complete(text):
            yield text
            pending = []
    if pending and "\n".join(pending).strip():
        yield "\n".join(pending)  # an unfinished chunk at end of input: run it to show the error


def run_piped(repl: Repl, stdin: TextIO) -> int:
    """Read chunks from a non-terminal ``stdin`` until it ends; exit status 1 if any chunk failed."""
    for chunk in read_chunks(stdin, repl.is_complete):
        if not repl.handle(chunk):
            break
    return 1 if repl.failures else 0


def history_path() -> Path:
    """Where the terminal REPL keeps its input history (the aikit data directory)."""
    from aikit_components.config import data_dir

    return data_dir() / "repl_history"


class LuaCompleter:
    """prompt_toolkit completer backed by the interpreter's ``complete`` (runs on the Lua thread)."""

    def __init__(self, interpreter: LuaInterpreter) -> None:
        self.interpreter = interpreter

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterator[Completion]:
        from prompt_toolkit.completion import Completion

        text = document.text
        cursor = len(text[: document.cursor_position])
        reply = self.interpreter.complete(text, cursor)
        start = reply["cursor_start"] - cursor
        for match in reply["matches"]:
            yield Completion(match, start_position=start)

    async def get_completions_async(self, document: Document,
                                    complete_event: CompleteEvent) -> Any:
        for completion in self.get_completions(document, complete_event):
            yield completion


def run_terminal(repl: Repl) -> int:
    """The interactive loop on a terminal; returns the exit status."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory
    from prompt_toolkit.key_binding import KeyBindings
    from prompt_toolkit.lexers import PygmentsLexer
    from pygments.lexers.scripting import LuaLexer

    bindings = KeyBindings()

    @bindings.add("enter")
    def _enter(event: Any) -> None:
        buffer = event.current_buffer
        if buffer.document.is_cursor_at_the_end and repl.is_complete(buffer.text):
            buffer.validate_and_handle()
        else:
            buffer.insert_text("\n" + repl.indent(buffer.text[: buffer.cursor_position]))

    @bindings.add("escape", "enter")
    def _newline(event: Any) -> None:
        event.current_buffer.insert_text("\n")

    path = history_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    session: PromptSession[str] = PromptSession(
        history=FileHistory(str(path)), lexer=PygmentsLexer(LuaLexer), completer=LuaCompleter(repl.interpreter),
        key_bindings=bindings, multiline=True, prompt_continuation=lambda width, line, wrap: "...".rjust(width - 1) + " ",
        complete_while_typing=False, enable_history_search=True,
    )
    print(f"{repl.interpreter.banner}\nType ?help for keys, Ctrl+D to leave.", file=repl.stdout, flush=True)
    while True:
        try:
            text = session.prompt(f"lua [{repl.execution_count + 1}]> ", handle_sigint=True)
        except KeyboardInterrupt:  # Ctrl+C at the prompt: drop the input, keep going
            continue
        except EOFError:
            break
        finally:
            runtime.restore_sigint()  # prompt_toolkit's loop takes the signal wake-up fd while it runs
        if not repl.handle(text):
            break
    return 0


def repl_command(session_name: str = "repl") -> int:
    """Start the REPL on this process's stdin/stdout; return the exit status."""
    from ..interpreter import LuaInterpreter
    from ..lua_runtime import open_lua_runtime

    interpreter = LuaInterpreter(open_lua_runtime(TerminalOutput(), session_name=session_name, warm_up=True))
    runtime.on_sigint(interpreter.interrupt)
    repl = Repl(interpreter, sys.stdout, sys.stderr)
    status = 0
    try:
        status = run_terminal(repl) if sys.stdin.isatty() and sys.stdout.isatty() else run_piped(repl, sys.stdin)
    finally:
        sys.stdout.flush()
        interpreter.shutdown()
    return status
