"""Python functions the sandbox bootstrap binds into Lua (streams, stdin, files, environment, sleep).

Every host function follows one convention so Lua can raise proper errors: it returns
``(True, *values)`` on success or ``(False, code, message)`` on failure (see ``bind`` in
sandbox.lua). The runtime runs with ``encoding=None``: Lua strings arrive as ``bytes`` and
strings going back must be ``bytes`` too.
"""

from __future__ import annotations

import asyncio
import functools
import io
import json
import logging
import math
import os
from collections.abc import Callable
from typing import Any

from lupa.lua54 import LuaError, lua_type

from aikit_components.errors import AikitError, Interrupted, InvalidArgument, IOFailure
from aikit_components.security import SecurityPolicy

from ..output import OutputSink, StdinNotAllowed
from .convert import lua_kind

log = logging.getLogger(__name__)

MAX_OPEN_FILES = 256

# What a host function returns for an interrupt; sandbox.lua's ``check`` raises the interrupt
# sentinel (or the step-cancel sentinel, for a cancelled driven coroutine) on it.
INTERRUPTED_RESULT = (False, b"interrupted", b"interrupted")


def text(value: Any) -> str:
    """Decode a Lua string argument (bytes) to str, keeping undecodable bytes visible."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return "" if value is None else str(value)


def to_lua(value: Any) -> Any:
    """Encode str results for the encoding-less runtime."""
    return value.encode("utf-8", errors="surrogateescape") if isinstance(value, str) else value


class CoroutineArguments:
    """Moves the Lua values a host function receives inside a coroutine onto the main thread.

    lupa remembers the ``lua_State`` a Lua value reached Python on: inside a coroutine, that is
    the coroutine's thread, which Lua frees once the coroutine is collected. A Python reference
    that outlives the coroutine (a tool's Lua function stored by ``Tool.define``, or arguments
    kept alive by an exception's traceback) then calls or releases it on freed memory, and the
    process dies (lupa issue #84). Passing such values through a Lua function called from Python
    (``identity``, which runs on the main thread) gives equal references bound to the main
    thread; the originals are dropped while the coroutine still runs.

    ``resumed`` is the interrupter's stack of resumed coroutines (empty on the main thread);
    ``identity`` is sandbox.lua's ``internal.anchor``. Both are set once the sandbox is loaded.
    """

    def __init__(self) -> None:
        self.resumed: list[int] = []
        self.identity: Callable[..., Any] | None = None

    def __call__(self, args: tuple[Any, ...]) -> tuple[Any, ...]:
        if self.identity is None or not any(lua_type(a) is not None for a in args):
            return args
        moved = self.identity(*args)
        return moved if len(args) > 1 else (moved,)


def host_function(fn: Callable[..., Any], interrupted: Callable[[], bool] | None = None,
                  details_to_lua: Callable[[Any], Any] | None = None,
                  coroutine_arguments: CoroutineArguments | None = None) -> Callable[..., tuple[Any, ...]]:
    """Wrap ``fn`` in the ``(ok, ...)`` convention; a returned tuple becomes multiple values.

    This is where an interrupt crosses from Python into Lua: :class:`Interrupted` (a wait it
    stopped, an interrupted Lua callback) becomes the interrupt in Lua. ``interrupted`` tells
    whether a Lua error that crossed ``fn`` (Lua called from Python called from Lua) was the
    interrupt, so it goes on as an interrupt rather than as a plain error.
    ``details_to_lua`` turns an error's details into a Lua table (``err.details`` in Lua).
    ``coroutine_arguments`` rebinds Lua arguments received inside a coroutine to the main thread
    (see :class:`CoroutineArguments`).
    """

    @functools.wraps(fn)
    def wrapper(*args: Any) -> tuple[Any, ...]:
        if coroutine_arguments is not None and coroutine_arguments.resumed:
            args = coroutine_arguments(args)  # this frame must not keep the originals either
        try:
            result = fn(*args)
        except Interrupted:
            return INTERRUPTED_RESULT
        except Exception as exc:
            return _failure(fn, exc, interrupted, details_to_lua)
        if isinstance(result, tuple):
            return (True, *map(to_lua, result))
        if isinstance(result, str):  # to_lua's, inlined: every call of every binding returns here
            return (True, result.encode("utf-8", errors="surrogateescape"))
        return (True, result)

    return wrapper


def _failure(fn: Callable[..., Any], exc: Exception, interrupted: Callable[[], bool] | None,
             details_to_lua: Callable[[Any], Any] | None) -> tuple[Any, ...]:
    """The ``(False, code, message[, details])`` a host function returns for ``exc``."""
    if isinstance(exc, AikitError):
        if details_to_lua is not None and exc.details:
            plain = json.loads(json.dumps(exc.details, default=str))
            return (False, to_lua(exc.code), to_lua(exc.message), details_to_lua(plain))
        return (False, to_lua(exc.code), to_lua(exc.message))
    if isinstance(exc, LuaError):
        if interrupted is not None and interrupted():
            return INTERRUPTED_RESULT
        return (False, b"lua_error", to_lua(str(exc)))
    if isinstance(exc, OSError):
        return (False, b"io_error", to_lua(f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")))
    # a bug in a host function must not kill the kernel
    log.error("host function %s failed", fn.__name__, exc_info=exc)
    return (False, b"internal_error", to_lua(f"{type(exc).__name__}: {exc}"))


class FileTable:
    """Open files of one runtime, by integer handle, confined by the security policy."""

    def __init__(self, policy: SecurityPolicy) -> None:
        self.policy = policy
        self._files: dict[int, io.BufferedIOBase] = {}
        self._next = 1

    def open(self, path: bytes, mode: bytes) -> int:
        mode_s = text(mode).replace("b", "")
        if mode_s not in ("r", "w", "a", "r+", "w+", "a+"):
            raise InvalidArgument(f"invalid mode {text(mode)!r} (expected r, w, a, r+, w+ or a+, optionally with b)")
        if len(self._files) >= MAX_OPEN_FILES:
            raise IOFailure(f"too many open files (limit {MAX_OPEN_FILES}); close some with file:close()")
        resolved = self.policy.check_path(text(path), write=mode_s != "r")
        handle = open(resolved, mode_s + "b")  # noqa: SIM115 - closed by close()/__gc
        fid = self._next
        self._next += 1
        self._files[fid] = handle
        return fid

    def _get(self, fid: int) -> io.BufferedIOBase:
        try:
            return self._files[fid]
        except KeyError:
            raise InvalidArgument("attempt to use a closed file") from None

    def read(self, fid: int, fmt: Any) -> bytes | float | int | None:
        f = self._get(fid)
        if isinstance(fmt, (int, float)):
            data = f.read(int(fmt))
            return None if (not data and fmt > 0) else data
        kind = text(fmt).lstrip("*")[:1]
        if kind == "a":
            return f.read()
        if kind in ("l", "L"):
            line = f.readline()
            if not line:
                return None
            return line if kind == "L" or not line.endswith(b"\n") else line[:-1]
        if kind == "n":
            return _read_number(f)
        raise InvalidArgument(f"bad argument to 'read' (invalid format {text(fmt)!r})")

    def write(self, fid: int, data: bytes) -> None:
        self._get(fid).write(data)

    def seek(self, fid: int, whence: bytes, offset: int) -> int:
        where = {"set": os.SEEK_SET, "cur": os.SEEK_CUR, "end": os.SEEK_END}.get(text(whence))
        if where is None:
            raise InvalidArgument(f"bad argument #1 to 'seek' (invalid option {text(whence)!r})")
        return self._get(fid).seek(int(offset), where)

    def flush(self, fid: int) -> None:
        self._get(fid).flush()

    def close(self, fid: int) -> None:
        f = self._files.pop(fid, None)
        if f is not None:
            f.close()

    def close_all(self) -> None:
        for fid in list(self._files):
            self.close(fid)


def _read_number(f: io.BufferedIOBase) -> float | int | None:
    line = f.readline()
    try:
        token = line.split()[0].decode()
        return int(token, 0) if token.lstrip("+-").isdigit() or token.lower().startswith(("0x", "-0x")) else float(token)
    except (IndexError, ValueError, UnicodeDecodeError):
        return None


class Host:
    """The Python side of the sandbox: one per engine."""

    def __init__(self, output: OutputSink, policy: SecurityPolicy, wait: Callable[..., Any],
                 interrupt_requested: Callable[[], bool], details_to_lua: Callable[[Any], Any] | None = None,
                 start: Callable[[Any], int] | None = None) -> None:
        self.output = output
        self.policy = policy
        self.files = FileTable(policy)
        self.stdin_allowed = False
        self._wait = wait
        self._interrupt_requested = interrupt_requested
        self._details_to_lua = details_to_lua
        self._start = start
        self.coroutine_arguments = CoroutineArguments()

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., tuple[Any, ...]]:
        """``host_function`` for this runtime (interrupt-aware)."""
        return host_function(fn, self._interrupt_requested, self._details_to_lua, self.coroutine_arguments)

    def functions(self) -> dict[str, Callable[..., Any]]:
        """The table handed to sandbox.lua as ``host`` (interrupt functions are added by the engine)."""
        files, wrap = self.files, self.wrap
        return {
            "write": self.write,
            "readline": wrap(self.readline),
            "getenv": wrap(self.getenv),
            "sleep_start": wrap(self.sleep_start),
            "file_open": wrap(files.open),
            "file_read": wrap(files.read),
            "file_write": wrap(files.write),
            "file_seek": wrap(files.seek),
            "file_flush": wrap(files.flush),
            "file_close": wrap(files.close),
            "file_remove": wrap(self.remove),
            "file_rename": wrap(self.rename),
        }

    def write(self, name: bytes, data: bytes) -> None:
        # Hot path (every print): no wrapper, no checks beyond the decode.
        self.output.write("stderr" if name == b"stderr" else "stdout", data.decode("utf-8", errors="replace"))

    def readline(self, prompt: bytes = b"") -> str | None:
        if not self.stdin_allowed:
            raise AikitError(
                "io.read: this frontend does not accept input (allow_stdin is false); "
                "pass values in code or run where stdin is available",
                code="stdin_not_allowed",
            )
        self.output.flush()
        try:
            return self.output.readline(text(prompt))
        except StdinNotAllowed as exc:
            raise AikitError(f"io.read: {exc}", code="stdin_not_allowed") from None

    def getenv(self, name: Any = None, *_: Any) -> str | None:
        """os.getenv(name): as Lua's, a number is its text and extra arguments are ignored."""
        if isinstance(name, (int, float)) and not isinstance(name, bool):
            name = str(name).encode()
        if not isinstance(name, bytes):
            raise InvalidArgument(f"bad argument #1 to 'getenv' (string expected, got {lua_kind(name)})")
        key = text(name)
        return os.environ.get(key) if self.policy.check_env(key) else None

    def sleep_start(self, seconds: float) -> int:
        """Start a sleep on the I/O loop; Lua awaits the returned future id."""
        if not isinstance(seconds, (int, float)) or math.isnan(seconds) or seconds < 0:
            raise InvalidArgument("sleep(seconds) needs a non-negative number")
        return self._start(asyncio.sleep(seconds))

    def remove(self, path: bytes) -> None:
        os.remove(self.policy.check_path(text(path), write=True))

    def rename(self, src: bytes, dst: bytes) -> None:
        os.rename(self.policy.check_path(text(src), write=True), self.policy.check_path(text(dst), write=True))
