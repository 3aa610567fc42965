"""A full disk during each kind of write: the data directory on a small tmpfs, filled up, then a
State write, an artifact, a workflow run record, an audit ledger entry and its tail file (through a real kernel and
Lua), a session start (``aikit run``), a span and a kernel history entry. Each fails with an error
that says the disk is full and what to do, nothing is half-written (the previous value is still
read, no partial artifact file is left), and the kernel keeps answering; once space is freed,
writes work again."""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from aikit_components.control.audit import AuditLedger
from aikit_components.control.journal import EffectJournal
from aikit_components.errors import IOFailure
from aikit_components.telemetry.records import SpanRecord
from aikit_components.telemetry.store import SpanStore
from aikit_kernel.history import HistoryStore
from tests.support.kernels import Kernel, start_kernel

REPO = Path(__file__).resolve().parents[2]
AIKIT = str(Path(sys.executable).with_name("aikit"))
SIZE = "24m"

pytestmark = pytest.mark.slow


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of :data:`SIZE` mounted at ``tmp_path/fs`` (unmounted afterwards)."""
    mount_point = tmp_path / "fs"
    mount_point.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0700", "tmpfs", str(mount_point)],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot mount a small tmpfs for the full-disk test: {exc}")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs for the full-disk test (root and CAP_SYS_ADMIN needed): "
                    f"{done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        if subprocess.run(["umount", str(mount_point)], capture_output=True, timeout=30).returncode != 0:
            subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, timeout=30)


def fill(fs: Path) -> Path:
    """Shrink every SQLite WAL under ``fs`` to nothing (so the next write needs new space), then
    fill the file system to the last byte; the filler's path."""
    for db in fs.rglob("*.sqlite"):
        with contextlib.closing(sqlite3.connect(db, timeout=10)) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    filler = fs / f"filler-{uuid.uuid4().hex}"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)
    return filler


def assert_says_disk_full(message: str) -> None:
    lowered = message.lower()
    assert "full" in lowered and "free" in lowered and "space" in lowered, message
    assert "dict" not in message and "None" not in message, message


def lua_error(kernel: Kernel, code: str) -> str:
    """Run ``code`` (a call) under pcall in the kernel: the error message it raised."""
    out = kernel.ok(f"local ok, err = pcall(function() {code} end)\n"
                    "local is_table = type(err) == 'table'\n"
                    "print(ok, is_table and err.code or '', tostring(is_table and err.message or err))", timeout=60).stdout
    assert out.startswith("false"), f"{code} did not fail on a full disk: {out}"
    print(f"{code[:40]} -> {out.strip()}")
    return out


def test_every_kind_of_write_on_a_full_disk(small_fs: Path, tmp_path: Path) -> None:
    data_dir = small_fs / "data"
    kernel = start_kernel(data_dir, cwd=tmp_path)
    # A workflow run record is written past errors (a run is not failed by its bookkeeping): the run
    # goes on and says why it was not stored (shown without the audit ledger, whose full-disk error
    # would come first for the steps' programs).
    no_audit = tmp_path / "no_audit"
    no_audit.mkdir()
    (no_audit / "aikit.toml").write_text("[audit]\nenabled = false\n")
    second = start_kernel(data_dir, cwd=no_audit)
    try:
        second.ok('persist_errors = {}\n'
                  'Event.subscribe("workflow.persist_failed", function(e)\n'
                  '  persist_errors[#persist_errors + 1] = e.payload\n'
                  'end)\n'
                  'wf = Workflow.new{name = "w2", steps = {{id = "a", noop = true}}}', timeout=60)
        kernel.ok('State.set("global", "k", "before")\n'
                  'Artifact.put("report", "version one")\n'
                  'wf = Workflow.new{name = "w", steps = {{id = "a", noop = true}}}\n'
                  'assert(wf:run().status == "succeeded")\n'
                  'Tool.call("run_process", {command = {"echo", "hi"}})', timeout=60)
        filler = fill(small_fs)

        assert_says_disk_full(lua_error(kernel, 'State.set("global", "k", string.rep("x", 50000))'))
        assert_says_disk_full(lua_error(kernel, 'State.set("global", "small", 1)'))
        assert_says_disk_full(lua_error(kernel, 'Artifact.put("report", string.rep("y", 300000))'))
        # a step's audit entry lands in the tail file's space, allocated before the disk filled,
        # and a run is not failed by its own record (the second kernel shows what it says)
        assert kernel.value('wf:run().status') == '"succeeded"'
        assert_says_disk_full(lua_error(kernel, 'Tool.call("run_process", {command = {"echo", "audited"}})'))
        # a safe tool's entry goes to the tail file (control/ledger_tail.py), whose space was
        # allocated before the disk filled: the call is recorded and goes on
        assert kernel.value('Tool.call("base64_encode", {text = "audited"})') == '"YXVkaXRlZA=="'
        assert second.value('wf:run().status') == '"succeeded"'
        second.ok("Event.dispatch()")
        persisted = second.ok('for _, p in ipairs(persist_errors) do print(p.code, p.message) end').stdout
        print(f"workflow run record -> {persisted.strip()}")
        assert persisted, "no workflow.persist_failed event"
        assert_says_disk_full(persisted)
        assert second.value("1 + 1") == "2"

        # nothing half-written, the previous values still read, the kernel answers
        assert kernel.value('State.get("global", "k")') == '"before"'
        assert kernel.value('Artifact.get("report").content') == '"version one"'
        leftovers = [p for p in (data_dir / "blobs").rglob("*") if p.is_file() and p.name.startswith(".tmp-")]
        assert leftovers == []
        assert kernel.value("1 + 1") == "2"

        (tmp_path / "hello.lua").write_text('print("ran")\n')
        with_full_disk = subprocess.run([AIKIT, "run", "hello.lua"], capture_output=True, text=True,
                                        timeout=120, cwd=tmp_path, env=_env(data_dir))
        assert with_full_disk.returncode != 0 and "ran" not in with_full_disk.stdout
        print(f"aikit run -> {with_full_disk.stderr.strip()}")
        assert_says_disk_full(with_full_disk.stderr)
        assert "Traceback" not in with_full_disk.stderr, with_full_disk.stderr

        filler.unlink()  # space again: every kind of write works
        kernel.ok('State.set("global", "k", "after")\n'
                  'Artifact.put("report", "version two")\n'
                  'assert(wf:run().status == "succeeded")\n'
                  'Tool.call("run_process", {command = {"echo", "again"}})\n'
                  'Tool.call("base64_encode", {text = "again"})', timeout=60)
        assert kernel.value('State.get("global", "k")') == '"after"'
        assert second.value('wf:run().status') == '"succeeded"'
    finally:
        kernel.shutdown()
        second.shutdown()
    for db in data_dir.glob("*.sqlite"):
        with contextlib.closing(sqlite3.connect(db)) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)], db
    verify = subprocess.run([AIKIT, "audit", "verify"], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                            env=_env(data_dir))
    assert verify.returncode == 0, verify.stdout + verify.stderr


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIKIT_") or k == "AIKIT_TRUST_PROJECT_CONFIG"}
    env.update(AIKIT_DATA_DIR=str(data_dir), PYTHONPATH=str(REPO))
    return env


def _span(n: int) -> SpanRecord:
    now = time.time_ns()
    return SpanRecord(f"{n:032x}", f"{n:016x}", None, f"span {n}", "INTERNAL", now, now + 1, "OK", "",
                      {"payload": "z" * 20000}, [])


def test_span_store_history_and_effect_journal_on_a_full_disk(small_fs: Path) -> None:
    """The kernel writes spans and history in the background and logs a failure (the cell or run
    goes on, see aikit_kernel/kernel.py and telemetry/writer.py): the stores raise a clear
    error, keep what they had, and write again once there is space. The effect journal (behind the
    audit ledger in a run, which fails first) says the disk is full, not that it is corrupt."""
    spans = SpanStore(small_fs / "traces.sqlite")
    history = HistoryStore(small_fs / "history.sqlite", "k1")
    journal = EffectJournal(small_fs / "journal.sqlite")
    try:
        spans.write([_span(1)])
        history.store_input(1, "print(1)")
        journal.started("r1", "a#0", "tool", "echo", "sha256:x")
        filler = fill(small_fs)
        with pytest.raises(IOFailure) as failure:
            journal.finished("r1", "a#0", {"result": "y" * 50000})
        assert_says_disk_full(failure.value.message)
        assert [e.status for e in journal.entries("r1")] == ["started"]
        with pytest.raises(sqlite3.OperationalError, match="full"):
            spans.write([_span(n) for n in range(2, 40)])
        with pytest.raises(sqlite3.OperationalError, match="full"):
            history.store_input(2, "x" * 50000)
        assert [s.name for s in spans.trace(f"{1:032x}")] == ["span 1"]
        assert [entry[2] for entry in history.tail(10)] == ["print(1)"]
        filler.unlink()
        spans.write([_span(2)])
        history.store_input(2, "print(2)")
        assert [entry[2] for entry in history.tail(10)] == ["print(1)", "print(2)"]
        journal.finished("r1", "a#0", {"result": "done"})
        assert [e.outcome for e in journal.entries("r1")] == [{"result": "done"}]
    finally:
        spans.close()
        history.close()
        journal.close()


def test_a_new_audit_tail_file_on_a_full_disk(small_fs: Path) -> None:
    """A process's first entry without an fsync needs a tail file, allocated up front: on a full
    disk that fails with a clear error (the operation is not acknowledged), and works once there
    is space; the ledger stays intact."""
    ledger = AuditLedger(small_fs / "audit.sqlite")
    ledger.record("session.start", {"n": 0})
    filler = fill(small_fs)
    with pytest.raises(IOFailure) as failed:
        ledger.record("tool", {"n": 1}, fsync=False)
    assert_says_disk_full(failed.value.message)
    filler.unlink()
    ledger.record("tool", {"n": 2}, fsync=False)
    assert [e.data["n"] for e in ledger.entries()] == [0, 2] and ledger.verify().ok
    ledger.close()
