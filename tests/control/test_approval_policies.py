"""``[security.approval]`` policies, with nobody to ask (allow_stdin false): outside a run the
operation fails with ``needs_approval`` naming what and why; inside an agent run the run pauses
and a resume with the decision runs it (a program launched by a tool, a model request to a new
host). Unknown policy names are a clear configuration error. Real Lua, SQLite, local HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aikit_components.components import Components
from aikit_components.config import Config
from aikit_components.errors import ConfigError
from tests.support.agents import OPENAI, answer, call
from tests.support.lua import Lua
from tests.support.trust import trusting_env


def policy(*names: str, extra: str = "") -> str:
    return "[security.approval]\nrequire = [" + ", ".join(f'"{n}"' for n in names) + "]\n" + extra


def test_process_policy_outside_a_run_fails_naming_the_program(make_lua: Any) -> None:
    lua: Lua = make_lua(policy("process"))
    failure = lua.fail("return Tool.call('run_process', {command = {'echo', 'hi'}})")
    assert failure.ename == "needs_approval"
    assert "process 'echo' needs approval (the policy requires approval of every program launch" in failure.evalue


def test_process_policy_in_an_agent_run_pauses_and_resumes(make_lua: Any, llm_server: Any) -> None:
    lua: Lua = make_lua(policy("process"))
    llm_server.reply(OPENAI, answer(None, [call("run_process", {"command": ["echo", "hi"]}, "c1")]))
    result = lua.run("a = Agent.new{name = 'runner', model = 'openai/m', tools = {'run_process'}} "
                     "return a:run('say hi')")
    [pending] = result["pending"]
    assert (pending["kind"], pending["name"], pending["call_id"]) == ("process", "echo", "c1")
    assert Path(pending["args"]["argv"][0]).name == "echo" and pending["args"]["argv"][1:] == ["hi"]
    llm_server.reply(OPENAI, answer("said"))
    done = lua.run(f"return Agent.resume('{result['run_id']}', {{approve = {{'c1'}}}})")
    assert done["status"] == "done" and done["tool_calls"][0]["result"]["stdout"] == "hi\n"


def test_write_outside_the_working_directory(make_lua: Any, tmp_path: Path) -> None:
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    lua: Lua = make_lua(policy("write_outside_cwd") + f'\n[security]\nallowed_paths = ["{outside}"]\n')
    lua.run("Tool.call('write_file', {path = 'inside.txt', content = 'x'})")  # inside: no question
    failure = lua.fail(f"Tool.call('write_file', {{path = '{outside}/out.txt', content = 'x'}})")
    assert failure.ename == "needs_approval" and "outside the working directory" in failure.evalue
    assert not (outside / "out.txt").exists()


def test_new_host_pauses_the_model_call_until_approved(make_lua: Any, llm_server: Any) -> None:
    lua: Lua = make_lua(policy("new_host"))
    result = lua.run("a = Agent.new{name = 'asker', model = 'openai/m'} return a:run('hi')")
    [pending] = result["pending"]
    assert pending["kind"] == "http" and pending["name"] == "POST 127.0.0.1"
    assert "no request went to host '127.0.0.1' before" in pending["why"]
    assert llm_server.requests == []  # nothing was sent
    llm_server.reply(OPENAI, answer("hello"), answer("again"))
    done = lua.run(f"return Agent.resume('{result['run_id']}', {{approve = {{'*'}}}})")
    assert done["text"] == "hello"
    assert lua.run("return a:run('more').text") == "again"  # the host is known now


def test_spend_above_asks_before_the_model_call_that_would_spend_more(make_lua: Any, llm_server: Any) -> None:
    prices = '\n[models.prices."openai/m"]\ninput_per_mtok = 1000.0\noutput_per_mtok = 1000.0\n'
    lua: Lua = make_lua(policy("spend_above", extra="spend_above_usd = 0.01\n") + prices)
    llm_server.reply(OPENAI, answer(None, [call("hash", {"text": "x"}, "c1")], usage=(10, 5)))
    result = lua.run("a = Agent.new{name = 'spender', model = 'openai/m', tools = {'hash'}} return a:run('go')")
    [pending] = result["pending"]  # the first call cost $0.015: the second one waits
    assert pending["kind"] == "llm" and "has spent $0.0150, more than spend_above_usd = $0.01" in pending["why"]
    assert len(llm_server.requests) == 1
    llm_server.reply(OPENAI, answer("done"))
    done = lua.run(f"return Agent.resume('{result['run_id']}', {{approve = {{'*'}}}})")
    assert done["text"] == "done" and done["tool_calls"][0]["name"] == "hash"


def test_tool_call_and_agent_run_policies(make_lua: Any, llm_server: Any) -> None:
    lua: Lua = make_lua(policy("tool_call"))
    assert lua.fail("return Tool.call('hash', {text = 'x'})").ename == "needs_approval"
    other: Lua = make_lua(policy("agent_run"))
    failure = other.fail("return Agent.new{name = 'gated', model = 'openai/m'}:run('hi')")
    assert failure.ename == "needs_approval" and "agent 'gated'" in failure.evalue


def test_unknown_policy_names_are_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "aikit.toml").write_text(policy("process", "proces_launch"))
    config = Config.load(cwd=tmp_path, env=trusting_env(), user_dir=tmp_path / "user")
    with pytest.raises(ConfigError, match="unknown approval policy 'proces_launch' in security.approval.require"):
        Components.open(config=config, data_dir=tmp_path / "data", plugins=False)
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())
    (tmp_path / "aikit.toml").write_text(policy("spend_above", extra="spend_above_usd = -1\n"))
    config = Config.load(cwd=tmp_path, env=trusting_env(), user_dir=tmp_path / "user")
    with pytest.raises(ConfigError, match="spend_above_usd must be a number >= 0"):
        Components.open(config=config, data_dir=tmp_path / "data", plugins=False)
