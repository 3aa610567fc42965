"""docs/lua-api.md is complete and correct: every ```lua block runs without error in a kernel-like
engine (with components), every aikit global and every function of it has a ``###`` section,
and every examples/*.lua script runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from aikit_components.components import Components
from aikit_kernel.lua.engine import LuaEngine
from aikit_kernel.lua_runtime import build_lua_runtime
from tests.support.lua import RecordingOutput

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "lua-api.md"
DOC_TEXT = DOC.read_text()
BLOCKS = re.findall(r"```lua\n(.*?)```", DOC_TEXT, flags=re.S)
HEADINGS = re.findall(r"^###\s+(.+)$", DOC_TEXT, flags=re.M)

# The globals of plain Lua 5.4 (what the sandbox keeps of them is documented under "The sandbox").
LUA_STANDARD_GLOBALS = frozenset({
    "_G", "_VERSION", "assert", "collectgarbage", "coroutine", "dofile", "error", "getmetatable", "io", "ipairs",
    "load", "loadfile", "math", "next", "os", "package", "pairs", "pcall", "print", "rawequal", "rawget", "rawlen",
    "rawset", "require", "select", "setmetatable", "string", "table", "tonumber", "tostring", "type", "utf8", "warn",
    "xpcall", "debug",
})
# The component globals every kernel has (the coverage test also checks any global added later).
COMPONENT_GLOBALS = ("Tool", "State", "Session", "Artifact", "Event", "Hook", "Config", "display")


@pytest.fixture
def kernel_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[LuaEngine, RecordingOutput]]:
    """A fresh engine with every global, as in a kernel: components on a private data directory,
    the working directory a temporary one, no user config or AIKIT_* settings from outside."""
    for name in list(os.environ):
        if name.startswith("AIKIT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("AIKIT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    components = Components.open(data_dir=tmp_path / "data", plugins=False)
    out = RecordingOutput()
    engine = build_lua_runtime(out, components).engine
    try:
        yield engine, out
    finally:
        engine.close()
        components.close()


def test_docs_have_examples() -> None:
    assert len(BLOCKS) >= 50


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_doc_example_runs(index: int, kernel_engine: tuple[LuaEngine, RecordingOutput]) -> None:
    engine, out = kernel_engine
    result = engine.run_cell(BLOCKS[index], "[doc]")
    assert result.error is None, f"example {index} failed:\n{BLOCKS[index]}\n{result.error}"
    assert out.streams or out.displays, "every example shows something"


_LIST_GLOBALS = r"""
do  -- a block, so that its locals do not become globals of the session
local lines = {}
for name, value in pairs(_ENV) do
  local kind = type(value)
  lines[#lines + 1] = name .. " " .. kind
  if kind == "table" then
    for field, member in pairs(value) do
      if type(member) == "function" then lines[#lines + 1] = name .. "." .. field .. " function" end
    end
  end
end
print(table.concat(lines, "\n"))
end
"""


def lua_globals(engine: LuaEngine, out: RecordingOutput) -> dict[str, str]:
    """Every global of the engine's Lua environment and every function field of a table global,
    as {"Tool": "table", "Tool.call": "function", ...}."""
    result = engine.run_cell(_LIST_GLOBALS, "[introspect]")
    assert result.error is None, result.error
    text = "".join(t for name, t in out.streams if name == "stdout")
    return dict(line.rsplit(" ", 1) for line in text.splitlines() if line)


def test_every_global_and_function_has_a_section(kernel_engine: tuple[LuaEngine, RecordingOutput]) -> None:
    engine, out = kernel_engine
    names = lua_globals(engine, out)
    for name in COMPONENT_GLOBALS:
        assert name in names, f"the kernel has no global {name}"
    aikit_globals = sorted(n for n in names if "." not in n and n not in LUA_STANDARD_GLOBALS)
    wanted = set(COMPONENT_GLOBALS) | {n for n in aikit_globals if names[n] == "function"}
    wanted |= {n for n in names if "." in n and n.split(".")[0] in set(aikit_globals)}
    missing = []
    for name in sorted(wanted):
        pattern = re.compile(rf"(?<![\w.:]){re.escape(name)}(?![\w])")
        if not any(pattern.search(h) for h in HEADINGS):
            missing.append(name)
    assert not missing, (f"no `###` section in {DOC.relative_to(ROOT)} for: {', '.join(missing)} "
                         "(add a ### heading with its signature, a description and a ```lua example)")
    for name in aikit_globals:  # table globals get a `##` section introducing them
        if names[name] == "table" and name != "display":
            assert re.search(rf"^## {re.escape(name)}$", DOC_TEXT, flags=re.M), f"no `## {name}` section"


def test_builtin_tools_table_lists_installed_tools(kernel_engine: tuple[LuaEngine, RecordingOutput]) -> None:
    """The Built-in tools table names only tools that exist (it may lag behind new ones: Tool.list()
    is the live reference)."""
    engine, _ = kernel_engine
    section = DOC_TEXT.split("## Built-in tools", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| [\w-]+ \| `(\w+)` \|", section, flags=re.M)
    assert documented, "the Built-in tools table is empty"
    from aikit_components.tools import default_registry

    registry = default_registry(plugins=False)
    unknown = [name for name in documented if name not in registry]
    assert not unknown, f"the Built-in tools table lists tools that do not exist: {unknown}"


def test_error_details_reach_lua(kernel_engine: tuple[LuaEngine, RecordingOutput]) -> None:
    """The Errors section promises {code, message, details}: details arrive as a Lua table."""
    engine, out = kernel_engine
    result = engine.run_cell(
        "Tool.define{name = 'one', description = 'x', params = {type = 'object', properties = {n = {type = 'number'}}},"
        " fn = function(a) return a.n end}\n"
        "local ok, err = pcall(Tool.call, 'one', {n = 'x'})\n"
        "print(type(err.details), err.details and #err.details.problems)", "[details]")
    assert result.error is None, result.error
    assert "".join(t for _, t in out.streams).strip() == "table\t1"


@pytest.mark.parametrize("script", sorted((ROOT / "examples").glob("*.lua")), ids=lambda p: p.name)
def test_example_script_runs(script: Path, tmp_path: Path) -> None:
    aikit = Path(sys.executable).with_name("aikit")
    proc = subprocess.run([str(aikit), "run", str(script), "tester"], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path, env={"AIKIT_DATA_DIR": str(tmp_path / "data"), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()
