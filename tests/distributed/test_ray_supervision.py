"""Agents as Ray actors under an OTP supervisor (``Supervisor.new{executor = "ray"}``) on a real
local Ray cluster: the agent runs in another process, a killed actor is restarted by the OTP rules
(and too many restarts stop the supervisor), stopping the supervisor kills the actor, and what
cannot be shipped is a clear error. One xdist group with the other Ray tests: Ray starts once."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest

from tests.support.lua import Lua
from tests.support.processes import wait_until

pytestmark = [pytest.mark.xdist_group("ray"), pytest.mark.usefixtures("ray_cluster")]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def writer_row(lua: Lua) -> dict[str, Any]:
    return lua.run("return SUP:children()[1]")


def test_a_supervised_agent_runs_as_a_ray_actor_and_is_restarted_by_otp_rules(make_lua: Any) -> None:
    lua: Lua = make_lua()
    text, row = lua.run("""
        SUP = Supervisor.new{executor = "ray", intensity = 1, period_s = 600, children = {
          {name = "writer", start = function() return Agent.new{name = "writer", model = "test"} end}}}:start()
        local r = SUP:call("writer", {input = "hello"}, 120)
        return r.text, SUP:children()[1]
    """)
    assert text == "test answer: hello"
    first = row["placement"]
    assert row["state"] == "running" and first["executor"] == "ray" and first["pid"] != os.getpid()
    assert first["node"]

    os.kill(first["pid"], signal.SIGKILL)  # the actor's process is lost while idle
    restarted = wait_until(lambda: (r := writer_row(lua))["restarts"] == 1 and r["state"] == "running" and r, 120)
    assert restarted, writer_row(lua)
    second = restarted["placement"]["pid"]
    assert second != first["pid"] and second != os.getpid()
    assert lua.run('return SUP:call("writer", "again", 120).text') == "test answer: again"

    os.kill(second, signal.SIGKILL)  # a second loss within period_s: more than intensity = 1
    status = wait_until(lambda: (s := lua.run("return SUP:status()"))["state"] == "crashed" and s, 120)
    assert status and status["exit_reason"] == "shutdown: restart intensity exceeded"
    failure = lua.fail('SUP:call("writer", "anyone?")')
    assert failure.ename == "actor_stopped"


def test_stopping_kills_the_actor_and_unshippable_children_are_refused(make_lua: Any) -> None:
    lua: Lua = make_lua()
    pid = lua.run("""
        SUP = Supervisor.new{executor = "ray", children = {
          {name = "writer", start = function() return Agent.new{name = "writer", model = "test"} end}}}:start()
        return SUP:children()[1].placement.pid
    """)
    assert alive(pid)
    lua.run("SUP:stop()")
    assert wait_until(lambda: not alive(pid), 60), "the Ray actor's process outlived its supervisor"

    worker = lua.fail("""
        Supervisor.new{executor = "ray", children = {
          {name = "counter", start = function() return {handle = function(s, m) return 1 end} end}}}:start()
    """)
    assert worker.ename == "supervisor_start_failed"
    assert "only agents run as Ray actors" in worker.evalue and "a Lua worker" in worker.evalue
    lua.run("""Tool.define{name = "shout", description = "Shout", params = {type = "object", properties = {}},
                           fn = function() return "HEY" end}""")
    tooled = lua.fail("""
        Supervisor.new{executor = "ray", children = {
          {name = "loud", start = function()
             return Agent.new{name = "loud", model = "test", tools = {"shout"}} end}}}:start()
    """)
    assert "shout" in tooled.evalue and "defined in Lua in this kernel" in tooled.evalue
    wrong = lua.fail('Supervisor.new{executor = "cloud"}')
    assert wrong.ename == "invalid_argument" and "'local' or 'ray'" in wrong.evalue
    assert lua.run("return 'alive'") == "alive"
