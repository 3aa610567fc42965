"""Application 5, the knowledge base: ingest, answers with citations, the conversation remembered
across sessions, served over MCP. Two `aikit run` sessions, then `aikit mcp serve --stdio --script
main.lua` driven by the MCP Python SDK's own client. Checked: citations name the chunks holding
the answer; the second session's request carries the first exchange; over MCP the tools are
listed, kb_ask answers with checked citations, and the history is a readable resource."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from tests.support.applications import AIKIT
from tests.support.scripted_model import Turn

pytestmark = pytest.mark.slow

ROLE = "You are the knowledge base assistant"
KEYWORDS = {"leave": "25 days", "carry": "carry over", "laptop": "lost laptop"}


def assistant(turn: Turn) -> Any:
    """Searches with the question, then answers from the hit holding the fact, citing its chunk id."""
    if turn.messages[-1]["role"] != "tool":
        return {"tool_calls": [{"name": "search_kb", "arguments": {"query": turn.user, "k": 5}}]}
    fact = next(v for k, v in KEYWORDS.items() if k in turn.user.lower())
    hit = next(h for h in turn.tool_json() if fact in h["text"])
    body = hit["text"].split("\n\n", 1)[-1].replace("\n", " ")
    sentence = next(s for s in body.split(". ") if fact in s).rstrip(".")
    return f"{sentence}. [{hit['chunk_id']}]"


def test_answers_remembers_and_serves_over_mcp(app: Any, scripted_model: Any) -> None:
    scripted_model.role(ROLE, assistant, always=True)
    first = app.run("knowledge_base", "ask", "How many days of paid leave do I get?")
    answer = app.json("out/answer.json")
    assert answer["answer"].startswith("Everyone gets 25 days of paid leave per calendar year")
    assert not answer["unknown_citations"] and len(answer["citations"]) == 1
    cited = answer["citations"][0]
    assert cited["source"] == "leave.md" and cited["section"] == "Leave > Paid leave" and "25 days" in cited["text"]
    assert f"[{cited['chunk_id']}] leave.md" in first.stdout

    app.run("knowledge_base", "ask", "Can I carry unused days over?")
    second = app.json("out/answer.json")
    assert second["answer"].startswith("Up to five unused days carry over")
    assert second["citations"][0]["source"] == "leave.md"
    later = [t for t in scripted_model.requests(ROLE) if "carry" in t.user][0]
    contents = [m.get("content") or "" for m in later.messages]
    assert "How many days of paid leave do I get?" in contents  # the first session's exchange, remembered
    assert any(c.startswith("Everyone gets 25 days") for c in contents)

    params = StdioServerParameters(command=str(AIKIT), args=["mcp", "serve", "--stdio", "--script", "main.lua"],
                                   env=app.env(), cwd=str(app.dir))

    async def session() -> None:
        async with Client(params) as client:
            names = sorted(t.name for t in (await client.list_tools()).tools)
            assert names == ["kb_ask", "search_kb"]
            result = await client.call_tool("kb_ask", {"question": "What do I do about a lost laptop?"})
            assert not result.is_error, result
            served = result.structured_content
            assert served["citations"][0]["source"] == "security.md" and "lost laptop" in served["citations"][0]["text"]
            assert re.search(r"\[\d+\]$", served["answer"])
            history = await client.read_resource("state://global/kb_history")
            questions = [h["question"] for h in json.loads(history.contents[0].text)]
            assert questions == ["How many days of paid leave do I get?", "Can I carry unused days over?",
                                 "What do I do about a lost laptop?"]

    asyncio.run(asyncio.wait_for(session(), 240))
