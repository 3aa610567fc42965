"""Which tools a resume may simply run again: read-only built-ins are idempotent, writing ones and
Lua tools are not unless declared (``Tool.define{idempotent = true}``)."""

from __future__ import annotations

from aikit_components.tools import default_registry
from tests.support.lua import Lua


def test_read_only_builtins_are_idempotent_and_writing_ones_are_not() -> None:
    registry = default_registry(plugins=False)
    assert registry.get("read_file").is_idempotent() and registry.get("hash").is_idempotent()
    assert not registry.get("write_file").is_idempotent() and not registry.get("run_process").is_idempotent()
    for item in registry.list():
        assert item.is_idempotent() == (item.security in ("safe", "read")), item.name


def test_lua_tools_are_idempotent_only_when_declared(lua: Lua) -> None:
    lua.run("Tool.define{name = 'plain', fn = function() return 1 end}"
            "Tool.define{name = 'again', idempotent = true, fn = function() return 1 end}")
    tools = lua.components.tools
    assert not tools.get("plain").is_idempotent() and tools.get("again").is_idempotent()
    assert "idempotent" in lua.fail("Tool.define{name = 'bad', idempotent = 'yes', fn = function() end}").evalue
