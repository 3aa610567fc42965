"""The agent-run and LLM-call hook points that test_agent_loop.py does not reach: ``llm.after``,
``llm.error`` and ``agent.error``, against a real local HTTP server speaking the OpenAI wire
format (see ``conftest.py``); nothing is mocked."""

from __future__ import annotations

from typing import Any

import pytest

from aikit_components.errors import AikitError
from aikit_components.hooks import HookResult

from .conftest import OPENAI, AgentEnv, answer, error, run


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
