"""The debugger's dot commands in ``aikit console``, sent to the kernel as DAP requests inside
Jupyter's ``debug_request`` (control channel); its ``stopped`` events arrive as ``debug_event`` on IOPub.

``.break FILE:LINE [if COND]`` (FILE is a path, or ``[N]`` for the cell this console ran as In [N]),
``.step``, ``.next``, ``.out``, ``.continue``, ``.bt``, ``.locals``, ``.print EXPR``. A stop shows
the source around the line and opens a debug prompt where these commands (and Lua expressions, to
print) are read until the code goes on.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .console import KernelConsole

THREAD_ID = 1
CONTEXT_LINES = 2
_BREAK = re.compile(r"^(?P<file>.+):(?P<line>\d+)(?:\s+if\s+(?P<cond>.+))?$")
_RESUME = {".step": "stepIn", ".next": "next", ".out": "stepOut", ".continue": "continue", ".c": "continue",
           ".s": "stepIn", ".n": "next"}
USAGE = ("debugger commands: .break FILE:LINE [if COND], .step, .next, .out, .continue, .bt, .locals, "
         ".print EXPR")


class DebugCommandError(Exception):
    """A debugger command failed (its message is for the user)."""


class ConsoleDebugger:
    """The console's side of a DAP session with the kernel's Lua debugger."""

    def __init__(self, console: KernelConsole) -> None:
        self.console = console
        self.stops: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.stopped = False
        self.started = False
        self.breakpoints: dict[str, list[dict[str, Any]]] = {}
        self.cells: dict[int, str] = {}
        self._seq = itertools.count(1)

    # ------------------------------------------------------------------ plumbing
    def remember_cell(self, count: int, code: str) -> None:
        """The code this console ran as In [count] (for ``.break [N]:LINE``)."""
        self.cells[count] = code

    def on_event(self, event: dict[str, Any]) -> None:
        """A DAP event from IOPub."""
        name = event.get("event")
        if name == "stopped":
            self.stopped = True
            if self.console.running:
                self.stops.put_nowait(event.get("body") or {})
            else:  # another client's code stopped: say so, the commands work from the prompt
                self._say("the kernel stopped in the debugger (another client's code): .bt, .locals, .continue")
        elif name in ("continued", "terminated"):
            self.stopped = False

    async def dap(self, command: str, arguments: dict[str, Any] | None = None, timeout: float = 30) -> Any:
        """Send one DAP request; returns its body (raises :class:`DebugCommandError` on failure)."""
        request = {"seq": next(self._seq), "type": "request", "command": command, "arguments": arguments or {}}
        reply = await self.console.request("control", "debug_request", request, timeout=timeout)
        content = reply["content"]
        if not content.get("success", False):
            raise DebugCommandError(str(content.get("message") or f"{command} failed"))
        return content.get("body") or {}

    async def ensure_started(self) -> None:
        if self.started:
            return
        await self.dap("initialize", {"clientID": "aikit-console", "adapterID": "aikit", "linesStartAt1": True,
                                      "columnsStartAt1": True, "pathFormat": "path"})
        await self.dap("attach", {})
        await self.dap("configurationDone", {})
        self.started = True

    # ------------------------------------------------------------------ commands
    async def command(self, line: str) -> bool:
        """Run one dot command; True when it let the code go on (a step or continue)."""
        name, _, rest = line.partition(" ")
        rest = rest.strip()
        try:
            if name in _RESUME:
                return await self.resume(_RESUME[name])
            if name in (".break", ".b"):
                await self.set_breakpoint(rest)
            elif name == ".bt":
                await self.backtrace()
            elif name == ".locals":
                await self.show_locals()
            elif name in (".print", ".p"):
                await self.print_value(rest)
            else:
                self._say(f"unknown command {name!r}; {USAGE}", error=True)
        except DebugCommandError as exc:
            self._say(f"debugger: {exc}", error=True)
        return False

    async def resume(self, command: str) -> bool:
        if not self.stopped:
            raise DebugCommandError("nothing is stopped (set a breakpoint with .break FILE:LINE, then run code)")
        self.stopped = False
        await self.dap(command, {"threadId": THREAD_ID})
        return True

    async def set_breakpoint(self, spec: str) -> None:
        match = _BREAK.match(spec)
        if match is None:
            raise DebugCommandError("usage: .break FILE:LINE [if COND]  (FILE: a path, or [N] for the cell In [N])")
        await self.ensure_started()
        path = await self._source_path(match["file"].strip())
        wanted: dict[str, Any] = {"line": int(match["line"])}
        if match["cond"]:
            wanted["condition"] = match["cond"].strip()
        specs = [s for s in self.breakpoints.get(path, []) if s["line"] != wanted["line"]] + [wanted]
        body = await self.dap("setBreakpoints", {"source": {"path": path}, "breakpoints": specs})
        self.breakpoints[path] = specs
        result = body.get("breakpoints", [])[-1] if body.get("breakpoints") else {}
        where = f"{match['file'].strip()}:{result.get('line', wanted['line'])}"
        if result.get("verified", False):
            condition = f" if {wanted['condition']}" if "condition" in wanted else ""
            self._say(f"breakpoint at {where}{condition}")
        else:
            self._say(f"breakpoint at {where} not verified: {result.get('message', 'no code there')}", error=True)

    async def _source_path(self, name: str) -> str:
        cell = re.fullmatch(r"\[(\d+)\]", name)
        if cell is None:
            return os.path.abspath(os.path.expanduser(name))
        count = int(cell[1])
        if count not in self.cells:
            raise DebugCommandError(f"this console has not run a cell [{count}] (give a file path instead)")
        body = await self.dap("dumpCell", {"code": self.cells[count]})
        return str(body["sourcePath"])

    async def frames(self) -> list[dict[str, Any]]:
        if not self.stopped:
            raise DebugCommandError("nothing is stopped")
        return list((await self.dap("stackTrace", {"threadId": THREAD_ID}))["stackFrames"])

    async def backtrace(self) -> None:
        for i, frame in enumerate(await self.frames()):
            self._say(f"#{i} {frame.get('name')} at {_place(frame)}")

    async def show_locals(self) -> None:
        top = (await self.frames())[0]
        scopes = (await self.dap("scopes", {"frameId": top["id"]}))["scopes"]
        local = next((s for s in scopes if s.get("name") == "Locals"), scopes[0] if scopes else None)
        if local is None:
            self._say("no locals")
            return
        variables = (await self.dap("variables", {"variablesReference": local["variablesReference"]}))["variables"]
        if not variables:
            self._say("no locals")
        for var in variables:
            self._say(f"{var.get('name')} = {var.get('value')}")

    async def print_value(self, expression: str) -> None:
        if not expression:
            raise DebugCommandError("usage: .print EXPR")
        arguments: dict[str, Any] = {"expression": expression, "context": "repl"}
        if self.stopped:
            arguments["frameId"] = (await self.frames())[0]["id"]
        else:
            await self.ensure_started()
        body = await self.dap("evaluate", arguments)
        self._say(str(body.get("result", "")))

    # ------------------------------------------------------------------ stops
    async def show_stop(self, body: dict[str, Any]) -> None:
        """Print why and where the code stopped, with the source around the line."""
        frames = await self.frames()
        reason = body.get("reason", "stopped")
        if not frames:
            self._say(f"stopped ({reason})")
            return
        top = frames[0]
        detail = f": {body['text']}" if body.get("text") else ""
        self._say(f"stopped ({reason}{detail}) in {top.get('name')} at {_place(top)}")
        source = await self._source_text(top.get("source") or {})
        line = int(top.get("line") or 0)
        if source is None or line <= 0:
            return
        lines = source.splitlines()
        for number in range(max(1, line - CONTEXT_LINES), min(len(lines), line + CONTEXT_LINES) + 1):
            marker = "->" if number == line else "  "
            self._say(f"{marker} {number:4d}  {lines[number - 1]}")

    async def _source_text(self, source: dict[str, Any]) -> str | None:
        path = source.get("path")
        if not path:
            return None
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            pass
        try:
            return str((await self.dap("source", {"source": {"path": path}}))["content"])
        except DebugCommandError:
            return None

    async def stopped_prompt(self, body: dict[str, Any]) -> None:
        """The code stopped while this console ran it: show where, then read debugger commands (and
        expressions to print) until one lets the code go on."""
        try:
            await self.show_stop(body)
        except DebugCommandError as exc:
            self._say(f"debugger: {exc}", error=True)
        while self.stopped:
            try:
                line = (await self.console.read_line("(debug) ")).strip()
            except KeyboardInterrupt:
                continue
            except EOFError:
                line = ".continue"
            if not line:
                continue
            if line.startswith("."):
                if await self.command(line):
                    return
            else:
                try:
                    await self.print_value(line)
                except DebugCommandError as exc:
                    self._say(f"debugger: {exc}", error=True)

    def _say(self, text: str, error: bool = False) -> None:
        (self.console.err if error else self.console.out).print(text, markup=False, highlight=False)


def _place(frame: dict[str, Any]) -> str:
    source = frame.get("source") or {}
    return f"{source.get('name') or source.get('path') or '?'}:{frame.get('line')}"
