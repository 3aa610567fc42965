"""Attacks that run another program through an allowed one (git, sort, date, grep...), set the
clock, or smuggle code in through the child's environment. Each case is refused with a clear
error (or, for a repository's own configuration, neutralized), and a normal call still works.
Real git, real processes; the marker file ``pwned`` must never appear."""

from __future__ import annotations

from pathlib import Path

import pytest

from aikit_components.tools import ToolContext
from aikit_components.tools.git import TOOLS as GIT_TOOLS
from aikit_components.tools.system import TOOLS as SYSTEM_TOOLS

from .conftest import contained, git, make_caller, make_policy

call = make_caller([*SYSTEM_TOOLS, *GIT_TOOLS])
HOW = ("aikit.toml", "outside aikit", "instead", "allowed subcommands", "use one of", "put options")


def run(ctx: ToolContext, command: list[str], **kwargs: object) -> dict:
    return call(ctx, "run_process", {"command": command, **kwargs})


def refused(ctx: ToolContext, command: list[str], *says: str, **kwargs: object) -> None:
    error = contained("permission_denied", lambda: run(ctx, command, **kwargs), says=says, how=HOW)
    assert error.details["rule"] in ("command_arguments", "child_environment", "allowed_commands")


@pytest.fixture
def marker(workdir: Path) -> Path:
    return workdir / "pwned"


def still_works(ctx: ToolContext, repo: Path | None = None) -> None:
    if repo is not None:
        out = run(ctx, ["git", "log", "--format=%s"], cwd=str(repo))
        assert out["exit_code"] == 0 and out["stdout"] == "first\n"
    else:
        assert run(ctx, ["echo", "ok"])["stdout"] == "ok\n"


# ------------------------------------------------------------------ git: command line
@pytest.mark.parametrize("argv, says", [
    (["git", "-c", "alias.x=!touch pwned", "x"], "-c is not allowed"),
    (["git", "-c", "core.sshCommand=touch pwned", "fetch", "ssh://h/r"], "-c is not allowed"),
    (["git", "--config-env=core.pager=HOME", "log"], "--config-env is not allowed"),
    (["git", "--exec-path=.", "status"], "--exec-path is not allowed"),
    (["git", "-p", "log"], "-p is not allowed"),
    (["git", "ls-remote", "--upload-pack=touch pwned", "."], "--upload-pack"),
    (["git", "ls-remote", "--upload-pa=touch pwned", "."], "--upload-pack"),  # an abbreviation git accepts
    (["git", "fetch", "--upload-pack", "touch pwned", "."], "--upload-pack"),
    (["git", "clone", "-u", "touch pwned", ".", "copy"], "-u is not allowed"),
    (["git", "clone", "--config", "core.fsmonitor=touch pwned", ".", "copy"], "--config"),
    (["git", "push", "--receive-pack=touch pwned", ".", "main"], "--receive-pack"),
    (["git", "push", "--exec=touch pwned", ".", "main"], "--exec"),
    (["git", "archive", "--exec=touch pwned", "--remote=.", "HEAD"], "--exec"),
    (["git", "rebase", "--exec", "touch pwned", "HEAD"], "--exec"),
    (["git", "rebase", "-x", "touch pwned", "HEAD"], "-x is not allowed"),
    (["git", "grep", "-Otouch pwned", "one"], "-O is not allowed"),
    (["git", "grep", "--open-files-in-pager=touch pwned", "one"], "--open-files-in-pager"),
    (["git", "bisect", "run", "touch", "pwned"], "run is not allowed"),
    (["git", "status", "--help"], "--help"),
    (["git", "difftool", "-x", "touch pwned"], "'difftool' is not allowed"),
    (["git", "submodule", "foreach", "touch pwned"], "'submodule' is not allowed"),
    (["git", "config", "--global", "core.pager", "touch pwned"], "--global"),
])
def test_git_options_that_run_programs_are_refused(ctx: ToolContext, repo: Path, marker: Path, argv: list[str],
                                                   says: str) -> None:
    refused(ctx, argv, says, cwd=str(repo))
    assert not marker.exists() and not (repo / "pwned").exists()
    still_works(ctx, repo)


def test_git_alias_with_a_shell_is_not_run(ctx: ToolContext, repo: Path, marker: Path) -> None:
    git(repo, "config", "alias.pwn", f"!touch {marker}")
    refused(ctx, ["git", "pwn"], "'pwn' is not allowed", cwd=str(repo))
    assert not marker.exists()
    still_works(ctx, repo)


@pytest.mark.parametrize("name", ["GIT_CONFIG_COUNT", "GIT_SSH_COMMAND", "GIT_EXTERNAL_DIFF", "GIT_DIR",
                                  "LD_PRELOAD", "PYTHONSTARTUP", "BASH_ENV", "ENV", "PATH", "HOME"])
def test_environment_that_runs_code_is_refused(ctx: ToolContext, repo: Path, marker: Path, name: str) -> None:
    refused(ctx, ["git", "status"], repr(name), cwd=str(repo), env={name: f"touch {marker}"})
    assert not marker.exists()
    out = run(ctx, ["git", "log", "--format=%an"], cwd=str(repo), env={"LANG": "C", "GIT_AUTHOR_NAME": "Ada"})
    assert out["exit_code"] == 0 and out["stdout"] == "T\n"


# ------------------------------------------------------------------ git: the repository's own configuration
def test_clean_filter_in_repository_config_is_not_run_by_add(ctx: ToolContext, repo: Path, marker: Path) -> None:
    git(repo, "config", "filter.evil.clean", f"touch {marker}; cat")
    (repo / ".gitattributes").write_text("*.txt filter=evil\n")
    (repo / "b.txt").write_text("two\n")
    out = run(ctx, ["git", "add", "b.txt"], cwd=str(repo))
    assert out["exit_code"] == 0, out["stderr"]
    assert not marker.exists()
    result = call(ctx, "git_add", {"repo": str(repo), "paths": ["b.txt"]})  # the git tool too
    assert "b.txt" in result["staged"] and not marker.exists()


def test_global_config_a_script_could_write_is_neutralized(ctx: ToolContext, repo: Path, workdir: Path,
                                                           marker: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the home directory is an allowed path, ~/.gitconfig is as writable as the repository."""
    monkeypatch.setenv("HOME", str(workdir))
    (workdir / ".gitconfig").write_text(f'[filter "evil"]\n\tclean = touch {marker}; cat\n')
    (repo / ".gitattributes").write_text("*.txt filter=evil\n")
    (repo / "b.txt").write_text("two\n")
    out = run(ctx, ["git", "add", "b.txt"], cwd=str(repo))
    assert out["exit_code"] == 0, out["stderr"]
    assert not marker.exists()


@pytest.mark.parametrize("argv", [["git", "-C", "../..", "status"], ["git", "--git-dir={outside}/.git", "status"],
                                  ["git", "--work-tree", "{outside}", "status"]])
def test_git_pointed_outside_the_allowed_paths_is_refused(ctx: ToolContext, repo: Path, outside: Path,
                                                          argv: list[str]) -> None:
    argv = [a.format(outside=outside) for a in argv]
    error = contained("permission_denied", lambda: run(ctx, argv, cwd=str(repo)), says=["outside the allowed paths"],
                      how=("AIKIT_ALLOWED_PATHS",))
    assert error.details["rule"] == "allowed_paths"
    still_works(ctx, repo)


def test_hooks_in_the_repository_do_not_run_on_commit(ctx: ToolContext, repo: Path, marker: Path) -> None:
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    (repo / "a.txt").write_text("changed\n")
    run(ctx, ["git", "add", "a.txt"], cwd=str(repo))
    out = run(ctx, ["git", "commit", "-q", "-m", "second"], cwd=str(repo),
              env={"GIT_AUTHOR_NAME": "A", "GIT_AUTHOR_EMAIL": "a@x", "GIT_COMMITTER_NAME": "A",
                   "GIT_COMMITTER_EMAIL": "a@x"})
    assert out["exit_code"] == 0, out["stderr"]
    assert not marker.exists()


def test_core_fsmonitor_in_repository_config_is_not_run(ctx: ToolContext, repo: Path, marker: Path) -> None:
    git(repo, "config", "core.fsmonitor", f"touch {marker}; false")
    assert run(ctx, ["git", "status", "--short"], cwd=str(repo))["exit_code"] == 0
    assert not marker.exists()
    assert call(ctx, "git_status", {"repo": str(repo)})["clean"] is True


def test_diff_textconv_in_repository_config_is_not_run(ctx: ToolContext, repo: Path, marker: Path) -> None:
    git(repo, "config", "diff.evil.textconv", f"touch {marker}; cat")
    (repo / ".gitattributes").write_text("*.txt diff=evil\n")
    (repo / "a.txt").write_text("changed\n")
    out = run(ctx, ["git", "diff"], cwd=str(repo))
    assert out["exit_code"] == 0 and "+changed" in out["stdout"] and not marker.exists()
    assert call(ctx, "git_diff", {"repo": str(repo)})["files"][0]["path"] == "a.txt"


@pytest.mark.parametrize("key", ["diff.external", "diff.evil.command", "remote.origin.uploadpack",
                                 "remote.origin.receivepack"])
def test_programs_in_repository_config_that_cannot_be_neutralized_are_refused(
        ctx: ToolContext, repo: Path, workdir: Path, marker: Path, key: str) -> None:
    other = workdir / "other"
    other.mkdir()
    git(other, "init", "-q")
    git(other, "remote", "add", "origin", str(repo))
    git(other, "config", key, f"touch {marker}; git-upload-pack")
    (other / ".gitattributes").write_text("* diff=evil\n")
    for command in (["git", "fetch", "-q", "origin"], ["git", "diff"], ["git", "push", "origin", "HEAD"]):
        refused(ctx, command, key, cwd=str(other))
    assert not marker.exists()
    git(other, "config", "--unset", key)
    out = run(ctx, ["git", "fetch", "-q", "origin"], cwd=str(other))
    assert out["exit_code"] == 0, out["stderr"]


def test_push_to_a_local_repository_whose_hooks_would_run_is_refused(ctx: ToolContext, repo: Path, workdir: Path,
                                                                     marker: Path) -> None:
    target = workdir / "target.git"
    git(workdir, "init", "-q", "--bare", str(target))
    hook = target / "hooks" / "post-receive"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    refused(ctx, ["git", "push", "../target.git", "HEAD:main"], "runs that repository's hooks", cwd=str(repo))
    refused(ctx, ["git", "push", f"file://{target}", "HEAD:main"], "runs that repository's hooks", cwd=str(repo))
    git(repo, "remote", "add", "local", str(target))
    out = run(ctx, ["git", "push", "-q", "local", "HEAD:main"], cwd=str(repo))  # a named remote: git refuses
    assert out["exit_code"] != 0 and "transport 'file' not allowed" in out["stderr"]
    assert not marker.exists()
    still_works(ctx, repo)


def test_ext_transport_is_refused_by_git(ctx: ToolContext, repo: Path, marker: Path) -> None:
    out = run(ctx, ["git", "ls-remote", "ext::touch pwned"], cwd=str(repo))
    assert out["exit_code"] != 0 and "ext" in out["stderr"]
    assert not (repo / "pwned").exists()
    still_works(ctx, repo)


def test_commit_template_outside_the_allowed_paths_is_refused(ctx: ToolContext, repo: Path, outside: Path) -> None:
    git(repo, "config", "commit.template", str(outside / "secret.txt"))
    refused(ctx, ["git", "commit", "--allow-empty", "-q"], "commit.template", cwd=str(repo))
    git(repo, "config", "--unset", "commit.template")
    still_works(ctx, repo)


def test_a_path_starting_with_a_dash_is_a_path_for_the_git_tools(ctx: ToolContext, repo: Path,
                                                                 workdir: Path) -> None:
    (repo / "--output=x").write_text("dash\n")
    result = call(ctx, "git_add", {"repo": str(repo), "paths": ["--output=x"]})
    assert result["staged"] == ["--output=x"]
    assert not (repo / "x").exists()
    diff = call(ctx, "git_diff", {"repo": str(repo), "staged": True, "path": "--output=x"})
    assert diff["files"][0]["path"] == "--output=x"


# ------------------------------------------------------------------ other default programs
@pytest.mark.parametrize("argv, says", [
    (["sort", "--compress-program=touch", "a.txt"], "--compress-program"),
    (["sort", "--compress-prog=touch", "a.txt"], "--compress-program"),
    (["date", "-s", "2000-01-01"], "-s is not allowed"),
    (["date", "--set=2000-01-01"], "--set"),
    (["date", "-us", "2000-01-01"], "-s is not allowed"),
    (["grep", "-R", "SECRET", "."], "-R is not allowed"),
    (["grep", "--dereference-recursive", "SECRET", "."], "--dereference-recursive"),
    (["ls", "-RL", "."], "-L is not allowed"),
    (["sort", "--files0-from=-"], "--files0-from"),  # names on stdin: /etc/shadow never meets the path check
    (["wc", "-c", "--files0-from=-"], "--files0-from"),
])
def test_default_programs_options_that_escape_are_refused(ctx: ToolContext, workdir: Path, argv: list[str],
                                                          says: str) -> None:
    (workdir / "a.txt").write_text("b\na\n")
    refused(ctx, argv, says)
    assert run(ctx, ["sort", "a.txt"])["stdout"] == "a\nb\n"
    assert run(ctx, ["date", "-u", "-d", "@0", "+%Y"])["stdout"] == "1970\n"


def test_grep_r_does_not_follow_a_symlink_out(ctx: ToolContext, workdir: Path, outside: Path) -> None:
    (workdir / "link").symlink_to(outside)
    out = run(ctx, ["grep", "-r", "SECRET", "."])
    assert "SECRET" not in out["stdout"] and out["exit_code"] == 1
    (workdir / "mine.txt").write_text("SECRET here\n")
    assert "mine.txt" in run(ctx, ["grep", "-r", "SECRET", "."])["stdout"]


def test_wrappers_that_run_any_program_need_unrestricted(workdir: Path, marker: Path) -> None:
    policy = make_policy(workdir)
    policy.allowed_commands |= {"env", "xargs"}
    ctx = ToolContext(policy)
    refused(ctx, ["env", "touch", "pwned"], "exists to run other programs")
    refused(ctx, ["xargs", "touch"], "exists to run other programs", stdin="pwned")
    assert not marker.exists()
    policy.unrestricted_commands.add("env")
    assert run(ctx, ["env", "echo", "trusted"])["stdout"] == "trusted\n"


def test_find_actions_are_refused_when_find_is_allowed(workdir: Path, marker: Path) -> None:
    policy = make_policy(workdir)
    policy.allowed_commands.add("find")
    ctx = ToolContext(policy)
    for action in (["-exec", "touch", "pwned", ";"], ["-delete"], ["-execdir", "touch", "pwned", ";"]):
        refused(ctx, ["find", ".", "-name", "x", *action], f"{action[0]} is not allowed")
    assert not marker.exists()
    assert run(ctx, ["find", ".", "-maxdepth", "0"])["stdout"] == ".\n"


def test_unrestricted_lifts_the_argument_rules_but_not_the_paths(workdir: Path, outside: Path) -> None:
    policy = make_policy(workdir)
    policy.unrestricted_commands.add("sort")
    ctx = ToolContext(policy)
    (workdir / "a.txt").write_text("b\na\n")
    assert run(ctx, ["sort", "--compress-program=gzip", "a.txt"])["stdout"] == "a\nb\n"
    contained("permission_denied", run, ctx, ["sort", str(outside / "secret.txt")], says=["outside the allowed"])


def test_test_and_bracket_are_allowed_by_default_with_their_paths_confined(ctx: ToolContext, workdir: Path,
                                                                           outside: Path) -> None:
    (workdir / "here.txt").write_text("x\n")
    assert run(ctx, ["test", "-f", "nonexistent_file.txt"])["exit_code"] == 1  # the seed's mission example
    assert run(ctx, ["test", "-f", "here.txt"])["exit_code"] == 0
    assert run(ctx, ["[", "-s", "here.txt", "]"])["exit_code"] == 0
    for argv in (["test", "-f", str(outside / "secret.txt")], ["[", "-r", "../outside/secret.txt", "]"]):
        error = contained("permission_denied", lambda argv=argv: run(ctx, argv), says=("outside the allowed paths",),
                          how=HOW)
        assert error.details["rule"] == "allowed_paths"
