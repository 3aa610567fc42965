"""aikit behind a real jupyter_server, the way JupyterLab talks to it: REST for the kernel's
lifecycle (start, list, interrupt, restart, delete) and the kernel websocket
(``/api/kernels/<id>/channels``) in the default legacy JSON protocol, where every message is a JSON
text frame carrying a ``channel`` field. Nothing is mocked: one ``python -m jupyter_server``
subprocess on a free port with a random token, real HTTP, a real websocket, a real aikit kernel.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("jupyter_server")
from tornado.websocket import WebSocketClientConnection, websocket_connect  # noqa: E402

SERVER_START_TIMEOUT = 30.0
REPLY_TIMEOUT = 15.0
INTERRUPT_HANG_S = 60.0  # only bounds a hang: the KeyboardInterrupt reply says it landed


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A running ``jupyter_server`` subprocess and a tiny REST client for it."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, token: str, log_path: Path) -> None:
        self.proc = proc
        self.port = port
        self.token = token
        self.log_path = log_path
        self.base = f"http://127.0.0.1:{port}"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def api(self, method: str, path: str, body: Any = None, timeout: float = 10.0) -> tuple[int, Any]:
        """(status, decoded JSON or None) of one REST call; HTTP errors are returned, not raised."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Authorization", f"token {self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw, status = resp.read(), resp.status
        except urllib.error.HTTPError as err:
            raw, status = err.read(), err.code
        return status, (json.loads(raw) if raw.strip() else None)

    def ws_url(self, kernel_id: str, session_id: str) -> str:
        return (f"ws://127.0.0.1:{self.port}/api/kernels/{kernel_id}/channels"
                f"?session_id={session_id}&token={self.token}")


@pytest.fixture
def server(tmp_path: Path):
    port = free_port()
    token = secrets.token_hex(24)
    (tmp_path / "data").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIKIT_", "JUPYTER_"))}
    env["AIKIT_DATA_DIR"] = str(tmp_path / "data")
    # Keep the server's runtime files (connection files, server info) out of the user's dirs.
    env["JUPYTER_RUNTIME_DIR"] = str(tmp_path / "runtime")
    log_path = tmp_path / "jupyter_server.log"
    cmd = [
        sys.executable, "-m", "jupyter_server",
        "--ip=127.0.0.1", f"--port={port}", "--port-retries=0",
        f"--IdentityProvider.token={token}",
        "--ServerApp.open_browser=False",
        f"--ServerApp.root_dir={tmp_path}",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # containers and CI run as root; the server refuses otherwise
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT)
    srv = Server(proc, port, token, log_path)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter_server exited with {proc.returncode}:\n{srv.log()}")
            try:
                if srv.api("GET", "/api/status", timeout=2)[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"jupyter_server did not answer /api/status within {SERVER_START_TIMEOUT} s:\n{srv.log()}")
            time.sleep(0.1)
        yield srv
    finally:
        try:
            if proc.poll() is None:
                for k in srv.api("GET", "/api/kernels")[1] or []:
                    srv.api("DELETE", f"/api/kernels/{k['id']}", timeout=15)
        except Exception:  # noqa: BLE001 - teardown goes on to stop the server regardless
            pass
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


# ---------------------------------------------------------------------------------------------
# The websocket side: a minimal JupyterLab-like client of the legacy JSON protocol
# ---------------------------------------------------------------------------------------------


class KernelSocket:
    """One websocket to ``/api/kernels/<id>/channels``; messages are JSON text frames."""

    def __init__(self, conn: WebSocketClientConnection, session_id: str) -> None:
        self.conn = conn
        self.session_id = session_id
        self.pending: list[dict[str, Any]] = []  # received but not yet claimed by a wait

    @classmethod
    async def connect(cls, srv: Server, kernel_id: str) -> KernelSocket:
        session_id = uuid.uuid4().hex
        conn = await asyncio.wait_for(websocket_connect(srv.ws_url(kernel_id, session_id)), 10)
        return cls(conn, session_id)

    def close(self) -> None:
        self.conn.close()

    async def send(self, channel: str, msg_type: str, content: dict[str, Any]) -> str:
        msg_id = uuid.uuid4().hex
        msg = {
            "header": {
                "msg_id": msg_id,
                "msg_type": msg_type,
                "username": "test",
                "session": self.session_id,
                "date": datetime.now(UTC).isoformat(),
                "version": "5.3",
            },
            "parent_header": {},
            "metadata": {},
            "content": content,
            "buffers": [],
            "channel": channel,
        }
        await self.conn.write_message(json.dumps(msg))
        return msg_id

    async def _next(self, deadline: float) -> dict[str, Any]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        raw = await asyncio.wait_for(self.conn.read_message(), remaining)
        if raw is None:
            raise ConnectionError(f"websocket closed ({self.conn.close_code} {self.conn.close_reason})")
        assert isinstance(raw, str), "the legacy protocol sends JSON text frames"
        return json.loads(raw)

    async def exchange(self, msg_id: str, reply_channel: str = "shell",
                       timeout: float = REPLY_TIMEOUT) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The reply to ``msg_id`` on ``reply_channel`` and its IOPub messages up to ``idle``."""
        reply: dict[str, Any] | None = None
        iopub: list[dict[str, Any]] = []
        idle = False
        deadline = time.monotonic() + timeout
        while reply is None or not idle:
            # Messages for other requests stay for later waits.
            for msg in list(self.pending):
                if msg.get("parent_header", {}).get("msg_id") == msg_id:
                    self.pending.remove(msg)
                    break
            else:
                try:
                    msg = await self._next(deadline)
                except TimeoutError:
                    raise TimeoutError(f"for {msg_id}: reply={reply is not None} idle={idle} "
                                       f"iopub={[m['msg_type'] for m in iopub]}") from None
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    self.pending.append(msg)
                    continue
            if msg["channel"] == "iopub":
                iopub.append(msg)
                if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                    idle = True
            elif msg["channel"] == reply_channel:
                reply = msg
        return reply, iopub

    async def wait_iopub(self, msg_id: str, msg_type: str, timeout: float = REPLY_TIMEOUT) -> dict[str, Any]:
        """Wait for the first IOPub ``msg_type`` of ``msg_id``; everything read stays pending."""
        deadline = time.monotonic() + timeout
        for msg in self.pending:
            if msg.get("parent_header", {}).get("msg_id") == msg_id and msg["msg_type"] == msg_type:
                return msg
        while True:
            msg = await self._next(deadline)
            self.pending.append(msg)
            if msg.get("parent_header", {}).get("msg_id") == msg_id and msg["msg_type"] == msg_type:
                return msg

    async def execute(self, code: str, timeout: float = REPLY_TIMEOUT) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        msg_id = await self.send("shell", "execute_request", {
            "code": code, "silent": False, "store_history": True,
            "user_expressions": {}, "allow_stdin": False, "stop_on_error": True,
        })
        return await self.exchange(msg_id, timeout=timeout)


def of_type(iopub: list[dict[str, Any]], msg_type: str) -> list[dict[str, Any]]:
    return [m for m in iopub if m["msg_type"] == msg_type]


def assert_busy_idle(iopub: list[dict[str, Any]], msg_id: str) -> None:
    states = [m["content"]["execution_state"] for m in of_type(iopub, "status")]
    assert states == ["busy", "idle"], states
    assert iopub[0]["msg_type"] == "status" and iopub[0]["content"]["execution_state"] == "busy"
    assert iopub[-1]["msg_type"] == "status" and iopub[-1]["content"]["execution_state"] == "idle"
    assert all(m["parent_header"]["msg_id"] == msg_id for m in iopub)


async def ready_socket(srv: Server, kernel_id: str, timeout: float = 30.0) -> KernelSocket:
    """A websocket whose kernel has answered kernel_info (retried while the kernel starts)."""
    deadline = time.monotonic() + timeout
    ks = await KernelSocket.connect(srv, kernel_id)
    while True:
        msg_id = await ks.send("shell", "kernel_info_request", {})
        try:
            await ks.exchange(msg_id, timeout=min(5.0, max(0.1, deadline - time.monotonic())))
            return ks
        except TimeoutError:
            if time.monotonic() > deadline:
                ks.close()
                raise


# ---------------------------------------------------------------------------------------------
# The test
# ---------------------------------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_aikit_through_jupyter_server(server: Server) -> None:
    # ---- REST: kernelspec, start, list
    status, specs = server.api("GET", "/api/kernelspecs")
    assert status == 200, specs
    assert "aikit" in specs["kernelspecs"], sorted(specs["kernelspecs"])
    spec = specs["kernelspecs"]["aikit"]["spec"]
    assert spec["display_name"] == "aikit (Lua)"
    assert spec["language"] == "lua"

    status, model = server.api("POST", "/api/kernels", {"name": "aikit"}, timeout=30)
    assert status == 201, (status, model, server.log())
    kernel_id = model["id"]
    assert model["name"] == "aikit"

    status, kernels = server.api("GET", "/api/kernels")
    assert status == 200
    assert [k["id"] for k in kernels if k["name"] == "aikit"] == [kernel_id]

    asyncio.run(_websocket_session(server, kernel_id))


async def _websocket_session(srv: Server, kernel_id: str) -> None:
    ks = await KernelSocket.connect(srv, kernel_id)
    try:
        # ---- kernel_info on shell
        msg_id = await ks.send("shell", "kernel_info_request", {})
        reply, iopub = await ks.exchange(msg_id, timeout=30)
        assert reply["msg_type"] == "kernel_info_reply"
        assert reply["header"]["msg_type"] == "kernel_info_reply"
        assert reply["parent_header"]["msg_id"] == msg_id
        info = reply["content"]
        assert info["status"] == "ok"
        assert info["language_info"]["name"] == "lua"
        assert_busy_idle(iopub, msg_id)

        # ---- execute: stream, execute_result, reply
        code = 'local x = 20\nprint("hi from lua")\nx * 2 + 2'
        msg_id = await ks.send("shell", "execute_request", {
            "code": code, "silent": False, "store_history": True,
            "user_expressions": {}, "allow_stdin": True, "stop_on_error": True,
        })
        reply, iopub = await ks.exchange(msg_id)
        assert reply["msg_type"] == "execute_reply"
        assert reply["content"]["status"] == "ok", reply["content"]
        assert_busy_idle(iopub, msg_id)
        inputs = of_type(iopub, "execute_input")
        assert [m["content"]["code"] for m in inputs] == [code]
        streams = of_type(iopub, "stream")
        assert [(m["content"]["name"], m["content"]["text"]) for m in streams] == [("stdout", "hi from lua\n")]
        results = of_type(iopub, "execute_result")
        assert len(results) == 1, iopub
        assert results[0]["content"]["data"]["text/plain"] == "42"
        assert results[0]["content"]["execution_count"] == reply["content"]["execution_count"]

        # ---- rich display
        reply, iopub = await ks.execute('display.html("<b>x</b>")')
        assert reply["content"]["status"] == "ok", reply["content"]
        displays = of_type(iopub, "display_data")
        assert len(displays) == 1, [m["msg_type"] for m in iopub]
        assert displays[0]["content"]["data"]["text/html"] == "<b>x</b>"

        # ---- completion
        msg_id = await ks.send("shell", "complete_request", {"code": "string.fo", "cursor_pos": 9})
        reply, _ = await ks.exchange(msg_id)
        assert reply["msg_type"] == "complete_reply"
        assert reply["content"]["status"] == "ok"
        assert reply["content"]["matches"] == ["format"], reply["content"]
        assert (reply["content"]["cursor_start"], reply["content"]["cursor_end"]) == (7, 9)

        # ---- inspection
        msg_id = await ks.send("shell", "inspect_request", {"code": "print", "cursor_pos": 5, "detail_level": 0})
        reply, _ = await ks.exchange(msg_id)
        assert reply["msg_type"] == "inspect_reply"
        assert reply["content"]["status"] == "ok"
        assert reply["content"]["found"] is True, reply["content"]
        assert "print" in reply["content"]["data"]["text/plain"]

        # ---- interrupt through REST
        msg_id = await ks.send("shell", "execute_request", {
            "code": "while true do end", "silent": False, "store_history": True,
            "user_expressions": {}, "allow_stdin": False, "stop_on_error": True,
        })
        await ks.wait_iopub(msg_id, "execute_input")
        await asyncio.sleep(0.2)
        status, _ = await asyncio.to_thread(srv.api, "POST", f"/api/kernels/{kernel_id}/interrupt")
        assert status == 204, status
        reply, iopub = await ks.exchange(msg_id, timeout=INTERRUPT_HANG_S)  # its latency: bench/interrupts.py
        assert reply["content"]["status"] == "error", reply["content"]
        assert reply["content"]["ename"] == "KeyboardInterrupt", reply["content"]
        errors = of_type(iopub, "error")
        assert [m["content"]["ename"] for m in errors] == ["KeyboardInterrupt"]

        # The kernel is still usable after the interrupt.
        reply, iopub = await ks.execute("x = 5\nx + 1")
        assert reply["content"]["status"] == "ok", reply["content"]
        assert of_type(iopub, "execute_result")[0]["content"]["data"]["text/plain"] == "6"
    finally:
        ks.close()

    # ---- restart through REST, then a fresh websocket
    status, model = await asyncio.to_thread(srv.api, "POST", f"/api/kernels/{kernel_id}/restart", None, 30)
    assert status == 200, (status, model)
    assert model["id"] == kernel_id

    ks = await ready_socket(srv, kernel_id)
    try:
        reply, iopub = await ks.execute("1 + 1")
        assert reply["content"]["status"] == "ok", reply["content"]
        assert reply["content"]["execution_count"] == 1  # a fresh interpreter
        assert of_type(iopub, "execute_result")[0]["content"]["data"]["text/plain"] == "2"
        # The restart cleared the globals of the previous interpreter.
        reply, iopub = await ks.execute("x == nil")
        assert of_type(iopub, "execute_result")[0]["content"]["data"]["text/plain"] == "true"
    finally:
        ks.close()
