"""Programs that die with aikit, grandchildren included, even when aikit is SIGKILLed.

Every program aikit starts runs in its own process group (``start_new_session=True``: the group
id is the program's pid). A **watchdog** process, one per aikit process and started at the first
launch, holds the read end of a pipe whose only write end is aikit's. aikit tells it through the
pipe which groups are alive (``+PGID`` after a launch, ``-PGID`` once the group is gone). When the
pipe closes without a goodbye (aikit exited or was killed, by ``kill -9`` too: the kernel closes
the pipe), the watchdog SIGKILLs every group still registered and exits.

Why this design and not the others:

- ``PR_SET_PDEATHSIG`` reaches the direct child only (what it starts itself survives) and needs a
  ``preexec_fn``, which forces subprocess onto its slow fork path (2-5 ms more per launch, and
  Python code running between fork and exec in a threaded process). Without ``preexec_fn``
  subprocess uses ``vfork``/``posix_spawn``.
- ``PR_SET_CHILD_SUBREAPER`` makes aikit adopt orphaned grandchildren, but nothing kills them
  when aikit itself dies.
- A cgroup would need a delegated cgroup tree, which a user session does not always have.

The watchdog is a Python interpreter started with ``-I -S`` (no site, no user paths) running a
few lines with only ``os``, ``signal`` and ``sys``; it ignores SIGINT/SIGTERM/SIGHUP sent to
aikit's terminal group (it lives in its own session) and goes away with aikit. A program started
just before aikit was killed, before its ``+PGID`` line was written, is found by its environment:
every program aikit starts gets ``AIKIT_WATCHDOG=<mark>`` (:data:`MARK_VARIABLE`), and once aikit
is gone the watchdog also kills the group of every process whose environment holds the mark
(what the programs started and left running in other groups too, unless they cleared their
environment). Elsewhere than on POSIX systems :func:`watch_group` is a no-op.
Private: not part of the public tools API.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator

log = logging.getLogger(__name__)

#: The environment variable every program aikit starts gets (``AIKIT_WATCHDOG=<pid>.<random>``):
#: inherited by what it starts in turn, it lets the watchdog find a program started in the
#: moment between its launch and its ``+PGID`` line, or a grandchild that left its group.
MARK_VARIABLE = "AIKIT_WATCHDOG"

#: The watchdog's program: read +PGID / -PGID lines; on EOF kill the groups still registered, then
#: the group of every process whose environment holds this aikit's mark (argv[1], see MARK_VARIABLE).
WATCHDOG_CODE = """
import os, signal, sys
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
    signal.signal(s, signal.SIG_IGN)
groups = set()
buf = b""
while True:
    try:
        chunk = os.read(0, 4096)
    except InterruptedError:
        continue
    except OSError:
        chunk = b""
    if not chunk:
        break
    buf += chunk
    *lines, buf = buf.split(b"\\n")
    for line in lines:
        if line[:1] == b"+":
            groups.add(int(line[1:]))
        elif line[:1] == b"-":
            groups.discard(int(line[1:]))
for pgid in groups:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
mark = ("\\0" + sys.argv[1] + "\\0").encode()
for name in os.listdir("/proc"):
    if not name.isdigit() or int(name) == os.getpid():
        continue
    try:
        with open("/proc/" + name + "/environ", "rb") as f:
            found = mark in b"\\0" + f.read()
        if found:
            os.killpg(os.getpgid(int(name)), signal.SIGKILL)
    except OSError:
        pass
"""


class Watchdog:
    """The watchdog of this process (see the module docstring); started lazily, restarted when it
    died, replaced in a forked child (the parent's belongs to the parent)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._fd = -1
        self._pid = 0
        self._groups: set[int] = set()
        self._mark = ""

    def mark(self) -> tuple[str, str] | None:
        """The environment variable (name, value) to give a program about to start, with the
        watchdog started; None when no watchdog can run (or elsewhere than on POSIX systems)."""
        if not _posix():
            return None
        with self._lock:
            if self._ensure() < 0:
                return None
            name, _, value = self._mark.partition("=")
            return name, value

    def _ensure(self) -> int:
        """The pipe to a live watchdog (the lock is held); -1 when none can be started."""
        if self._fd >= 0 and self._pid == os.getpid() and self._proc is not None and self._proc.poll() is None:
            return self._fd
        if self._pid != os.getpid():  # forked: the inherited pipe is the parent's
            self._proc, self._fd, self._groups = None, -1, set()
        elif self._fd >= 0:  # it died: close our end and start another, telling it every live group
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1
        read_end, write_end = os.pipe()
        try:
            self._mark = f"{MARK_VARIABLE}={os.getpid()}.{secrets.token_hex(8)}"
            proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", WATCHDOG_CODE, self._mark], stdin=read_end,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True,
                                    start_new_session=True)
        except OSError as exc:
            os.close(read_end)
            os.close(write_end)
            log.warning("cannot start the process watchdog (%s): programs aikit starts may outlive it", exc)
            return -1
        finally:
            with contextlib.suppress(OSError):
                os.close(read_end)
        os.set_blocking(write_end, False)  # a stopped watchdog must not stall aikit's I/O loop
        self._proc, self._fd, self._pid = proc, write_end, os.getpid()
        if self._groups:
            self._send("".join(f"+{g}\n" for g in self._groups))
        return self._fd

    def _send(self, text: str) -> None:
        try:
            os.write(self._fd, text.encode())
        except BlockingIOError:  # 64 KiB of registrations unread: it is stopped, not dead
            log.warning("the process watchdog %s does not read its pipe: %r not registered", self.pid, text)
        except OSError:  # the watchdog died: the next launch starts another
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1

    def add(self, pgid: int) -> None:
        """Kill process group ``pgid`` when this process dies (until :meth:`discard`)."""
        with self._lock:
            if self._ensure() >= 0:
                self._groups.add(pgid)
                self._send(f"+{pgid}\n")

    def discard(self, pgid: int) -> None:
        """Forget ``pgid`` (the group is gone, or was killed by aikit itself)."""
        with self._lock:
            if pgid in self._groups and self._pid == os.getpid():
                self._groups.discard(pgid)
                if self._fd >= 0:
                    self._send(f"-{pgid}\n")

    @property
    def pid(self) -> int | None:
        """The watchdog's pid (None before the first launch)."""
        proc = self._proc
        return proc.pid if proc is not None and self._pid == os.getpid() else None


WATCHDOG = Watchdog()
if hasattr(os, "register_at_fork"):  # a thread may hold the lock at fork time: the child gets a free one
    os.register_at_fork(after_in_child=lambda: setattr(WATCHDOG, "_lock", threading.Lock()))


def _posix() -> bool:
    return os.name == "posix"


@contextlib.contextmanager
def watch_group(pgid: int) -> Iterator[None]:
    """Inside the block, process group ``pgid`` (a program started with ``start_new_session=True``:
    its pid) is killed if this process dies."""
    if not _posix():
        yield
        return
    WATCHDOG.add(pgid)
    try:
        yield
    finally:
        WATCHDOG.discard(pgid)
