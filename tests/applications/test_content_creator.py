"""Application 3, the content creator: planner, writer, editor and formatter agents in a workflow.
Checked: the artifact has a version per stage, in order, each exactly the text of the agent of that
stage; each agent was handed the previous stage's text; the final version is the page written to
out/ and is Markdown with a title, a summary, a table of contents and the sections; the trace shows
all four agents."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.support.scripted_model import Turn

pytestmark = pytest.mark.slow

ARTIFACT = "content/why-small-teams-should-write-design-docs.md"
OUTLINE = "# Design docs for small teams\n\n## Why write\nThinking on paper.\n\n## What to write\nGoals and trade-offs."


def draft(turn: Turn) -> str:
    outline = turn.user.split("Outline:\n", 1)[1]
    return re.sub(r"\n([^#\n].*)", r"\n\1 A design doc makes this explicit before any code exists.", outline)


def edit(turn: Turn) -> str:
    return turn.user.replace(" A design doc makes this explicit before any code exists.", " Write it down first.")


def page(turn: Turn) -> str:
    title, rest = turn.user.split("\n", 1)
    toc = "\n".join(f"- {h}" for h in re.findall(r"^## (.+)$", turn.user, flags=re.M))
    return f"{title}\n\n*Why and what: design docs for small teams.*\n\n{toc}\n{rest}"


def test_four_agents_leave_a_versioned_markdown_artifact(app: Any, scripted_model: Any) -> None:
    scripted_model.role("You are the planner", OUTLINE)
    scripted_model.role("You are the writer", draft)
    scripted_model.role("You are the editor", edit)
    scripted_model.role("You are the formatter", page)
    run = app.run("content_creator")
    versions = app.artifact_versions(ARTIFACT)
    assert [(v.version, v.metadata["stage"], v.metadata["agent"]) for v, _ in versions] == [
        (1, "draft", "writer"), (2, "edited", "editor"), (3, "final", "formatter")]
    texts = [text for _, text in versions]
    assert texts[0] == draft(scripted_model.requests("You are the writer")[0])
    assert "Thinking on paper. A design doc makes this explicit" in texts[0]
    assert scripted_model.requests("You are the editor")[0].user == texts[0]
    assert scripted_model.requests("You are the formatter")[0].user == texts[1] and "Write it down first." in texts[1]
    final = (app.dir / "out" / "why-small-teams-should-write-design-docs.md").read_text()
    assert final == texts[2] and all(v.mime == "text/markdown" for v, _ in versions)
    assert final.startswith("# Design docs for small teams\n\n*") and "- Why write\n- What to write" in final
    assert re.findall(r"^## (.+)$", final, flags=re.M) == ["Why write", "What to write"]
    report = app.json("out/report.json")
    assert report["status"] == "succeeded" and [v["version"] for v in report["versions"]] == [1, 2, 3]
    names = app.span_names(report["trace_id"])
    for agent in ("planner", "writer", "editor", "formatter"):
        assert f"invoke_agent {agent}" in names
    assert "v3  final   by formatter" in run.stdout
