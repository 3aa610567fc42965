"""Application 8, the web app creator: 21 agents in six groups (each a lead delegating to its
members) write a to-do API with its own tests; the app runs those tests and feeds failures back to
the implementation group. The scripted answers are the ones the notebook's test model gives
(examples/applications/web_app_creator/notebook_setup.lua): the first implementation forgets to
delete. Checked: the generated application's files exist and parse, its own test suite passes
(run again here), the failure went back to the implementation lead, every agent is in the trace,
and the report names the trace; with a fix that never comes the run stops after its rounds."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from typing import Any

import pytest

from tests.support.applications import APPLICATIONS
from tests.support.scripted_model import Turn

pytestmark = pytest.mark.slow

SETUP = (APPLICATIONS / "web_app_creator" / "notebook_setup.lua").read_text()
CODE = {name: re.search(rf"^{name} = \[==\[\n(.*?)\]==\]", SETUP, flags=re.S | re.M).group(1)
        for name in ("TODO_API", "TEST_TODO_API")}
# notebook_setup.lua makes the buggy first version as the fixed one without its delete line.
CODE["BUGGY_TODO_API"] = CODE["TODO_API"].replace('            del TODOS[item["id"]]\n', "", 1)
assert CODE["BUGGY_TODO_API"] != CODE["TODO_API"]
GROUPS = {"requirements_lead": ["analyst", "user_advocate"], "architecture_lead": ["api_designer", "data_modeler"],
          "implementation_lead": ["model_dev", "store_dev", "handler_dev", "router_dev"],
          "test_lead": ["unit_tester", "api_tester", "edge_tester"], "docs_lead": ["readme_writer", "api_doc_writer"],
          "review_lead": ["security_reviewer", "quality_reviewer"]}


def lead(name: str, fixes: bool = True) -> Any:
    def reply(turn: Turn) -> Any:
        if turn.user.startswith("The tests failed"):
            return f"```python\n{CODE['TODO_API' if fixes else 'BUGGY_TODO_API']}```"
        if turn.messages[-1]["role"] == "user":
            return {"tool_calls": [{"name": t, "arguments": {"input": f"your part of {name}"}} for t in turn.tools]}
        if name == "implementation_lead":
            return f"```python\n{CODE['BUGGY_TODO_API']}```"
        if name == "test_lead":
            return f"```python\n{CODE['TEST_TODO_API']}```"
        return f"# {name}\n\nMerged from: " + ", ".join(turn.tools) + "\n"
    return reply


def script(model: Any, fixes: bool = True) -> None:
    for name in GROUPS:
        model.role(f"You are the {name},", lead(name, fixes), always=True)
    model.role("group of a team writing a small web application", lambda t: "my part: " + t.user[:40], always=True)


def test_twenty_one_agents_write_an_app_whose_tests_pass(app: Any, scripted_model: Any) -> None:
    script(scripted_model)
    run = app.run("web_app_creator")
    report = app.json("out/report.json")
    assert report["agents"] == 21 and report["groups"] == 6 and report["tests_passed"] is True
    assert [(r["round"], r["exit_code"], r["failures"]) for r in report["rounds"]] == [(1, 1, 1), (2, 0, 0)]
    fix_request = [t for t in scripted_model.requests("You are the implementation_lead,")
                   if t.user.startswith("The tests failed")]
    assert len(fix_request) == 1 and "FAIL: test_delete" in fix_request[0].user
    target = app.dir / "out" / "todo_app"
    for name in ("todo_api.py", "test_todo_api.py"):
        ast.parse((target / name).read_text())
    assert (target / "todo_api.py").read_text() == CODE["TODO_API"]
    for doc in ("REQUIREMENTS.md", "ARCHITECTURE.md", "README.md", "REVIEW.md"):
        assert (target / doc).read_text().startswith("# ")
    again = subprocess.run([sys.executable, "-m", "unittest", "-v", "test_todo_api"], cwd=target,
                           capture_output=True, text=True)
    assert again.returncode == 0 and "Ran 4 tests" in again.stderr, again.stderr
    names = set(app.span_names(report["trace_id"]))
    every_agent = set(GROUPS) | {m for members in GROUPS.values() for m in members}
    assert len(every_agent) == 21 and {f"invoke_agent {a}" for a in every_agent} <= names
    asked = {re.match(r"You are the (\w+) of", t.messages[0]["content"]).group(1)
             for t in scripted_model.requests("group of a team writing a small web application")}
    assert asked == every_agent - set(GROUPS)  # every member was delegated to
    assert report["trace_id"] in (app.dir / "out" / "report.md").read_text() and report["trace_id"] in run.stdout
    assert report["steps"] == {s: "succeeded" for s in ("requirements", "architecture", "implementation", "tests",
                                                         "build_and_test", "docs", "review")}


def test_stops_after_its_rounds_when_the_tests_keep_failing(app: Any, scripted_model: Any) -> None:
    script(scripted_model, fixes=False)
    run = app.run("web_app_creator", env={"AIKIT_WEBAPP__MAX_FIX_ROUNDS": "2"}, check=False)
    assert run.returncode == 1 and "the generated application's tests did not pass" in run.stderr
    report = json.loads((app.dir / "out" / "report.json").read_text())
    assert report["tests_passed"] is False and [r["exit_code"] for r in report["rounds"]] == [1, 1]
