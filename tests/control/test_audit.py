"""The audit ledger: what the pipeline records, the hash chain, and `aikit audit` finding hand
edits of the database (a changed field, a deleted row, two rows swapped, a truncated tail)."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from aikit_components.agents import AgentSpec
from aikit_components.components import Components
from aikit_components.config import Config
from aikit_components.control.audit import FILE_NAME, AuditLedger, LedgerError, canonical
from aikit_components.errors import AikitError
from aikit_kernel import runtime
from tests.support.agents import OPENAI, answer, config_text
from tests.support.trust import trusting_env

AIKIT = str(Path(sys.executable).with_name("aikit"))


def audit_cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AIKIT, "audit", "--data-dir", str(data_dir), *args], capture_output=True, text=True,
                          timeout=60, env=dict(os.environ, AIKIT_DATA_DIR=str(data_dir)))


@pytest.fixture
def components(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.chdir(tmp_path)
    config = Config.load(cwd=tmp_path, env=trusting_env(), user_dir=tmp_path / "user-config")
    c = Components.open(config=config, data_dir=tmp_path / "data", plugins=False, loop_getter=runtime.get_loop)
    yield c
    c.close()


def call(c: Components, name: str, args: dict[str, Any]) -> Any:
    return runtime.submit(c.tools.acall(name, args, c.tool_context())).result(30)


def test_operations_are_recorded_durably_and_in_order(components: Components, tmp_path: Path) -> None:
    c = components
    call(c, "write_file", {"path": "note.txt", "content": "hello"})
    call(c, "run_process", {"command": ["echo", "hi"]})
    call(c, "delete_file", {"path": "note.txt"})
    with pytest.raises(AikitError) as denied:
        call(c, "read_file", {"path": "/etc/shadow"})
    assert denied.value.code == "permission_denied"
    c.events.publish("approval.decided", {"run_id": "r1", "kind": "tool", "name": "write_file",
                                          "args_digest": "sha256:ab", "decision": "deny", "who": "ana",
                                          "reason": "not today", "at": 1.0}, source="approvals")
    # a second connection (another process would see the same): everything is already on disk
    other = AuditLedger(tmp_path / "data" / FILE_NAME)
    entries = list(other.entries())
    types = [e.type for e in entries]
    assert types[0] == "session.start"
    assert types[1:] == ["file.write", "process", "tool", "file.delete", "permission.denied", "approval.decided"]
    write, process, run_tool = entries[1], entries[2], entries[3]
    assert write.data["paths"] == ["note.txt"] and write.data["status"] == "ok"
    assert write.data["args_digest"].startswith("sha256:") and "hello" not in json.dumps(write.data)
    assert process.data["argv"][0].endswith("echo") and process.data["argv"][1:] == ["hi"]
    assert process.data["exit_code"] == 0
    assert run_tool.data["name"] == "run_process"
    assert entries[5].data["status"] == "denied" and entries[5].data["name"] == "read_file"
    assert entries[6].data["who"] == "ana" and entries[6].data["decision"] == "deny"
    assert other.verify().ok
    other.close()


_KILLED_AFTER_A_SAFE_CALL = """
import os, signal, sys
from pathlib import Path
from aikit_components.components import Components
from aikit_components.config import Config
from aikit_kernel import runtime
from tests.support.trust import trusting_env
home = Path(sys.argv[1])
config = Config.load(cwd=home, env=trusting_env(), user_dir=home / "user-config")
c = Components.open(config=config, data_dir=home / "data", plugins=False, loop_getter=runtime.get_loop)
result = runtime.submit(c.tools.acall("base64_encode", {"text": "acknowledged"}, c.tool_context())).result(30)
print(result, flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # before the folder chains it, and without closing anything
"""


def test_a_safe_tool_call_is_on_disk_before_its_result_is_returned(tmp_path: Path) -> None:
    """A safe tool's entry goes to the process's tail file before the result is returned: a
    process killed right after the call loses nothing, the next one chains the entry."""
    killed = subprocess.run([sys.executable, "-c", _KILLED_AFTER_A_SAFE_CALL, str(tmp_path)], capture_output=True,
                            text=True, timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert killed.returncode == -9 and killed.stdout.strip() == "YWNrbm93bGVkZ2Vk", killed.stderr
    assert list((tmp_path / "data").glob(f"{FILE_NAME}-tail-*")), "the tail file was left for the next process"
    ledger = AuditLedger(tmp_path / "data" / FILE_NAME)  # folds the tail of the process that is gone
    try:
        assert [e.data["name"] for e in ledger.entries(types=("tool",))] == ["base64_encode"]
        assert ledger.verify().ok
        assert not list((tmp_path / "data").glob(f"{FILE_NAME}-tail-*")), "the folded tail was removed"
    finally:
        ledger.close()
    again = AuditLedger(tmp_path / "data" / FILE_NAME)  # nothing is chained twice
    try:
        assert len(list(again.entries(types=("tool",)))) == 1
    finally:
        again.close()


def test_safe_tool_calls_are_chained_soon_and_seen_at_once_by_their_process(
        components: Components, tmp_path: Path) -> None:
    c = components
    for i in range(3):
        assert call(c, "base64_encode", {"text": f"line {i}"})
        assert [e.data["name"] for e in c.audit.entries(types=("tool",))] == ["base64_encode"] * (i + 1)
    call(c, "base64_encode", {"text": "for the folder"})
    other = sqlite3.connect(tmp_path / "data" / FILE_NAME)  # another process sees what is chained
    try:
        deadline = time.monotonic() + 60
        while other.execute("SELECT count(*) FROM entries WHERE type = 'tool'").fetchone()[0] < 4:
            assert time.monotonic() < deadline, "the folder never chained the last entry"
            time.sleep(0.01)
    finally:
        other.close()
    assert c.audit.verify().ok



def stored_tool_entries(c: Any, tmp_path: Path) -> list[str]:
    """The data of the ledger's tool-call entries as stored, in order (after a flush)."""
    c.audit.flush()
    conn = sqlite3.connect(tmp_path / "data" / FILE_NAME)
    try:
        return [row[0] for row in conn.execute("SELECT data FROM entries WHERE type = 'tool' ORDER BY seq")]
    finally:
        conn.close()

def test_tool_call_entries_are_stored_as_canonical_json(components: Components, tmp_path: Path) -> None:
    """A tool call's entry is written as text directly (not through the JSON encoder): it must be
    the canonical JSON of its data, whoever the caller is, or the chain's hashes mean nothing."""
    c = components
    for caller in ("lua", None, 'we"ird \u00fc\n'):
        c.tools.call("base64_encode", {"text": "x"}, c.tool_context(caller=caller))
    texts = stored_tool_entries(c, tmp_path)
    assert len(texts) == 3
    for text in texts:
        assert canonical(json.loads(text)) == text
    data = [json.loads(t) for t in texts]
    assert [d.get("caller") for d in data] == ["lua", None, 'we"ird \u00fc\n']
    assert all(d["name"] == "base64_encode" and d["status"] == "ok" for d in data)
    assert len({d["args_digest"] for d in data}) == 1 and data[0]["args_digest"].startswith("sha256:")
    assert c.audit.verify().ok


def test_an_entry_that_cannot_be_written_fails_the_operation_instead_of_acknowledging_it(
        components: Components, tmp_path: Path) -> None:
    c = components
    edit(tmp_path / "data", "ALTER TABLE entries RENAME TO gone")  # by hand: appends now fail
    with pytest.raises(AikitError, match="could not write to the audit ledger") as failed:
        call(c, "write_file", {"path": "note.txt", "content": "x"})
    assert failed.value.code == "io_error"
    decided = {"run_id": "r1", "kind": "tool", "name": "write_file", "decision": "approved", "who": "ana"}
    with pytest.raises(AikitError, match="could not write to the audit ledger"):
        c.events.publish("approval.decided", decided, source="approvals")
    # a safe call's entry is in the tail file, acknowledged: it waits there until it can be chained
    assert call(c, "base64_encode", {"text": "kept"})
    edit(tmp_path / "data", "ALTER TABLE gone RENAME TO entries")
    c.events.publish("approval.decided", decided, source="approvals")
    assert [e.type for e in c.audit.entries()][-2:] == ["tool", "approval.decided"] and c.audit.verify().ok


def test_a_model_calls_entry_waits_in_the_tail_while_its_http_requests_entry_is_durable_first(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, llm_server: Any) -> None:
    """A model call's effect outside the process is its HTTP request, fsynced on its own: with the
    ledger unwritable, a call of a remote model fails (its request's entry cannot be stored),
    while a run of an in-process test model, which has no such request, is acknowledged from the
    tail file and chained once the ledger can be written again."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "aikit.toml").write_text(config_text(llm_server.url))
    config = Config.load(cwd=tmp_path, env=trusting_env(), user_dir=tmp_path / "user-config")
    c = Components.open(config=config, data_dir=tmp_path / "data", plugins=False, loop_getter=runtime.get_loop)
    try:
        edit(tmp_path / "data", "ALTER TABLE entries RENAME TO gone")
        llm_server.reply(OPENAI, answer("from afar"))
        remote = c.new_agent(AgentSpec(name="remote", model="openai/m"))
        with pytest.raises(AikitError, match="could not write to the audit ledger"):
            runtime.submit(remote.run("hi")).result(30)
        local = c.new_agent(AgentSpec(name="local", model="test"))
        assert runtime.submit(local.run("hi")).result(30).text == "test answer: hi"
        edit(tmp_path / "data", "ALTER TABLE gone RENAME TO entries")
        c.events.publish("approval.decided", {"run_id": "r1", "kind": "tool", "name": "x", "decision": "approved",
                                              "who": "ana"}, source="approvals")  # chains the tail first
        entries = list(c.audit.entries())
        assert [(e.type, e.data["name"]) for e in entries if e.type in ("llm", "agent")][-2:] == [
            ("llm", "test"), ("agent", "local")]
        assert c.audit.verify().ok
    finally:
        c.close()


def test_threads_recording_at_once_share_commits_and_each_returns_after_its_own(tmp_path: Path) -> None:
    ledger = AuditLedger(tmp_path / FILE_NAME)
    problems: list[str] = []

    def recorder(n: int) -> None:
        reader = sqlite3.connect(tmp_path / FILE_NAME)
        try:
            for i in range(25):
                ledger.record("tool", {"name": f"t{n}", "i": i})
                found = reader.execute("SELECT count(*) FROM entries WHERE data = ?",
                                       (json.dumps({"i": i, "name": f"t{n}"}, separators=(",", ":")),)).fetchone()[0]
                if found != 1:
                    problems.append(f"t{n} entry {i} was not committed when record returned")
        finally:
            reader.close()

    threads = [threading.Thread(target=recorder, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert problems == []
    checked = ledger.verify()
    assert checked.ok and checked.entries == 200
    ledger.close()
    with pytest.raises(AikitError, match="has been closed"):
        ledger.record("tool", {"name": "late"})


def test_coroutines_recording_at_once_share_commits_and_each_resumes_after_its_own(tmp_path: Path) -> None:
    """Entries of coroutines (HTTP requests of many agent runs at once) are committed by a writer
    thread while the loop goes on; each coroutine resumes once its own entry is durable, entries
    keep the order they were recorded in, with the entries of threads in between."""
    ledger = AuditLedger(tmp_path / FILE_NAME)
    reader = sqlite3.connect(tmp_path / FILE_NAME)
    problems: list[str] = []

    async def recorder(n: int) -> None:
        for i in range(10):
            text = json.dumps({"i": i, "name": f"c{n}"}, separators=(",", ":"))
            await ledger.arecord_canonical("http", text)
            if reader.execute("SELECT count(*) FROM entries WHERE data = ?", (text,)).fetchone()[0] != 1:
                problems.append(f"c{n} entry {i} was not committed when its coroutine resumed")

    async def main() -> None:
        await asyncio.gather(*(recorder(n) for n in range(20)), asyncio.to_thread(
            lambda: [ledger.record("tool", {"name": "thread", "i": i}) for i in range(10)]))

    try:
        asyncio.run(main())
        assert problems == []
        rows = [json.loads(data) for (data,) in reader.execute("SELECT data FROM entries ORDER BY seq")]
        for n in range(20):
            assert [r["i"] for r in rows if r["name"] == f"c{n}"] == list(range(10))
        assert [r["i"] for r in rows if r["name"] == "thread"] == list(range(10))
        checked = ledger.verify()
        assert checked.ok and checked.entries == 210
    finally:
        reader.close()
        ledger.close()
    with pytest.raises(AikitError, match="has been closed"):
        asyncio.run(ledger.arecord_canonical("http", "{}"))


def test_a_new_session_records_a_configuration_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for limit in (10, 10, 20):
        (tmp_path / "aikit.toml").write_text(f"[security]\nmax_tool_calls = {limit}\n")
        config = Config.load(cwd=tmp_path, env=trusting_env(), user_dir=tmp_path / "user-config")
        Components.open(config=config, data_dir=tmp_path / "data", plugins=False).close()
    ledger = AuditLedger(tmp_path / "data" / FILE_NAME)
    types = [e.type for e in ledger.entries()]
    assert types == ["session.start", "session.start", "config.changed", "session.start"]
    assert ledger.newest("config.changed").data == {"sections": ["security"]}
    ledger.close()


def make_ledger(tmp_path: Path, n: int = 6) -> Path:
    data = tmp_path / "data"
    ledger = AuditLedger(data / FILE_NAME, session="s1")
    for i in range(n):
        ledger.record("tool", {"name": f"t{i}", "status": "ok"})
    ledger.close()
    return data


def edit(data: Path, *statements: str) -> None:
    conn = sqlite3.connect(data / FILE_NAME)
    with conn:
        for statement in statements:
            conn.execute(statement)
    conn.close()


def test_verify_passes_on_an_intact_ledger_and_export_is_json_lines(tmp_path: Path) -> None:
    data = make_ledger(tmp_path)
    verified = audit_cli(data, "verify")
    assert verified.returncode == 0, verified.stderr
    assert "intact: 6 entries" in verified.stdout
    exported = audit_cli(data, "export")
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    assert [e["seq"] for e in lines] == [1, 2, 3, 4, 5, 6]
    assert lines[1]["prev"] == lines[0]["hash"] and lines[2]["data"]["name"] == "t2"
    listed = audit_cli(data, "list", "--since", "1h")
    assert listed.returncode == 0 and listed.stdout.count("tool") == 6
    assert audit_cli(data, "list", "--since", "2999-01-01").stdout == ""
    bad = audit_cli(data, "list", "--since", "yesterday-ish")
    assert bad.returncode == 1 and "--since 'yesterday-ish'" in bad.stderr


@pytest.mark.parametrize(("statements", "seq", "words"), [
    (["UPDATE entries SET data = replace(data, 't3', 'tX') WHERE seq = 4"], 4, "altered"),
    (["DELETE FROM entries WHERE seq = 3"], 3, "removed"),
    (["UPDATE entries SET seq = -1 WHERE seq = 2", "UPDATE entries SET seq = 2 WHERE seq = 5",
      "UPDATE entries SET seq = 5 WHERE seq = -1"], 2, "out of order"),
    (["DELETE FROM entries WHERE seq > 4"], 5, "truncated"),
])
def test_verify_names_the_first_tampered_entry(tmp_path: Path, statements: list[str], seq: int, words: str) -> None:
    data = make_ledger(tmp_path)
    edit(data, *statements)
    verified = audit_cli(data, "verify", "--json")
    assert verified.returncode == 1
    report = json.loads(verified.stdout)
    assert report["ok"] is False and report["seq"] == seq and words in report["problem"]
    assert f"entry {seq}" in verified.stderr or f"after entry {seq - 1}" in verified.stderr


def test_a_ledger_from_a_newer_version_is_a_clear_error_and_is_left_alone(tmp_path: Path) -> None:
    data = make_ledger(tmp_path, 2)
    edit(data, "UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    before = (data / FILE_NAME).read_bytes()
    with pytest.raises(LedgerError, match="newer aikit .schema version 99"):
        AuditLedger(data / FILE_NAME)
    verified = audit_cli(data, "verify")
    assert verified.returncode == 1 and "newer aikit" in verified.stderr and "Traceback" not in verified.stderr
    assert (data / FILE_NAME).read_bytes() == before


def test_components_refuse_a_newer_ledger_before_storing_anything(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    data = make_ledger(tmp_path, 1)
    edit(data, "UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    config = Config.load(cwd=tmp_path, env=trusting_env(), user_dir=tmp_path / "user-config")
    with pytest.raises(LedgerError, match="upgrade aikit"):
        Components.open(config=config, data_dir=data, plugins=False)
    assert not (data / "sessions.sqlite").exists()


def test_a_tool_calls_entry_is_the_canonical_json_of_its_data_for_every_caller_and_security(
        components: Components, tmp_path: Path) -> None:
    """A tool call's entry is formatted around its arguments' digest, the text around it kept per
    tool and caller: it must be the entry the general path makes (the canonical JSON of
    ``{args_digest, caller, name, status}``, no caller when it is empty), call after call."""
    from aikit_components.control.audit import digest
    from aikit_components.tools import tool

    c = components
    made = []
    for security in ("safe", "read", "network", "process"):
        @tool(name=f"echo_{security}", category="test", security=security)
        def echo(text: str, n: int = 0) -> str:
            """Echo.

            Args:
                text: Text.
                n: A number.
            """
            return text

        c.tools.register(echo, replace=True)
        made.append(echo.name)
    calls = []
    for name in made:
        for caller in ("lua", None, "", 'we"ird \u00fc\n', "agent:x"):
            for args in ({"text": "a"}, {"text": "\u00e9\u00e8 \"q\"", "n": 3}, {"n": -1, "text": ""}):
                for _ in range(2):  # the second call formats nothing but the digest
                    c.tools.call(name, args, c.tool_context(caller=caller))
                    calls.append((name, caller, args))
    texts = stored_tool_entries(c, tmp_path)
    expected = []
    for name, caller, args in calls:
        data: dict[str, Any] = {"name": name, "status": "ok", "args_digest": digest(args)}
        if caller:
            data["caller"] = caller
        expected.append(canonical(data))
    assert texts == expected
    assert c.audit.verify().ok
