"""The audit ledger's tail files: entries of pure computations stored before they are acknowledged,
chained exactly once, whatever moment their process dies at."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from aikit_components.control import audit, ledger_tail
from aikit_components.control.audit import FILE_NAME, AuditLedger

_RECORD_FOLD_RECORD_DIE = """
import os, signal, sys
from pathlib import Path
from aikit_components.control.audit import AuditLedger
ledger = AuditLedger(Path(sys.argv[1]))
for i in range(3):
    ledger.record("tool", {"i": i}, fsync=False)
ledger.flush()  # chained, and the tail marked as folded up to here
ledger.record("tool", {"i": 3}, fsync=False)
print("acknowledged", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def tails(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"{FILE_NAME}-tail-*"))


def test_a_process_killed_after_a_fold_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    died = subprocess.run([sys.executable, "-c", _RECORD_FOLD_RECORD_DIE, str(tmp_path / FILE_NAME)],
                          capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert died.returncode == -9 and died.stdout.strip() == "acknowledged", died.stderr
    ledger = AuditLedger(tmp_path / FILE_NAME)
    try:
        assert [e.data["i"] for e in ledger.entries()] == [0, 1, 2, 3]
        assert ledger.verify().ok and tails(tmp_path) == []
    finally:
        ledger.close()


def test_full_tail_files_are_replaced_and_removed_once_chained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ledger_tail, "CHUNK", 4096)
    ledger = AuditLedger(tmp_path / FILE_NAME)
    for i in range(300):  # about 40 bytes each: several files
        ledger.record("tool", {"i": i}, fsync=False)
    ledger.flush()
    # the full files were removed once their entries were chained, but one, emptied to be the next
    files = tails(tmp_path)
    assert len(files) == 2 and sum(not f.read_bytes().strip(b"\0") for f in files) == 1
    ledger.record("tool", {"big": "x" * 2000}, fsync=False)  # more than a quarter of a file: chained at once
    assert [e.data.get("i") for e in ledger.entries()][:300] == list(range(300))
    assert ledger.verify().ok and ledger.verify().entries == 301
    ledger.close()
    assert tails(tmp_path) == []


def test_a_tail_in_use_is_left_to_its_owner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit, "FOLD_DELAY", 3600.0)  # the owner's folder waits: only close() chains
    owner = AuditLedger(tmp_path / FILE_NAME)
    owner.record("tool", {"n": 1}, fsync=False)
    other = AuditLedger(tmp_path / FILE_NAME)  # another ledger of this process, as another process would be
    try:
        assert list(other.entries()) == [] and len(tails(tmp_path)) == 1
        owner.close()
        assert [e.data for e in other.entries()] == [{"n": 1}] and tails(tmp_path) == []
    finally:
        other.close()


def test_a_line_cut_short_by_a_death_is_not_an_entry(tmp_path: Path) -> None:
    whole = ledger_tail.entry_line("1.5", "tool", "s1", '{"n":1}')
    cut = ledger_tail.entry_line("2.5", "tool", "s1", '{"n":2}')[:-5]
    (tmp_path / f"{FILE_NAME}-tail-1-dead").write_bytes(whole + cut + b"\0" * 100)
    ledger = AuditLedger(tmp_path / FILE_NAME)
    try:
        entries = list(ledger.entries())
        assert [(e.at, e.session, e.data) for e in entries] == [(1.5, "s1", {"n": 1})]
        assert ledger.verify().ok and tails(tmp_path) == []
    finally:
        ledger.close()


def test_a_thread_recording_many_tail_entries_chains_them_itself(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Past FOLD_INLINE_AT queued tail entries, the recording thread chains them (a folder thread
    contending for the GIL costs more); on an event loop it never does (a commit may wait for a
    lock), the folder does."""
    monkeypatch.setattr(audit, "FOLD_DELAY", 3600.0)  # the folder would wait an hour
    ledger = AuditLedger(tmp_path / FILE_NAME)
    reader = sqlite3.connect(tmp_path / FILE_NAME)
    try:
        for i in range(audit.FOLD_INLINE_AT):
            ledger.record("tool", {"i": i}, fsync=False)
        assert reader.execute("SELECT count(*) FROM entries").fetchone()[0] == audit.FOLD_INLINE_AT

        async def on_a_loop() -> None:
            for i in range(audit.FOLD_INLINE_AT):
                await ledger.arecord_canonical("tool", f'{{"j":{i}}}', fsync=False)

        asyncio.run(on_a_loop())
        assert reader.execute("SELECT count(*) FROM entries").fetchone()[0] == audit.FOLD_INLINE_AT
        ledger.flush()
        assert reader.execute("SELECT count(*) FROM entries").fetchone()[0] == 2 * audit.FOLD_INLINE_AT
        assert ledger.verify().ok
    finally:
        reader.close()
        ledger.close()


def test_a_tail_holds_each_entry_as_entry_line_writes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ledger formats a line's type and session once per pair: the lines must be
    entry_line's, whatever the mix of types and sessions."""
    monkeypatch.setattr(audit, "FOLD_DELAY", 3600.0)  # nothing is chained while we look
    ledger = AuditLedger(tmp_path / FILE_NAME, session="s\u00fc1")
    recorded = [("tool", None, {"n": 1}), ("tool", "other", {"n": 2}), ("agent", None, {"t": "\u00e9"}),
                ("tool", None, {"n": 3}), ("tool", "other", {"n": 4})]
    try:
        for type_, session, data in recorded:
            ledger.record(type_, data, session=session, fsync=False)
        [tail] = tails(tmp_path)
        content = tail.read_bytes().rstrip(b"\0")
        lines = content.splitlines(keepends=True)
        assert len(lines) == len(recorded)
        for line, (type_, session, data) in zip(lines, recorded):
            at_text = line[1:line.index(b",")].decode()
            assert line == ledger_tail.entry_line(at_text, type_, session or "s\u00fc1", audit.canonical(data))
    finally:
        ledger.close()
    ledger = AuditLedger(tmp_path / FILE_NAME)
    try:
        assert [(e.type, e.session, e.data) for e in ledger.entries()] == [
            (t, s or "s\u00fc1", d) for t, s, d in recorded]
        assert ledger.verify().ok
    finally:
        ledger.close()


def test_a_batch_is_chained_with_the_hash_of_each_entry() -> None:
    """chain_rows formats what entries share once per batch: each row's hash must be chain_hash's,
    whether the entries are queued one by one or in runs of a tail file."""
    entries = [(1.5 + i, repr(1.5 + i), type_, session, f'{{"i":{i}}}')
               for i, (type_, session) in enumerate([("tool", None), ("tool", "s"), ("agent", "s"), ("tool", None),
                                                     ("t\u00fcl", "s\"x")])]
    batch = [audit._Pending(*entries[0]), audit._TailRun("f", 10, entries[1:3]), audit._Pending(*entries[3]),
             audit._TailRun("g", 20, entries[4:])]
    rows, seq, head = audit.chain_rows((7, "ab" * 32), batch)
    prev = "ab" * 32
    assert len(rows) == len(entries)
    for n, (row, (at, _, type_, session, data_text)) in enumerate(zip(rows, entries), start=8):
        assert row == (n, at, type_, session, data_text, prev, audit.chain_hash(prev, at, type_, session, data_text))
        prev = row[6]
    assert (seq, head) == (12, prev)


def test_an_entry_time_is_written_as_its_repr() -> None:
    """time_text writes a time's digits itself where that is repr's text (entries' hashes and tail
    lines hold it; verify recomputes it with repr); elsewhere it is repr."""
    import random

    rng = random.Random(14)
    samples = [10**15, 10**15 - 1, 4 * 10**15 - 1, 4 * 10**15, 1765072000000000, 1765072000100000,
               1765072000123456, 1765072000000001, 1765072000999999, 0, 123, 10**17]
    samples += [rng.randrange(10**15, 4 * 10**15) for _ in range(20_000)]
    for micros in samples:
        at = micros / 1e6
        assert audit.time_text(micros, at) == repr(at), micros


@pytest.mark.parametrize("taker", ["holds it", "removed it"])
def test_a_new_tail_taken_for_an_orphan_before_it_is_locked_is_left_to_its_taker(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, taker: str) -> None:
    """A process opening the ledger folds and removes the tails nobody holds (``orphans``). In the
    moment between a tail's creation and its lock it can take a new one for an orphan's: its
    creator then failed (the taker held the lock: the audit write raised) or kept writing into a
    file with no name (whose entries a ``kill -9`` would lose). Now it makes another file. The
    taker is run at that moment (just before the creator's lock); with two real processes the
    race hit 3-76 of 20,000 new tails."""
    import fcntl

    path = tmp_path / FILE_NAME
    real_flock = fcntl.flock
    taken: list[ledger_tail.Orphan] = []

    def taker_first(fd: int, operation: int) -> None:
        if taken:
            real_flock(fd, operation)
            return
        monkeypatch.setattr(fcntl, "flock", real_flock)  # the creator's later locks, and the taker's
        taken.append(next(ledger_tail.orphans(path)))  # what opening the ledger does
        if taker == "removed it":
            taken[0].remove()
        real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", taker_first)
    tail = ledger_tail.TailFile(path)
    if taker == "holds it":
        taken[0].remove()
    try:
        assert tail.path != taken[0].path and tail.path.exists() and tails(tmp_path) == [tail.path]
        assert tail.append_entry("1.5", ledger_tail.line_head("tool", "s1"), '{"n":1}')
        assert list(ledger_tail.orphans(path)) == []  # locked by its creator
    finally:
        tail.remove()


def test_a_recorded_entry_time_is_written_as_its_repr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry's time is written in line by the recorder in time_text's common case (no trailing
    zero to drop): its tail line and its hash hold repr's text whichever case the time falls in."""
    samples = [1765072000123456, 1765072000000001, 1765072000999999, 1765072000100000, 1765072000000000,
               1765072000123450, 1765072000000010, 10**15 + 7, 4 * 10**15 - 3, 4 * 10**15 + 7]
    monkeypatch.setattr(audit, "FOLD_DELAY", 3600.0)  # nothing is chained while we look
    ledger = AuditLedger(tmp_path / FILE_NAME)
    try:
        for micros in samples:
            monkeypatch.setattr(audit, "time", SimpleNamespace(time_ns=lambda m=micros: m * 1000 + 999))
            ledger.record("tool", {"micros": micros}, fsync=False)
        monkeypatch.undo()
        [tail] = tails(tmp_path)
        lines = tail.read_bytes().rstrip(b"\0").splitlines()
        assert [line[1:line.index(b",")].decode() for line in lines] == [repr(m / 1e6) for m in samples]
        assert ledger.verify().ok
        assert [e.at for e in ledger.entries()] == [m / 1e6 for m in samples]
    finally:
        ledger.close()


_FILL_REUSE_DIE = """
import os, signal, sys
from pathlib import Path
from aikit_components.control import audit, ledger_tail
from aikit_components.control.audit import AuditLedger
ledger_tail.CHUNK = 4096
audit.FOLD_DELAY = 3600.0  # only flush() chains
ledger = AuditLedger(Path(sys.argv[1]))
for i in range(100):  # several files
    ledger.record("tool", {"i": i}, fsync=False)
ledger.flush()  # chained: the full files removed, one emptied for reuse
for i in range(100, 250):  # into the emptied one, and on
    ledger.record("tool", {"i": i}, fsync=False)
print(len(list(Path(sys.argv[1]).parent.glob("*-tail-*"))), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""

# killed while a chained tail file is being reused: between its second name and the removal of its first
_REUSE_DIE_BETWEEN_NAMES = """
import os, signal, sys
from pathlib import Path
from aikit_components.control import audit, ledger_tail
from aikit_components.control.audit import AuditLedger
ledger_tail.CHUNK = 4096
audit.FOLD_DELAY = 3600.0
link = os.link
def link_and_die(src, dst):
    link(src, dst)
    print("linked", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
ledger = AuditLedger(Path(sys.argv[1]))
for i in range(150):
    ledger.record("tool", {"i": i}, fsync=False)
ledger_tail.os.link = link_and_die
ledger.flush()
"""


@pytest.mark.parametrize(("script", "recorded", "said"), [(_FILL_REUSE_DIE, 250, None),
                                                          (_REUSE_DIE_BETWEEN_NAMES, 150, "linked")])
def test_a_process_killed_with_a_reused_tail_loses_nothing_and_duplicates_nothing(
        tmp_path: Path, script: str, recorded: int, said: str | None) -> None:
    """A full tail file whose entries are chained is emptied and renamed to be the next one: a
    death at any moment of that, or after entries went into it, leaves each entry chained once."""
    died = subprocess.run([sys.executable, "-c", script, str(tmp_path / FILE_NAME)],
                          capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert died.returncode == -9, died.stderr
    if said is not None:
        assert died.stdout.strip() == said
    else:
        assert int(died.stdout) >= 2  # a file reused, and the ones filled after it
    ledger = AuditLedger(tmp_path / FILE_NAME)
    try:
        # (each once; in order within each file: a dead process's files are chained in the order of
        # their names, which is not the order they were filled in)
        assert sorted(e.data["i"] for e in ledger.entries()) == list(range(recorded))
        assert ledger.verify().ok and tails(tmp_path) == []
    finally:
        ledger.close()


def test_a_reused_tail_file_is_empty_under_a_new_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The entries of a full file are chained, then the file is emptied and renamed: its old name's
    fold mark is forgotten, and it holds only what is written to it since."""
    monkeypatch.setattr(ledger_tail, "CHUNK", 4096)
    monkeypatch.setattr(audit, "FOLD_DELAY", 3600.0)
    ledger = AuditLedger(tmp_path / FILE_NAME)
    try:
        first = None
        while True:
            ledger.record("tool", {"n": 1}, fsync=False)
            first = first or ledger._tail
            if ledger._tail is not first:
                break
        old_name = first.name
        ledger.flush()
        assert ledger._spare is first and first.name != old_name and first.size == 0
        assert not (tmp_path / old_name).exists() and not first.path.read_bytes().strip(b"\0")
        marks = sqlite3.connect(tmp_path / FILE_NAME).execute("SELECT key FROM meta WHERE key LIKE 'tail:%'")
        assert ledger_tail.META_PREFIX + old_name not in {key for (key,) in marks}
        while ledger._tail is not first:
            ledger.record("tool", {"n": 2}, fsync=False)
        ledger.flush()
        assert first.path.read_bytes().rstrip(b"\0").count(b"\n") == 1
        assert ledger.verify().ok
    finally:
        ledger.close()
    assert tails(tmp_path) == []


def test_threads_filling_many_tail_files_chain_each_entry_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Threads record tail entries, and fsynced ones now and then, while files fill up, are chained
    (inline, by the folder and by the fsynced entries' commits) and are reused: every entry is
    chained once, each thread's in its order, and the ledger verifies."""
    import threading

    monkeypatch.setattr(ledger_tail, "CHUNK", 4096)
    monkeypatch.setattr(audit, "FOLD_DELAY", 0.001)
    monkeypatch.setattr(audit, "FOLD_INLINE_AT", 20)
    ledger = AuditLedger(tmp_path / FILE_NAME)

    def recorder(n: int) -> None:
        for i in range(300):
            ledger.record("tool", {"t": n, "i": i}, fsync=i % 50 == 49)

    threads = [threading.Thread(target=recorder, args=(n,)) for n in range(4)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        entries = [e.data for e in ledger.entries()]
        assert sorted((d["t"], d["i"]) for d in entries) == [(n, i) for n in range(4) for i in range(300)]
        for n in range(4):
            assert [d["i"] for d in entries if d["t"] == n] == list(range(300))
        assert ledger.verify().ok and len(tails(tmp_path)) <= 2
    finally:
        ledger.close()
    assert tails(tmp_path) == []
