"""An agent is freed as soon as nothing refers to it (reference counting), not at the next full
garbage collection: a kernel spaces those out (aikit_kernel/collector.py), and agents that referred
to themselves, made cell after cell, piled up by tens of MB until one ran."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from tests.support.agents import OPENAI, AgentEnv, answer, run


@pytest.fixture
def no_collector() -> Iterator[None]:
    """The garbage collector off: only reference counting frees anything meanwhile."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def test_an_agent_nothing_refers_to_is_freed_at_once(env: AgentEnv, no_collector: None) -> None:
    agent = env.agent(name="short-lived", system="Be brief.")
    gone = weakref.ref(agent)
    del agent
    assert gone() is None, f"still referred to by {[type(r).__name__ for r in gc.get_referrers(gone())]}"


def test_an_agent_that_ran_is_freed_at_once(env: AgentEnv, no_collector: None) -> None:
    env.server.reply(OPENAI, answer("fine"))
    agent = env.agent(name="ran-once", system="Be brief.")
    assert run(agent.run("How are you?")).text == "fine"
    gone = weakref.ref(agent)
    del agent
    assert gone() is None, f"still referred to by {[type(r).__name__ for r in gc.get_referrers(gone())]}"
