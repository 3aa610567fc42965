"""``kill -9`` in a loop: a writer of State (set, update, compare_and_set), artifacts, workflow
run records, the effect journal and the audit ledger is SIGKILLed at random points, 200+ times,
restarted after each kill. Afterwards every acknowledged write is there, every SQLite file passes
``PRAGMA integrity_check``, every artifact blob matches its hash, ``aikit audit verify`` (the real
CLI) passes, and a fresh process opens the stores and writes again.

The writers are forked from a zygote that imported aikit once (tests/durability/crash_writer.py):
a SIGKILL of a forked writer leaves the files exactly as the SIGKILL of a fresh process would, and
200 lives cost seconds rather than minutes of imports."""

from __future__ import annotations

import hashlib
import os
import random
import select
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aikit_components.components import Components
from aikit_components.config import Config
from aikit_components.control.audit import AuditLedger
from aikit_components.workflows import load_run

REPO = Path(__file__).resolve().parents[2]
AIKIT = str(Path(sys.executable).with_name("aikit"))
KILLS = 220
#: The longest a life lasts before its kill: spans opening the stores and several rounds of writes.
MAX_LIFE_S = 0.25

pytestmark = pytest.mark.slow


class Zygote:
    """The crash_writer zygote: start lives, read their lines."""

    def __init__(self, data_dir: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIKIT_")}
        env.update(PYTHONPATH=str(REPO), AIKIT_DATA_DIR=str(data_dir))
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("crash_writer.py")), str(data_dir)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=data_dir.parent)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin, self.fd = self.proc.stdin, self.proc.stdout.fileno()
        self.buffer = b""
        self.lines: list[str] = []

    def send(self, line: str) -> None:
        self.stdin.write(line.encode() + b"\n")
        self.stdin.flush()

    def read_line(self, deadline: float) -> str | None:
        """The next line, or None at ``deadline``."""
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                return None
            chunk = os.read(self.fd, 65536)
            if not chunk:
                raise AssertionError(f"the zygote exited ({self.proc.wait()}); lines so far: {self.lines[-5:]}")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        text = line.decode()
        self.lines.append(text)
        assert not text.startswith("error"), f"a writer failed: {text}"
        return text

    def expect(self, prefix: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while True:
            line = self.read_line(deadline)
            assert line is not None, f"no {prefix!r} line within {timeout} s; last lines: {self.lines[-5:]}"
            if line.startswith(prefix):
                return line

    def close(self) -> None:
        self.stdin.close()
        self.proc.wait(30)


def test_every_acknowledged_write_survives_200_sigkills(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    rng = random.Random(int(os.environ.get("AIKIT_KILL_SEED", "0")) or None)
    zygote = Zygote(data_dir)
    try:
        for life in range(KILLS):
            zygote.send(f"life {life}")
            pid = int(zygote.expect("pid ").split()[1])
            kill_at = time.monotonic() + rng.uniform(0, MAX_LIFE_S)
            while zygote.read_line(kill_at) is not None:
                pass  # acknowledgements, read until the random moment of the kill
            os.kill(pid, signal.SIGKILL)
            reaped = zygote.expect("reaped ")
            assert reaped.split()[1] == str(pid)
        zygote.send(f"final {KILLS}")  # a fresh life that starts cleanly, writes and exits 0
        zygote.expect("done ")
        assert zygote.expect("reaped ").split()[2] == "0"
    finally:
        zygote.close()

    acks = [line.split()[1:] for line in zygote.lines if line.startswith("ack ")]
    opened = sum(1 for line in zygote.lines if line.startswith("opened "))
    kinds = {a[0] for a in acks}
    assert kinds == {"set", "update", "cas", "artifact", "run", "journal", "audit"}, kinds
    assert opened > KILLS // 3, f"only {opened} of {KILLS} lives got past opening the stores"
    print(f"{KILLS} kills, {opened} lives opened the stores, {len(acks)} acknowledged writes")

    for db in sorted(data_dir.glob("*.sqlite")):
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)], db

    comps = Components.open(config=Config({"telemetry": {"enabled": False}}), data_dir=data_dir, plugins=False)
    try:
        state = comps.state
        counter = state.get("global", "counter")
        cas = state.get("global", "cas")
        for kind, *fields in acks:
            if kind == "set":
                key, i = fields
                assert state.get("global", key) is not None and state.get("global", key)["i"] == int(i), key
            elif kind == "update":
                assert counter >= int(fields[0])
            elif kind == "cas":
                assert cas >= int(fields[0])
            elif kind == "artifact":
                name, version, sha = fields
                info, content = comps.artifacts.get(name, int(version))
                assert info.sha256 == sha and hashlib.sha256(content).hexdigest() == sha
            elif kind == "run":
                record = load_run(comps, fields[0])
                assert record is not None and record.status == "succeeded", fields[0]
            elif kind == "journal":
                entries = comps.journal.entries(fields[0])
                i = int(fields[0].split("_")[1])
                assert [(e.status, e.outcome) for e in entries] == [("finished", {"result": {"i": i}})]
        audited = {e.data.get("tag") for e in comps.audit.entries(types=("test.write",))}
        missing = [f[0] for k, *f in acks if k == "audit" and f[0] not in audited]
        assert not missing, f"acknowledged audit entries missing: {missing[:5]}"
        state.set("global", "after", 1)  # the fresh process writes again
        assert state.get("global", "after") == 1
    finally:
        comps.close()

    blobs = [p for p in (data_dir / "blobs").rglob("*") if p.is_file() and not p.name.startswith(".tmp-")]
    assert blobs
    for blob in blobs:
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name, f"corrupt blob {blob}"

    env = {k: v for k, v in os.environ.items() if not k.startswith("AIKIT_")}
    env.update(PYTHONPATH=str(REPO), AIKIT_DATA_DIR=str(data_dir))
    verify = subprocess.run([AIKIT, "audit", "verify"], capture_output=True, text=True, env=env, timeout=120,
                            cwd=tmp_path)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert AuditLedger.in_dir(data_dir).verify().ok
