"""Git tools: status, diff, log, add, commit on a repository inside the allowed paths.

``git`` runs through the shared process runner (:func:`.system.run_argv`: no shell, own process
group, killed on timeout or cancellation) and must be in ``security.allowed_commands``. Every call
pins the settings that make output parseable and calls unattended: no pager, no colour, no
terminal prompts, no GPG signing, no fsmonitor, no external diff or textconv programs, literal
pathspecs, and (unless ``tools.git_run_hooks`` is set) no hooks, since a repository's hooks and
config are code a script could have written. Repository discovery stops at the allowed roots
(``GIT_CEILING_DIRECTORIES``), so a directory that is not a repository is reported as such instead
of silently using a repository above the allowed paths.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..command_rules import GIT_PINNED_ENV
from ..errors import InvalidArgument, IOFailure, NotFound, PermissionDenied
from .base import ToolContext, tool
from .system import ProcessOutput, child_env, process_confinement, resolve_program, run_argv

DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_OUTPUT_BYTES = 1024 * 1024
MAX_LOG_COUNT = 10_000

_CONFIG = (
    "core.pager=cat", "color.ui=false", "core.quotepath=false", "core.fsmonitor=false", "core.editor=true",
    "commit.gpgsign=false", "tag.gpgsign=false", "log.showSignature=false", "diff.noprefix=false",
    "diff.mnemonicPrefix=false", "advice.statusHints=false", "core.untrackedCache=false",
)
_FIELD, _RECORD = "\x1f", "\x1e"
_STATUS_WORDS = {"M": "modified", "A": "added", "D": "deleted", "R": "renamed", "C": "copied", "T": "typechange",
                 "U": "unmerged", "?": "untracked", "!": "ignored"}


def _repo_dir(ctx: ToolContext, repo: str, *, write: bool = False) -> Path:
    path = ctx.policy.check_path(repo, write=write)
    if not path.exists():
        raise NotFound(f"repository directory {path} does not exist; pass the directory of a git repository",
                       details={"repo": str(path)})
    if not path.is_dir():
        raise InvalidArgument(f"repo {path} is not a directory; pass the directory of a git repository")
    return path


def _ceilings(ctx: ToolContext) -> str:
    parents = {str(root.parent) for root in ctx.policy.allowed_paths if root.parent != root}
    return os.pathsep.join(sorted(parents))


async def _git(ctx: ToolContext, repo_dir: Path, args: list[str], *, stdin: str | None = None,
               identity: dict[str, str] | None = None, max_output_bytes: int | None = None) -> ProcessOutput:
    """Run ``git -C repo_dir <pinned config> args`` and return its output (any exit code).

    The policy's check (``SecurityPolicy.check_command``) hardens the command line (hooks,
    filters, pagers and every other program a repository's configuration could name are
    neutralized: see ``command_rules``); the settings here make the output parseable."""
    argv = resolve_program(ctx, ["git", "-C", str(repo_dir), "--literal-pathspecs", "--no-optional-locks", *args],
                           repo_dir)
    config = list(_CONFIG)
    if not ctx.setting("tools.git_run_hooks", False):
        config.append(f"core.hooksPath={os.devnull}")
    else:
        config.append(f"core.hooksPath={await _hooks_dir(ctx, repo_dir)}")
    extra: list[str] = []
    for item in config:
        extra += ["-c", item]
    full = [argv[0], *extra, *argv[1:]]
    env = child_env(ctx)
    env.update(GIT_PINNED_ENV)
    env.update({
        "GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat", "PAGER": "cat", "GIT_EDITOR": "true", "LC_ALL": "C",
        "LANGUAGE": "C", "GIT_CEILING_DIRECTORIES": _ceilings(ctx), "GIT_CONFIG_NOSYSTEM": "1",
    })
    env.update(identity or {})
    timeout = float(ctx.setting("tools.git_timeout_s", ctx.setting("tools.process_timeout_s", DEFAULT_TIMEOUT_S)))
    cap = int(max_output_bytes or ctx.setting("tools.process_output_cap_bytes", DEFAULT_MAX_OUTPUT_BYTES))
    return await run_argv(full, cwd=repo_dir, env=env, stdin=stdin.encode("utf-8") if stdin is not None else None,
                          timeout_s=timeout, max_output_bytes=cap, what=f"git {args[0]}", pipeline=ctx.pipeline,
                          context=ctx, confinement=process_confinement(ctx))


async def _hooks_dir(ctx: ToolContext, repo_dir: Path) -> str:
    """The repository's own hooks directory (``tools.git_run_hooks``: the user trusts its hooks)."""
    found = resolve_program(ctx, ["git"])
    result = await run_argv([found[0], "-C", str(repo_dir), "rev-parse", "--absolute-git-dir"], cwd=repo_dir,
                            env={**child_env(ctx), "GIT_CEILING_DIRECTORIES": _ceilings(ctx), "LC_ALL": "C"},
                            stdin=None, timeout_s=30, max_output_bytes=65536, what="git rev-parse")
    return str(Path(result.text().strip()) / "hooks") if result.exit_code == 0 else os.devnull


def _fail(result: ProcessOutput, repo_dir: Path, command: str) -> None:
    """Raise the aikit error matching a failed git command."""
    err = (result.text("stderr").strip() or result.text("stdout").strip())
    lower = err.lower()
    details = {"repo": str(repo_dir), "exit_code": result.exit_code, "git": err[-2000:]}
    if "not a git repository" in lower:
        raise NotFound(f"{repo_dir} is not a git repository (nor is any parent inside the allowed paths); "
                       "create one with `git init` or pass the repository's directory as repo", details=details)
    if "dubious ownership" in lower:
        raise PermissionDenied(f"git refuses {repo_dir}: it is owned by another user (safe.directory); "
                               "add it to safe.directory in your global git config if you trust it",
                               details={**details, "rule": "git_safe_directory"})
    if "did not match any file" in lower or "pathspec" in lower and "did not match" in lower:
        raise NotFound(f"git {command}: {err}; check the paths (relative to the repository)", details=details)
    if "please tell me who you are" in lower or "author identity unknown" in lower or "empty ident" in lower:
        raise InvalidArgument("git does not know who is committing: pass author_name and author_email "
                              "(or set user.name and user.email in your git config)", details=details)
    raise IOFailure(f"git {command} failed (exit {result.exit_code}): {err[-2000:]}", details=details)


def _checked_paths(ctx: ToolContext, repo_dir: Path, paths: list[str], *, write: bool) -> list[str]:
    """Each path relative to the repository, refused when it resolves outside the allowed paths."""
    checked = []
    for item in paths:
        if not item or "\x00" in item:
            raise InvalidArgument(f"path {item!r} is empty or contains a NUL byte")
        target = Path(item).expanduser()
        ctx.policy.check_path(target if target.is_absolute() else repo_dir / target, write=write)
        checked.append(item)
    return checked


# --------------------------------------------------------------------------------------------
# Tools
# --------------------------------------------------------------------------------------------


def _nul_fields(raw: str) -> Iterator[str]:
    """The NUL-separated fields of git's ``-z`` output, empty ones skipped; a parser takes the
    fields that belong to an entry (a rename's paths) with ``next``."""
    return (field for field in raw.split("\0") if field)


def _parse_status(raw: str) -> dict[str, Any]:
    info: dict[str, Any] = {"branch": None, "detached": False, "commit": None, "upstream": None, "ahead": 0,
                            "behind": 0, "staged": [], "unstaged": [], "untracked": [], "conflicted": []}
    entries = _nul_fields(raw)
    for entry in entries:
        if entry.startswith("# "):
            key, _, value = entry[2:].partition(" ")
            if key == "branch.oid":
                info["commit"] = None if value == "(initial)" else value
            elif key == "branch.head":
                info["detached"] = value == "(detached)"
                info["branch"] = None if info["detached"] else value
            elif key == "branch.upstream":
                info["upstream"] = value
            elif key == "branch.ab":
                ahead, _, behind = value.partition(" ")
                info["ahead"], info["behind"] = abs(int(ahead)), abs(int(behind))
            continue
        kind = entry[0]
        if kind in "?!":
            if kind == "?":
                info["untracked"].append(entry[2:])
            continue
        if kind == "u":
            info["conflicted"].append(entry.split(" ", 10)[10])
            continue
        fields = entry.split(" ", 9 if kind == "2" else 8)
        xy, path = fields[1], fields[-1]
        origin = next(entries, None) if kind == "2" else None
        for column, bucket in ((xy[0], "staged"), (xy[1], "unstaged")):
            if column != ".":
                item = {"path": path, "status": _STATUS_WORDS.get(column, column)}
                if origin and column in "RC":
                    item["from"] = origin
                info[bucket].append(item)
    info["clean"] = not (info["staged"] or info["unstaged"] or info["untracked"] or info["conflicted"])
    return info


@tool(category="git", security="read", examples=[
    {"args": {"repo": "."},
     "result": {"branch": "main", "detached": False, "commit": "9fceb02d0ae598e95dc970b74767f19372d61af8",
                "upstream": None, "ahead": 0, "behind": 0, "clean": False,
                "staged": [{"path": "README.md", "status": "modified"}], "unstaged": [],
                "untracked": ["notes.txt"], "conflicted": []}},
])
async def git_status(ctx: ToolContext, repo: str = ".") -> dict[str, Any]:
    """Show the branch and which files are staged, modified, untracked or conflicted.

    Args:
        repo: The repository's directory (or any directory inside it), inside the allowed paths.

    Returns:
        {branch, detached, commit, upstream, ahead, behind, clean, staged: [{path, status, from?}],
        unstaged: [{path, status}], untracked: [path], conflicted: [path]}.
    """
    repo_dir = _repo_dir(ctx, repo)
    result = await _git(ctx, repo_dir, ["status", "--porcelain=v2", "--branch", "-z", "--untracked-files=all"])
    if result.exit_code != 0:
        _fail(result, repo_dir, "status")
    status = _parse_status(result.text())
    status["truncated"] = result.truncated
    return status


def _parse_numstat(raw: str) -> list[dict[str, Any]]:
    files = []
    entries = _nul_fields(raw)
    for entry in entries:
        added, deleted, path = (entry.split("\t", 2) + ["", ""])[:3]
        item: dict[str, Any] = {"additions": None if added == "-" else int(added),
                                "deletions": None if deleted == "-" else int(deleted)}
        if path == "":  # a rename: old and new path follow
            item["from"] = next(entries, "")
            path = next(entries, "")
        item["path"] = path
        item["binary"] = added == "-"
        files.append(item)
    return files


@tool(category="git", security="read", examples=[
    {"args": {"repo": ".", "staged": False},
     "result": {"diff": "diff --git a/app.py b/app.py\n...\n+print('hi')\n",
                "files": [{"path": "app.py", "additions": 1, "deletions": 0, "binary": False}], "truncated": False}},
])
async def git_diff(ctx: ToolContext, repo: str = ".", staged: bool = False, path: str | None = None) -> dict[str, Any]:
    """Show changes as a unified diff: unstaged work, or what is staged for the next commit.

    Args:
        repo: The repository's directory, inside the allowed paths.
        staged: Diff the staged changes (index against HEAD) instead of the unstaged ones.
        path: Limit the diff to this file or directory (relative to the repository).

    Returns:
        {diff, files: [{path, additions, deletions, binary, from?}], truncated}; diff is "" when nothing changed.
    """
    repo_dir = _repo_dir(ctx, repo)
    base = ["diff", "--no-ext-diff", "--no-textconv", "--no-color"] + (["--cached"] if staged else [])
    tail = ["--", *_checked_paths(ctx, repo_dir, [path], write=False)] if path is not None else []
    result = await _git(ctx, repo_dir, [*base, *tail])
    if result.exit_code != 0:
        _fail(result, repo_dir, "diff")
    numstat = await _git(ctx, repo_dir, [*base, "--numstat", "-z", *tail])
    if numstat.exit_code != 0:
        _fail(numstat, repo_dir, "diff")
    return {"diff": result.text(), "files": _parse_numstat(numstat.text()), "truncated": result.truncated}


@tool(category="git", security="read", examples=[
    {"args": {"repo": ".", "max_count": 1},
     "result": [{"hash": "9fceb02d0ae598e95dc970b74767f19372d61af8", "author": "Ada", "email": "ada@example.org",
                 "date": "2024-05-01T10:00:00+02:00", "subject": "Add README"}]},
])
async def git_log(ctx: ToolContext, repo: str = ".", max_count: int = 20) -> list[dict[str, Any]]:
    """List the most recent commits of the current branch, newest first.

    Args:
        repo: The repository's directory, inside the allowed paths.
        max_count: How many commits to return at most (1 to 10000).

    Returns:
        A list of {hash, author, email, date (ISO 8601), subject}; empty for a repository without commits.
    """
    if max_count < 1 or max_count > MAX_LOG_COUNT:
        raise InvalidArgument(f"max_count must be between 1 and {MAX_LOG_COUNT}, got {max_count}")
    repo_dir = _repo_dir(ctx, repo)
    fmt = _FIELD.join(("%H", "%an", "%ae", "%aI", "%s")) + _RECORD
    result = await _git(ctx, repo_dir, ["log", f"--max-count={max_count}", "--no-color", f"--format={fmt}"])
    if result.exit_code != 0:
        if "does not have any commits" in result.text("stderr"):
            return []
        _fail(result, repo_dir, "log")
    commits = []
    for record in result.text().split(_RECORD):
        record = record.strip("\n")
        if record:
            sha, author, email, date, subject = (record.split(_FIELD) + [""] * 5)[:5]
            commits.append({"hash": sha, "author": author, "email": email, "date": date, "subject": subject})
    return commits


async def _staged_paths(ctx: ToolContext, repo_dir: Path) -> list[str]:
    result = await _git(ctx, repo_dir, ["diff", "--cached", "--name-only", "-z", "--no-ext-diff"])
    if result.exit_code != 0:
        _fail(result, repo_dir, "diff")
    return [p for p in result.text().split("\0") if p]


@tool(category="git", security="write", examples=[
    {"args": {"repo": ".", "paths": ["README.md"]}, "result": {"added": ["README.md"], "staged": ["README.md"]}},
])
async def git_add(ctx: ToolContext, paths: list[str], repo: str = ".") -> dict[str, Any]:
    """Stage files (new, modified or deleted) for the next commit.

    Args:
        paths: Files or directories to stage, relative to the repository ("." stages everything).
        repo: The repository's directory, inside the allowed paths.

    Returns:
        {added: the paths given, staged: every path now staged}.
    """
    if not paths:
        raise InvalidArgument("paths is empty: list the files to stage, or ['.'] for everything")
    repo_dir = _repo_dir(ctx, repo, write=True)
    checked = _checked_paths(ctx, repo_dir, paths, write=True)
    result = await _git(ctx, repo_dir, ["add", "--", *checked])
    if result.exit_code != 0:
        _fail(result, repo_dir, "add")
    return {"added": checked, "staged": await _staged_paths(ctx, repo_dir)}


@tool(category="git", security="write", examples=[
    {"args": {"repo": ".", "message": "Add README", "author_name": "Ada", "author_email": "ada@example.org"},
     "result": {"hash": "9fceb02d0ae598e95dc970b74767f19372d61af8", "short_hash": "9fceb02", "subject": "Add README",
                "branch": "main"}},
])
async def git_commit(ctx: ToolContext, message: str, repo: str = ".", author_name: str | None = None,
                     author_email: str | None = None) -> dict[str, Any]:
    """Commit what is staged (stage files with git_add first).

    Args:
        message: The commit message (first line is the subject).
        repo: The repository's directory, inside the allowed paths.
        author_name: Author and committer name; defaults to user.name from your git config.
        author_email: Author and committer email; defaults to user.email from your git config.

    Returns:
        {hash, short_hash, subject, branch} of the new commit (branch is nil on a detached HEAD).
    """
    if not message.strip():
        raise InvalidArgument("message is empty: describe the change in the commit message")
    for label, value in (("author_name", author_name), ("author_email", author_email)):
        if value is not None and (not value.strip() or any(c in value for c in "<>\n\x00")):
            raise InvalidArgument(f"{label} {value!r} is invalid: no angle brackets, newlines or empty values")
    repo_dir = _repo_dir(ctx, repo, write=True)
    identity: dict[str, str] = {}
    if author_name is not None:
        identity.update(GIT_AUTHOR_NAME=author_name, GIT_COMMITTER_NAME=author_name)
    if author_email is not None:
        identity.update(GIT_AUTHOR_EMAIL=author_email, GIT_COMMITTER_EMAIL=author_email)
    result = await _git(ctx, repo_dir, ["commit", "--quiet", "--cleanup=strip", "--file=-"], stdin=message,
                        identity=identity)
    if result.exit_code != 0:
        text = (result.text("stdout") + result.text("stderr")).lower()
        if "nothing to commit" in text or "no changes added to commit" in text or "nothing added to commit" in text:
            raise InvalidArgument("nothing is staged to commit: stage changes with git_add first",
                                  details={"repo": str(repo_dir)})
        _fail(result, repo_dir, "commit")
    head = await _git(ctx, repo_dir, ["log", "-1", "--no-color", f"--format=%H{_FIELD}%h{_FIELD}%s"])
    if head.exit_code != 0:
        _fail(head, repo_dir, "log")
    sha, short, subject = (head.text().strip().split(_FIELD) + ["", ""])[:3]
    branch = await _git(ctx, repo_dir, ["symbolic-ref", "--quiet", "--short", "HEAD"])
    return {"hash": sha, "short_hash": short, "subject": subject,
            "branch": branch.text().strip() or None if branch.exit_code == 0 else None}


TOOLS = [git_status, git_diff, git_log, git_add, git_commit]

__all__ = ["TOOLS", "git_add", "git_commit", "git_diff", "git_log", "git_status"]
