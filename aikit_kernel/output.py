"""Where a running script's output goes: the interface the Lua engine writes to, and the terminal
implementation used by ``aikit run`` (the kernel's IOPub implementation lives in ``iopub.py``)."""

from __future__ import annotations

import sys
from typing import Any, Protocol


class StdinNotAllowed(Exception):
    """The frontend does not accept input requests for this execution."""


class OutputSink(Protocol):
    """What the engine needs from a frontend: streams, rich displays and input."""

    def write(self, name: str, text: str) -> None:
        """Append ``text`` to stream ``name`` ("stdout" or "stderr")."""

    def display(self, data: dict[str, Any], metadata: dict[str, Any], display_id: str | None, update: bool) -> None:
        """Show a MIME bundle; with ``update`` replace the display that has ``display_id``."""

    def clear(self, wait: bool) -> None:
        """Clear the output area (after the next output when ``wait``)."""

    def flush(self) -> None:
        """Deliver everything buffered so far, in order."""

    def readline(self, prompt: str, password: bool = False) -> str | None:
        """Ask the user for one line; None at end of input; raise StdinNotAllowed if impossible."""


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class TerminalOutput:
    """Output for ``aikit run`` and the REPL: streams go to the process's stdout/stderr."""

    def __init__(self, stdout: Any = None, stderr: Any = None, stdin: Any = None) -> None:
        self._out = stdout or sys.stdout
        self._err = stderr or sys.stderr
        self._in = stdin or sys.stdin

    def write(self, name: str, text: str) -> None:
        (self._err if name == "stderr" else self._out).write(text)

    @property
    def streams(self) -> tuple[Any, Any]:
        """The streams written to now: ``(stdout, stderr)``."""
        return self._out, self._err

    def swap_streams(self, stdout: Any, stderr: Any) -> tuple[Any, Any]:
        """Write to ``stdout``/``stderr`` from now on; returns the streams used until now (a live
        progress line routes the run's output above itself this way, and puts them back after)."""
        previous = (self._out, self._err)
        self._out, self._err = stdout, stderr
        return previous

    def display(self, data: dict[str, Any], metadata: dict[str, Any], display_id: str | None, update: bool) -> None:
        stream = (metadata or {}).get("aikit_stream")
        if isinstance(stream, dict):  # a streamed answer: only the new text of each update
            self._out.write(str(stream.get("delta", "")) + ("\n" if stream.get("final") else ""))
            self._out.flush()
            return
        from .terminal_render import render_bundle

        self._out.write(render_bundle(data, color=_isatty(self._out), metadata=metadata) + "\n")

    def clear(self, wait: bool) -> None:
        pass

    def flush(self) -> None:
        self._out.flush()
        self._err.flush()

    def can_ask(self) -> bool:
        """Whether a person is there to answer (a terminal, not a pipe or CI)."""
        isatty = getattr(self._in, "isatty", None)
        try:
            return bool(isatty()) if callable(isatty) else False
        except ValueError:  # closed
            return False

    def readline(self, prompt: str, password: bool = False) -> str | None:
        self.flush()
        if prompt:
            self._out.write(prompt)
            self._out.flush()
        line = self._in.readline()
        if line == "":
            return None
        return line[:-1] if line.endswith("\n") else line
