"""A workflow ``llm`` step makes its model call as an agent does (``aikit_components.agents.llm_call``):
hooks ``llm.before/after``, events ``llm.*``, fallback models, a content-filter refusal. Against a
real local HTTP server speaking the OpenAI wire format; ``openai`` and ``backup`` are two providers
on it, so a test scripts both ends of a fallback."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from aikit_components.components import Components
from aikit_components.hooks import HookResult
from aikit_components.workflows import engine
from aikit_components.workflows.engine import validate
from aikit_components.workflows.model import RunRecord, Step, Workflow
from tests.support.agents import BACKUP, OPENAI, answer, error
from tests.support.llm_server import Reply
from tests.support.workflows import make_components


def _provider(url: str) -> dict[str, Any]:
    return {"type": "openai", "base_url": url, "api_key": "test-key", "retries": 0, "timeout_s": 10}


@pytest.fixture
def comps(tmp_path: Path, llm_server: Any) -> Any:
    c = make_components(tmp_path, providers={"openai": _provider(f"{llm_server.url}/v1"),
                                             "backup": _provider(f"{llm_server.url}/backup/v1")},
                        models={"aliases": {"default": "openai/m"}})
    yield c
    c.close()


def ask(c: Components, inputs: dict[str, Any] | None = None, **params: Any) -> RunRecord:
    """Run a workflow of one llm step ``ask`` (prompt "hi" unless given)."""
    wf = Workflow("asking", inputs=inputs or {}, steps=[Step("ask", kind="llm", params={"prompt": "hi", **params})])

    async def main() -> RunRecord:
        try:
            return await engine.run(wf, components=c, run_id="run-1")
        finally:
            await c.models.aclose()

    return asyncio.run(main())


def test_llm_hooks_see_the_step_and_events_name_it(comps: Components, llm_server: Any) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []
    for point in ("llm.before", "llm.after"):
        comps.hooks.register(point, lambda ctx: seen.append((ctx.point, dict(ctx.payload))))
    events = comps.events.subscribe("llm.*")
    llm_server.reply(OPENAI, answer("hello", usage=(10, 5)))
    record = ask(comps, system="Be brief.")
    assert record.status == "succeeded", record.error
    assert record.steps["ask"].output == {"text": "hello", "model": "openai/m", "stop_reason": "end",
                                          "usage": {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}}
    (before_point, before), (after_point, after) = seen
    assert (before_point, after_point) == ("llm.before", "llm.after")
    assert {k: before[k] for k in ("workflow", "run_id", "step", "model")} == {
        "workflow": "asking", "run_id": "run-1", "step": "ask", "model": "default"}
    assert "agent" not in before
    assert before["messages"] == [{"role": "system", "text": "Be brief."}, {"role": "user", "text": "hi"}]
    assert (after["step"], after["attempt"], after["answered_by"], after["text"]) == ("ask", 1, "openai/m", "hello")
    published = [(e.topic, e.payload) for e in events.drain()]
    assert [topic for topic, _ in published] == ["llm.called", "llm.finished"]
    assert published[0][1] == {"workflow": "asking", "run_id": "run-1", "step": "ask", "model": "default"}
    assert published[1][1]["model"] == "openai/m" and published[1][1]["usage"]["total_tokens"] == 15
    assert comps.ledger.to_dict()["agents"]["workflow:asking"]["total_tokens"] == 15


def test_llm_after_retry_makes_a_second_call(comps: Components, llm_server: Any) -> None:
    comps.hooks.register("llm.after", lambda ctx: HookResult.retry() if ctx.payload["text"] == "a draft" else None)
    llm_server.reply(OPENAI, answer("a draft", usage=(10, 5)), answer("the answer", usage=(12, 6)))
    record = ask(comps)
    assert record.steps["ask"].output["text"] == "the answer"
    assert len(llm_server.requests_to(OPENAI)) == 2
    assert record.steps["ask"].attempts == 1  # the model call was repeated, not the step
    assert comps.ledger.to_dict()["agents"]["workflow:asking"]["total_tokens"] == 33  # the draft was paid for too


def test_llm_before_cancel_fails_the_step(comps: Components, llm_server: Any) -> None:
    comps.hooks.register("llm.before", lambda ctx: HookResult.cancel("offline"))
    record = ask(comps)
    step = record.steps["ask"]
    assert (record.status, step.status, step.error["code"]) == ("failed", "failed", "cancelled")
    assert "offline" in step.error["message"]
    assert llm_server.requests == []


def test_a_503_falls_back_to_the_next_model(comps: Components, llm_server: Any) -> None:
    fallbacks = comps.events.subscribe("llm.fallback")
    llm_server.reply(OPENAI, Reply.fixture("openai_error_503.json", status=503))
    llm_server.reply(BACKUP, answer("from the backup"))
    record = ask(comps, fallback=["backup/m2"])
    output = record.steps["ask"].output
    assert (output["text"], output["model"]) == ("from the backup", "backup/m2")
    assert llm_server.requests_to(BACKUP)[0].json()["model"] == "m2"
    assert fallbacks.receive(0).payload["to"] == "backup/m2"


def test_without_fallback_a_503_fails_the_step(comps: Components, llm_server: Any) -> None:
    errors: list[dict[str, Any]] = []
    comps.hooks.register("llm.error", lambda ctx: errors.append(dict(ctx.payload)))
    llm_server.reply(OPENAI, Reply.fixture("openai_error_503.json", status=503))
    record = ask(comps)
    assert record.steps["ask"].status == "failed" and llm_server.requests_to(BACKUP) == []
    assert errors[0]["step"] == "ask" and errors[0]["error"]["code"] == record.steps["ask"].error["code"]


def test_a_content_filter_stop_gives_a_refusal(comps: Components, llm_server: Any) -> None:
    llm_server.reply(OPENAI, answer(None, finish="content_filter"))
    record = ask(comps, fallback=["backup/m"])
    output = record.steps["ask"].output
    assert record.status == "succeeded" and (output["text"], output["stop_reason"]) == ("", "content_filter")
    assert "content filter of provider 'openai'" in output["refusal"] and "model 'openai/m'" in output["refusal"]
    assert llm_server.requests_to(BACKUP) == []  # a refusal does not fall back


def test_a_bad_request_is_not_retried_on_the_fallback(comps: Components, llm_server: Any) -> None:
    llm_server.reply(OPENAI, error(400, "bad request body", "invalid_request_error"))
    record = ask(comps, fallback=["backup/m"])
    assert record.steps["ask"].status == "failed" and "Not falling back to backup/m" in record.steps["ask"].error["message"]
    assert llm_server.requests_to(BACKUP) == []


def test_fallback_is_validated(comps: Components) -> None:
    wf = Workflow("bad", steps=[Step("a", kind="llm", params={"prompt": "x", "fallback": "backup/m"}),
                                Step("b", kind="llm", params={"prompt": "x", "fallback": ["nowhere"]}),
                                Step("c", kind="llm", params={"prompt": "x", "fallback": ["backup/m"]})])
    problems = validate(wf, components=comps)
    assert problems[0].startswith("step 'a': params.fallback must be a list of model names")
    assert problems[1].startswith("step 'b': ") and "unknown model 'nowhere'" in problems[1]
    assert len(problems) == 2, problems


def test_a_fallback_template_must_resolve_to_a_list(comps: Components, llm_server: Any) -> None:
    record = ask(comps, inputs={"models": "backup/m"}, fallback="{{input.models}}")
    error = record.steps["ask"].error
    assert error["code"] == "invalid_argument" and "params.fallback must be a list" in error["message"]
    assert llm_server.requests == []
