"""Application 1, the research summarizer: two agents over a RAG corpus. The scripted model plays a
capable model (it searches, then notes the hits that mention the waggle dance; the writer cites
them); the outcome checked is the app's: every citation names a chunk the search really returned,
from the right document, and the trace shows both agents and the search."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.scripted_model import Turn

pytestmark = pytest.mark.slow

QUESTION = "How do honeybees tell each other where the flowers are?"


def researcher_notes(turn: Turn) -> str:
    hits = turn.tool_json()
    return "\n".join(f"[{h['chunk_id']}] {h['text']}" for h in hits if "waggle" in h["text"])


def writer_answer(turn: Turn) -> str:
    ids = [line.split("]", 1)[0].lstrip("[") for line in turn.user.splitlines() if line.startswith("[")]
    return ("A forager dances the waggle dance: the angle of the run gives the direction of the flowers "
            "and its length the distance " + " ".join(f"[{i}]" for i in ids) + ".")


def test_answer_cites_the_chunks_it_used(app: Any, scripted_model: Any) -> None:
    scripted_model.role("You are the researcher",
                        {"tool_calls": [{"name": "search_research_corpus", "arguments": {"query": "waggle dance"}}]},
                        researcher_notes)
    scripted_model.role("You are the writer", writer_answer)
    run = app.run("research_summarizer", QUESTION)
    report = app.json("out/citations.json")
    assert not report["unknown_citations"]  # {} or []: an empty Lua table
    assert report["citations"], run.stdout
    corpus = (app.dir / "corpus" / "honeybees.md").read_text()
    for citation in report["citations"]:
        assert citation["source"] == "honeybees.md"
        assert "waggle" in citation["text"] and citation["text"].strip() in corpus
        assert f"[{citation['chunk_id']}]" in report["answer"]
    # the writer saw the researcher's notes, and the search's chunk ids reached the researcher's model
    assert scripted_model.calls("You are the researcher") == 2 and scripted_model.calls("You are the writer") == 1
    answer_md = (app.dir / "out" / "answer.md").read_text()
    assert answer_md.startswith("# " + QUESTION) and "## Sources" in answer_md
    names = app.span_names(report["trace_id"])
    assert "invoke_agent researcher" in names and "invoke_agent writer" in names
    assert any(n.startswith("execute_tool search_research_corpus") for n in names)
    assert report["trace_id"] in run.stdout


def test_a_citation_of_a_chunk_never_retrieved_fails_the_run(app: Any, scripted_model: Any) -> None:
    scripted_model.role("You are the researcher",
                        {"tool_calls": [{"name": "search_research_corpus", "arguments": {"query": "sourdough"}}]},
                        "[999] made up")
    scripted_model.role("You are the writer", "Bees dance [999].")
    run = app.run("research_summarizer", QUESTION, check=False)
    assert run.returncode == 1 and "do not match the retrieved chunks" in run.stderr
    assert app.json("out/citations.json")["unknown_citations"] == ["999"]
