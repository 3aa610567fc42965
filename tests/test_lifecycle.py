"""Kernel lifecycle: a kernel whose Jupyter client dies shuts itself down (no orphans)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.support.processes import gone, wait_until

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
    if not wait_until(lambda: gone(pid), 15):
        os.kill(pid, 9)
        raise AssertionError("the orphaned kernel is still running")
    assert "is gone: shutting down" in (tmp_path / "stderr.txt").read_text()


def test_python_m_aikit_kernel_writes_a_missing_connection_file(tmp_path: Path) -> None:
    """`python -m aikit_kernel -f FILE` started by hand: it creates FILE (owner-only), a client
    connects with it, and a shutdown request ends the process with status 0."""
    from jupyter_client.blocking.client import BlockingKernelClient

    conn = tmp_path / "kernel-by-hand.json"
    env = dict(os.environ, AIKIT_DATA_DIR=str(tmp_path / "data"))
    env.pop("JPY_PARENT_PID", None)
    with open(tmp_path / "stderr.txt", "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "aikit_kernel", "-f", str(conn)], stderr=err, env=env, cwd=tmp_path)
    kc = None
    try:
        deadline = time.monotonic() + 60
        while not conn.exists():
            assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()
            assert time.monotonic() < deadline, "no connection file"
            time.sleep(0.05)
        assert conn.stat().st_mode & 0o777 == 0o600
        kc = BlockingKernelClient(connection_file=str(conn))
        kc.load_connection_file()
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        reply = kc.execute_interactive("return 6 * 7", timeout=30, output_hook=lambda msg: None)
        assert reply["content"]["status"] == "ok"
        kc.shutdown()
        assert proc.wait(timeout=30) == 0
    finally:
        if kc is not None:
            kc.stop_channels()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "jupyter console --existing" in (tmp_path / "stderr.txt").read_text()
