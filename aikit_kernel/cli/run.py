"""``aikit run script.lua [args]``: the kernel's runtime without ZMQ, for terminals and scripts.

Output goes straight to stdout/stderr, ``io.read`` reads stdin, Ctrl-C interrupts the script
(exit status 130), and an error prints a Lua traceback and exits with status 1.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from .. import runtime
from ..lua.api import install_globals
from ..lua.engine import LuaEngine, RunResult
from ..output import OutputSink, TerminalOutput

if TYPE_CHECKING:
    from aikit_components.components import Components

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


def open_script_engine(script: str, output: OutputSink, command: str = "run") -> "tuple[LuaEngine, Components] | int":
    """The engine and components a script runs with (``aikit run``, ``aikit debug``), or the exit
    status after printing why they could not be opened."""
    from aikit_components.components import Components
    from aikit_components.config import env_int
    from aikit_components.errors import AikitError

    runtime.get_loop()
    mb = env_int("AIKIT_MAX_MEMORY_MB", 2048)
    try:
        components = Components.open(loop_getter=runtime.get_loop, session_name=os.path.basename(script),
                                     session_id=os.environ.get("AIKIT_SESSION") or None)
    except AikitError as exc:
        print(f"aikit {command}: {exc.message}", file=sys.stderr)
        return EXIT_ERROR
    engine = LuaEngine(output, components.policy, max_memory=mb * 1024 * 1024 if mb > 0 else None)
    install_globals(engine, components)
    runtime.on_sigint(engine.interrupt)
    return engine, components


def run_command(script: str, script_args: list[str]) -> int:
    """Run ``script`` with ``script_args``; return the process exit status."""
    if not os.path.isfile(script):
        print(f"aikit run: {script}: no such file", file=sys.stderr)
        return 2
    opened = open_script_engine(script, TerminalOutput())
    if isinstance(opened, int):
        return opened
    engine, components = opened
    result = None
    try:
        result = engine.run_script(script, script_args)
    finally:
        sys.stdout.flush()
        engine.close()
        components.close("completed" if result is not None and result.error is None else "failed")
    return report(result)


def report(result: RunResult) -> int:
    """Print a script's error (if any) to stderr; return the exit status."""
    if result.error is None:
        return 0
    err = result.error
    lines = err.traceback if err.traceback else [f"{err.ename}: {err.evalue}"]
    text = "\n".join(lines)
    if not sys.stderr.isatty():
        text = _strip_ansi(text)
    print(text, file=sys.stderr)
    return EXIT_INTERRUPTED if err.interrupted else EXIT_ERROR


def _strip_ansi(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)
