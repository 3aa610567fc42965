"""Kernel lifecycle: a kernel whose Jupyter client dies shuts itself down (no orphans)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

LAUNCHER = """
import os
from jupyter_client.manager import KernelManager
km = KernelManager(kernel_name="aikit")
km.start_kernel(env=dict(os.environ))
print(km.provisioner.process.pid, flush=True)
os._exit(0)  # the client dies abruptly, without shutting the kernel down
"""


def test_kernel_exits_when_its_client_dies(tmp_path: Path) -> None:
    env = dict(os.environ, AIKIT_DATA_DIR=str(tmp_path / "data"))
    with open(tmp_path / "stderr.txt", "w") as err:
        proc = subprocess.Popen([sys.executable, "-c", LAUNCHER], stdout=subprocess.PIPE, stderr=err, text=True, env=env)
        assert proc.stdout is not None
        pid = int(proc.stdout.readline())
        proc.wait(timeout=30)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        os.kill(pid, 9)
        raise AssertionError("the orphaned kernel is still running")
    assert "is gone: shutting down" in (tmp_path / "stderr.txt").read_text()
