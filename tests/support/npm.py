"""``npm ci`` of a test's JavaScript packages, once, even with several pytest-xdist workers.

Two workers running ``npm ci`` in one directory at once remove each other's files (npm fails with
ENOTEMPTY), so the install runs under an exclusive lock on a file next to the lock file, and a
worker that gets the lock after another installed finds the packages current and does nothing.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
from pathlib import Path

import pytest


def npm_ci(directory: Path, what: str, timeout: float = 300) -> None:
    """Install ``directory``'s packages from its committed package-lock.json unless node_modules is
    current; ``what`` names them in a failure (npm missing, npm ci failing)."""
    installed = directory / "node_modules" / ".package-lock.json"
    lock = directory / "package-lock.json"

    def current() -> bool:
        return installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime

    if current():
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail(f"node is on PATH but npm is not: install npm to run {what}")
    with open(directory / ".npm-ci.lock", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)  # released when the file closes
        if current():  # another worker installed them meanwhile
            return
        proc = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=directory, capture_output=True, text=True,
                              timeout=timeout)
        assert proc.returncode == 0, f"npm ci failed in {directory}:\n{proc.stdout}\n{proc.stderr}"
