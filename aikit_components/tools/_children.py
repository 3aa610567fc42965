"""Programs that die with aikit: on Linux a program started through :func:`die_with_parent` gets
SIGKILL when aikit dies, even by SIGKILL (no handler runs then), so nothing a command step
started outlives the run. Elsewhere it is a no-op. Private: not part of the public tools API.

Linux sends the signal when the *thread* that forked the child exits, not the process. The
launch sites fork in the thread running the asyncio loop and await the child there, so that
thread outlives the child. Only the direct child is covered: what it starts itself is killed
with its process group when aikit stops it normally, but not after aikit was SIGKILLed.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>


def _load_prctl() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # no libc symbols to be had (static or unusual builds)
        return None


# Looked up once, in the parent: the child, between fork and exec, only calls it.
_PRCTL = _load_prctl()
_SIGKILL = int(signal.SIGKILL)


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` for ``subprocess`` / ``asyncio.create_subprocess_exec`` that makes the
    child receive SIGKILL when the calling thread (and so aikit) dies; None where the operating
    system has no such mechanism (pass it as is: ``preexec_fn=None`` is the default)."""
    prctl = _PRCTL
    if prctl is None:
        return None
    parent = os.getpid()

    def arm() -> None:
        prctl(PR_SET_PDEATHSIG, _SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl: no signal will come
            os.kill(os.getpid(), _SIGKILL)

    return arm
