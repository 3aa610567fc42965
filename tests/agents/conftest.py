"""Fixtures for the agent tests: components wired to the local OpenAI-format server
(``tests/support/agents.py``), and Lua engines using it (the ``lua`` fixture of
``tests/support/lua.py`` makes its engine with the ``make_lua`` here)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.agents import AgentEnv
from tests.support.factories import closing_factory
from tests.support.lua import Lua


@pytest.fixture
def make_env(llm_server: Any, tmp_path: Path) -> Iterator[Callable[..., AgentEnv]]:
    def make(extra: str = "") -> AgentEnv:
        return AgentEnv(llm_server, tmp_path, extra)

    yield from closing_factory(make, AgentEnv.close)


@pytest.fixture
def env(make_env: Callable[..., AgentEnv]) -> AgentEnv:
    return make_env()


@pytest.fixture
def make_lua(make_agent_lua: Callable[..., Lua]) -> Callable[..., Lua]:
    """Here every Lua engine talks to the local server: ``make_lua(extra="")``."""
    return make_agent_lua
