"""``aikit console``: the Lua REPL talking to a kernel over the Jupyter protocol.

It attaches to a running kernel (``--existing``: the one a notebook or ``aikit serve`` runs) or
starts its own (jupyter_client's kernel manager with the aikit kernelspec, shut down on exit).
Completion comes from ``complete_request``, multi-line input from ``is_complete``, help from
``inspect``; Ctrl+C sends ``interrupt_request``; IOPub output of every client is printed as it
arrives (rich outputs rendered by :mod:`.console_render`); ``input_request`` on stdin is answered at
the prompt; dot commands drive the kernel's debugger (:mod:`.console_debug`).

Everything runs on one asyncio loop: one reader task per channel dispatches messages (replies to
their request's future, IOPub to the printer), so the prompt, a running cell and other clients'
output never compete for a socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.console import Console

from .console_render import show_bundle
from .repl import HELP_TEXT, classify

if TYPE_CHECKING:
    from jupyter_client.asynchronous.client import AsyncKernelClient
    from prompt_toolkit import PromptSession

REQUEST_TIMEOUT = 30.0
STARTUP_TIMEOUT = 60.0
CONSOLE_HELP = HELP_TEXT + """\
Debugger (the kernel's Lua debugger, over Jupyter's debug_request):
  .break FILE:LINE [if COND]   set a breakpoint (FILE may be [N], the cell run as In [N])
  .step .next .out .continue   step in / over / out, or go on, when stopped
  .bt  .locals  .print EXPR    the stack, the top frame's locals, a value in that frame
"""
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class ConsoleError(Exception):
    """The console could not reach or use the kernel."""


@dataclass
class _Pending:
    """One execute_request of ours: done when both its reply and its IOPub ``idle`` arrived."""

    reply: asyncio.Future[dict[str, Any]]
    idle: asyncio.Event


class KernelConsole:
    """One console session with one kernel."""

    def __init__(self, client: AsyncKernelClient, *, interactive: bool, stdout: Any = None) -> None:
        from .console_debug import ConsoleDebugger

        self.client = client
        self.interactive = interactive
        self.out = Console(file=stdout, force_terminal=interactive or None, highlight=False)
        self.err = Console(stderr=True, force_terminal=interactive or None, highlight=False)
        self.execution_count = 0
        self.failures = 0
        self.debugger = ConsoleDebugger(self)
        self.session: PromptSession[str] | None = None
        self._replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._pending: dict[str, _Pending] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stdin_lines: AsyncIterator[str] | None = None

    @property
    def running(self) -> bool:
        """Whether code this console sent is running."""
        return bool(self._pending)

    # ------------------------------------------------------------------ connection
    async def open(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Start the channels, wait until the kernel answers, start the readers."""
        self.client.start_channels()
        try:
            await self.client.wait_for_ready(timeout=timeout)
        except RuntimeError as exc:
            raise ConsoleError(f"the kernel did not answer within {timeout:g} s ({exc})") from None
        self._tasks = [asyncio.ensure_future(t) for t in (
            self._read(self.client.shell_channel, self._on_reply),
            self._read(self.client.control_channel, self._on_reply),
            self._read(self.client.iopub_channel, self._on_iopub),
            self._read(self.client.stdin_channel, self._on_stdin),
        )]
        reply = await self.request("shell", "execute_request", {"code": "", "silent": True, "store_history": False,
                                                               "user_expressions": {}, "allow_stdin": False})
        self.execution_count = int(reply["content"].get("execution_count") or 0)

    async def close(self) -> None:
        """Stop the readers and the channels (the kernel keeps running)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.client.stop_channels()

    async def _read(self, channel: Any, handle: Any) -> None:
        while True:
            try:
                msg = await channel.get_msg(timeout=None)
            except asyncio.CancelledError:
                raise
            except Exception:  # a message we cannot parse (wrong key, garbage): skip it
                continue
            try:
                result = handle(msg)
                if asyncio.iscoroutine(result):
                    await result
            except Exception as exc:  # never let one odd message kill the reader
                self.err.print(f"[console] error handling {msg.get('msg_type')}: {exc}", markup=False)

    # ------------------------------------------------------------------ requests
    def send(self, channel: str, msg_type: str, content: dict[str, Any]) -> str:
        """Send one request; returns its msg_id (its reply resolves :meth:`reply_to`)."""
        msg = self.client.session.msg(msg_type, content)
        msg_id = str(msg["header"]["msg_id"])
        self._replies[msg_id] = asyncio.get_running_loop().create_future()
        getattr(self.client, f"{channel}_channel").send(msg)
        return msg_id

    async def reply_to(self, msg_id: str, timeout: float | None = REQUEST_TIMEOUT) -> dict[str, Any]:
        future = self._replies[msg_id]
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise ConsoleError(f"no reply from the kernel within {timeout:g} s") from None
        finally:
            self._replies.pop(msg_id, None)

    async def request(self, channel: str, msg_type: str, content: dict[str, Any],
                      timeout: float | None = REQUEST_TIMEOUT) -> dict[str, Any]:
        """Send a request and wait for its reply message."""
        return await self.reply_to(self.send(channel, msg_type, content), timeout)

    def _on_reply(self, msg: dict[str, Any]) -> None:
        future = self._replies.get(str(msg.get("parent_header", {}).get("msg_id")))
        if future is not None and not future.done():
            future.set_result(msg)

    async def complete(self, code: str, cursor: int) -> dict[str, Any]:
        reply = await self.request("shell", "complete_request", {"code": code, "cursor_pos": cursor}, timeout=10)
        return reply["content"]

    async def is_complete(self, text: str) -> tuple[bool, str]:
        """Whether ``text`` should run now, and the indentation of the next line when it should not."""
        if classify(text).kind != "code" or not text.strip() or text.lstrip().startswith("."):
            return True, ""
        content = (await self.request("shell", "is_complete_request", {"code": text}, timeout=10))["content"]
        return content.get("status") != "incomplete", str(content.get("indent", ""))

    async def interrupt(self) -> None:
        """Ask the kernel to interrupt the running code (``interrupt_request`` on control)."""
        with contextlib.suppress(ConsoleError):
            await self.request("control", "interrupt_request", {}, timeout=10)

    # ------------------------------------------------------------------ IOPub
    def _is_ours(self, msg: dict[str, Any]) -> bool:
        return msg.get("parent_header", {}).get("session") == self.client.session.session

    def _on_iopub(self, msg: dict[str, Any]) -> None:
        msg_type = msg["msg_type"]
        content = msg.get("content", {})
        parent = str(msg.get("parent_header", {}).get("msg_id", ""))
        ours = self._is_ours(msg)
        if msg_type == "status":
            pending = self._pending.get(parent)
            if pending is not None and content.get("execution_state") == "idle":
                pending.idle.set()
            return
        if msg_type == "debug_event":
            self.debugger.on_event(content)
            return
        if msg_type == "execute_input":
            if not ours:
                code = str(content.get("code", "")).rstrip("\n").replace("\n", "\n... ")
                self.out.print(f"[other client] In [{content.get('execution_count')}]: {code}", markup=False,
                               style="dim")
            return
        if msg_type == "stream":
            stream = sys.stderr if content.get("name") == "stderr" else sys.stdout
            stream.write(str(content.get("text", "")))
            stream.flush()
        elif msg_type in ("execute_result", "display_data", "update_display_data"):
            show_bundle(self.out, content.get("data") or {})
        elif msg_type == "error":
            if ours and parent in self._pending:
                self.failures += 1
            lines = content.get("traceback") or [f"{content.get('ename')}: {content.get('evalue')}"]
            text = "\n".join(str(line) for line in lines)
            if not self.interactive:
                text = _ANSI.sub("", text)
            sys.stderr.write(text.rstrip("\n") + "\n")
            sys.stderr.flush()

    # ------------------------------------------------------------------ stdin
    async def _on_stdin(self, msg: dict[str, Any]) -> None:
        if msg["msg_type"] != "input_request":
            return
        content = msg["content"]
        try:
            value = await self.read_line(str(content.get("prompt", "")), password=bool(content.get("password")))
        except (EOFError, KeyboardInterrupt):
            value = ""
        self.client.input(value)

    async def read_line(self, prompt: str, password: bool = False) -> str:
        """One line from the user: at a prompt on a terminal, the next input line otherwise."""
        if self.interactive:
            from prompt_toolkit import PromptSession

            session: PromptSession[str] = PromptSession()
            return await session.prompt_async(prompt, is_password=password)
        sys.stdout.write(prompt)
        sys.stdout.flush()
        line = await self.next_input_line()
        if line is None:
            raise EOFError
        return line.rstrip("\n")

    async def next_input_line(self) -> str | None:
        """The next line of piped input (None at its end)."""
        loop = asyncio.get_running_loop()
        line = await loop.run_in_executor(None, sys.stdin.readline)
        return line or None

    # ------------------------------------------------------------------ running input
    async def handle(self, text: str) -> bool:
        """Run one complete input; False when the user asked to leave."""
        if text.lstrip().startswith("."):
            await self.debugger.command(text.strip())
            return True
        chunk = classify(text)
        if chunk.kind == "exit":
            return False
        if chunk.kind == "keys":
            self.out.print(CONSOLE_HELP, markup=False, end="")
        elif chunk.kind == "help":
            await self.show_help(chunk.text, chunk.detail)
        elif chunk.text.strip():
            await self.execute(chunk.text)
        return True

    async def show_help(self, name: str, detail_level: int = 0) -> None:
        content = (await self.request("shell", "inspect_request", {
            "code": name, "cursor_pos": len(name), "detail_level": detail_level}))["content"]
        if content.get("found"):
            text = str(content["data"].get("text/plain", ""))
            self.out.print(text if self.interactive else _ANSI.sub("", text), markup=False, highlight=False)
        else:
            self.err.print(f"no documentation for {name!r}", markup=False)

    async def execute(self, code: str) -> dict[str, Any]:
        """Run ``code`` in the kernel, printing its output as it arrives; Ctrl+C interrupts it, and
        a debugger stop opens the debug prompt. Returns the execute_reply content."""
        msg_id = self.send("shell", "execute_request", {"code": code, "silent": False, "store_history": True,
                                                        "user_expressions": {}, "allow_stdin": True,
                                                        "stop_on_error": False})
        pending = _Pending(self._replies[msg_id], asyncio.Event())
        self._pending[msg_id] = pending
        loop = asyncio.get_running_loop()
        interrupt_handler = False
        if threading_is_main():
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signal.SIGINT, lambda: asyncio.ensure_future(self.interrupt()))
                interrupt_handler = True
        try:
            reply = await self._wait_done(pending)
        finally:
            if interrupt_handler:
                loop.remove_signal_handler(signal.SIGINT)
            self._pending.pop(msg_id, None)
            self._replies.pop(msg_id, None)
        content = reply["content"]
        count = int(content.get("execution_count") or self.execution_count)
        self.debugger.remember_cell(count, code)
        self.execution_count = max(self.execution_count, count)
        return content

    async def _wait_done(self, pending: _Pending) -> dict[str, Any]:
        while True:
            stop = asyncio.ensure_future(self.debugger.stops.get())
            done_task = asyncio.ensure_future(_both(pending))
            finished, _ = await asyncio.wait({stop, done_task}, return_when=asyncio.FIRST_COMPLETED)
            if done_task in finished:
                stop.cancel()
                if stop.done() and not stop.cancelled():  # a stop that raced the end: show it still
                    self.debugger.stops.put_nowait(stop.result())
                return done_task.result()
            done_task.cancel()
            await self.debugger.stopped_prompt(stop.result())

    # ------------------------------------------------------------------ loops
    def prompt_text(self) -> str:
        return f"lua [{self.execution_count + 1}]> "

    async def run_piped(self) -> int:
        """Read chunks of piped input until it ends; exit status 1 if any failed."""
        pending: list[str] = []
        while True:
            line = await self.next_input_line()
            if line is None:
                break
            pending.append(line.rstrip("\n"))
            text = "\n".join(pending)
            complete, _ = await self.is_complete(text)
            if complete:
                pending = []
                if not await self.handle(text):
                    return 1 if self.failures else 0
        if "\n".join(pending).strip():
            await self.handle("\n".join(pending))
        return 1 if self.failures else 0

    async def run_terminal(self, banner: str) -> int:
        """The interactive loop (prompt_toolkit); returns the exit status."""
        from prompt_toolkit.patch_stdout import patch_stdout

        self.session = self._prompt_session()
        self.out.print(f"{banner}\nType ?help for keys, Ctrl+D to leave.", markup=False, highlight=False)
        draft = ""
        with patch_stdout(raw=True):
            while True:
                try:
                    # erased when done: an unfinished chunk comes back in the next prompt, a finished
                    # one is echoed below, so the screen shows each chunk once
                    text = await self.session.prompt_async(self.prompt_text(), default=draft)
                except KeyboardInterrupt:
                    draft = ""
                    continue
                except EOFError:
                    break
                try:
                    complete, indent = await self.is_complete(text)
                    if not complete:
                        draft = text + "\n" + indent
                        continue
                    draft = ""
                    self._echo(text)
                    if text.strip():
                        self.session.history.append_string(text)
                    if not await self.handle(text):
                        break
                except ConsoleError as exc:
                    self.err.print(f"aikit console: {exc}", markup=False)
        return 0

    def _echo(self, text: str) -> None:
        prompt = self.prompt_text()
        lines = text.split("\n")
        shown = [prompt + lines[0]] + ["...".rjust(len(prompt) - 1) + " " + line for line in lines[1:]]
        self.out.print("\n".join(shown), markup=False, highlight=False, soft_wrap=True)

    def _prompt_session(self) -> PromptSession[str]:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory
        from prompt_toolkit.key_binding import KeyBindings
        from prompt_toolkit.lexers import PygmentsLexer
        from pygments.lexers.scripting import LuaLexer

        from .repl import history_path

        bindings = KeyBindings()

        @bindings.add("enter")
        def _enter(event: Any) -> None:
            # The kernel decides whether the chunk is complete, which takes a request: hand the text to
            # the loop (without adding it to the history); it prompts again with it when incomplete.
            buffer = event.current_buffer
            if buffer.document.is_cursor_at_the_end:
                event.app.exit(result=buffer.text)
            else:
                buffer.insert_text("\n")

        @bindings.add("escape", "enter")
        def _newline(event: Any) -> None:
            event.current_buffer.insert_text("\n")

        path = history_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        return PromptSession(
            history=FileHistory(str(path)), lexer=PygmentsLexer(LuaLexer), completer=KernelCompleter(self),
            key_bindings=bindings, multiline=True,
            prompt_continuation=lambda width, line, wrap: "...".rjust(width - 1) + " ",
            complete_while_typing=False, enable_history_search=True, erase_when_done=True,
        )


class KernelCompleter:
    """prompt_toolkit completer asking the kernel (``complete_request``)."""

    def __init__(self, console: KernelConsole) -> None:
        self.console = console

    def get_completions(self, document: Any, complete_event: Any) -> Any:
        return iter(())  # only the async path is used (the prompt runs on the console's loop)

    async def get_completions_async(self, document: Any, complete_event: Any) -> Any:
        from prompt_toolkit.completion import Completion

        text = document.text
        cursor = len(text[: document.cursor_position])
        try:
            reply = await self.console.complete(text, cursor)
        except ConsoleError:
            return
        start = int(reply.get("cursor_start", cursor)) - cursor
        for match in reply.get("matches", []):
            yield Completion(str(match), start_position=start)


async def _both(pending: _Pending) -> dict[str, Any]:
    reply = await asyncio.shield(pending.reply)  # cancelling the wait must not cancel the reply
    await pending.idle.wait()
    return reply


def threading_is_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


# ---------------------------------------------------------------------------------- entry point
def find_connection_file(existing: str) -> str:
    """The connection file ``--existing`` names: a path, a name in Jupyter's runtime dir, or
    (empty) the most recent kernel there."""
    from jupyter_client import find_connection_file as find

    from aikit_kernel.transport import ConnectionFileError, read_connection_file

    if existing and os.path.isfile(existing):
        found = existing
    else:
        try:
            found = str(find(existing or "kernel-*.json"))
        except OSError:
            where = f"{existing!r}" if existing else "any kernel"
            raise ConsoleError(f"no connection file for {where} (start one with `aikit serve`, or give the path "
                               "printed by the kernel)") from None
    try:
        read_connection_file(found)
    except (ConnectionFileError, OSError) as exc:
        raise ConsoleError(str(exc)) from None
    return found


async def console_main(existing: str | None, kernel_name: str = "aikit") -> int:
    """Attach to ``existing`` (a connection file, "" for the latest) or start a kernel; run the
    console until the user leaves; returns the exit status."""
    from jupyter_client.asynchronous.client import AsyncKernelClient

    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    manager = None
    if existing is not None:
        client = AsyncKernelClient()
        client.load_connection_file(find_connection_file(existing))
    else:
        from jupyter_client.manager import AsyncKernelManager

        manager = AsyncKernelManager(kernel_name=kernel_name)
        try:
            await manager.start_kernel()
        except Exception as exc:
            raise ConsoleError(f"could not start a {kernel_name!r} kernel: {exc} (install its kernelspec with "
                               "`aikit kernel install`)") from None
        client = manager.client()
    console = KernelConsole(client, interactive=interactive)
    try:
        await console.open()
        if interactive:
            info = (await console.request("shell", "kernel_info_request", {}))["content"]
            status = await console.run_terminal(str(info.get("banner", "aikit")))
        else:
            status = await console.run_piped()
    finally:
        await console.close()
        if manager is not None:
            await manager.shutdown_kernel()
    return status


def console_command(existing: str | None, kernel_name: str = "aikit") -> int:
    """``aikit console`` / ``aikit repl --existing``: returns the exit status."""
    from .common import error

    try:
        return asyncio.run(console_main(existing, kernel_name))
    except ConsoleError as exc:
        return error(f"console: {exc}", 1)
