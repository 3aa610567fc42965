"""Whether a process on this machine is still alive (for pid files, run leases and scratch
directories left by processes that were killed)."""

from __future__ import annotations

import os


def process_alive(pid: int, *, zombie_is_dead: bool = False) -> bool:
    """True while process ``pid`` exists (one owned by another user counts as alive). With
    ``zombie_is_dead``, a process that has exited but was not yet reaped counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not (zombie_is_dead and _is_zombie(pid))


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] == "Z"
    except OSError:
        return False
