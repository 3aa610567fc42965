"""Approvals in workflows and missions: an ``approval`` step waits for a person without holding a
slot of the run's concurrency limit and is decided from another process (``aikit mission approve``),
with a timeout and a default; ``approval = true`` gates any step; and a mission killed with a call
in flight resumes without repeating it unless told to (``--approve-in-doubt``). Real CLI processes,
real SQLite, a real SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from aikit_components.control.step_approval import decide_step, waiting_steps
from tests.support.lua import Lua
from tests.support.processes import kill_leftovers, processes_with, sleep_marker, stopped_after, wait_until

AIKIT = str(Path(sys.executable).with_name("aikit"))
REPO = Path(__file__).resolve().parents[2]

GATED = """name: gated
config: {max_concurrent_steps: 1}
steps:
  - {id: gate, step_type: approval, parameters: {message: "ship it?"}}
  - {id: side, step_type: create_file, parameters: {path: side.txt, content: x}}
  - id: ship
    step_type: create_file
    depends_on: [gate]
    parameters: {path: shipped.txt, content: "{{steps.gate.output.reason}}"}
"""


def env(cwd: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AIKIT_") or k == "AIKIT_TRUST_PROJECT_CONFIG"}
    return {**base, "AIKIT_DATA_DIR": str(cwd / "data"), "XDG_CONFIG_HOME": str(cwd / "config"),
            "PYTHONPATH": str(REPO), "COLUMNS": "160"}


def mission(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AIKIT, "mission", *args], capture_output=True, text=True, timeout=120, cwd=cwd,
                          env=env(cwd), stdin=subprocess.DEVNULL)


def start(cwd: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([AIKIT, "mission", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=cwd, env=env(cwd), stdin=subprocess.DEVNULL, start_new_session=True)


def decided_when_waiting(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``aikit mission approve ...`` once the step waits (retried until it is)."""
    last: list[subprocess.CompletedProcess[str]] = []

    def attempt() -> bool:
        last.append(mission(cwd, "approve", *args))
        return last[-1].returncode == 0

    wait_until(attempt, timeout=60)
    return last[-1]


def test_an_approval_step_waits_without_a_slot_and_is_approved_from_another_process(tmp_path: Path) -> None:
    (tmp_path / "gated.yaml").write_text(GATED)
    with stopped_after(start(tmp_path, "run", "gated.yaml", "--run-id", "g1"), group=True) as proc:
        # max_concurrency 1 and the gate waiting: the other step still ran (the wait holds no slot)
        assert wait_until(lambda: (tmp_path / "side.txt").exists() or proc.poll() is not None, timeout=60)
        assert proc.poll() is None, proc.communicate()
        assert not (tmp_path / "shipped.txt").exists()
        approved = decided_when_waiting(tmp_path, "g1", "gate", "--reason", "tests pass")
        assert "approved step gate of run g1" in approved.stdout
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + err
    assert (tmp_path / "shipped.txt").read_text() == "tests pass"
    again = mission(tmp_path, "approve", "g1", "gate")
    assert again.returncode == 1 and "not_pending" in again.stderr and "is not waiting" in again.stderr


def test_a_denied_approval_step_fails_and_its_dependents_do_not_run(tmp_path: Path) -> None:
    (tmp_path / "gated.yaml").write_text(GATED)
    with stopped_after(start(tmp_path, "run", "gated.yaml", "--run-id", "g2"), group=True) as proc:
        denied = decided_when_waiting(tmp_path, "g2", "gate", "--deny", "--reason", "not today")
        assert "denied step gate" in denied.stdout
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "approval_denied" in out + err and "not today" in out + err
    assert not (tmp_path / "shipped.txt").exists()


def test_the_timeout_gives_the_default_decision(tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text(
        "name: t\nsteps:\n  - {id: gate, step_type: approval, parameters: {timeout_s: 0.2, default: approve}}\n"
        "  - {id: after, step_type: noop, depends_on: [gate], parameters: {who: '{{steps.gate.output.who}}'}}\n")
    done = mission(tmp_path, "run", "t.yaml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_bad_approval_parameters_and_decisions(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        "name: bad\nsteps:\n  - {id: gate, step_type: approval, parameters: {timeout_s: -1, default: maybe, x: 1}}\n")
    checked = mission(tmp_path, "validate", "bad.yaml")
    assert checked.returncode == 1
    assert "timeout_s must be a number of seconds > 0" in checked.stderr
    assert "default must be \"approve\" or \"deny\"" in checked.stderr and "unknown approval parameter" in \
        checked.stderr
    unknown = mission(tmp_path, "approve", "nope", "gate")
    assert unknown.returncode == 1 and "no workflow run 'nope'" in unknown.stderr


def test_approval_true_gates_a_step_in_lua(lua: Lua) -> None:
    components = lua.components
    decided: list[Any] = []

    def approve_when_waiting() -> None:
        def waiting() -> list[Any]:
            return [w for r in ("w1",) for w in waiting_steps(components, r)]
        if wait_until(waiting, timeout=60):
            decided.append(decide_step(components, "w1", "write", "approved", "ok by me", who="tester"))

    helper = threading.Thread(target=approve_when_waiting, daemon=True)
    helper.start()
    record = lua.run("""
        local wf = Workflow.new{name = 'w', steps = {
          {id = 'write', tool = 'write_file', params = {path = 'gated.txt', content = 'x'}, approval = true}}}
        return wf:run({}, {run_id = 'w1'})""")
    helper.join(timeout=60)
    assert record["status"] == "succeeded" and decided[0]["who"] == "tester"
    assert Path("gated.txt").read_text() == "x"


def test_a_mission_killed_mid_call_does_not_repeat_it_unless_told(tmp_path: Path) -> None:
    marker = sleep_marker(30)
    (tmp_path / "aikit.toml").write_text('[security]\nallowed_commands = ["sh", "sleep"]\n')
    (tmp_path / "m.yaml").write_text(
        "name: m\nsteps:\n"
        "  - {id: a, step_type: command, parameters: {command: sh, args: ['-c', 'echo a >> a.log']}}\n"
        "  - {id: b, step_type: command, depends_on: [a], parameters: {command: sh, args: ['-c', "
        f"'echo b >> b.log; [ -f go ] || sleep {marker}']}}}}\n")
    proc = start(tmp_path, "run", "m.yaml", "--run-id", "k1")
    try:
        assert wait_until(lambda: processes_with(marker), 60.0), "step b never started"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        kill_leftovers(marker)
    assert (tmp_path / "b.log").read_text() == "b\n"
    (tmp_path / "go").write_text("")
    held = mission(tmp_path, "resume", "k1")
    assert held.returncode == 1 and "needs_approval" in held.stdout + held.stderr
    assert "--approve-in-doubt" in held.stdout + held.stderr
    assert (tmp_path / "b.log").read_text() == "b\n" and (tmp_path / "a.log").read_text() == "a\n"
    done = mission(tmp_path, "resume", "k1", "--approve-in-doubt")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "b.log").read_text() == "b\nb\n"  # run again, as approved
    assert (tmp_path / "a.log").read_text() == "a\n"


def test_each_in_doubt_call_of_a_mission_is_decided_on_its_own(tmp_path: Path) -> None:
    """Two steps killed mid-call: the resumed run waits (``needs_approval``) with both calls shown,
    and waits again as long as they are undecided (never running them meanwhile); one approved
    call runs again once, one denied call does not run and its step fails; a later approval of
    that one lets it run."""
    markers = {"b": sleep_marker(30), "c": sleep_marker(30)}
    (tmp_path / "aikit.toml").write_text('[security]\nallowed_commands = ["sh", "sleep"]\n')
    steps = "".join(
        f"  - {{id: {sid}, step_type: command, parameters: {{command: sh, args: ['-c', "
        f"'echo {sid} >> {sid}.log; [ -f go ] || sleep {marker}']}}}}\n" for sid, marker in markers.items())
    (tmp_path / "m.yaml").write_text("name: m2\nsteps:\n" + steps)
    proc = start(tmp_path, "run", "m.yaml", "--run-id", "k2")
    try:
        assert wait_until(lambda: all(processes_with(m) for m in markers.values()), 60.0), "the steps never started"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        for marker in markers.values():
            kill_leftovers(marker)
    (tmp_path / "go").write_text("")
    for _ in range(2):  # undecided calls hold the run, however often it is resumed
        held = mission(tmp_path, "resume", "k2")
        assert held.returncode == 1 and "needs_approval" in held.stdout + held.stderr
        assert "--approve b@1#0" in held.stdout + held.stderr
    assert (tmp_path / "b.log").read_text() == "b\n" and (tmp_path / "c.log").read_text() == "c\n"
    listed = subprocess.run([AIKIT, "approvals", "list", "--json"], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path, env=env(tmp_path), stdin=subprocess.DEVNULL)
    [waiting] = [r for r in json.loads(listed.stdout) if r["run_id"] == "k2"]
    assert sorted(p["call_id"] for p in waiting["pending"]) == ["b@1#0", "c@1#0"]
    assert all(p["in_doubt"] and p["name"] == "run_process" for p in waiting["pending"])

    unknown = mission(tmp_path, "resume", "k2", "--approve", "z@1#0")
    assert unknown.returncode == 1 and "not_pending" in unknown.stderr and "b@1#0" in unknown.stderr
    split = mission(tmp_path, "resume", "k2", "--approve", "b@1#0", "--deny", "c", "--reason", "c ran already")
    assert split.returncode == 1 and "approval_denied" in split.stdout + split.stderr
    assert (tmp_path / "b.log").read_text() == "b\nb\n"  # approved: run again, once
    assert (tmp_path / "c.log").read_text() == "c\n"  # denied: not run again
    again = mission(tmp_path, "resume", "k2")  # the denial stands; b is replayed, not run
    assert again.returncode == 1 and (tmp_path / "b.log").read_text() == "b\nb\n"
    assert (tmp_path / "c.log").read_text() == "c\n"
    approved = subprocess.run([AIKIT, "approvals", "approve", "k2", "c@1#0", "--reason", "it did not run after all"],
                              capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env(tmp_path),
                              stdin=subprocess.DEVNULL)
    assert approved.returncode == 0 and "aikit mission resume k2" in approved.stdout, approved.stderr
    done = mission(tmp_path, "resume", "k2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "c.log").read_text() == "c\nc\n" and (tmp_path / "b.log").read_text() == "b\nb\n"


def test_a_step_call_that_needs_approval_holds_the_run_until_wf_resume_decides_it(lua: Lua) -> None:
    lua.run("""
        Tool.define{name = 'ship', description = 'd', approval = 'always',
          params = {type = 'object', properties = {v = {type = 'string'}}},
          fn = function(a) local f = io.open('shipped.txt', 'a'); f:write(a.v .. '\\n'); f:close(); return a.v end}
        wf = Workflow.new{name = 'held', steps = {
          {id = 'one', tool = 'ship', params = {v = 'one'}},
          {id = 'two', tool = 'ship', params = {v = 'two'}}}}""")
    record = lua.run("return wf:run({}, {run_id = 'h1'})")
    assert record["status"] == "needs_approval" and not Path("shipped.txt").exists()
    assert record["steps"]["one"]["error"]["code"] == "needs_approval"
    failure = lua.fail("wf:resume('h1', {approve = {'three'}})")
    assert failure.ename == "not_pending" and "one (ship)" in failure.evalue and "two (ship)" in failure.evalue
    partly = lua.run("return wf:resume('h1', {approve = {'one'}, deny = {'two'}, reason = 'one only'})")
    assert partly["status"] == "failed" and partly["steps"]["one"]["status"] == "succeeded"
    assert partly["steps"]["two"]["error"]["code"] == "approval_denied" and "one only" in \
        partly["steps"]["two"]["error"]["message"]
    assert Path("shipped.txt").read_text() == "one\n"
    assert "must be a string" in lua.fail("wf:resume('h1', {approve = {'two'}, reason = 5})").evalue
