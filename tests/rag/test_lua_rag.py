"""The Lua ``RAG`` global in process (as the kernel wires it), the example script, and an agent
using a collection through its search tool (the OpenAI wire format replayed by a local server)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.agents import OPENAI, answer, call, sent_messages
from tests.support.lua import Lua
from tests.support.postgres import storage_env
from tests.support.rag import ROOT

FACTS = """{
  {id = 'paris', text = 'Paris is the capital of France.', metadata = {lang = 'en', source = 'geo.md'}},
  {id = 'berlin', text = 'Berlin is the capital of Germany.', metadata = {lang = 'de', source = 'geo.md'}},
  {id = 'owl', text = 'Owls hunt small mammals at night.', metadata = {lang = 'en', source = 'birds.md'}},
}"""


class TestCollections:
    def test_ingest_search_delete_stats(self, lua: Lua) -> None:
        r = lua.run(f"col = RAG.collection('facts') return col:ingest({FACTS})")
        assert r == {"documents": 3, "chunks": 3, "unchanged": 0, "ids": ["paris", "berlin", "owl"]}
        hit = lua.run("return col:search('What is the capital of France?', {k = 1})[1]")
        assert hit["document_id"] == "paris" and hit["text"] == "Paris is the capital of France."
        assert hit["metadata"] == {"lang": "en", "source": "geo.md"} and hit["score"] > 0 and "chunk_id" in hit
        assert lua.run("return col:search('capital', {mode = 'lexical', filter = {lang = 'de'}})[1].document_id") == "berlin"
        assert lua.run("return #col:search('capital', {k = 10, mode = 'vector', filter = {source = 'geo.md'}})") == 2
        assert lua.run("return col:delete('owl'), col:delete('owl'), col:stats().documents") == (True, False, 2)
        stats = lua.run("return col:stats()")
        assert stats["embedder"]["name"] == "local/all-MiniLM-L6-v2" and stats["embedder"]["dim"] == 384
        if lua.components.rag.in_postgres:
            assert stats["index"]["kind"] == "pgvector-hnsw" and "tsvector" in stats["lexical"]
        else:
            assert stats["index"]["kind"] == "exact" and "FTS5" in stats["lexical"]
        assert lua.run("return tostring(col), col.name, col.tenant") == ("collection facts", "facts", None)

    def test_search_by_vector(self, lua: Lua) -> None:
        lua.run(f"col = RAG.collection('vec', {{exact_threshold = 2}}) col:ingest({FACTS})")
        lua.run("v = {} for i = 1, 384 do v[i] = 0 end v[1] = 1")
        hits = lua.run("return col:search(v, {k = 3})")
        assert len(hits) == 3
        assert lua.run("return col:stats().index.kind") == ("pgvector-hnsw" if lua.components.rag.in_postgres else "hnsw")

    def test_tenant_isolation_through_lua(self, lua: Lua) -> None:
        lua.run("a = RAG.collection('docs', {tenant = 'acme'}) b = RAG.collection('docs', {tenant = 'globex'})")
        lua.run("a:ingest{{id = 'secret', text = 'The acme vault code is 4711.'}} b:ingest('Globex likes hammocks.')")
        for mode in ("hybrid", "vector", "lexical"):
            found = lua.run("local out = {} "
                            f"for _, h in ipairs(b:search('acme vault code 4711', {{k = 10, mode = '{mode}'}})) "
                            "do out[#out + 1] = h.document_id end return out")
            assert "secret" not in (found or []), mode
        assert lua.run("return a:search('vault code', {k = 1, mode = 'lexical'})[1].document_id") == "secret"
        assert lua.run("return tostring(a)") == "collection docs (tenant acme)"
        assert [c["name"] for c in lua.run("return RAG.list{tenant = 'acme'}")] == ["docs"]
        assert lua.run("return RAG.drop('docs', {tenant = 'globex'}), #RAG.list{tenant = 'globex'}") == (True, 0)
        failure = lua.fail("b:stats()")
        assert failure.ename == "not_found"

    @pytest.mark.parametrize("code, ename, fragment", [
        ("col:search('')", "invalid_argument", "query is empty"),
        ("col:search('x', {mode = 'fuzzy'})", "invalid_argument", "unknown search mode"),
        ("col:search('x', {k = 0})", "invalid_argument", "k must be"),
        ("col:search('x', {kk = 1})", "invalid_argument", "unknown option"),
        ("col:search(42)", "invalid_argument", "must be a string"),
        ("col:ingest()", "invalid_argument", "takes a string"),
        ("col:ingest{{text = 5}}", "invalid_argument", "non-empty string"),
        ("col:ingest_file('missing.txt')", "not_found", "missing.txt"),
        ("col:ingest_file('/etc/hostname')", "permission_denied", "outside the allowed paths"),
        ("col:ingest_file('latin1.txt')", "unsupported_file", "not UTF-8"),
        ("RAG.collection('../up')", "invalid_argument", "collection name"),
        ("RAG.collection('x', {colour = 1})", "invalid_argument", "unknown option"),
    ])
    def test_bad_input_is_a_structured_error_and_loses_nothing(self, lua: Lua, code: str, ename: str, fragment: str) -> None:
        Path("latin1.txt").write_bytes("na\xefve".encode("latin-1"))
        lua.run(f"col = RAG.collection('bad') col:ingest({FACTS})")
        failure = lua.fail(code)
        assert failure.ename == ename and fragment in failure.evalue, failure
        assert lua.run("local ok, e = pcall(function() " + code + " end) return type(e), e.code") == ("table", ename)
        assert lua.run("return col:stats().documents") == 3

    def test_ingest_file_and_directory_inside_the_allowed_paths(self, lua: Lua) -> None:
        Path("kb").mkdir()
        Path("kb/a.md").write_text("# Alpha\n\nAlpacas live in the Andes.\n")
        Path("kb/b.txt").write_text("Bees make honey.")
        Path("kb/.hidden.txt").write_text("secret")
        r = lua.run("col = RAG.collection('kb') return col:ingest_file('kb')")
        assert r["documents"] == 2 and r["chunks"] == 2
        hit = lua.run("return col:search('alpacas', {k = 1, filter = {source = 'a.md'}})[1]")
        assert hit["metadata"]["section"] == "Alpha" and hit["metadata"]["type"] == "md"
        assert lua.run("return col:ingest_file('kb').unchanged") == 2

    def test_persisted_across_new_components(self, make_lua: Any, rag_storage: Any) -> None:
        first = make_lua(env=storage_env(rag_storage))
        first.run(f"RAG.collection('keep', {{tenant = 't'}}):ingest({FACTS})")
        first.engine.close()
        first.components.close()
        second = make_lua(env=storage_env(rag_storage))
        assert second.run("return RAG.collection('keep', {tenant = 't'}):search('owls', {k = 1})[1].document_id") == "owl"

    def test_inspect_names_the_embedder(self, lua: Lua) -> None:
        doc = lua.engine.introspection.inspect("RAG", 3)
        assert doc is not None and "all-MiniLM-L6-v2" in doc and "BM25" in doc


def test_example_script_runs() -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AIKIT_") or k == "AIKIT_TRUST_PROJECT_CONFIG"}}
    with __import__("tempfile").TemporaryDirectory() as tmp:
        env["AIKIT_DATA_DIR"] = tmp
        aikit = Path(sys.executable).with_name("aikit")
        proc = subprocess.run([str(aikit), "run", "examples/rag/search.lua"], capture_output=True, text=True,
                              timeout=180, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("ingested 6 documents") and "solar_system.txt" in lines[1]
    assert "The Tortoise and the Hare" in proc.stdout and "other tenant sees\t0\tchunks" in proc.stdout


class TestAgentRetrieval:
    def test_agent_searches_its_collection(self, make_agent_lua: Any, llm_server: Any) -> None:
        lua = make_agent_lua()
        server = llm_server
        server.reply(OPENAI,
                     answer(None, [call("search_acme_handbook", {"query": "paid leave days", "k": 2}, "call_rag")]),
                     answer("You get 25 days of paid leave."))
        result = lua.run("""
            kb = RAG.collection('handbook', {tenant = 'acme'})
            kb:ingest{{id = 'leave', text = 'Employees get 25 days of paid leave per year.', metadata = {section = 'HR'}},
                      {id = 'lunch', text = 'The canteen serves lunch from noon.'}}
            local a = Agent.new{name = 'hr', model = 'openai/m', collections = {kb}}
            return a:run('How many days of leave do I get?')""")
        assert result["text"] == "You get 25 days of paid leave."
        record = result["tool_calls"][0]
        assert record["name"] == "search_acme_handbook" and record["result"][0]["document_id"] == "leave"
        tools = server.requests_to(OPENAI)[0].json()["tools"]
        assert [t["function"]["name"] for t in tools] == ["search_acme_handbook"]
        assert tools[0]["function"]["parameters"]["required"] == ["query"]
        tool_message = sent_messages(server)[-1]
        assert tool_message["role"] == "tool" and tool_message["tool_call_id"] == "call_rag"
        passages = json.loads(tool_message["content"])
        assert passages[0]["text"] == "Employees get 25 days of paid leave per year." and len(passages) == 2

    def test_collections_must_be_collections(self, make_agent_lua: Any) -> None:
        lua = make_agent_lua()
        failure = lua.fail("Agent.new{model = 'openai/m', collections = {'handbook'}}")
        assert failure.ename == "invalid_argument" and "RAG collections" in failure.evalue
