"""Programs aikit starts die with it, grandchildren included, even after ``kill -9`` (the process
watchdog of aikit_components/tools/_children.py), and a forked child gets a watchdog of its own."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aikit_components.tools._children import WATCHDOG, watch_group
from aikit_components.tools.system import run_argv
from tests.support.processes import gone, kill_leftovers, processes_with, stopped_after, wait_until

REPO = Path(__file__).resolve().parents[2]
AIKIT = str(Path(sys.executable).with_name("aikit"))

pytestmark = pytest.mark.skipif(os.name != "posix", reason="process groups are POSIX")


def test_a_killed_aikit_run_takes_the_program_and_its_grandchildren_with_it(tmp_path: Path) -> None:
    """``sh -c 'sleep A & sleep B'`` started by a Lua script: after SIGKILL of ``aikit run`` both
    sleeps (the shell's children, aikit's grandchildren) are gone."""
    unique = f"{os.getpid()}{time.monotonic_ns() % 10**6:06d}"
    child_marker, grandchild_marker = f"300.1{unique}", f"300.2{unique}"  # sleep's arguments, unique in /proc
    (tmp_path / "aikit.toml").write_text('[security]\nallowed_commands = ["sh", "sleep"]\n')
    (tmp_path / "orphans.lua").write_text(
        'print("starting")\n'
        f'Tool.call("run_process", {{command = {{"sh", "-c", "sleep {grandchild_marker} & sleep {child_marker}"}}, '
        'timeout_s = 600})\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIKIT_") or k == "AIKIT_TRUST_PROJECT_CONFIG"}
    env.update(AIKIT_DATA_DIR=str(tmp_path / "data"), XDG_CONFIG_HOME=str(tmp_path / "config"), PYTHONPATH=str(REPO),
               AIKIT_TRUST_PROJECT_CONFIG="1")
    proc = subprocess.Popen([AIKIT, "run", "orphans.lua"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=tmp_path, env=env)
    with stopped_after(proc, markers=(child_marker, grandchild_marker)):
        started = wait_until(lambda: processes_with(child_marker) and processes_with(grandchild_marker), 60.0)
        if not started:
            proc.kill()
            out, err = proc.communicate(timeout=30)
            pytest.fail(f"the program never started:\n{out.decode()}\n{err.decode()}")
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        assert wait_until(lambda: not processes_with(child_marker), 30.0), "the shell's sleep outlived aikit"
        assert wait_until(lambda: not processes_with(grandchild_marker), 30.0), "the backgrounded sleep outlived aikit"


def test_a_program_that_ended_is_forgotten_and_the_watchdog_is_restarted_when_it_died() -> None:
    async def launch() -> int:
        result = await run_argv(["/bin/true"], cwd=None, env={"PATH": os.defpath}, stdin=None, timeout_s=30,
                                max_output_bytes=100)
        return result.exit_code

    assert asyncio.run(launch()) == 0
    first = WATCHDOG.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    assert wait_until(lambda: gone(first), 10.0)
    assert asyncio.run(launch()) == 0  # a new watchdog took over
    assert WATCHDOG.pid not in (None, first)


def test_a_forked_child_gets_its_own_watchdog(tmp_path: Path) -> None:
    """A process forked from aikit (a zygote, multiprocessing's fork) must not write to its parent's
    watchdog: the groups it starts die with it, not with its parent."""
    marker = f"300.3{os.getpid()}{time.monotonic_ns() % 10**6:06d}"
    with watch_group(os.getpid()):  # the parent has a watchdog of its own
        parent_watchdog = WATCHDOG.pid
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: start sleep in its own group, register it, report, wait to be killed
        try:
            os.close(read_end)
            sleeper = subprocess.Popen(["sleep", marker], start_new_session=True)
            WATCHDOG.add(sleeper.pid)
            os.write(write_end, f"{WATCHDOG.pid}\n".encode())
            time.sleep(600)  # the parent SIGKILLs this process before this ends
        finally:
            os._exit(1)
    os.close(write_end)
    try:
        with os.fdopen(read_end) as pipe:
            child_watchdog = int(pipe.readline())
        assert child_watchdog != parent_watchdog
        assert processes_with(marker)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        assert wait_until(lambda: not processes_with(marker), 30.0), "the forked child's program outlived it"
    finally:
        kill_leftovers(marker)


_STARTED_UNREGISTERED = """
import os, signal, subprocess, sys
from aikit_components.tools._children import WATCHDOG
name, value = WATCHDOG.mark()  # what a launch gives the program's environment
subprocess.Popen(["sleep", sys.argv[1]], env={**os.environ, name: value}, start_new_session=True)
print("started", flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # before any +PGID line: the moment a launch is most exposed
"""


def test_a_program_started_just_before_aikit_died_is_found_by_its_environment() -> None:
    """A program whose group was never registered (aikit killed between the launch and the
    registration), in a session of its own: the watchdog finds it by the mark in its environment."""
    marker = f"300.3{os.getpid()}{time.monotonic_ns() % 10**6:06d}"
    died = subprocess.run([sys.executable, "-c", _STARTED_UNREGISTERED, marker], capture_output=True, text=True,
                          timeout=60, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert died.returncode == -9 and died.stdout.strip() == "started", died.stderr
        assert wait_until(lambda: not processes_with(marker), 30.0), "the unregistered program outlived aikit"
    finally:
        kill_leftovers(marker)
