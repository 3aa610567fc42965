"""Application 4, the code review assistant: three reviewer agents in parallel on a real diff of a
git repository the app creates, a fixer whose patch must pass `git apply --check`. The scripted
fixer first sends a patch with wrong context (as models do), so the app's feedback loop is
exercised: git's complaint goes back to the fixer, whose second patch applies. Checked on the
repository itself: the fix is committed, reverses cleanly, and the fixed file behaves."""

from __future__ import annotations

import difflib
import re
import subprocess
import sys
from typing import Any

import pytest

from tests.support.scripted_model import Turn

pytestmark = pytest.mark.slow

REVIEWERS = {"security": "- todo.py:26: os.system runs shell commands built from the caller's path",
             "correctness": "- todo.py:21: remove() is documented 1-based but deletes ITEMS[index]",
             "style": "- todo.py:3: import os is only used by os.system"}


def fixed(source: str) -> str:
    return (source.replace("import os\n\n", "")
            .replace("    del ITEMS[index]\n", "    if not 1 <= index <= len(ITEMS):\n"
                                                "        raise IndexError(f\"no item {index}\")\n"
                                                "    del ITEMS[index - 1]\n")
            .replace("    os.system(\"touch \" + path)\n", ""))


def patch(turn: Turn) -> str:
    source = re.search(r"```python\n(.*?)```", turn.user, flags=re.S).group(1)
    diff = "".join(difflib.unified_diff(source.splitlines(True), fixed(source).splitlines(True), "a/todo.py",
                                        "b/todo.py"))
    return f"Here is the fix:\n```diff\n{diff}```"


def wrong_context(turn: Turn) -> str:
    return patch(turn).replace(' """A tiny to-do list kept in memory."""', ' """A tiny list."""')


def test_parallel_reviewers_and_a_fix_that_applies(app: Any, scripted_model: Any) -> None:
    for kind, finding in REVIEWERS.items():
        scripted_model.role(f"You are the {kind} reviewer", finding)
    scripted_model.role("You are the fixer", wrong_context, patch)
    app.run("code_review")
    report = app.json("out/review.json")
    assert sorted(report["layers"][0]) == ["correctness", "security", "style"]  # the parallel reviewers
    tries = report["tries"]
    assert [t["exit_code"] for t in tries] == [1, 0] and "patch does not apply" in tries[0]["stderr"]
    second = scripted_model.requests("You are the fixer")[1]
    assert second.user.startswith("git apply --check rejected your patch:") and "todo.py" in second.user
    # every reviewer saw the real diff, and the fixer their findings
    for kind in REVIEWERS:
        sent = scripted_model.requests(f"You are the {kind} reviewer")[0].user
        assert sent.startswith("diff --git a/todo.py b/todo.py") and '+    os.system("touch " + path)' in sent
    assert all(f in scripted_model.requests("You are the fixer")[0].user for f in REVIEWERS.values())

    repo = app.dir / "work" / "repo"
    git = ["git", "-C", str(repo)]
    log = subprocess.run([*git, "log", "--format=%H %s"], capture_output=True, text=True, check=True).stdout
    assert log.splitlines()[0] == f"{report['commit']} Apply the review's fixes"
    assert subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                          check=True).stdout == ""
    reverse = subprocess.run([*git, "apply", "--check", "-R", str(app.dir / "work" / "fix.patch")],
                             capture_output=True, text=True)
    assert reverse.returncode == 0, reverse.stderr  # the committed tree is exactly the patched one
    source = (repo / "todo.py").read_text()
    assert "os.system" not in source and "import os" not in source
    probe = ("import todo\ntodo.add('a'); todo.add('b'); todo.remove(1)\nassert [i['text'] for i in todo.ITEMS] == ['b']\n"
             "try:\n    todo.remove(5)\nexcept IndexError:\n    print('ok')\n")
    ran = subprocess.run([sys.executable, "-c", probe], cwd=repo, capture_output=True, text=True)
    assert ran.stdout == "ok\n", ran.stderr
    review = (app.dir / "out" / "review.md").read_text()
    assert "after 2 attempt(s)" in review and all(f in review for f in REVIEWERS.values())
    names = app.span_names(report["trace_id"])
    assert {f"invoke_agent {k}_reviewer" for k in REVIEWERS} | {"invoke_agent fixer"} <= set(names)
