"""The audit ledger on PostgreSQL (``[storage] url``): one hash chain that several processes append
to concurrently, verified end to end; tampering is found; kernels on one database share it, and
``aikit audit verify`` reads it."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import pytest

from aikit_components.control.pg_audit import PostgresAuditLedger
from aikit_components.storage.postgres import PostgresDatabase
from aikit_kernel.cli.main import main
from tests.support.postgres import components_on


def append_from_another_process(url: str, name: str, count: int) -> None:
    ledger = PostgresAuditLedger(PostgresDatabase(url, pool_max=2), session=name)
    for i in range(count):
        ledger.record("tool", {"name": name, "i": i}, fsync=i % 3 == 0)
    ledger.close()


def test_concurrent_appends_from_processes_and_threads_form_one_chain(pg_url: str) -> None:
    spawn = multiprocessing.get_context("spawn")
    other = spawn.Process(target=append_from_another_process, args=(pg_url, "other-process", 40))
    other.start()
    ledgers = [PostgresAuditLedger(PostgresDatabase(pg_url, pool_max=2), session=f"thread-{n}") for n in range(2)]
    threads = [threading.Thread(target=lambda led=led: [led.record("tool", {"i": i}) for i in range(30)])
               for led in ledgers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    other.join(120)
    assert other.exitcode == 0
    reader = ledgers[0]
    result = reader.verify()
    assert result.ok, result.problem
    assert result.entries == 100 and reader.head() == (100, result.head)
    sessions = {e.session for e in reader.entries()}
    assert sessions == {"other-process", "thread-0", "thread-1"}
    assert [e.seq for e in reader.entries(types=("tool",))] == list(range(1, 101))

    # tampering with a row in the database is found, naming the entry
    with reader.db.transaction("tamper") as conn:
        conn.execute("UPDATE aikit_audit_entries SET data = '{\"i\": 999}' WHERE seq = 7")
    broken = reader.verify()
    assert not broken.ok and broken.seq == 7 and "entry 7 was altered" in broken.problem
    for ledger in ledgers:
        ledger.close()


def test_kernels_on_one_database_share_the_ledger_and_the_cli_verifies_it(pg_url: str, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    first, second = components_on(pg_url, tmp_path, "k1"), components_on(pg_url, tmp_path, "k2")
    try:
        assert isinstance(first.audit, PostgresAuditLedger)
        first.tools.call("hash", {"text": "x"}, first.tool_context(caller="test"))  # committed before it returns
        seen = [(e.type, e.session) for e in second.audit.entries()]
        assert ("session.start", first.session.id) in seen and ("session.start", second.session.id) in seen
        assert ("tool", first.session.id) in seen
        assert not (tmp_path / "k1" / "audit.sqlite").exists()
    finally:
        first.close()
        second.close()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AIKIT_STORAGE__URL", pg_url)
    assert main(["audit", "verify"]) == 0
    assert "intact" in capsys.readouterr().out
