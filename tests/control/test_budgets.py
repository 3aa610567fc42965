"""Budgets from Lua, against the local OpenAI-format server: an agent run's tokens, cost and
per-tool counts, a workflow run's tool calls and wall time, the session's budget, the 80 % warning,
the `budget_exceeded` error naming the budget, its limit and its use, what `agent:usage()` and run
records show, `[budgets]` in aikit.toml, and bad budget tables."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.agents import OPENAI, answer, call
from tests.support.trust import trusting_env

PRICES = """
[models.prices]
"openai/m" = {input_per_mtok = 1000000, output_per_mtok = 2000000}
"""


def test_an_agent_run_stops_when_its_tokens_are_used_up(make_agent_lua: Any, llm_server: Any) -> None:
    lua = make_agent_lua()
    llm_server.reply(OPENAI, answer(None, [call("hash", {"text": "a"})], usage=(10, 5)),
                     answer(None, [call("hash", {"text": "b"})], usage=(10, 5)), answer("never asked"))
    out = lua.run("""
warnings = {}
local sub = Event.subscribe("budget.warning", function(e) warnings[#warnings + 1] = e.payload end)
writer = Agent.new{name = "writer", model = "openai/m", tools = {"hash"}, budget = {tokens = 18}}
local ok, err = pcall(writer.run, writer, "go")
sub:remove()
return ok, err.code, err.message, err.details.budget, err.details.limit, err.details.used
""")
    ok, code, message, budget, limit, used = out
    assert (ok, code, budget, limit, used) == (False, "budget_exceeded", "tokens", 18, 30)
    assert "agent 'writer': budget tokens exceeded" in message and "limit 18, used 30" in message
    assert len(llm_server.requests_to(OPENAI)) == 2  # the run stopped: no third model call
    warnings = lua.run("return warnings")
    assert warnings == [{"scope": "agent 'writer'", "budget": "tokens", "limit": 18, "used": 15}]
    usage = lua.run("return writer:usage()")
    assert usage["budget"]["tokens"] == {"used": 30, "limit": 18}
    assert usage["budget"]["per_tool"] == {"hash": {"used": 1}}  # the second model call used it up
    stops = [e.data for e in lua.components.audit.entries() if e.type == "budget.exceeded"]
    assert stops and stops[0]["budget"] == "tokens" and stops[0]["scope"] == "agent 'writer'"
    [stored] = lua.run("return Agent.runs('failed')")  # the run record shows the use too
    assert stored["budget"]["tokens"] == {"used": 30, "limit": 18} and stored["error"]["code"] == "budget_exceeded"


def test_cost_from_configured_prices_and_per_tool_counts(make_agent_lua: Any, llm_server: Any) -> None:
    lua = make_agent_lua(PRICES)
    llm_server.reply(OPENAI, answer(None, [call("hash", {"text": "a"})], usage=(1, 1)),
                     answer(None, [call("hash", {"text": "b"})], usage=(1, 1)), answer("done", usage=(1, 1)))
    err = lua.run("""
local a = Agent.new{name = "hasher", model = "openai/m", tools = {"hash"}, budget = {cost = 100, per_tool = {hash = 1}}}
local ok, err = pcall(a.run, a, "go")
return {err.details.budget, err.details.limit, err.details.used, a:usage().budget.cost.used}
""")
    assert err == ["per_tool.hash", 1, 2, 6.0]  # two model calls: 2 x (1 x $1 + 1 x $2)


def test_the_session_budget_counts_every_call(make_agent_lua: Any) -> None:
    lua = make_agent_lua()
    lua.run("Session.budget{tool_calls = 2}")
    lua.run("Tool.call('hash', {text = 'a'}) Tool.call('hash', {text = 'b'})")
    failure = lua.fail("Tool.call('hash', {text = 'c'})")
    assert failure.ename == "budget_exceeded" and "session: budget tool_calls exceeded" in failure.evalue
    report = lua.run("return Session.budget()")
    assert report["tool_calls"] == {"used": 3, "limit": 2} and report["per_tool"]["hash"] == {"used": 3}


def test_a_workflow_run_stops_at_its_budget_and_its_record_shows_the_use(make_agent_lua: Any) -> None:
    lua = make_agent_lua()
    record = lua.run("""
return Workflow.new{name = "counted", mode = "sequential", budget = {tool_calls = 1}, steps = {
  {id = "a", tool = "hash", params = {text = "a"}},
  {id = "b", tool = "hash", params = {text = "b"}},
}}:run()
""")
    assert record["status"] == "failed"
    assert record["steps"]["a"]["status"] == "succeeded"
    assert record["steps"]["b"]["error"]["code"] == "budget_exceeded"
    assert record["budget"]["tool_calls"] == {"used": 2, "limit": 1}
    assert record["budget"]["scope"] == "workflow 'counted'"
    timed = lua.run("""
return Workflow.new{name = "no_time", budget = {wall_time_s = 0},
                    steps = {{id = "a", tool = "hash", params = {text = "a"}}}}:run()
""")
    assert timed["steps"]["a"]["error"]["details"]["budget"] == "wall_time_s"


def test_budgets_from_aikit_toml(make_agent_lua: Any, llm_server: Any) -> None:
    lua = make_agent_lua("\n[budgets.agent]\ntool_calls = 1\n")
    llm_server.reply(OPENAI, answer(None, [call("hash", {"text": "a"}), call("hash", {"text": "b"})]))
    out = lua.run("""
local ok, err = pcall(function() return Agent.new{model = 'openai/m', tools = {'hash'}}:run('go') end)
return err.code, err.details.budget
""")
    assert out == ("budget_exceeded", "tool_calls")


@pytest.mark.parametrize(("budget", "words"), [
    ("{tokens = -1}", "Agent.new: budget tokens must be a number >= 0, got -1"),
    ("{tokens = 'lots'}", "Agent.new: budget tokens must be a number, got string 'lots'"),
    ("{token = 5}", "Agent.new: unknown budget name(s) token (known: tokens, cost, tool_calls, wall_time_s, per_tool)"),
    ("{per_tool = {hash = 1.5}}", "Agent.new: budget per_tool.hash must be a whole number, got 1.5"),
    ("5", "Agent.new: a budget must be a table"),
])
def test_bad_budgets_are_clear_errors(make_agent_lua: Any, budget: str, words: str) -> None:
    lua = make_agent_lua()
    failure = lua.fail(f"Agent.new{{model = 'openai/m', budget = {budget}}}")
    assert failure.ename == "invalid_argument" and words in failure.evalue


def test_a_bad_budgets_table_in_aikit_toml_is_named(make_agent_lua: Any, tmp_path: Any) -> None:
    from aikit_components.config import Config
    from aikit_components.control.budgets import Budgets
    from aikit_components.errors import InvalidArgument

    (tmp_path / "aikit.toml").write_text("[budgets.agent]\ncost = 'cheap'\n")
    config = Config.load(cwd=tmp_path, env=trusting_env(), user_dir=tmp_path / "user-config")
    with pytest.raises(InvalidArgument, match=r"\[budgets.agent\] in aikit.toml: budget cost must be a number, got string"):
        Budgets(config)


def test_a_missions_config_budget_is_read_and_checked() -> None:
    from aikit_components.control.budgets import BudgetLimits
    from aikit_components.workflows.missions import parse_mission

    good = parse_mission("name: m\nconfig:\n  budget: {tool_calls: 3, per_tool: {hash: 1}}\n"
                         "steps:\n  - {id: a, step_type: noop}\n")
    assert good.problems == []
    assert good.workflow.budget == BudgetLimits(tool_calls=3, per_tool={"hash": 1})
    bad = parse_mission("name: m\nconfig:\n  budget: {tool_calls: -3}\nsteps:\n  - {id: a, step_type: noop}\n")
    assert any("config.budget: budget tool_calls must be a number >= 0, got -3" in str(p) for p in bad.problems)
