"""Approvals of an agent's tool calls where nobody can be asked (allow_stdin false): the run pauses
durably as ``needs_approval`` and ``Agent.resume`` continues it; decisions are published; denials
reach the model as tool errors. Real Lua, real SQLite, a real local HTTP model server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.agents import OPENAI, answer, call, sent_messages
from tests.support.lua import Lua, open_lua

WRITER = """
Tool.define{name = 'note', description = 'Append a note', approval = 'always',
  params = {type = 'object', properties = {text = {type = 'string'}}, required = {'text'}},
  fn = function(a) notes = (notes or '') .. a.text .. ';' return 'noted ' .. a.text end}
a = Agent.new{name = 'writer', model = 'openai/m', tools = {'note', 'calculate'}}
"""


def paused(lua: Lua, server: Any) -> dict[str, Any]:
    server.reply(OPENAI, answer(None, [call("calculate", {"expression": "1 + 1"}, "call_c"),
                                       call("note", {"text": "hi"}, "call_n")]))
    return lua.run(WRITER + "return a:run('note hi')")


class TestPause:
    def test_a_call_needing_approval_pauses_the_run_with_the_pending_call(self, lua: Lua, llm_server: Any,
                                                                          approval_events: Any) -> None:
        result = paused(lua, llm_server)
        assert result["status"] == "needs_approval" and result["stop_reason"] == "needs_approval"
        [pending] = result["pending"]
        assert pending["name"] == "note" and pending["args"] == {"text": "hi"} and pending["call_id"] == "call_n"
        assert "approval = \"always\"" in pending["why"]
        assert lua.run("return notes") is None  # the tool did not run
        [requested] = approval_events.drain()
        assert requested.topic == "approval.requested" and requested.payload["name"] == "note"
        listed = lua.run("return Agent.runs('needs_approval')")
        assert [r["run_id"] for r in listed] == [result["run_id"]]

    def test_a_paused_result_prints_what_waits_and_how_to_resume(self, lua: Lua, llm_server: Any) -> None:
        llm_server.reply(OPENAI, answer(None, [call("note", {"text": "hi"}, "call_n")]))
        printed, run_id = lua.run(WRITER + "local r = a:run('note hi') return tostring(r), r.run_id")
        assert printed == f'needs approval: 1 call(s) waiting (Agent.resume("{run_id}", {{approve = {{...}}}}))'

    def test_resume_with_approval_runs_the_call_and_finishes(self, lua: Lua, llm_server: Any,
                                                             approval_events: Any) -> None:
        result = paused(lua, llm_server)
        approval_events.drain()
        llm_server.reply(OPENAI, answer("done"))
        done = lua.run(f"return Agent.resume('{result['run_id']}', {{approve = {{'call_n'}}, reason = 'fine'}})")
        assert done["status"] == "done" and done["text"] == "done" and done["run_id"] == result["run_id"]
        assert lua.run("return notes") == "hi;"
        # the model got both results, the calculate call replayed from the journal, not run again
        tool_messages = [m for m in sent_messages(llm_server) if m["role"] == "tool"]
        assert [m["content"] for m in tool_messages] == ["2", "noted hi"]
        [event] = [e for e in approval_events.drain() if e.topic == "approval.decided"]
        payload = event.payload
        assert payload["decision"] == "approved" and payload["reason"] == "fine" and payload["name"] == "note"
        assert payload["run_id"] == result["run_id"] and payload["kind"] == "tool"
        assert payload["args_digest"] == __import__("hashlib").sha256(b'{"text":"hi"}').hexdigest()
        assert payload["at"].endswith("Z") and payload["who"]
        assert lua.run("return #Agent.runs('needs_approval')") == 0

    def test_a_denial_reaches_the_model_as_a_tool_error(self, lua: Lua, llm_server: Any) -> None:
        result = paused(lua, llm_server)
        llm_server.reply(OPENAI, answer("ok, I will not"))
        done = lua.run(f"return Agent.resume('{result['run_id']}', {{deny = {{'note'}}, reason = 'no notes today'}})")
        assert done["text"] == "ok, I will not" and lua.run("return notes") is None
        [denied] = [m for m in sent_messages(llm_server) if m["role"] == "tool" and "error" in m["content"]]
        error = json.loads(denied["content"].removeprefix("Error: "))["error"]
        assert error["code"] == "approval_denied" and "no notes today" in error["message"]
        assert done["tool_calls"][1]["error"]["code"] == "approval_denied"

    def test_resume_in_another_process_after_a_restart(self, llm_server: Any, tmp_path: Path,
                                                       make_lua: Any) -> None:
        first = make_lua()
        result = paused(first, llm_server)
        first.close(close_models=True)
        second = open_lua(tmp_path)  # same data directory, new components: a restarted kernel
        try:
            llm_server.reply(OPENAI, answer("done"))
            second.run(WRITER)
            done = second.run(f"return Agent.resume('{result['run_id']}', {{approve = {{'*'}}}})")
            assert done["status"] == "done" and second.run("return notes") == "hi;"
        finally:
            second.close(close_models=True)


    def test_the_question_the_decision_and_the_model_requests_are_in_the_ledger(self, lua: Lua,
                                                                                 llm_server: Any) -> None:
        result = paused(lua, llm_server)
        llm_server.reply(OPENAI, answer("ok"))
        lua.run(f"return Agent.resume('{result['run_id']}', {{deny = {{'note'}}, reason = 'no notes today'}})")
        entries = list(lua.components.audit.entries())
        [requested] = [e.data for e in entries if e.type == "approval.requested"]
        assert requested["name"] == "note" and requested["run_id"] == result["run_id"]
        [decided] = [e.data for e in entries if e.type == "approval.decided"]
        assert decided["decision"] == "denied" and decided["reason"] == "no notes today" and decided["who"]
        assert decided["name"] == "note" and decided["at"].endswith("Z")
        posts = [e.data for e in entries if e.type == "http"]
        assert len(posts) == 2 and all(p["method"] == "POST" and p["host"] == "127.0.0.1" and p["http_status"] == 200
                                       for p in posts)
        assert lua.components.audit.verify().ok


class TestAgentPatterns:
    def test_approve_patterns_of_the_agent(self, lua: Lua, llm_server: Any) -> None:
        llm_server.reply(OPENAI, answer(None, [call("hash", {"text": "x"}, "call_h")]))
        result = lua.run("a = Agent.new{name = 'p', model = 'openai/m', tools = {'hash'}, approve = {'ha*'}} "
                         "return a:run('hash x')")
        assert result["status"] == "needs_approval" and "agent 'p' requires approval for 'hash'" in \
            result["pending"][0]["why"]

    def test_approval_function_decides_per_call(self, lua: Lua, llm_server: Any) -> None:
        llm_server.reply(OPENAI, answer(None, [call("maybe", {"n": 1}, "c1"), call("maybe", {"n": 50}, "c2")]))
        result = lua.run("""
            Tool.define{name = 'maybe', description = 'd', params = {type = 'object', properties = {n = {type = 'number'}}},
              approval = function(call) if call.args.n > 10 then return 'n is large' end return false end,
              fn = function(a) return a.n end}
            a = Agent.new{name = 'f', model = 'openai/m', tools = {'maybe'}}
            return a:run('go')""")
        [pending] = result["pending"]
        assert pending["call_id"] == "c2" and pending["why"] == "n is large"


class TestBadInput:
    def test_resume_of_an_unknown_run(self, lua: Lua) -> None:
        failure = lua.fail("Agent.resume('run-nope')")
        assert failure.ename == "not_found" and "no agent run 'run-nope' to resume" in failure.evalue

    def test_resume_of_a_finished_run(self, lua: Lua, llm_server: Any) -> None:
        llm_server.reply(OPENAI, answer("hi"))
        rid = lua.run("return Agent.new{name = 'x', model = 'openai/m'}:run('hi').run_id")
        failure = lua.fail(f"Agent.resume('{rid}')")
        assert failure.ename == "not_resumable" and "is done" in failure.evalue

    def test_a_decision_for_a_call_that_is_not_pending(self, lua: Lua, llm_server: Any) -> None:
        result = paused(lua, llm_server)
        failure = lua.fail(f"Agent.resume('{result['run_id']}', {{approve = {{'call_zzz'}}}})")
        assert failure.ename == "not_pending" and "call_n (note)" in failure.evalue
        # nothing was lost: the run still waits and can be approved
        llm_server.reply(OPENAI, answer("done"))
        assert lua.run(f"return Agent.resume('{result['run_id']}', {{approve = {{'note'}}}}).status") == "done"

    def test_resume_without_a_decision_says_what_waits(self, lua: Lua, llm_server: Any) -> None:
        result = paused(lua, llm_server)
        failure = lua.fail(f"Agent.resume('{result['run_id']}')")
        assert failure.ename == "needs_approval" and "call_n (note" in failure.evalue

    def test_bad_types_are_named_in_luas_words(self, lua: Lua, llm_server: Any) -> None:
        assert "the run id must be a non-empty string, got an integer" in lua.fail("Agent.resume(42)").evalue
        assert "the run id must be a non-empty string, got a table (a list)" in lua.fail("Agent.resume({1})").evalue
        result = paused(lua, llm_server)
        failure = lua.fail(f"Agent.resume('{result['run_id']}', {{approve = 7}})")
        assert "approve must be a list of call ids" in failure.evalue and "got an integer" in failure.evalue

    def test_bad_options(self, lua: Lua) -> None:
        assert "unknown option" in lua.fail("Agent.resume('r', {aprove = {}})").evalue
        assert "approval" in lua.fail("Tool.define{name = 't', fn = function() end, approval = 3}").evalue
        assert "approve" in lua.fail("Agent.new{name = 'q', approve = {3}}").evalue


class TestCorruptedJournal:
    def test_a_corrupted_entry_is_a_clear_error_and_nothing_is_lost(self, lua: Lua, llm_server: Any,
                                                                     tmp_path: Path) -> None:
        import sqlite3
        from contextlib import closing

        result = paused(lua, llm_server)  # calculate finished (journaled), note waits
        journal = tmp_path / "data" / "journal.sqlite"
        with closing(sqlite3.connect(journal)) as db, db:
            db.execute("UPDATE effects SET outcome = '{not json' WHERE name = 'calculate'")
        failure = lua.fail(f"Agent.resume('{result['run_id']}', {{approve = {{'note'}}}})")
        assert failure.ename == "journal_corrupted"
        assert "is corrupt: the stored outcome of call '1.0#0' ('calculate')" in failure.evalue
        assert "Nothing was run or deleted" in failure.evalue
        with closing(sqlite3.connect(journal)) as db:
            assert db.execute("SELECT count(*) FROM effects").fetchone()[0] == 1  # the entry is still there
        assert lua.run("return notes") is None
        # fixed by hand, the run resumes where it was
        with closing(sqlite3.connect(journal)) as db, db:
            db.execute("UPDATE effects SET outcome = '{\"result\": 2}' WHERE name = 'calculate'")
        llm_server.reply(OPENAI, answer("done"))
        assert lua.run(f"return Agent.resume('{result['run_id']}', {{approve = {{'note'}}}}).status") == "done"
        assert lua.run("return notes") == "hi;"

    def test_a_journal_that_is_not_a_database(self, llm_server: Any, tmp_path: Path, make_lua: Any) -> None:
        first = make_lua()
        result = paused(first, llm_server)
        first.close(close_models=True)
        journal = tmp_path / "data" / "journal.sqlite"
        for extra in ("-wal", "-shm"):
            Path(str(journal) + extra).unlink(missing_ok=True)
        journal.write_bytes(b"this is not a database" * 100)
        second = open_lua(tmp_path)
        try:
            second.run(WRITER)
            failure = second.fail(f"Agent.resume('{result['run_id']}', {{approve = {{'note'}}}})")
            assert failure.ename == "journal_corrupted" and str(journal) in failure.evalue
            assert second.run("return Agent.runs('needs_approval')[1].run_id") == result["run_id"]
        finally:
            second.close(close_models=True)


def test_a_fresh_run_looks_up_in_the_journal_only_the_calls_it_journaled(lua: Lua, llm_server: Any,
                                                                          monkeypatch: Any) -> None:
    """A run this process started holds nothing in the journal but what it wrote: its calls are
    not looked up there (one read per call saved); a resumed run's calls are."""
    journal = lua.components.journal
    assert journal is not None
    asked: list[str] = []
    real_get = journal.get
    monkeypatch.setattr(journal, "get", lambda run_id, key: asked.append(key) or real_get(run_id, key))
    result = paused(lua, llm_server)
    assert result["status"] == "needs_approval" and asked == []
    llm_server.reply(OPENAI, answer("done"))
    done = lua.run(f"return Agent.resume('{result['run_id']}', {{approve = {{'call_n'}}}})")
    assert done["status"] == "done" and len(asked) == 2  # calculate replayed from it, note looked up
    tool_messages = [m for m in sent_messages(llm_server) if m["role"] == "tool"]
    assert [m["content"] for m in tool_messages] == ["2", "noted hi"]
