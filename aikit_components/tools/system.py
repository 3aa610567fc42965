"""System tools: run an allowed program, read an allowlisted environment variable, describe the host.

Processes run without a shell, through ``asyncio`` on the I/O loop, each in its own process group
(``start_new_session``) so that a timeout or a cancelled call kills the program *and* everything it
started; the group is also killed when aikit dies, even by SIGKILL, grandchildren included (a
watchdog process, see ``_children``).
The child sees only the allowlisted environment variables (plus ``PATH``) unless
``tools.process_inherit_env`` is set, so secrets in the kernel's environment do not leak into
programs a script runs. The program is looked up on the kernel's ``PATH`` and executed by absolute
path; a path given in ``command[0]`` must name that same file (``./git`` written by a script is
refused even though ``git`` is allowed). Arguments that look like paths must resolve inside the
allowed paths (``SecurityPolicy.check_command``), so ``cat /etc/hostname`` is refused; options
that make an allowed program run another one are refused and git runs with hardened settings
(``command_rules``). The caller's ``env`` may not set variables that make a program load or run
other code (``GIT_*``, ``LD_*``, ``PYTHON*``, ``BASH_ENV``...: ``command_rules.FORBIDDEN_CHILD_ENV``).

:func:`run_argv` is the shared runner (the git tools and the plan shell agent use it too). Given the
process's pipeline, each launch is an operation of kind :data:`PROCESS` (events ``process.started``,
``process.finished``, ``process.failed``), so interceptors (tracing, approvals, audit) see it.
"""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..command_rules import GIT_PINNED_ENV, check_child_env
from ..config import data_dir
from ..confinement import Confinement, confinement_for
from ..errors import InvalidArgument, IOFailure, NotFound, PermissionDenied, Timeout
from ..operations import Operation, OperationKind, Pipeline
from ._children import WATCHDOG, watch_group
from .base import ToolContext, tool

DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_OUTPUT_BYTES = 1024 * 1024
_READ_CHUNK = 65536
_PARTIAL_IN_MESSAGE = 2000  # characters of partial output quoted in a timeout message


# --------------------------------------------------------------------------------------------
# The shared runner
# --------------------------------------------------------------------------------------------


@dataclass
class ProcessOutput:
    """What a finished program left behind (output capped at the requested size)."""

    exit_code: int
    stdout: bytes
    stderr: bytes
    stdout_dropped: int
    stderr_dropped: int
    duration_ms: float

    @property
    def truncated(self) -> bool:
        return bool(self.stdout_dropped or self.stderr_dropped)

    def text(self, stream: str = "stdout") -> str:
        return (self.stdout if stream == "stdout" else self.stderr).decode("utf-8", errors="replace")


class _Capture:
    """Drains one pipe, keeping at most ``cap`` bytes and counting the rest (the pipe must be read
    to the end or the child blocks on a full pipe)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.data = bytearray()
        self.dropped = 0

    async def drain(self, stream: asyncio.StreamReader | None) -> None:
        if stream is None:
            return
        while True:
            chunk = await stream.read(_READ_CHUNK)
            if not chunk:
                return
            room = self.cap - len(self.data)
            if room > 0:
                self.data += chunk[:room]
            self.dropped += max(0, len(chunk) - max(room, 0))


async def _feed(writer: asyncio.StreamWriter | None, data: bytes) -> None:
    if writer is None:
        return
    try:
        writer.write(data)
        await writer.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the program stopped reading: not our error
    finally:
        try:
            writer.close()
        except (BrokenPipeError, ConnectionResetError):  # pragma: no cover - platform dependent
            pass


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL the program's process group (the group id is its pid: ``start_new_session``)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if proc.returncode is None:
        try:
            proc.kill()
        except ProcessLookupError:
            pass


async def _settle(tasks: list[asyncio.Task[None]], seconds: float) -> None:
    """Give the pipe readers ``seconds`` to hit EOF, then cancel whatever is left."""
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=seconds)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


# The payload describes the launch; the handler runs the argv and cwd the caller checked against
# the security policy, so an interceptor cannot rewrite them past that check (it may cancel).
PROCESS = OperationKind(
    "process",
    topics=("process.started", "process.finished", "process.failed"),
    source="process",
    describe=lambda op: f"program {op.meta.get('label') or op.name!r}",
    event_fields=lambda op: {"program": op.name, "command": op.payload["argv"], "cwd": op.payload["cwd"],
                             "caller": getattr(op.context, "caller", None)},
    finished_fields=lambda op, result: {"exit_code": result.exit_code},
    converts_errors=False,
)


async def run_argv(argv: list[str], *, cwd: Path | None, env: dict[str, str], stdin: bytes | None,
                   timeout_s: float, max_output_bytes: int, what: str | None = None,
                   pipeline: Pipeline | None = None, context: Any = None,
                   confinement: Confinement | None = None) -> ProcessOutput:
    """Run ``argv`` (no shell) in its own process group and collect its capped output.

    On timeout the whole group is killed and :class:`Timeout` is raised with the partial output in
    its message and details; on cancellation the group is killed and the cancellation propagates.
    The caller has already checked ``argv`` and ``cwd`` against the security policy.

    With a ``pipeline`` the launch is an operation of kind :data:`PROCESS` (name: the program's
    file name; payload ``{argv, cwd}``; ``context``: the caller's, a :class:`ToolContext` say),
    which an interceptor may refuse by raising in ``before``.

    With a ``confinement`` (see :func:`process_confinement`) the program starts under it; the
    operation still names the program itself.
    """
    label = what or os.path.basename(argv[0])
    started, start_env = _confined(argv, env, confinement, label) if confinement is not None else (argv, env)
    if pipeline is None:
        return await _launch(started, cwd, start_env, stdin, timeout_s, max_output_bytes, label)
    op = Operation(PROCESS, os.path.basename(argv[0]), {"argv": list(argv), "cwd": str(cwd) if cwd is not None else None},
                   context, meta={"label": label})
    return await pipeline.arun(op, lambda op: _launch(started, cwd, _with_trace(start_env, op), stdin, timeout_s,
                                                      max_output_bytes, label))


def process_confinement(ctx: ToolContext) -> Confinement | None:
    """The OS confinement of programs a tool starts (``security.confine_processes``, see
    ``aikit_components.confinement``); None where there is none."""
    return confinement_for(ctx.policy, str(ctx.setting("security.confine_processes", "auto")),
                           ctx.data_dir or data_dir())


def _confined(argv: list[str], env: dict[str, str], confinement: Confinement,
              label: str) -> tuple[list[str], dict[str, str]]:
    """``argv``/``env`` through the launcher; the program is found on ``env``'s PATH first, so a
    missing program is the same NotFound as without confinement."""
    program = argv[0]
    if os.sep not in program:
        found = shutil.which(program, path=env.get("PATH", os.defpath))
        if found is None:
            raise NotFound(f"cannot run {label!r}: the program does not exist", details={"command": program})
        program = found
    return confinement.wrap([program, *argv[1:]], env)


def _with_trace(env: dict[str, str], op: Operation) -> dict[str, str]:
    """``env`` with ``TRACEPARENT`` (W3C trace context) when tracing set one: the program's own
    spans, if it makes any, join the trace."""
    traceparent = op.meta.get("traceparent")
    return {**env, "TRACEPARENT": traceparent} if traceparent else env


async def _launch(argv: list[str], cwd: Path | None, env: dict[str, str], stdin: bytes | None, timeout_s: float,
                  max_output_bytes: int, label: str) -> ProcessOutput:
    started = time.monotonic()
    if (mark := WATCHDOG.mark()) is not None:
        env = {**env, mark[0]: mark[1]}  # the watchdog finds it even before its group is registered
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=str(cwd) if cwd is not None else None, env=env,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True,
        )
    except FileNotFoundError:
        raise NotFound(f"cannot run {label!r}: the program (or the working directory {cwd}) does not exist",
                       details={"command": argv[0], "cwd": str(cwd) if cwd else None}) from None
    except PermissionError as exc:
        raise PermissionDenied(f"the operating system refused to run {label!r}: {exc.strerror}; "
                               "check that the file is executable", details={"rule": "os", "command": argv[0]}) from None
    except ValueError as exc:  # embedded NUL byte
        raise InvalidArgument(f"cannot run {label!r}: {exc}") from None
    except OSError as exc:
        raise IOFailure(f"cannot run {label!r}: {exc.strerror or exc}", details={"command": argv[0]}) from None

    with watch_group(proc.pid):
        return await _collect(proc, argv, stdin, timeout_s, max_output_bytes, label, started)


async def _collect(proc: asyncio.subprocess.Process, argv: list[str], stdin: bytes | None, timeout_s: float,
                   max_output_bytes: int, label: str, started: float) -> ProcessOutput:
    out, err = _Capture(max_output_bytes), _Capture(max_output_bytes)
    readers = [asyncio.create_task(out.drain(proc.stdout)), asyncio.create_task(err.drain(proc.stderr))]
    feeder = asyncio.create_task(_feed(proc.stdin, stdin)) if stdin is not None else None
    try:
        async with asyncio.timeout(timeout_s):
            exit_code = await proc.wait()
            # The program is gone; anything it left running in its group would hold the pipes open.
            _kill_group(proc)
            await asyncio.gather(*readers)
    except TimeoutError:
        _kill_group(proc)
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except TimeoutError:  # pragma: no cover - a process that survives SIGKILL (D state)
            pass
        await _settle(readers, 1.0)
        partial_out = out.data.decode("utf-8", errors="replace")
        partial_err = err.data.decode("utf-8", errors="replace")
        quoted = partial_out[-_PARTIAL_IN_MESSAGE:] or "(none)"
        quoted_err = partial_err[-_PARTIAL_IN_MESSAGE:] or "(none)"
        raise Timeout(
            f"{label!r} did not finish within {timeout_s:g} s and was killed with its process group; "
            f"raise timeout_s if it needs longer. Partial stdout: {quoted}\nPartial stderr: {quoted_err}",
            details={"command": argv, "timeout_s": timeout_s, "stdout": partial_out, "stderr": partial_err,
                     "duration_ms": round((time.monotonic() - started) * 1000, 1)},
        ) from None
    except BaseException:  # cancelled (interrupt, caller's timeout) or an unexpected failure
        _kill_group(proc)
        try:  # reap it so the transport closes on this loop (SIGKILL makes this a matter of ms)
            await asyncio.wait_for(proc.wait(), 2)
            await _settle(readers, 0.5)
        except BaseException:  # cancelled again, or the loop is going away: the kill is what matters
            for task in readers:
                task.cancel()
        raise
    finally:
        if feeder is not None and not feeder.done():
            feeder.cancel()
    return ProcessOutput(exit_code, bytes(out.data), bytes(err.data), out.dropped, err.dropped,
                         round((time.monotonic() - started) * 1000, 1))


def child_env(ctx: ToolContext, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a child: allowlisted variables + PATH (or everything when
    ``tools.process_inherit_env`` is set), then ``extra``."""
    if ctx.setting("tools.process_inherit_env", False):
        env = dict(os.environ)
    else:
        env = {name: os.environ[name] for name in ctx.policy.env_allowlist if name in os.environ}
        env["PATH"] = os.environ.get("PATH", os.defpath)
    check_child_env([key for key in (extra or {}) if isinstance(key, str)])
    for key, value in (extra or {}).items():
        if not isinstance(key, str) or not key or "=" in key or "\x00" in key:
            raise InvalidArgument(f"environment variable name {key!r} is invalid: use a non-empty name without '=' or NUL")
        if not isinstance(value, str) or "\x00" in value:
            raise InvalidArgument(f"environment variable {key!r} must be a string without NUL bytes, got {value!r}")
        env[key] = value
    return env


def resolve_program(ctx: ToolContext, argv: list[str], cwd: Path | None = None) -> list[str]:
    """Check ``argv`` run in ``cwd`` against the policy (the program against
    ``security.allowed_commands``, path-like arguments against the allowed paths: see
    ``SecurityPolicy.check_command``) and return it with the program replaced by its absolute path
    on the kernel's PATH. A program given as a path must be that same file."""
    argv = ctx.policy.check_command(argv, cwd)
    name = os.path.basename(argv[0])
    found = shutil.which(name, path=os.environ.get("PATH", os.defpath))
    if found is None:
        raise NotFound(f"command {name!r} is allowed but not installed (not found on PATH); install it or fix PATH",
                       details={"command": name})
    if argv[0] != name:
        given = Path(argv[0]).expanduser()
        if not given.is_absolute():
            given = (cwd or Path.cwd()) / given
        if given.resolve() != Path(found).resolve():
            raise PermissionDenied(
                f"{argv[0]!r} is not the allowed program {name!r} (which is {found}); "
                f"call it by its bare name, e.g. [{name!r}, ...]",
                details={"rule": "allowed_commands", "command": argv[0], "resolved": str(given.resolve())},
            )
    return [found, *argv[1:]]


def positive(value: float | int, name: str) -> None:
    if value <= 0:
        raise InvalidArgument(f"{name} must be greater than 0, got {value}")


# --------------------------------------------------------------------------------------------
# Tools
# --------------------------------------------------------------------------------------------


@tool(category="system", security="process", examples=[
    {"args": {"command": ["echo", "hello"]},
     "result": {"exit_code": 0, "stdout": "hello\n", "stderr": "", "truncated": False, "duration_ms": 2.1}},
])
async def run_process(ctx: ToolContext, command: list[str], cwd: str | None = None, timeout_s: float | None = None,
                      max_output_bytes: int | None = None, env: dict[str, str] | None = None,
                      stdin: str | None = None) -> dict[str, Any]:
    """Run an allowed program (no shell) and return its exit code and output.

    Args:
        command: The program and its arguments, e.g. ["git", "status"]; the program must be in
            security.allowed_commands and arguments that look like paths must resolve inside the allowed paths.
        cwd: Working directory (inside the allowed paths); defaults to the current directory.
        timeout_s: Seconds before the program and everything it started are killed (default tools.process_timeout_s, 60).
        max_output_bytes: Bytes of stdout and of stderr kept; the rest is dropped and truncated is set (default 1 MiB).
        env: Extra environment variables for the program (it otherwise sees only the allowlisted ones and PATH);
            names such as GIT_*, LD_*, PYTHON*, BASH_ENV or PATH are refused.
        stdin: Text written to the program's standard input, which is then closed.

    Returns:
        {exit_code, stdout, stderr, truncated, duration_ms} (plus note when output was truncated);
        exit_code is negative when a signal ended the program.
    """
    timeout = float(timeout_s if timeout_s is not None else ctx.setting("tools.process_timeout_s", DEFAULT_TIMEOUT_S))
    cap = int(max_output_bytes if max_output_bytes is not None
              else ctx.setting("tools.process_output_cap_bytes", DEFAULT_MAX_OUTPUT_BYTES))
    positive(timeout, "timeout_s")
    positive(cap, "max_output_bytes")
    workdir = ctx.policy.check_path(cwd if cwd is not None else Path.cwd())
    if not workdir.exists():
        raise NotFound(f"working directory {workdir} does not exist", details={"cwd": str(workdir)})
    if not workdir.is_dir():
        raise InvalidArgument(f"cwd {workdir} is not a directory")
    argv = resolve_program(ctx, command, workdir)
    child = child_env(ctx, env)
    if os.path.basename(argv[0]) == "git" and "git" not in ctx.policy.unrestricted_commands:
        child.update(GIT_PINNED_ENV)
    result = await run_argv(argv, cwd=workdir, env=child,
                            stdin=stdin.encode("utf-8") if stdin is not None else None,
                            timeout_s=timeout, max_output_bytes=cap, what=os.path.basename(command[0]),
                            pipeline=ctx.pipeline, context=ctx, confinement=process_confinement(ctx))
    reply: dict[str, Any] = {
        "exit_code": result.exit_code, "stdout": result.text("stdout"), "stderr": result.text("stderr"),
        "truncated": result.truncated, "duration_ms": result.duration_ms,
    }
    if result.truncated:
        reply["note"] = (f"output truncated to {cap} bytes per stream (dropped {result.stdout_dropped} bytes of stdout, "
                         f"{result.stderr_dropped} of stderr); raise max_output_bytes to keep more")
    return reply


@tool(category="system", security="read", examples=[
    {"args": {"name": "HOME"}, "result": {"name": "HOME", "value": "/home/ada", "set": True}},
])
async def env_read(ctx: ToolContext, name: str) -> dict[str, Any]:
    """Read an environment variable that the security policy allows scripts to see.

    Args:
        name: The variable's name; it must be in security.env_allowlist (or AIKIT_ENV_ALLOWLIST).

    Returns:
        {name, value, set}: value is nil/None and set is false when the variable is not set.
    """
    if not name or "=" in name or "\x00" in name:
        raise InvalidArgument(f"{name!r} is not a valid environment variable name")
    if not ctx.policy.check_env(name):
        allowed = ", ".join(sorted(ctx.policy.env_allowlist)) or "(none)"
        raise PermissionDenied(
            f"environment variable {name!r} is not in security.env_allowlist (allowed: {allowed}); "
            "add it to security.env_allowlist in aikit.toml or to AIKIT_ENV_ALLOWLIST to let scripts read it",
            details={"rule": "env_allowlist", "name": name},
        )
    value = os.environ.get(name)
    return {"name": name, "value": value, "set": value is not None}


def _memory() -> dict[str, int | None]:
    total = available = None
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            fields = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in fh if line.split()[1:2]}
        total, available = fields.get("MemTotal"), fields.get("MemAvailable")
    except (OSError, ValueError, IndexError):
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
            available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            pass
    return {"total_bytes": total, "available_bytes": available}


def _collect_info(data_path: Path) -> dict[str, Any]:
    try:
        usage = shutil.disk_usage(data_path)
        disk: dict[str, Any] = {"path": str(data_path), "total_bytes": usage.total, "used_bytes": usage.used,
                                "free_bytes": usage.free}
    except OSError as exc:
        disk = {"path": str(data_path), "error": exc.strerror or str(exc)}
    try:
        load: list[float] | None = [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        load = None
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    uname = platform.uname()
    return {
        "os": {"system": uname.system, "release": uname.release, "version": uname.version, "machine": uname.machine},
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation()},
        "cpu_count": os.cpu_count(), "cpu_usable": usable,
        "memory": _memory(), "disk": disk, "load_average": load,
    }


@tool(category="system", security="safe", examples=[
    {"args": {}, "result": {"os": {"system": "Linux", "release": "6.1.0", "version": "#1 SMP", "machine": "x86_64"},
                            "python": {"version": "3.11.7", "implementation": "CPython"}, "cpu_count": 2,
                            "cpu_usable": 2, "memory": {"total_bytes": 8_000_000_000, "available_bytes": 5_000_000_000},
                            "disk": {"path": "/home/ada/.local/share/aikit", "total_bytes": 100_000_000_000,
                                     "used_bytes": 40_000_000_000, "free_bytes": 60_000_000_000},
                            "load_average": [0.1, 0.2, 0.3]}},
])
async def system_info(ctx: ToolContext) -> dict[str, Any]:
    """Describe the machine: OS, Python, CPUs, memory, free disk of the data directory, load.

    Returns:
        {os: {system, release, version, machine}, python: {version, implementation}, cpu_count, cpu_usable,
        memory: {total_bytes, available_bytes}, disk: {path, total_bytes, used_bytes, free_bytes},
        load_average: [1 min, 5 min, 15 min] or nil where the OS has none}.
    """
    data_path = ctx.data_dir
    if data_path is None:
        from ..config import data_dir

        data_path = data_dir()
    return await asyncio.to_thread(_collect_info, Path(data_path))


TOOLS = [run_process, env_read, system_info]

__all__ = ["PROCESS", "TOOLS", "ProcessOutput", "child_env", "env_read", "resolve_program", "run_argv", "run_process",
           "system_info"]
