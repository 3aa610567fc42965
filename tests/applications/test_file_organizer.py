"""Application 2, the file organizer: an agent sorts a sandboxed directory into folders. Checked:
the files really moved into the right folders, nothing left the sandbox (a move out of it was
cancelled by the app's guard), every move was approved first (by the app's policy in one test, by
`aikit approvals approve` from a terminal in the other), and the ledger recorded the decisions."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest

from tests.support.applications import AIKIT
from tests.support.scripted_model import Turn

pytestmark = pytest.mark.slow

ROLE = "You are the file organizer"
KINDS = {"txt": "documents", "md": "documents", "csv": "spreadsheets", "py": "code", "sh": "code"}
INBOX = {"meeting-notes.txt": "documents", "todo.md": "documents", "budget-2026.csv": "spreadsheets",
         "invoices.csv": "spreadsheets", "plot.py": "code", "setup.sh": "code"}


def moves(turn: Turn) -> dict[str, Any]:
    """Plays a capable model: one folder per kind, one move per file, and one move out of the sandbox."""
    entries = turn.tool_json()["entries"]
    calls: list[dict[str, Any]] = []
    for folder in sorted({KINDS[e["name"].rsplit(".", 1)[1]] for e in entries}):
        calls.append({"name": "make_directory", "arguments": {"path": f"sandbox/{folder}"}})
    for e in entries:
        folder = KINDS[e["name"].rsplit(".", 1)[1]]
        calls.append({"name": "move_file", "arguments": {"source": f"sandbox/{e['name']}",
                                                        "destination": f"sandbox/{folder}/{e['name']}"}})
    calls.append({"name": "move_file", "arguments": {"source": "sandbox/todo.md", "destination": "../todo.md"}})
    return {"tool_calls": calls}


def script(model: Any) -> None:
    model.role(ROLE, {"tool_calls": [{"name": "list_directory", "arguments": {"path": "sandbox"}}]}, moves,
               "Moved six files into documents/, spreadsheets/ and code/.")


def assert_organized(app: Any) -> None:
    sandbox = app.dir / "sandbox"
    for name, folder in INBOX.items():
        assert (sandbox / folder / name).is_file(), f"{name} is not in {folder}/"
        assert not (sandbox / name).exists()
    assert not (app.base / "todo.md").exists() and not (app.dir.parent / "todo.md").exists()


def test_moves_approved_by_policy_stay_in_the_sandbox(app: Any, scripted_model: Any) -> None:
    script(scripted_model)
    run = app.run("file_organizer", env={"AIKIT_ORGANIZER__APPROVE_MOVES": "inside_sandbox"})
    assert_organized(app)
    report = app.json("out/organizer-report.json")
    assert report["status"] == "done"
    assert sorted(d["source"].split("/")[-1] for d in report["decisions"]) == sorted(INBOX)
    assert {d["decision"] for d in report["decisions"]} == {"approved"}
    assert report["cancelled"] and all(c["destination"] == "../todo.md" for c in report["cancelled"])
    # the escape attempt reached the model as a cancelled tool call
    after = scripted_model.requests(ROLE)[-1]
    assert any("outside the sandbox" in text for text in after.tool_results)
    decided = app.audit("approval.decided")
    assert len([e for e in decided if e.data["name"] == "move_file" and e.data["decision"] == "approved"]) == 6
    assert len(app.audit("approval.requested")) >= 6
    assert "invoke_agent organizer" in app.span_names(report["trace_id"])
    assert report["trace_id"] in run.stdout


def test_without_a_policy_nothing_moves_until_a_person_approves(app: Any, scripted_model: Any) -> None:
    script(scripted_model)
    run = app.run("file_organizer")
    paused = re.search(r"aikit approvals approve (\S+)", run.stdout)
    assert paused, run.stdout
    sandbox = app.dir / "sandbox"
    assert sorted(p.name for p in sandbox.iterdir()) == sorted([*INBOX, "code", "documents", "spreadsheets"])
    assert not any(list((sandbox / folder).iterdir()) for folder in ("code", "documents", "spreadsheets"))
    approved = subprocess.run([str(AIKIT), "approvals", "approve", paused.group(1), "--reason", "looked at them"],
                              cwd=app.dir, env=app.env(), capture_output=True, text=True, timeout=120)
    assert approved.returncode == 0, approved.stdout + approved.stderr
    assert_organized(app)
    decided = [e.data for e in app.audit("approval.decided") if e.data["name"] == "move_file"]
    assert len(decided) == 6 and {d["reason"] for d in decided} == {"looked at them"}
