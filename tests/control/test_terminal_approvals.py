"""Approvals from a terminal: ``aikit run`` and ``aikit repl`` on a real pseudo-terminal (pexpect)
ask the question there; ``aikit run`` without a terminal (CI) pauses the run instead, and
``aikit approvals list|approve|deny`` decide and continue it from another process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pexpect

from tests.support.agents import OPENAI, answer, call, config_text

AIKIT = str(Path(sys.executable).with_name("aikit"))
REPO = Path(__file__).resolve().parents[2]

SCRIPT = """
local r = Agent.new{name = 'hasher', model = 'openai/m', tools = {'hash'}, approve = {'hash'}}:run('hash it')
print('status=' .. r.status .. ' text=' .. r.text .. ' id=' .. r.run_id)
"""


def env(tmp_path: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AIKIT_") or k == "AIKIT_TRUST_PROJECT_CONFIG"}
    return {**base, "AIKIT_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(REPO), "TERM": "xterm",
            "PROMPT_TOOLKIT_NO_CPR": "1", "XDG_CONFIG_HOME": str(tmp_path / "xdg")}


def setup(tmp_path: Path, llm_server: Any, *replies: Any) -> Path:
    (tmp_path / "aikit.toml").write_text(config_text(llm_server.url))
    llm_server.reply(OPENAI, *replies)
    script = tmp_path / "hash.lua"
    script.write_text(SCRIPT)
    return script


def aikit(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AIKIT, *args], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env=env(tmp_path), stdin=subprocess.DEVNULL)


def test_aikit_run_asks_on_the_terminal(tmp_path: Path, llm_server: Any) -> None:
    script = setup(tmp_path, llm_server, answer(None, [call("hash", {"text": "hi"}, "c1")]), answer("hashed"))
    child = pexpect.spawn(AIKIT, ["run", str(script)], cwd=str(tmp_path), env=env(tmp_path), encoding="utf-8",
                          timeout=60)
    try:
        child.expect("Approval needed: tool 'hash'")
        child.expect("why: agent 'hasher' requires approval for 'hash'")
        child.expect("approve / deny / always")
        child.sendline("approve it is harmless")
        child.expect("status=done text=hashed")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    sent = llm_server.requests_to(OPENAI)[-1].json()["messages"]
    assert len([m for m in sent if m["role"] == "tool" and "error" not in m["content"]]) == 1


def test_aikit_repl_asks_on_the_terminal_and_a_denial_reaches_the_model(tmp_path: Path, llm_server: Any) -> None:
    setup(tmp_path, llm_server, answer(None, [call("hash", {"text": "hi"}, "c1")]), answer("understood"))
    child = pexpect.spawn(AIKIT, ["repl"], cwd=str(tmp_path), env=env(tmp_path), encoding="utf-8", timeout=60)
    try:
        child.expect(r"lua \[1\]>")
        child.sendline(SCRIPT.strip().replace("\n", " "))
        child.expect("approve / deny / always")
        child.sendline("deny not now")
        child.expect("status=done text=understood")
        child.sendline("exit")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    sent = llm_server.requests_to(OPENAI)[-1].json()["messages"]
    [tool] = [m for m in sent if m["role"] == "tool"]
    assert "approval_denied" in tool["content"] and "not now" in tool["content"]


def test_without_a_terminal_the_run_pauses_and_aikit_approvals_continues_it(tmp_path: Path, llm_server: Any) -> None:
    script = setup(tmp_path, llm_server, answer(None, [call("hash", {"text": "hi"}, "c1")]))
    first = aikit(tmp_path, "run", str(script))
    assert first.returncode == 0, first.stderr
    assert "status=needs_approval" in first.stdout
    run_id = first.stdout.strip().rsplit("id=", 1)[1]

    listed = aikit(tmp_path, "approvals", "list")
    assert run_id in listed.stdout and "c1  hash" in listed.stdout and "why: agent 'hasher'" in listed.stdout
    as_json = json.loads(aikit(tmp_path, "approvals", "list", "--json").stdout)
    assert as_json[0]["pending"][0]["args"] == {"text": "hi", "algorithm": "sha256"}  # as it will run

    wrong = aikit(tmp_path, "approvals", "approve", run_id, "c9")
    assert wrong.returncode == 1 and "'c9' is not a call pending" in wrong.stderr

    llm_server.reply(OPENAI, answer("hashed later"))
    done = aikit(tmp_path, "approvals", "approve", run_id, "c1", "--reason", "checked")
    assert done.returncode == 0, done.stderr
    assert f"run {run_id}: done" in done.stdout and "hashed later" in done.stdout
    assert "no run is waiting" in aikit(tmp_path, "approvals", "list").stdout
    again = aikit(tmp_path, "approvals", "deny", run_id)
    assert again.returncode == 1 and "is done" in again.stderr
