"""A model call's HTTP requests are operations of the process's pipeline (kind ``http``): an
interceptor in ``Components.pipeline`` sees each request the provider sends to the local
OpenAI-compatible server, ``http.*`` events carry no secret, a streamed answer's request finishes
when its headers arrive, and an interceptor that refuses a request stops it before it is sent."""

from __future__ import annotations

import threading

import pytest

from aikit_components.errors import PermissionDenied
from aikit_kernel import runtime
from tests.support.agents import OPENAI, AgentEnv, answer, run, sse
from tests.support.operations import Recorder, Refuser


def test_a_model_call_request_is_an_operation(env: AgentEnv) -> None:
    recorder = env.components.pipeline.add(Recorder("http"))
    sub = env.components.events.subscribe("http.*")
    env.server.reply(OPENAI, answer("Hi there"))
    assert run(env.agent(name="greeter").run("Hello")).text == "Hi there"

    url = env.server.url + OPENAI
    assert recorder.seen == [("http", "POST 127.0.0.1", {"method": "POST", "url": url})]
    started, finished = sub.drain()
    assert (started.topic, started.source, started.payload) == ("http.started", "http", {"method": "POST", "url": url})
    assert finished.topic == "http.finished"
    assert {k: finished.payload[k] for k in ("method", "url", "status")} == {"method": "POST", "url": url, "status": 200}
    assert "test-key" not in repr([started.payload, finished.payload])


def test_a_streamed_answer_request_finishes_when_its_headers_arrive(env: AgentEnv) -> None:
    gate = threading.Event()
    env.server.reply(OPENAI, sse(["Hel", "lo"], hold_after=2, gate=gate))
    finished = env.components.events.subscribe("http.finished")
    deltas: list[str] = []
    agent = env.agent(name="streamer")
    future = runtime.submit(agent.run("hi", on_text=deltas.append))
    try:
        event = finished.receive(timeout=10)  # published while the server holds the rest of the body
        assert event is not None and event.payload["status"] == 200
        assert not future.done()
    finally:
        gate.set()
    assert future.result(15).text == "Hello" and deltas == ["Hel", "lo"]


def test_a_refused_model_request_is_not_sent(env: AgentEnv) -> None:
    env.components.pipeline.add(Refuser("http"))
    env.server.reply(OPENAI, answer("never"))
    with pytest.raises(PermissionDenied, match="HTTP request 'POST 127.0.0.1' was not approved"):
        run(env.agent(name="blocked").run("Hello"))
    assert env.server.requests == []


def test_an_agent_of_the_components_runs_through_their_pipeline(env: AgentEnv) -> None:
    """Agents made by Components.new_agent share the process's pipeline (an interceptor added to
    it, as tracing or approvals will be, sees the run and its model calls)."""
    recorder = env.components.pipeline.add(Recorder("agent", "llm"))
    env.server.reply(OPENAI, answer("Hi there"))
    assert run(env.agent(name="greeter").run("Hello")).text == "Hi there"
    assert [(kind, name) for kind, name, _ in recorder.seen] == [("agent", "greeter"), ("llm", "openai/m")]
