"""Fixtures for the control tests: Lua engines whose components talk to the local OpenAI-format
server (``tests/support/agents.py``); ``lua`` (``tests/support/lua.py``) is made with the ``make_lua`` here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.support.lua import Lua


@pytest.fixture
def make_lua(make_agent_lua: Callable[..., Lua]) -> Callable[..., Lua]:
    return make_agent_lua


@pytest.fixture
def approval_events(lua: Lua) -> Any:
    """A subscription to ``approval.*`` on ``lua``'s event bus (``.drain()`` gives the events)."""
    return lua.components.events.subscribe("approval.*")
