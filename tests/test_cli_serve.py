"""`aikit serve` as a service: a pid file, several clients at once, SIGTERM shuts down cleanly (the
running cell interrupted, the session recorded), and --idle-timeout stops an unused kernel."""

from __future__ import annotations

import os
import queue
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyter_client.blocking.client import BlockingKernelClient

AIKIT = str(Path(sys.executable).with_name("aikit"))
REPO = Path(__file__).resolve().parents[1]


def serve(tmp_path: Path, *extra: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIKIT_")}
    env.update(AIKIT_DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(REPO))
    return subprocess.Popen([AIKIT, "serve", "-f", str(tmp_path / "kernel.json"), "--pid-file",
                             str(tmp_path / "kernel.pid"), *extra], cwd=tmp_path, env=env, text=True,
                            stderr=subprocess.PIPE)


def client(tmp_path: Path) -> BlockingKernelClient:
    kc = BlockingKernelClient()
    kc.load_connection_file(str(tmp_path / "kernel.json"))
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    return kc


def wait_for_file(path: Path, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)  # polling for a file another process writes


@pytest.fixture
def server(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    proc = serve(tmp_path)
    wait_for_file(tmp_path / "kernel.pid", proc)
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_pid_file_several_clients_and_sigterm(tmp_path: Path, server: subprocess.Popen[str]) -> None:
    assert (tmp_path / "kernel.pid").read_text().strip() == str(server.pid)
    one, two = client(tmp_path), client(tmp_path)
    try:
        assert one.execute_interactive("shared = 20", timeout=30)["content"]["status"] == "ok"
        reply = two.execute_interactive("x = shared * 2 + 2", timeout=30)  # the other client's variable
        assert reply["content"]["status"] == "ok"
        assert one.execute_interactive("assert(x == 42)", timeout=30)["content"]["status"] == "ok"
        running = one.execute("print('spinning') while true do end")
        while True:  # wait until the cell runs
            msg = one.get_iopub_msg(timeout=30)
            if msg["parent_header"].get("msg_id") == running and msg["msg_type"] == "stream":
                break
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
        assert one.get_shell_msg(timeout=10)["content"]["status"] == "error"  # the cell was interrupted
    finally:
        one.stop_channels()
        two.stop_channels()
    assert not (tmp_path / "kernel.pid").exists()
    conn = sqlite3.connect(tmp_path / "data" / "sessions.sqlite")
    statuses = [row[0] for row in conn.execute("SELECT status FROM sessions")]
    conn.close()
    assert statuses == ["interrupted"]  # stopped from outside: neither left open nor recorded as completed


def test_idle_timeout_stops_an_unused_kernel(tmp_path: Path) -> None:
    proc = serve(tmp_path, "--idle-timeout", "2")
    try:
        wait_for_file(tmp_path / "kernel.pid", proc)
        kc = client(tmp_path)
        assert kc.execute_interactive("print('used')", timeout=30)["content"]["status"] == "ok"
        kc.stop_channels()
        assert proc.wait(timeout=60) == 0  # nothing more arrives: it stops by itself
        assert "idle" in (proc.stderr.read() if proc.stderr else "")
        assert not (tmp_path / "kernel.pid").exists()
        conn = sqlite3.connect(tmp_path / "data" / "sessions.sqlite")
        statuses = [row[0] for row in conn.execute("SELECT status FROM sessions")]
        conn.close()
        assert statuses == ["completed"]  # an idle timeout is the end the user asked for
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def free_ports(n: int) -> list[int]:
    import socket

    socks = [socket.socket() for _ in range(n)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def test_curve_keys_in_the_connection_file_encrypt_and_lock_out_clients_without_them(tmp_path: Path) -> None:
    import json

    import zmq

    public, secret = zmq.curve_keypair()
    ports = dict(zip(("shell_port", "control_port", "stdin_port", "iopub_port", "hb_port"), free_ports(5)))
    info = {"transport": "tcp", "ip": "127.0.0.1", "key": "k-e-y", "signature_scheme": "hmac-sha256", **ports}
    (tmp_path / "plain.json").write_text(json.dumps(info))  # the same kernel, without the keys
    (tmp_path / "kernel.json").write_text(json.dumps({**info, "curve_publickey": public.decode(),
                                                      "curve_secretkey": secret.decode()}))
    proc = serve(tmp_path)
    try:
        wait_for_file(tmp_path / "kernel.pid", proc)
        kc = client(tmp_path)  # loads the keys from the connection file
        assert kc.execute_interactive("print(6 * 7)", timeout=30)["content"]["status"] == "ok"
        kc.stop_channels()
        outsider = BlockingKernelClient()
        outsider.load_connection_file(str(tmp_path / "plain.json"))
        outsider.start_channels()
        # A failed CURVE handshake is a protocol error: ZMQ drops the connection for good, and a
        # send issued after that would wait forever for a peer. Bound it.
        outsider.shell_channel.socket.setsockopt(zmq.SNDTIMEO, 5000)
        try:
            try:
                outsider.kernel_info()
            except zmq.Again:
                pass  # refused before the request was even queued
            else:
                with pytest.raises(queue.Empty):  # without the keys no reply ever comes
                    outsider.get_shell_msg(timeout=5)
        finally:
            outsider.stop_channels()
        assert proc.poll() is None  # the kernel was not disturbed
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
