"""Git tools on real repositories created with ``git init`` in a temporary directory."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from aikit_components.tools import ToolContext
from tests.support.tools import ToolCaller, ToolEnv, expect_error

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

AUTHOR = {"author_name": "Ada Lovelace", "author_email": "ada@example.org"}


@pytest.fixture
def repo(workdir: Path) -> Path:
    path = workdir / "repo"
    path.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    return path


def test_status_add_commit_log(call: ToolCaller, ctx: ToolContext, repo: Path) -> None:
    status = call(ctx, "git_status", {"repo": "repo"})
    assert status["branch"] == "main" and status["commit"] is None and status["clean"] is True

    (repo / "README.md").write_text("# Hello\n")
    (repo / "docs").mkdir()
    (repo / "docs" / "guide café.txt").write_text("guide\n")
    status = call(ctx, "git_status", {"repo": "repo"})
    assert sorted(status["untracked"]) == ["README.md", "docs/guide café.txt"]
    assert status["clean"] is False

    added = call(ctx, "git_add", {"repo": "repo", "paths": ["README.md", "docs"]})
    assert sorted(added["staged"]) == ["README.md", "docs/guide café.txt"]
    status = call(ctx, "git_status", {"repo": "repo"})
    assert {e["path"]: e["status"] for e in status["staged"]} == {"README.md": "added", "docs/guide café.txt": "added"}

    commit = call(ctx, "git_commit", {"repo": "repo", "message": "Add README\n\nWith a body.", **AUTHOR})
    assert len(commit["hash"]) == 40 and commit["subject"] == "Add README" and commit["branch"] == "main"
    assert call(ctx, "git_status", {"repo": "repo"})["clean"] is True

    log = call(ctx, "git_log", {"repo": "repo"})
    assert len(log) == 1
    assert log[0]["hash"] == commit["hash"]
    assert log[0]["author"] == "Ada Lovelace" and log[0]["email"] == "ada@example.org"
    assert log[0]["subject"] == "Add README" and log[0]["date"][:4].isdigit()


def test_diff_unstaged_and_staged(call: ToolCaller, ctx: ToolContext, repo: Path) -> None:
    (repo / "app.py").write_text("print('one')\n")
    call(ctx, "git_add", {"repo": "repo", "paths": ["."]})
    call(ctx, "git_commit", {"repo": "repo", "message": "one", **AUTHOR})
    (repo / "app.py").write_text("print('one')\nprint('two')\n")

    diff = call(ctx, "git_diff", {"repo": "repo"})
    assert "+print('two')" in diff["diff"]
    assert diff["files"] == [{"path": "app.py", "additions": 1, "deletions": 0, "binary": False}]
    assert call(ctx, "git_diff", {"repo": "repo", "staged": True})["diff"] == ""

    call(ctx, "git_add", {"repo": "repo", "paths": ["app.py"]})
    staged = call(ctx, "git_diff", {"repo": "repo", "staged": True, "path": "app.py"})
    assert "+print('two')" in staged["diff"]
    assert call(ctx, "git_diff", {"repo": "repo"})["diff"] == ""
    status = call(ctx, "git_status", {"repo": "repo"})
    assert status["staged"] == [{"path": "app.py", "status": "modified"}]

    second = call(ctx, "git_commit", {"repo": "repo", "message": "two", **AUTHOR})
    log = call(ctx, "git_log", {"repo": "repo", "max_count": 1})
    assert [c["hash"] for c in log] == [second["hash"]]
    assert [c["subject"] for c in call(ctx, "git_log", {"repo": "repo"})] == ["two", "one"]


def test_hooks_do_not_run(call: ToolCaller, ctx: ToolContext, repo: Path) -> None:
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\ntouch \"$GIT_DIR/../hook-ran\"\nexit 1\n")
    hook.chmod(hook.stat().st_mode | stat.S_IEXEC)
    (repo / "f.txt").write_text("x\n")
    call(ctx, "git_add", {"repo": "repo", "paths": ["f.txt"]})
    call(ctx, "git_commit", {"repo": "repo", "message": "no hooks", **AUTHOR})
    assert not (repo / "hook-ran").exists()


def test_empty_repository_log(call: ToolCaller, ctx: ToolContext, repo: Path) -> None:
    assert call(ctx, "git_log", {"repo": "repo"}) == []


def test_not_a_repository(call: ToolCaller, ctx: ToolContext, workdir: Path) -> None:
    (workdir / "plain").mkdir()
    for name, args in (("git_status", {}), ("git_log", {}), ("git_diff", {}), ("git_add", {"paths": ["."]}),
                       ("git_commit", {"message": "x"})):
        error = expect_error("not_found", call, ctx, name, {"repo": "plain", **args})
        assert "not a git repository" in error.message and "git init" in error.message
    expect_error("not_found", call, ctx, "git_status", {"repo": "does-not-exist"})


def test_bad_input(call: ToolCaller, ctx: ToolContext, repo: Path) -> None:
    error = expect_error("permission_denied", call, ctx, "git_status", {"repo": "/"})
    assert error.details["rule"] == "allowed_paths"
    expect_error("permission_denied", call, ctx, "git_add", {"repo": "repo", "paths": ["../../outside.txt"]})
    expect_error("not_found", call, ctx, "git_add", {"repo": "repo", "paths": ["no-such-file.txt"]})
    expect_error("invalid_argument", call, ctx, "git_add", {"repo": "repo", "paths": []})
    expect_error("invalid_argument", call, ctx, "git_add", {"repo": "repo", "paths": "README.md"})
    error = expect_error("invalid_argument", call, ctx, "git_commit", {"repo": "repo", "message": "nothing", **AUTHOR})
    assert "git_add" in error.message
    expect_error("invalid_argument", call, ctx, "git_commit", {"repo": "repo", "message": "  ", **AUTHOR})
    expect_error("invalid_argument", call, ctx, "git_commit",
                 {"repo": "repo", "message": "x", "author_name": "Eve <evil>", "author_email": "e@x"})
    expect_error("invalid_argument", call, ctx, "git_log", {"repo": "repo", "max_count": 0})
    expect_error("invalid_argument", call, ctx, "git_diff", {"repo": "repo", "staged": "yes"})


def test_git_must_be_allowed(call: ToolCaller, env: ToolEnv, repo: Path) -> None:
    ctx = ToolContext(env.policy(allowed_commands={"echo"}))
    error = expect_error("permission_denied", call, ctx, "git_status", {"repo": "repo"})
    assert error.details["rule"] == "allowed_commands"


def test_user_environment_does_not_redirect_git(call: ToolCaller, ctx: ToolContext, repo: Path, workdir: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    other = workdir / "other"
    other.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "trunk", str(other)], check=True)
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))  # not allowlisted: the child must not see it
    assert call(ctx, "git_status", {"repo": "repo"})["branch"] == "main"
    assert os.environ["GIT_DIR"]
