"""Resume without repeating side effects, with a real SIGKILL: an agent run in an ``aikit run``
process (model: the local replay server) calls a Lua tool that appends a line to a file; the
process is killed while the third call is inside the tool, after its line was written. Resumed in
new processes: the two finished calls are replayed from the effect journal, the third is in doubt
(its tool is not idempotent) so the run pauses showing it; denied (it did run), the run goes on,
and the file has every line exactly once. An idempotent tool's in-doubt call is simply retried."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

from tests.support.agents import OPENAI, answer, call, config_text
from tests.support.processes import wait_until

AIKIT = str(Path(sys.executable).with_name("aikit"))
REPO = Path(__file__).resolve().parents[2]

TOOL = """
local function exists(name) local f = io.open(name, 'r') if f then f:close() return true end return false end
Tool.define{name = 'append', description = 'Append a line to out.txt', idempotent = IDEMPOTENT,
  params = {type = 'object', properties = {line = {type = 'string'}}, required = {'line'}},
  fn = function(a)
    local f = io.open('out.txt', 'a') f:write(a.line .. '\\n') f:close()
    if a.line == 'three' and not exists('hung') then
      local m = io.open('hung', 'w') m:write('x') m:close()
      while true do sleep(0.05) end  -- killed here: the line is written, the call never returns
    end
    return 'appended ' .. a.line
  end}
agent = Agent.new{name = 'scribe', model = 'openai/m', tools = {'append'}}
"""
START = TOOL + "local r = agent:run('write one two three') print(r.status)\n"
RESUME = TOOL + """
local id = (Agent.runs('running')[1] or Agent.runs('needs_approval')[1]).run_id
local r = Agent.resume(id, DECISIONS)
print(r.status, r.run_id, r.text)
for _, p in ipairs(r.pending or {}) do print('pending', p.name, p.args.line, p.in_doubt) end
"""


def script(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def env(tmp_path: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AIKIT_") or k == "AIKIT_TRUST_PROJECT_CONFIG"}
    return {**base, "AIKIT_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(REPO),
            "XDG_CONFIG_HOME": str(tmp_path / "xdg")}


def aikit_run(tmp_path: Path, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AIKIT, "run", str(path)], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env=env(tmp_path), stdin=subprocess.DEVNULL)


def finished_in_journal(tmp_path: Path) -> int:
    with closing(sqlite3.connect(tmp_path / "data" / "journal.sqlite", timeout=10)) as db:
        return db.execute("SELECT count(*) FROM effects WHERE status = 'finished'").fetchone()[0]


def run_and_kill(tmp_path: Path, llm_server: Any, idempotent: bool) -> None:
    (tmp_path / "aikit.toml").write_text(config_text(llm_server.url))
    llm_server.reply(OPENAI, answer(None, [call("append", {"line": "one"}, "c1"), call("append", {"line": "two"}, "c2"),
                                           call("append", {"line": "three"}, "c3")]))
    start = script(tmp_path, "start.lua", START.replace("IDEMPOTENT", str(idempotent).lower()))
    proc = subprocess.Popen([AIKIT, "run", str(start)], cwd=tmp_path, env=env(tmp_path), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert wait_until(lambda: (tmp_path / "hung").exists() or proc.poll() is not None, timeout=90), \
            "the tool never reached the third call"
        # the calls run one after another on the Lua thread: "two" returned before "three" began, and
        # its end reaches the journal (on the I/O loop) soon after; kill once it has
        assert wait_until(lambda: finished_in_journal(tmp_path) == 2 or proc.poll() is not None, timeout=30)
        assert proc.poll() is None, proc.communicate()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert (tmp_path / "out.txt").read_text() == "one\ntwo\nthree\n"


def resume(tmp_path: Path, decisions: str, idempotent: bool) -> list[str]:
    text = RESUME.replace("IDEMPOTENT", str(idempotent).lower()).replace("DECISIONS", decisions)
    done = aikit_run(tmp_path, script(tmp_path, "resume.lua", text))
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_after_sigkill_each_line_is_written_exactly_once(tmp_path: Path, llm_server: Any) -> None:
    run_and_kill(tmp_path, llm_server, idempotent=False)
    first = resume(tmp_path, "nil", idempotent=False)
    assert first[0].startswith("needs_approval") and first[1:] == ["pending\tappend\tthree\ttrue"]
    assert (tmp_path / "out.txt").read_text() == "one\ntwo\nthree\n"  # nothing ran again
    assert len(llm_server.requests_to(OPENAI)) == 1  # the answer with the calls was not asked again
    llm_server.reply(OPENAI, answer(None, [call("append", {"line": "four"}, "c4")]), answer("all written"))
    second = resume(tmp_path, "{deny = {'append'}, reason = 'it did run: the line is there'}", idempotent=False)
    assert second[0].split("\t")[0] == "done" and second[0].endswith("all written")
    assert (tmp_path / "out.txt").read_text() == "one\ntwo\nthree\nfour\n"
    tool_results = [m["content"] for m in llm_server.requests_to(OPENAI)[1].json()["messages"] if m["role"] == "tool"]
    assert tool_results[:2] == ["appended one", "appended two"]  # replayed from the journal
    assert "approval_denied" in tool_results[2] and "it did run" in tool_results[2]


def test_an_idempotent_tools_in_doubt_call_is_retried(tmp_path: Path, llm_server: Any) -> None:
    run_and_kill(tmp_path, llm_server, idempotent=True)
    llm_server.reply(OPENAI, answer("all written"))
    done = resume(tmp_path, "nil", idempotent=True)
    assert done[0].split("\t")[0] == "done"
    # one and two replayed; three, in doubt but idempotent, ran again (as idempotent allows)
    assert (tmp_path / "out.txt").read_text() == "one\ntwo\nthree\nthree\n"
    tool_results = [m["content"] for m in llm_server.requests_to(OPENAI)[1].json()["messages"] if m["role"] == "tool"]
    assert tool_results == ["appended one", "appended two", "appended three"]
