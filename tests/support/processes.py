"""Child processes in tests: start Python children safely, wait for them, find and kill programs
a test started (by a unique argument, from /proc), and wait for a condition."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


def start_python(code: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start ``python -c code args`` with stdout and stderr piped.

    The code travels in the child's argv, never through a script file: children started one after
    another from one file that is rewritten before each start can read it half-written, run
    nothing and exit 0 (a race seen under load)."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> str:
    """Wait for ``proc``; assert it exited 0; its stdout."""
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{out}\n{err}"
    return out


_markers = itertools.count()


def sleep_marker(seconds: int) -> str:
    """An argument for ``sleep`` (``seconds`` and a fraction) unique to this call: what
    :func:`processes_with` and :func:`kill_leftovers` look for finds only the programs this test
    started, even while another copy of the suite runs on the machine (a fixed marker found, and
    killed, the other copy's programs)."""
    return f"{seconds}.{os.getpid()}{next(_markers):04d}"


def processes_with(arg: str) -> list[int]:
    """Live (non-zombie) pids whose command line contains ``arg`` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
            with open(f"/proc/{entry}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if arg.encode() in argv and state != b"Z":
            found.append(int(entry))
    return found


def gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie that nobody has reaped yet has ended too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except FileNotFoundError:
        return True


def kill_leftovers(marker: str) -> None:
    """Kill the programs this test started (found by their unique argument), by pid."""
    for pid in processes_with(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def wait_until(predicate: Callable[[], Any], timeout: float = 3.0) -> Any:
    """Poll ``predicate`` until it is truthy or ``timeout`` seconds passed; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(0.02)


@contextmanager
def stopped_after(proc: subprocess.Popen[Any], *, group: bool = False, markers: tuple[str, ...] = ()
                  ) -> Iterator[subprocess.Popen[Any]]:
    """``proc`` for the ``with`` block; after it (also when it failed) ``proc``, if still running,
    is killed (with ``group``, its whole process group) and waited for, and the programs with one
    of ``markers`` among their arguments are killed (see :func:`kill_leftovers`)."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            if group:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
            proc.communicate()
        for marker in markers:
            kill_leftovers(marker)
