"""Every function of aikit's Lua API, every built-in tool and every option of the calls that take an
options table, given values of every wrong kind: each call either works or fails with an error that
says what to fix in Lua's words, and the engine stays usable.

The functions are found at run time (every function of the global tables, of ``display``, ``io``
and ``os``, and every method of the objects the API hands out, called with ``:`` and, wrongly,
with ``.``), so a function added later is covered without touching this file. Lua's own library
functions (``string``, ``table``, ``math``, ...) are left out: their errors are Lua's.
"""

from __future__ import annotations

import re

import pytest

from tests.support.lua import Lua

#: Argument lists, as Lua source: none, nil, each type, too many, a wrong second argument.
ARGUMENTS = ("", "nil", "1", "-1", "0/0", "'x'", "{}", "{1, 2, 3}", "true", "function() end", "nil, nil, nil",
             "'x', 1", "'x', {}", "{}, {}", "'x', 'y', 'z'")

#: What an error for a user must not show: Python's words and internals, or a place inside
#: aikit's own Lua code instead of the user's call.
NOT_FOR_USERS = re.compile(
    r"Traceback|NoneType|\bdict\b|\bstr\b|\bint\b|\bfloat\b|\bbool\b|object has no attribute|positional argument|"
    r"keyword argument|lupa|KeyError|IndexError|AttributeError|TypeError|ValueError|not subscriptable|"
    r"not iterable|\[aikit")

#: The objects whose methods are called (made in one cell, kept in the global ``objs``).
OBJECTS = """
objs = {
  agent = Agent.new{name = "fz", model = Agent.scripted{"hi"}},
  collection = RAG.collection("fz"),
  workflow = Workflow.new{name = "fz", steps = {{id = "a", fn = function() return 1 end}}},
  subscription = Event.subscribe("fz.*"),
  hook = Hook.register("tool.before", function() end),
  supervisor = Supervisor.new{name = "fz", children = {}},
  file = io.open("fz.txt", "w"),
}
"""

#: Functions not called: they wait for what never comes here or end the process (each is
#: covered by its own tests).
SKIPPED = {"io.read", "io.lines", "os.exit", "sleep", "objs.supervisor:exit", "objs.supervisor.exit"}

LIBRARIES = ("display", "io", "os")

# The function names of one group (``group`` is set before this runs): "Tool.call", ... or, for
# an object, "objs.agent:run" and "objs.agent.run".
_LIST = r"""
local names, seen = {}, {}
local function add(prefix, t, sep)
  local function walk(tbl)
    for k, v in pairs(tbl) do
      if type(k) == "string" and type(v) == "function" and not seen[k] then
        seen[k] = true
        names[#names + 1] = prefix .. sep .. k
      end
    end
  end
  if type(t) == "table" then walk(t) end
  local mt = getmetatable(t)
  if type(mt) == "table" and type(mt.__index) == "table" then walk(mt.__index) end
end
local object = group:match("^objs%.(.+)$")
if object then
  add(group, objs[object], ":")
  seen = {}
  add(group, objs[object], ".")
else
  add(group, _G[group], ".")
end
table.sort(names)
return names
"""

# Calls, each in its own pcall (``try`` lines follow): what each failure said (``args``: the
# label of the call).
_CALL = r"""
local failures = {}
local function try(args, call)
  local ok, err = pcall(call)
  if not ok then
    local code = type(err) == "table" and err.code or ""
    failures[#failures + 1] = {args = args, code = code, message = tostring(err)}
  end
end
"""


def _lua_string(text: str) -> str:
    """``text`` as a Lua long string, its level chosen so that ``text`` cannot end it."""
    level = next(n for n in range(1, 10) if f"]{'=' * n}]" not in text)
    return f"[{'=' * level}[{text}]{'=' * level}]"


def unclear_failures(lua: Lua, calls: dict[str, str]) -> list[str]:
    """Run each call (label -> Lua expression) in its own pcall, in one cell; the failures whose
    error does not say what to fix in Lua's words. The engine must still work afterwards."""
    tries = "\n".join(f"try({_lua_string(label)}, function() return {call} end)" for label, call in calls.items())
    unclear = []
    for failure in lua.run(f"{_CALL}\n{tries}\nreturn failures") or []:
        code, message = failure["code"], str(failure["message"])
        if code == "internal_error" or NOT_FOR_USERS.search(message) or not message.strip():
            unclear.append(f"{failure['args']} -> {code or 'error'}: {message}")
    assert lua.run("return 1 + 1") == 2, f"the engine broke after {next(iter(calls), '')}"
    return unclear


def _groups() -> list[str]:
    tables = ["Agent", "Artifact", "Config", "Event", "Hook", "MCP", "RAG", "Session", "State", "Supervisor", "Tool",
              "Trace", "Workflow"]
    objects = ["objs." + name for name in ("agent", "collection", "workflow", "subscription", "hook", "supervisor",
                                           "file")]
    return [*tables, *LIBRARIES, *objects]


def test_the_groups_are_every_global_table_of_aikit(lua: Lua) -> None:
    found = lua.run("""
local names = {}
for name, value in pairs(_G) do
  if type(value) == "table" and name:match("^%u") then names[#names + 1] = name end
end
table.sort(names)
return names
""")
    assert found == [g for g in _groups() if g[0].isupper()]


@pytest.mark.parametrize("group", _groups())
def test_wrong_arguments_get_a_clear_error_and_the_engine_stays_usable(lua: Lua, group: str) -> None:
    lua.run(OBJECTS)
    names = [n for n in lua.run(f"local group = {_lua_string(group)}\n{_LIST}") if n not in SKIPPED]
    assert names, f"no functions found in {group}"
    unclear: list[str] = []
    for name in names:
        unclear += unclear_failures(lua, {f"{name}({args})": f"{name}({args})" for args in ARGUMENTS})
    assert not unclear, "errors that do not say what to fix in Lua's words:\n" + "\n".join(unclear)


#: Values of the wrong type for a parameter of each JSON Schema type, as Lua source.
WRONG_VALUES = {"string": ("1", "{}", "true"), "integer": ("'x'", "1.5", "{}"), "number": ("'x'", "{}"),
                "boolean": ("'x'", "1"), "array": ("'x'", "1", "{a = 1}"), "object": ("'x'", "1", "{1, 2}")}


def test_every_tool_with_wrong_arguments_says_what_to_fix(lua: Lua) -> None:
    """Each built-in tool through Tool.call: no arguments, an unknown one, arguments that are not a
    table, and each parameter with a value of each wrong type."""
    unclear: list[str] = []
    tools = lua.components.tools.list()
    assert len(tools) >= 50
    for tool in tools:
        cases = ["{}", "{bogus = 1}", "'x'", "1", "true"]
        for name, schema in (tool.info().get("parameters") or {}).get("properties", {}).items():
            kind = schema.get("type")
            cases += [f"{{[ {_lua_string(name)} ] = {value}}}" for value in WRONG_VALUES.get(kind, ("{}",))
                      if isinstance(kind, str)]
        unclear += unclear_failures(lua, {f"{tool.name}({args})": f"Tool.call({_lua_string(tool.name)}, {args})"
                                          for args in cases})
    assert not unclear, "errors that do not say what to fix in Lua's words:\n" + "\n".join(unclear)


#: Wrong values for any option, as Lua source.
OPTION_VALUES = ("1", "-1", "0/0", "1e308", "'x'", "''", "{}", "{1, 2}", "{a = 1}", "true", "function() end")

#: Calls that take an options table; ``FIELDS`` is where the option under test goes, next to the
#: fields the call needs anyway. The option names are asked of
#: aikit itself: an unknown option's error lists the known ones.
OPTION_CALLS = {
    "Agent.new": "Agent.new{name = 'a', model = Agent.scripted{'hi'}, FIELDS}",
    "Workflow.new": "Workflow.new{name = 'w', steps = {{id = 'a', fn = function() return 1 end}}, FIELDS}",
    "Workflow.new step": "Workflow.new{name = 'w', steps = {{id = 'a', fn = function() return 1 end, FIELDS}}}",
    "RAG.collection": "RAG.collection('c', {FIELDS})",
    "Tool.define": "Tool.define{name = 't', description = 'd', params = {type = 'object'}, "
                   "fn = function() return 1 end, FIELDS}",
    "Supervisor.new": "Supervisor.new{name = 's', children = {}, FIELDS}",
    "State.set": "State.set('global', 'k', 1, {FIELDS})",
    "Event.subscribe": "Event.subscribe('x', {FIELDS})",
    "Artifact.put": "Artifact.put('n', 'c', {FIELDS})",
    "agent:run": "objs.agent:run('x', {FIELDS})",
    "col:search": "objs.collection:search('x', {FIELDS})",
}
#: Options whose right values wait for a person or a server (tested where they are documented).
WAITING_OPTIONS = {("Workflow.new step", "approval")}


@pytest.mark.parametrize("call", list(OPTION_CALLS))
def test_every_option_with_a_wrong_value_says_what_to_fix(lua: Lua, call: str) -> None:
    lua.run(OBJECTS)
    template = OPTION_CALLS[call]
    unknown = lua.fail(f"return {template.replace('FIELDS', 'zzz_unknown = 1')}")
    known = re.search(r"\(known: ([^)]*)\)", unknown.evalue)
    assert known, unknown.evalue
    fields = [f for f in known.group(1).split(", ") if (call, f) not in WAITING_OPTIONS]
    unclear: list[str] = []
    for field in fields:
        unclear += unclear_failures(lua, {f"{call}: {field} = {value}": template.replace("FIELDS", f"{field} = {value}")
                                          for value in OPTION_VALUES})
    assert not unclear, "errors that do not say what to fix in Lua's words:\n" + "\n".join(unclear)
