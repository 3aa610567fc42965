"""System tools against real subprocesses: output, stdin, caps, timeouts that kill the whole
process group, cancellation, the command allowlist, cwd checks, environment filtering."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
import time
from pathlib import Path

import pytest

from aikit_components.security import SecurityPolicy
from aikit_components.tools import ToolContext
from tests.support.tools import ToolCaller, ToolEnv, expect_error


@pytest.fixture
def py_ctx(env: ToolEnv) -> ToolContext:
    """python3 is not allowed by default (an interpreter runs anything): these tests allow it."""
    policy = env.policy()
    policy.allowed_commands.add("python3")
    return ToolContext(policy)


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # pragma: no cover - non-Linux
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def _wait_dead(pid: int, seconds: float = 3.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.02)
    return False


# ------------------------------------------------------------------------------------ run_process
def test_echo(call: ToolCaller, ctx: ToolContext) -> None:
    result = call(ctx, "run_process", {"command": ["echo", "hello", "world"]})
    assert result["exit_code"] == 0
    assert result["stdout"] == "hello world\n"
    assert result["stderr"] == "" and result["truncated"] is False
    assert result["duration_ms"] >= 0


def test_exit_code_stdin_and_cwd(call: ToolCaller, ctx: ToolContext, workdir: Path) -> None:
    assert call(ctx, "run_process", {"command": ["false"]})["exit_code"] == 1
    assert call(ctx, "run_process", {"command": ["cat"], "stdin": "piped ü\n"})["stdout"] == "piped ü\n"
    sub = workdir / "sub"
    sub.mkdir()
    result = call(ctx, "run_process", {"command": ["pwd"], "cwd": "sub"})
    assert result["stdout"].strip() == str(sub)


def test_environment_is_filtered(call: ToolCaller, py_ctx: ToolContext, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIKIT_TEST_SECRET_TOKEN", "s3cret")
    script = "import os; print(os.environ.get('AIKIT_TEST_SECRET_TOKEN'), os.environ.get('GREETING'))"
    result = call(py_ctx, "run_process", {"command": ["python3", "-c", script], "env": {"GREETING": "hi"}})
    assert result["stdout"].split() == ["None", "hi"]


def test_output_cap_truncates_and_says_so(call: ToolCaller, py_ctx: ToolContext) -> None:
    script = "import sys; sys.stdout.write('x' * 200000); sys.stderr.write('e' * 10)"
    result = call(py_ctx, "run_process", {"command": ["python3", "-c", script], "max_output_bytes": 1000})
    assert result["exit_code"] == 0
    assert result["stdout"] == "x" * 1000
    assert result["stderr"] == "e" * 10
    assert result["truncated"] is True
    assert "199000" in result["note"] and "max_output_bytes" in result["note"]


def test_timeout_kills_the_process_group(call: ToolCaller, py_ctx: ToolContext, workdir: Path) -> None:
    script = ("import subprocess, sys, time\n"
              "child = subprocess.Popen(['sleep', '30'])\n"
              "open('pids', 'w').write(f'{child.pid}')\n"
              "print('started', flush=True)\n"
              "time.sleep(30)\n")
    started = time.monotonic()
    error = expect_error("timeout", call, py_ctx, "run_process",
                         {"command": ["python3", "-c", script], "timeout_s": 1.0})
    assert time.monotonic() - started < 20  # killed at the timeout, not run out (30 s)
    assert "started" in error.message and "started" in error.details["stdout"]
    grandchild = int((workdir / "pids").read_text())
    assert _wait_dead(grandchild), "the grandchild in the process group survived the timeout"


def test_cancellation_kills_the_process_group(call: ToolCaller, py_ctx: ToolContext, workdir: Path) -> None:
    script = ("import os, subprocess, time\n"
              "child = subprocess.Popen(['sleep', '30'])\n"
              "open('pids', 'w').write(f'{os.getpid()} {child.pid}')\n"
              "time.sleep(30)\n")

    async def scenario() -> None:
        task = asyncio.ensure_future(call.registry.acall("run_process", {"command": ["python3", "-c", script]}, py_ctx))
        deadline = time.monotonic() + 5
        while not (workdir / "pids").exists() or not (workdir / "pids").read_text():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    for pid in map(int, (workdir / "pids").read_text().split()):
        assert _wait_dead(pid), f"process {pid} survived the cancellation"


def test_disallowed_command(call: ToolCaller, ctx: ToolContext) -> None:
    error = expect_error("permission_denied", call, ctx, "run_process", {"command": ["rm", "-rf", "/"]})
    assert error.details["rule"] == "allowed_commands"
    assert "allowed_commands" in error.message


def test_program_path_must_be_the_allowed_program(call: ToolCaller, ctx: ToolContext, workdir: Path) -> None:
    fake = workdir / "echo"
    fake.write_text("#!/bin/sh\necho pwned\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    error = expect_error("permission_denied", call, ctx, "run_process", {"command": ["./echo", "hi"]})
    assert error.details["rule"] == "allowed_commands"


def test_cwd_outside_allowed_paths(call: ToolCaller, ctx: ToolContext) -> None:
    error = expect_error("permission_denied", call, ctx, "run_process", {"command": ["ls"], "cwd": "/"})
    assert error.details["rule"] == "allowed_paths"


# ------------------------------------------------------------------ path-like arguments
def test_arguments_naming_files_outside_the_allowed_paths_are_refused(call: ToolCaller, ctx: ToolContext,
                                                                      workdir: Path) -> None:
    outside = workdir.parent / "outside.txt"
    outside.write_text("secret outside\n")
    (workdir / "link").symlink_to(outside)
    (workdir / "sub").mkdir()
    denied = {
        ("cat", "/etc/hostname"): "/etc/hostname",  # absolute
        ("cat", "../outside.txt"): str(outside),  # .. leaves the root
        ("cat", "sub/../../outside.txt"): str(outside),
        ("cat", "link"): str(outside),  # a plain word naming a symlink in the working directory
        ("cat", "./link"): str(outside),
        ("grep", "-r", "secret", ".."): str(workdir.parent),
        ("grep", "--file=../outside.txt", "x"): str(outside),  # the value of --opt=value
        ("grep", "-f../outside.txt", "x"): str(outside),  # a short option glued to its value
        ("git", "--git-dir=/etc", "status"): "/etc",
        ("cat", "file:///etc/hostname"): "/etc/hostname",  # a file URL is a path
        ("echo", "/etc/hostname"): "/etc/hostname",  # the policy cannot know echo only prints it
    }
    for command, resolved in denied.items():
        error = expect_error("permission_denied", call, ctx, "run_process", {"command": list(command)})
        assert error.details["rule"] == "allowed_paths", command
        assert error.details["path"] == resolved, command
        assert error.details["argument"] in command and repr(error.details["argument"]) in error.message
        assert "AIKIT_ALLOWED_PATHS" in error.message and "security.allowed_paths" in error.message


def test_arguments_inside_the_allowed_paths_run(call: ToolCaller, ctx: ToolContext, workdir: Path) -> None:
    (workdir / "file.txt").write_text("alpha\npattern here\n")
    (workdir / "src").mkdir()
    (workdir / "src" / "a.py").write_text("pattern = 1\n")
    (workdir / "inner").symlink_to(workdir / "src")  # a symlink that stays inside is fine
    assert call(ctx, "run_process", {"command": ["cat", "file.txt"]})["stdout"] == "alpha\npattern here\n"
    assert call(ctx, "run_process", {"command": ["cat", str(workdir / "file.txt")]})["exit_code"] == 0
    assert call(ctx, "run_process", {"command": ["grep", "pattern", "file.txt"]})["stdout"] == "pattern here\n"
    assert call(ctx, "run_process", {"command": ["grep", "-rn", "pattern", "inner/a.py"]})["stdout"] == "1:pattern = 1\n"
    assert call(ctx, "run_process", {"command": ["head", "-n1", "src/../file.txt"]})["stdout"] == "alpha\n"
    # words that only look like paths resolve inside the working directory (or are URLs): allowed
    for words in (["a/b"], ["HEAD~1..HEAD", "origin/main", "a..b"], ["https://example.com/x?y=/etc"],
                  ["--format=%h/%s", "-n5", "/dev/null"]):
        result = call(ctx, "run_process", {"command": ["echo", *words]})
        assert result["stdout"] == " ".join(words) + "\n"
    # the check uses the process's working directory: from sub/, ../file.txt is inside
    (workdir / "sub").mkdir()
    result = call(ctx, "run_process", {"command": ["cat", "../file.txt"], "cwd": "sub"})
    assert result["stdout"].startswith("alpha")


def test_allowing_the_directory_allows_the_argument(call: ToolCaller, workdir: Path) -> None:
    outside = workdir.parent / "shared"
    outside.mkdir()
    (outside / "notes.txt").write_text("shared notes\n")
    ctx = ToolContext(SecurityPolicy(allowed_paths=[workdir, outside.resolve()]))
    assert call(ctx, "run_process", {"command": ["cat", str(outside / "notes.txt")]})["stdout"] == "shared notes\n"


def test_python3_is_not_allowed_by_default(call: ToolCaller, ctx: ToolContext) -> None:
    error = expect_error("permission_denied", call, ctx, "run_process", {"command": ["python3", "-c", "print(1)"]})
    assert error.details["rule"] == "allowed_commands"
    assert "python3" not in error.message.split("(allowed: ")[1].split(")")[0]
    assert "interpreter" in error.message  # says what allowing one means


def test_bad_input(call: ToolCaller, ctx: ToolContext) -> None:
    expect_error("invalid_argument", call, ctx, "run_process", {"command": "echo hi"})  # a string, not a list
    expect_error("invalid_argument", call, ctx, "run_process", {"command": []})
    expect_error("invalid_argument", call, ctx, "run_process", {"command": ["echo"], "timeout_s": 0})
    expect_error("invalid_argument", call, ctx, "run_process", {"command": ["echo"], "env": {"A=B": "x"}})
    expect_error("not_found", call, ctx, "run_process", {"command": ["echo"], "cwd": "missing"})


def test_allowed_but_missing_program(call: ToolCaller, env: ToolEnv) -> None:
    ctx = ToolContext(env.policy(allowed_commands={"aikit-no-such-program"}))
    expect_error("not_found", call, ctx, "run_process", {"command": ["aikit-no-such-program"]})


# ------------------------------------------------------------------------------------ env_read
def test_env_read(call: ToolCaller, ctx: ToolContext, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Europe/Paris")
    assert call(ctx, "env_read", {"name": "TZ"}) == {"name": "TZ", "value": "Europe/Paris", "set": True}
    monkeypatch.delenv("TZ")
    assert call(ctx, "env_read", {"name": "TZ"}) == {"name": "TZ", "value": None, "set": False}


def test_env_read_denied_and_bad_input(call: ToolCaller, ctx: ToolContext, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIKIT_TEST_API_KEY", "secret")
    error = expect_error("permission_denied", call, ctx, "env_read", {"name": "AIKIT_TEST_API_KEY"})
    assert error.details["rule"] == "env_allowlist" and "env_allowlist" in error.message
    assert "secret" not in error.message
    expect_error("invalid_argument", call, ctx, "env_read", {})
    expect_error("invalid_argument", call, ctx, "env_read", {"name": ""})


# ------------------------------------------------------------------------------------ system_info
def test_system_info(call: ToolCaller, ctx: ToolContext, env: ToolEnv) -> None:
    info = call(ctx, "system_info")
    assert info["os"]["system"]
    assert info["python"]["version"] == ".".join(map(str, sys.version_info[:3]))
    assert info["cpu_count"] >= 1
    assert info["disk"]["path"] == str(env.data)
    assert info["disk"]["total_bytes"] > 0
    if sys.platform.startswith("linux"):
        assert info["memory"]["total_bytes"] > 0 and len(info["load_average"]) == 3


def test_system_info_bad_input(call: ToolCaller, ctx: ToolContext) -> None:
    error = expect_error("invalid_argument", call, ctx, "system_info", {"verbose": True})
    assert "unknown parameter" in error.message
