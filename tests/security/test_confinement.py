"""OS-level confinement of started programs (``security.confine_processes``, Landlock): a program
the policy allows, even one exempt from the argument rules (a shell here), cannot read or write
outside the allowed paths, cannot signal aikit, and everything it starts is bound the same way.
Where the kernel has no Landlock these tests skip, saying so; ``auto`` then runs programs with the
argument rules alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from aikit_components.confinement import confinement_for, landlock_abi, launcher, status
from aikit_components.errors import InvalidArgument
from aikit_components.tools import ToolContext
from aikit_components.tools.git import TOOLS as GIT_TOOLS
from aikit_components.tools.system import TOOLS as SYSTEM_TOOLS

from .conftest import make_caller, make_policy

call = make_caller([*SYSTEM_TOOLS, *GIT_TOOLS])
pytestmark = pytest.mark.skipif(landlock_abi() < 1 or launcher() is None, reason=f"confinement here: {status()}")


def shell_ctx(workdir: Path, mode: str = "auto") -> ToolContext:
    """``sh`` allowed and exempt from the argument rules: only the confinement stands in the way."""
    policy = make_policy(workdir, allowed_commands={"sh"}, unrestricted_commands={"sh"})
    return ToolContext(policy, config={"security.confine_processes": mode})


def sh(ctx: ToolContext, script: str) -> dict:
    return call(ctx, "run_process", {"command": ["sh", "-c", script]})


def test_a_confined_shell_cannot_read_or_write_outside_the_allowed_paths(workdir: Path, outside: Path) -> None:
    result = sh(shell_ctx(workdir), f"cat {outside}/secret.txt; echo read=$?; echo x > {outside}/planted; "
                                    "echo wrote=$?; echo inside > here.txt && echo inside=ok")
    assert "SECRET" not in result["stdout"]
    assert "read=1" in result["stdout"] and "wrote=" in result["stdout"] and "wrote=0" not in result["stdout"]
    assert "Permission denied" in result["stderr"]
    assert not (outside / "planted").exists()
    assert "inside=ok" in result["stdout"] and (workdir / "here.txt").read_text() == "inside\n"


def test_what_a_confined_program_starts_is_confined_too(workdir: Path, outside: Path) -> None:
    result = sh(shell_ctx(workdir), f"sh -c 'cat {outside}/secret.txt' ; env -i /bin/cat {outside}/secret.txt")
    assert "SECRET" not in result["stdout"]
    assert result["stderr"].count("Permission denied") == 2


def test_temporary_files_go_to_a_scratch_directory_in_the_data_directory(workdir: Path) -> None:
    result = sh(shell_ctx(workdir), 'echo "$TMPDIR"; f=$(mktemp) && echo made=$f; touch /tmp/aikit-confine-probe')
    lines = result["stdout"].splitlines()
    scratch = Path(lines[0])
    assert scratch.is_relative_to(workdir.parent / "data") and lines[1] == f"made={scratch}/" + lines[1].split("/")[-1]
    assert "Permission denied" in result["stderr"]


@pytest.mark.skipif(landlock_abi() < 6, reason="signal scoping needs Landlock ABI 6")
def test_a_confined_program_cannot_signal_aikit(workdir: Path) -> None:
    result = sh(shell_ctx(workdir), f"kill -0 {os.getpid()}; echo status=$?")
    assert "status=1" in result["stdout"] and "not permitted" in result["stderr"]


def test_the_git_tools_still_work_confined(workdir: Path, repo: Path) -> None:
    log = call(ToolContext(make_policy(workdir)), "git_log", {"repo": str(repo)})
    assert [c["subject"] for c in log] == ["first"]


def test_off_runs_programs_unconfined(workdir: Path, outside: Path) -> None:
    result = sh(shell_ctx(workdir, "off"), f"cat {outside}/secret.txt")
    assert result["stdout"] == "SECRET\n"


def test_an_unknown_mode_is_a_clear_error(workdir: Path) -> None:
    with pytest.raises(InvalidArgument, match="confine_processes must be one of auto, landlock, off"):
        confinement_for(make_policy(workdir), "strict", workdir.parent / "data")


def test_a_script_under_aikit_run_is_confined(workdir: Path, outside: Path) -> None:
    (workdir / "aikit.toml").write_text('[security]\nallowed_commands = ["sh"]\nunrestricted_commands = ["sh"]\n')
    (workdir / "probe.lua").write_text(
        f'local r = Tool.call("run_process", {{command = {{"sh", "-c", "cat {outside}/secret.txt"}}}})\n'
        'print("exit", r.exit_code, r.stdout, r.stderr)\n')
    aikit = str(Path(sys.executable).with_name("aikit"))
    proc = subprocess.run([aikit, "run", "probe.lua"], cwd=workdir, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "AIKIT_TRUST_PROJECT_CONFIG": "1"})
    assert proc.returncode == 0, proc.stderr
    assert "SECRET" not in proc.stdout and "exit\t1" in proc.stdout and "Permission denied" in proc.stdout
