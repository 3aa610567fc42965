"""Lua patterns an interrupt can stop (aikit_kernel/lua/patterns.lua).

The sandbox's string.find/match/gmatch/gsub use Lua's C matcher unless a pattern could backtrack
for long on the subject at hand; then they run a port of the same matcher written in Lua, which the
interrupt hook reaches. The port must agree with the C matcher exactly: hypothesis compares the two
on generated patterns and subjects (results, captures, replacement counts and error messages).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aikit_kernel.lua_runtime import build_lua_runtime
from tests.support.lua import RecordingOutput

AIKIT = str(Path(sys.executable).with_name("aikit"))
EXAMPLES = int(os.environ.get("AIKIT_FUZZ_EXAMPLES", "400"))
SAME = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

COMPARE = r"""
local native, port = string, ...
local function pack(ok, ...) return { ok = ok, n = select("#", ...), ... } end
local function same(a, b)
  if a.ok ~= b.ok or a.n ~= b.n then return false end
  for i = 1, a.n do if a[i] ~= b[i] then return false end end
  return true
end
local function show(r)
  local parts = { tostring(r.ok) }
  for i = 1, r.n do parts[#parts + 1] = string.format("%q", tostring(r[i])) end
  return table.concat(parts, ", ")
end
return function(what, s, p, init, repl)
  local a, b
  if what == "gmatch" then
    local function collect(gm)
      return pcall(function()
        local out, k = {}, 0
        for x, y in gm(s, p, init) do k = k + 1; out[k] = tostring(x) .. "|" .. tostring(y); if k > 200 then break end end
        return table.concat(out, ";"), k
      end)
    end
    a, b = pack(collect(native.gmatch)), pack(collect(port.gmatch))
  elseif what == "gsub" then
    a, b = pack(pcall(native.gsub, s, p, repl, init)), pack(pcall(port.gsub, s, p, repl, init))
  else
    a, b = pack(pcall(native[what], s, p, init)), pack(pcall(port[what], s, p, init))
  end
  if same(a, b) then return true end
  return false, "C: " .. show(a) .. "\n   Lua: " .. show(b)
end
"""

ALPHABET = "ab()[]%-+*?.^$x1 ="
ITEMS = ["a", "b", "x", ".", "%a", "%d", "%s", "%w", "%p", "%A", "%S", "%%", "%.", "[ab]", "[^a]", "[a-c]",
         "[%d=]", "[]]", "%b()", "%f[%w]", "%f[%W]", "%1", "(", ")", "()", "^", "$", " ", "="]
QUANTIFIERS = ["", "", "*", "+", "-", "?"]

pattern_items = st.tuples(st.sampled_from(ITEMS), st.sampled_from(QUANTIFIERS)).map("".join)
patterns = st.one_of(st.lists(pattern_items, max_size=6).map("".join), st.text(ALPHABET, max_size=8))
subjects = st.text("ab x()=1.", max_size=14)
inits = st.one_of(st.none(), st.integers(-16, 16))


@pytest.fixture(scope="module")
def compare() -> Any:
    lua = build_lua_runtime(RecordingOutput())
    port = lua.engine.internal[b"patterns"][b"lua"]
    function = lua.engine.compile_trusted(COMPARE, "compare")(port)
    yield lambda *args: function(*args)
    lua.close()


def check(compare: Any, *args: Any) -> None:
    encoded = [a.encode() if isinstance(a, str) else a for a in args]
    result = compare(*encoded)
    ok, message = (result, None) if not isinstance(result, tuple) else result
    assert ok, f"{args!r}:\n   {message.decode() if isinstance(message, bytes) else message}"


@given(s=subjects, p=patterns, init=inits)
@SAME
def test_find_agrees_with_c(compare: Any, s: str, p: str, init: int | None) -> None:
    check(compare, "find", s, p, init)


@given(s=subjects, p=patterns, init=inits)
@SAME
def test_match_agrees_with_c(compare: Any, s: str, p: str, init: int | None) -> None:
    check(compare, "match", s, p, init)


@given(s=subjects, p=patterns, init=inits)
@SAME
def test_gmatch_agrees_with_c(compare: Any, s: str, p: str, init: int | None) -> None:
    check(compare, "gmatch", s, p, init)


@given(s=subjects, p=patterns, repl=st.one_of(st.text("%01a-", max_size=5), st.integers(0, 9)),
       n=st.one_of(st.none(), st.integers(-1, 4)))
@SAME
def test_gsub_agrees_with_c(compare: Any, s: str, p: str, repl: Any, n: int | None) -> None:
    check(compare, "gsub", s, p, n, repl)


@pytest.mark.parametrize("code", [
    'return ("a=1, b=2"):gsub("(%w+)=(%w+)", function(k, v) return v .. k end)',
    'return ("hello"):gsub("l", {l = "L"})',
    'return ("abc"):gsub("%w", function(c) return c == "b" and "B" end)',
    'return string.gsub("abc", "()", "%1")',
])
def test_function_and_table_replacements_agree(compare: Any, code: str) -> None:
    lua = build_lua_runtime(RecordingOutput())
    try:
        forced = code.replace('("a=1, b=2"):gsub(', "P.gsub('a=1, b=2', ").replace('("hello"):gsub(', "P.gsub('hello', ")
        forced = forced.replace('("abc"):gsub(', "P.gsub('abc', ").replace("string.gsub(", "P.gsub(")
        native_run = lua.engine.run_cell(code, "[native]")
        lua.engine.env[b"P"] = lua.engine.internal[b"patterns"][b"lua"]
        port_run = lua.engine.run_cell(forced, "[port]")
        assert native_run.error is None and port_run.error is None, (native_run.error, port_run.error)
        assert [str(v) for v in native_run.values] == [str(v) for v in port_run.values]
    finally:
        lua.close()


def test_the_estimate_routes_only_backtracking_patterns() -> None:
    lua = build_lua_runtime(RecordingOutput())
    try:
        exponent = lua.engine.internal[b"patterns"][b"exponent"]
        assert exponent(b"%s+", False) == 0  # a repetition at the end never backtracks
        assert exponent(b"%s+", True) == 1  # searching adds one factor (every start position)
        assert exponent(b"(%w+)=(%w+)", False) == 1
        assert exponent(b"^%s*(.-)%s*$", True) == 2  # anchored: no search factor
        assert exponent(("a*" * 30 + "c").encode(), True) == 31
    finally:
        lua.close()


def test_an_interrupt_stops_a_pattern_that_backtracks(tmp_path: Path) -> None:
    """The C matcher ignores interrupts: this script hung `aikit run` (and a kernel) for good."""
    script = tmp_path / "hang.lua"
    script.write_text('print("started")\nio.stdout:flush()\n'
                      'print(string.find(string.rep("a", 40) .. "b", string.rep("a*", 30) .. "c"))\n')
    proc = subprocess.Popen([AIKIT, "run", str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path, env=dict(os.environ, AIKIT_DATA_DIR=str(tmp_path / "data")))
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "started\n"
        time.sleep(0.5)  # into the matcher (the interrupt would work at any point; this only makes it the matcher)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (out, err)
    assert "interrupted" in err


@pytest.mark.parametrize(("code", "message"), [
    ('local r = ("x"):find("%")', "malformed pattern (ends with '%')"),  # C path: no position (the traceback has the line)
    ('local r = string.rep("a", 20000):find(string.rep("a*", 3) .. "%")', "[t]:1: malformed pattern (ends with '%')"),
    ('local r = string.gsub(nil, "x", "y")', "[t]:1: bad argument #1 to 'gsub' (string expected, got nil)"),
    ('local r = string.gsub("x", "x")', "[t]:1: bad argument #3 to 'gsub' (string/function/table expected, got no value)"),
    ('local r = string.find("x", "x", 1.5)', "[t]:1: bad argument #3 to 'find' (number has no integer representation)"),
    ('local r = ("ab"):gsub("(a)", "%2")', "invalid capture index %2"),
    ('local r = ("ab"):gsub("a", function() error("mine") end)', "[t]:1: mine"),
])
def test_errors_read_as_the_c_functions_do(code: str, message: str) -> None:
    lua = build_lua_runtime(RecordingOutput())
    try:
        run = lua.engine.run_cell(code, "[t]")
        assert run.error is not None and run.error.evalue == message
    finally:
        lua.close()
