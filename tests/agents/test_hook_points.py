"""The agent-run and LLM-call hook points that test_agent_loop.py does not reach: ``llm.after``,
``llm.error`` and ``agent.error``, and every decision they may take (retry, bounded at
``MAX_RETRIES``; replace; cancel; modify at ``llm.before``), from Python and from Lua, against
a real local HTTP server speaking the OpenAI wire format (see ``tests/support/agents.py``); nothing is mocked."""

from __future__ import annotations

from typing import Any

import pytest

from aikit_components.errors import AikitError, Cancelled
from aikit_components.hooks import HookResult
from aikit_components.operations import MAX_RETRIES
from tests.support.agents import BACKUP, OPENAI, AgentEnv, answer, error, run, sent_messages
from tests.support.lua import Lua

BAD_REQUEST = ("bad request body", "invalid_request_error")


def test_llm_after_sees_the_answer_and_may_replace_it(env: AgentEnv) -> None:
    seen: list[dict[str, Any]] = []

    def censor(ctx: Any) -> Any:
        seen.append(dict(ctx.payload))
        return HookResult.replace(ctx.payload["text"].replace("darn", "****"))

    env.components.hooks.register("llm.after", censor)
    env.server.reply(OPENAI, answer("well darn"))
    result = run(env.agent(name="polite").run("hi"))
    assert result.text == "well ****"
    assert seen[0]["agent"] == "polite" and seen[0]["step"] == 1 and seen[0]["text"] == "well darn"
    assert seen[0]["tool_calls"] == [] and seen[0]["messages"] == [{"role": "user", "text": "hi"}]


def test_llm_error_and_agent_error_see_the_failure(env: AgentEnv) -> None:
    points: list[tuple[str, str]] = []
    env.components.hooks.register("llm.error", lambda ctx: points.append(("llm.error", ctx.payload["error"]["code"])))
    env.components.hooks.register("agent.error", lambda ctx: points.append((ctx.payload["agent"],
                                                                             ctx.payload["error"]["code"])))
    env.server.reply(OPENAI, error(400, "bad request body", "invalid_request_error"))
    with pytest.raises(AikitError) as info:
        run(env.agent(name="doomed").run("hi"))
    assert points == [("llm.error", info.value.code), ("doomed", info.value.code)]


def test_llm_error_may_replace_the_failed_call_with_an_answer(env: AgentEnv) -> None:
    env.components.hooks.register("llm.error", lambda ctx: HookResult.replace("offline fallback"))
    env.server.reply(OPENAI, error(400, "bad request body", "invalid_request_error"))
    result = run(env.agent(name="resilient").run("hi"))
    assert result.text == "offline fallback"


def test_a_raising_agent_hook_does_not_break_the_run(env: AgentEnv) -> None:
    def broken(ctx: Any) -> None:
        raise RuntimeError("hook bug")

    for point in ("agent.before", "llm.before", "llm.after", "agent.after"):
        env.components.hooks.register(point, broken)
    failures = env.components.events.subscribe("hook.failed")
    env.server.reply(OPENAI, answer("fine"))
    assert run(env.agent(name="sturdy").run("hi")).text == "fine"
    assert [e.payload["point"] for e in failures.drain()] == ["agent.before", "llm.before", "llm.after", "agent.after"]


# ---------------------------------------------------------------------- llm.* decisions
def test_llm_after_retry_makes_a_second_model_call_and_returns_its_answer(env: AgentEnv) -> None:
    attempts: list[int] = []

    def again_once(ctx: Any) -> Any:
        attempts.append(ctx.payload["attempt"])
        return HookResult.retry() if ctx.payload["text"] == "a draft" else None

    env.components.hooks.register("llm.after", again_once)
    env.server.reply(OPENAI, answer("a draft", usage=(10, 5)), answer("the answer", usage=(12, 6)))
    agent = env.agent(name="redo")
    result = run(agent.run("hi"))
    assert result.text == "the answer" and attempts == [1, 2]
    assert [r.json()["messages"] for r in env.server.requests] == [[{"role": "user", "content": "hi"}]] * 2
    assert result.steps == 1 and result.messages[-1].text == "the answer"  # the draft is not in the conversation
    assert result.usage.to_dict() == agent.usage.to_dict() == {"input_tokens": 22, "output_tokens": 11,
                                                               "total_tokens": 33}  # the draft was paid for


def test_llm_after_sees_the_stop_reason_and_who_answered(env: AgentEnv) -> None:
    seen: list[dict[str, Any]] = []
    env.components.hooks.register("llm.after", lambda ctx: seen.append(dict(ctx.payload)))
    env.server.reply(OPENAI, error(503, "overloaded", "server_error"))
    env.server.reply(BACKUP, answer("cut", finish="length"))
    run(env.agent(name="who", fallback=["backup/m"]).run("hi"))
    assert (seen[0]["model"], seen[0]["answered_by"], seen[0]["stop_reason"]) == ("openai/m", "backup/m", "max_tokens")


def test_llm_after_retry_is_bounded_and_the_last_answer_stands(env: AgentEnv) -> None:
    attempts: list[int] = []

    def never_happy(ctx: Any) -> Any:
        attempts.append(ctx.payload["attempt"])
        return HookResult.retry()

    env.components.hooks.register("llm.after", never_happy)
    env.server.reply(OPENAI, *(answer(f"try {i}") for i in range(1, MAX_RETRIES + 2)))
    result = run(env.agent(name="picky").run("hi"))
    assert result.text == f"try {MAX_RETRIES + 1}"
    assert attempts == list(range(1, MAX_RETRIES + 2)) and len(env.server.requests) == MAX_RETRIES + 1


def test_llm_error_retry_calls_the_model_again(env: AgentEnv) -> None:
    agent_errors: list[str] = []
    env.components.hooks.register("llm.error", lambda ctx: HookResult.retry())
    env.components.hooks.register("agent.error", lambda ctx: agent_errors.append(ctx.payload["error"]["code"]))
    env.server.reply(OPENAI, error(400, *BAD_REQUEST), answer("second time lucky"))
    result = run(env.agent(name="persistent").run("hi"))
    assert result.text == "second time lucky" and len(env.server.requests) == 2 and agent_errors == []


def test_llm_error_retry_is_bounded_and_the_error_says_so(env: AgentEnv) -> None:
    env.components.hooks.register("llm.error", lambda ctx: HookResult.retry())
    env.server.reply(OPENAI, *(error(400, *BAD_REQUEST) for _ in range(MAX_RETRIES + 1)))
    with pytest.raises(AikitError) as info:
        run(env.agent(name="stubborn").run("hi"))
    assert "bad request body" in info.value.message and info.value.details["hook_retries"] == MAX_RETRIES
    assert len(env.server.requests) == MAX_RETRIES + 1


def test_llm_after_cancel_fails_the_run_with_the_reason(env: AgentEnv) -> None:
    errors: list[str] = []
    env.components.hooks.register("llm.after", lambda ctx: HookResult.cancel("leaked a secret")
                                  if "sk-" in ctx.payload["text"] else None)
    env.components.hooks.register("agent.error", lambda ctx: errors.append(ctx.payload["error"]["code"]))
    env.server.reply(OPENAI, answer("the key is sk-123"))
    with pytest.raises(Cancelled) as info:
        run(env.agent(name="guarded").run("key?"))
    assert "leaked a secret" in info.value.message and "openai/m" in info.value.message and errors == ["cancelled"]


def test_llm_before_may_change_the_messages_sent(env: AgentEnv) -> None:
    def redact(ctx: Any) -> None:
        for message in ctx.payload["messages"]:
            message["text"] = message["text"].replace("4111-1111", "[card]")

    env.components.hooks.register("llm.before", redact)
    env.server.reply(OPENAI, answer("noted"))
    result = run(env.agent(name="pci", system="Keep 4111-1111 safe.").run("my card is 4111-1111"))
    assert sent_messages(env.server) == [{"role": "system", "content": "Keep [card] safe."},
                                         {"role": "user", "content": "my card is [card]"}]
    assert result.messages[0].text == "my card is 4111-1111"  # only what was sent changed, not the conversation


def test_llm_before_giving_broken_messages_is_a_clear_error(env: AgentEnv) -> None:
    env.components.hooks.register("llm.before", lambda ctx: HookResult.modify({**ctx.payload, "messages": [{"text": "x"}]}))
    with pytest.raises(AikitError) as info:
        run(env.agent(name="broken").run("hi"))
    assert info.value.code == "invalid_argument" and "llm.before" in info.value.message and env.server.requests == []


# ---------------------------------------------------------------------- agent.* decisions
def test_agent_after_retry_reruns_the_agent(env: AgentEnv) -> None:
    seen: list[tuple[int, str]] = []

    def until_polite(ctx: Any) -> Any:
        seen.append((ctx.payload["attempt"], ctx.payload["result"]["text"]))
        return None if "please" in ctx.payload["result"]["text"] else HookResult.retry()

    env.components.hooks.register("agent.after", until_polite)
    finished = env.components.events.subscribe("agent.finished")
    env.server.reply(OPENAI, answer("do it"), answer("please do it"))
    agent = env.agent(name="rerun", memory=True)
    result = run(agent.run("ask nicely"))
    assert result.text == "please do it" and seen == [(1, "do it"), (2, "please do it")]
    assert [r.json()["messages"] for r in env.server.requests] == [[{"role": "user", "content": "ask nicely"}]] * 2
    assert result.usage.total_tokens == 30  # both runs' model calls
    assert [e.payload["stop_reason"] for e in finished.drain()] == ["end"]  # one run, finished once
    # only the accepted run is remembered
    assert [m["text"] for m in env.components.state.get("agent:rerun", "memory")] == ["ask nicely", "please do it"]


def test_agent_after_retry_is_bounded_and_the_last_result_stands(env: AgentEnv) -> None:
    env.components.hooks.register("agent.after", lambda ctx: HookResult.retry())
    env.server.reply(OPENAI, *(answer(f"run {i}") for i in range(1, MAX_RETRIES + 2)))
    result = run(env.agent(name="loop").run("hi"))
    assert result.text == f"run {MAX_RETRIES + 1}" and len(env.server.requests) == MAX_RETRIES + 1


def test_agent_after_may_replace_text_and_data_and_cancel(env: AgentEnv) -> None:
    hook = env.components.hooks.register("agent.after", lambda ctx: HookResult.replace({"text": "42", "data": {"n": 42}}))
    env.server.reply(OPENAI, answer("forty-two"))
    result = run(env.agent(name="fixer").run("n?"))
    assert (result.text, result.data, result.model, result.steps) == ("42", {"n": 42}, "openai/m", 1)
    env.components.hooks.unregister(hook)
    env.components.hooks.register("agent.after", lambda ctx: HookResult.cancel("off topic"))
    env.server.reply(OPENAI, answer("about cats"))
    with pytest.raises(Cancelled) as info:
        run(env.agent(name="strict").run("dogs?"))
    assert "off topic" in info.value.message
    assert info.value.details["agent"] == "strict" and info.value.details["reason"] == "off topic"


def test_agent_error_replace_returns_the_replacement(env: AgentEnv) -> None:
    env.components.hooks.register("agent.error", lambda ctx: HookResult.replace(
        f"sorry, the model failed ({ctx.payload['error']['code']})"))
    env.server.reply(OPENAI, error(400, *BAD_REQUEST))
    result = run(env.agent(name="apologetic").run("hi"))
    assert result.text.startswith("sorry, the model failed (") and result.model == "hook"
    assert result.usage.total_tokens == 0


def test_agent_error_retry_reruns_after_a_failure(env: AgentEnv) -> None:
    seen: list[tuple[int, str]] = []

    def retry(ctx: Any) -> Any:
        seen.append((ctx.payload["attempt"], ctx.payload["input"]))
        return HookResult.retry()

    env.components.hooks.register("agent.error", retry)
    failed = env.components.events.subscribe("agent.failed")
    env.server.reply(OPENAI, error(400, *BAD_REQUEST), answer("recovered"))
    result = run(env.agent(name="phoenix").run("hi"))
    assert result.text == "recovered" and seen == [(1, "hi")] and len(env.server.requests) == 2
    [failure] = failed.drain()  # the failed attempt is reported even though the run recovered
    assert (failure.payload["agent"], failure.payload["code"]) == ("phoenix", "provider_error")


def test_agent_error_retry_is_bounded_and_the_last_error_is_raised(env: AgentEnv) -> None:
    env.components.hooks.register("agent.error", lambda ctx: HookResult.retry())
    env.server.reply(OPENAI, *(error(400, *BAD_REQUEST) for _ in range(MAX_RETRIES + 1)))
    with pytest.raises(AikitError) as info:
        run(env.agent(name="sisyphus").run("hi"))
    assert info.value.details["hook_retries"] == MAX_RETRIES and len(env.server.requests) == MAX_RETRIES + 1


# ---------------------------------------------------------------------- the same from Lua
def test_lua_hooks_retry_and_replace_around_agents(lua: Lua, llm_server: Any) -> None:
    llm_server.reply(OPENAI, answer("draft"), answer("final"),       # llm.after retry
                     error(400, *BAD_REQUEST), answer("again"),       # agent.error retry
                     error(400, *BAD_REQUEST))                        # agent.error replace
    texts = lua.run("""
        local a = Agent.new{name = 'lua_hooks', model = 'openai/m'}
        local h = Hook.register('llm.after', function(ctx)
          if ctx.payload.text == 'draft' then return Hook.retry(0) end
        end)
        local first = a:run('one').text
        h:remove()
        local tries = 0
        h = Hook.register('agent.error', function(ctx) tries = tries + 1; return Hook.retry() end)
        local second = a:run('two').text
        h:remove()
        h = Hook.register('agent.error', function(ctx)
          return Hook.replace({text = 'fallback: ' .. ctx.payload.error.code, data = {ok = false}})
        end)
        local r = a:run('three')
        h:remove()
        return {first, second, tries, r.text, r.data.ok, r.model}""")
    assert texts == ["final", "again", 1, "fallback: provider_error", False, "hook"]
    assert len(llm_server.requests) == 5


def test_lua_agent_after_retry_is_bounded(lua: Lua, llm_server: Any) -> None:
    llm_server.reply(OPENAI, *(answer(f"run {i}") for i in range(1, MAX_RETRIES + 2)))
    text, calls = lua.run("""
        local calls = 0
        local h = Hook.register('agent.after', function(ctx) calls = calls + 1; return Hook.retry() end)
        local r = Agent.new{name = 'lua_loop', model = 'openai/m'}:run('hi')
        h:remove()
        return r.text, calls""")
    assert (text, calls) == (f"run {MAX_RETRIES + 1}", MAX_RETRIES + 1)
