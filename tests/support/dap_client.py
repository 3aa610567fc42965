"""A small DAP client for tests: Content-Length framing over a socket or a process's pipes."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO

TIMEOUT = 20
AIKIT = str(Path(sys.executable).with_name("aikit"))


class DapClient:
    def __init__(self, reader: BinaryIO, writer: BinaryIO) -> None:
        self._reader, self._writer = reader, writer
        self._seq = 0
        self.pending: list[dict[str, Any]] = []

    @classmethod
    def connect(cls, port: int, host: str = "127.0.0.1") -> DapClient:
        sock = socket.create_connection((host, port), timeout=TIMEOUT)
        client = cls(sock.makefile("rb"), sock.makefile("wb"))
        client.sock = sock  # type: ignore[attr-defined]
        return client

    def send_raw(self, data: bytes) -> None:
        self._writer.write(data)
        self._writer.flush()

    def send(self, command: str, **arguments: Any) -> int:
        self._seq += 1
        body = json.dumps({"seq": self._seq, "type": "request", "command": command, "arguments": arguments}).encode()
        self.send_raw(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        return self._seq

    def read(self) -> dict[str, Any] | None:
        length = None
        while True:
            line = self._reader.readline()
            if not line:
                return None
            line = line.strip()
            if not line:
                if length is not None:
                    break
                continue
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return json.loads(self._reader.read(length))

    def request(self, command: str, **arguments: Any) -> dict[str, Any]:
        seq = self.send(command, **arguments)
        while True:
            message = self.read()
            assert message is not None, f"connection closed while waiting for the {command} response"
            if message["type"] == "response" and message["request_seq"] == seq:
                return message
            self.pending.append(message)

    def event(self, name: str) -> dict[str, Any]:
        for i, message in enumerate(self.pending):
            if message.get("event") == name:
                return self.pending.pop(i)
        while True:
            message = self.read()
            assert message is not None, f"connection closed while waiting for the {name} event"
            if message.get("type") == "event" and message["event"] == name:
                return message
            self.pending.append(message)


def start_debug(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], int]:
    """``aikit debug --port 0 ARGS``: the process and the port it printed."""
    proc = subprocess.Popen([AIKIT, "debug", "--port", "0", *args], stderr=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, cwd=cwd, env=env)
    assert proc.stderr is not None
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        m = re.search(r"on 127\.0\.0\.1:(\d+)", line)
        if m:
            return proc, int(m.group(1))
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"aikit debug did not start: {proc.stderr.read()}")
