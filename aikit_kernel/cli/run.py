"""``aikit run script.lua [args]``: the kernel's runtime without ZMQ, for terminals and scripts.

Output goes straight to stdout/stderr, ``io.read`` reads stdin, Ctrl-C interrupts the script
(exit status 130), and an error prints a Lua traceback and exits with status 1.
"""

from __future__ import annotations

import os
import sys

from .. import runtime
from ..collector import freeze_heap, space_full_collections
from ..lua.engine import RunResult
from ..lua_runtime import LuaRuntime, open_lua_runtime
from ..output import OutputSink, TerminalOutput

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


def open_script_runtime(script: str, output: OutputSink, command: str = "run") -> LuaRuntime | int:
    """The Lua runtime a script runs with (``aikit run``, ``aikit debug``), or the exit status
    after printing why it could not be opened. Ctrl-C interrupts it."""
    from aikit_components.errors import AikitError

    try:
        lua = open_lua_runtime(output, session_name=os.path.basename(script), strict=True)
    except AikitError as exc:
        print(f"aikit {command}: {exc.message}", file=sys.stderr)
        return EXIT_ERROR
    runtime.on_sigint(lua.engine.interrupt)
    for notice in lua.notices:
        print(f"aikit {command}: warning: {notice}", file=sys.stderr)
    # The collector's settings of a kernel process (collector.py): the runtime built so far is not
    # traversed again, and full collections are rarer (a script of 1,000 agent steps: -15% CPU).
    space_full_collections()
    freeze_heap(collect=False)
    return lua


def run_command(script: str, script_args: list[str], named: dict[str, str] | None = None,
                strict: bool = False) -> int:
    """Run ``script`` with ``script_args`` (and ``named``: ``--arg k=v``, seen as ``arg.k``); return the
    process exit status. ``strict``: a failed workflow run is an error (exit status 1)."""
    if not os.path.isfile(script):
        print(f"aikit run: {script}: no such file", file=sys.stderr)
        return 2
    lua = open_script_runtime(script, TerminalOutput())
    if isinstance(lua, int):
        return lua
    lua.engine.strict = strict
    result = None
    try:
        result = _traced_run(lua, script, script_args, named)
    finally:
        sys.stdout.flush()
        lua.close(session_end_status(result))
    return report(result)


def _traced_run(lua: LuaRuntime, script: str, script_args: list[str], named: dict[str, str] | None) -> RunResult:
    """Run the script under a root span ``aikit run <script>`` (continuing the trace of a
    ``TRACEPARENT`` in the environment: aikit started by a traced program)."""
    telemetry = lua.components.telemetry if lua.components is not None else None
    if telemetry is None or not telemetry.enabled:
        return lua.engine.run_script(script, script_args, named=named)
    name = os.path.basename(script)
    with telemetry.span(f"aikit run {name}", parent=telemetry.context_from_env(),
                        attributes={"aikit.operation.kind": "script", "aikit.script": script}) as span:
        result = lua.engine.run_script(script, script_args, named=named)
        if result.error is not None:
            telemetry.fail(span, str(result.error.ename), str(result.error.evalue))
        return result


def session_end_status(result: RunResult | None) -> str:
    """How a script's session ends: ``completed``, ``failed``, or ``interrupted`` (Ctrl-C)."""
    if result is not None and result.error is None:
        return "completed"
    return "interrupted" if result is not None and result.error is not None and result.error.interrupted else "failed"


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
