"""The Lua debugger in-process: breakpoints, stepping, pausing, errors and inspection, with the
native line filter and with the Lua fallback (every test runs with both)."""

from __future__ import annotations

import pytest

from aikit_kernel.debug.lua_debugger import DebuggerError
from tests.support.debug_harness import DebugHarness

FUNCTIONS = """\
local function add(a, b)
  local sum = a + b
  return sum
end
local x = add(1, 2)
local y = add(x, 10)
print(x, y)
"""


def test_breakpoint_stops_with_frames_naming_the_cell_file_and_line(harness: DebugHarness) -> None:
    path = harness.dump(FUNCTIONS)
    [bp] = harness.debugger.set_breakpoints(path, [{"line": 2}])
    assert bp["verified"] and bp["line"] == 2
    seen = {}

    def ide(h: DebugHarness) -> None:
        body = h.stopped()
        seen["body"] = body
        seen["stack"] = h.stack()
        seen["locals"] = h.scope("Locals")
        h.debugger.set_breakpoints(path, [])
        h.debugger.resume(None)

    result = harness.run(FUNCTIONS, ide)
    assert result.error is None
    assert seen["body"]["reason"] == "breakpoint" and seen["body"]["hitBreakpointIds"] == [bp["id"]]
    top, cell = seen["stack"][0], seen["stack"][1]
    assert (top["name"], top["line"], top["source"]["path"]) == ("add", 2, path)
    assert (cell["name"], cell["line"], cell["source"]["name"]) == ("cell [1]", 5, "[1]")
    assert seen["locals"] == {"a": "1", "b": "2"}
    assert ("stdout", "3\t13\n") in harness.output.streams


def test_breakpoint_on_a_blank_line_moves_to_the_next_code_line(harness: DebugHarness) -> None:
    code = "local a = 1\n\n-- a comment\nlocal b = 2\n"
    path = harness.dump(code)
    assert harness.debugger.set_breakpoints(path, [{"line": 2}])[0]["line"] == 4
    past = harness.debugger.set_breakpoints(path, [{"line": 40}])[0]
    assert past["verified"] is False and "past the last line" in past["message"]


def test_condition_hit_count_and_logpoint(harness: DebugHarness) -> None:
    code = "local total = 0\nfor i = 1, 10 do\n  total = total + i\nend\nreturn total\n"
    path = harness.dump(code)
    harness.debugger.set_breakpoints(path, [
        {"line": 3, "condition": "i % 4 == 0"},         # i = 4, 8
        {"line": 5, "logMessage": "total is {total}, twice {total * 2}"},
    ])
    stops: list[str] = []

    def ide(h: DebugHarness) -> None:
        for _ in range(2):
            h.stopped()
            stops.append(h.evaluate("i"))
            h.debugger.resume(None)

    assert harness.run(code, ide).error is None
    assert stops == ["4", "8"]
    assert harness.event("output")["output"] == "total is 55, twice 110\n"

    harness.debugger.set_breakpoints(path, [{"line": 3, "hitCondition": "3"}])  # only the 3rd hit
    only: list[str] = []

    def ide2(h: DebugHarness) -> None:
        h.stopped()
        only.append(h.evaluate("i"))
        h.debugger.resume(None)

    assert harness.run(code, ide2).error is None
    assert only == ["3"]


def test_a_failing_condition_stops_and_says_why(harness: DebugHarness) -> None:
    code = "local n = 1\nn = n + 1\n"
    path = harness.dump(code)
    harness.debugger.set_breakpoints(path, [{"line": 2, "condition": "undefined_table.field"}])

    def ide(h: DebugHarness) -> None:
        h.stopped()
        h.debugger.resume(None)

    assert harness.run(code, ide).error is None
    assert "failed" in harness.event("output")["output"]


def test_step_in_over_and_out(harness: DebugHarness) -> None:
    path = harness.dump(FUNCTIONS)
    harness.debugger.set_breakpoints(path, [{"line": 5}])
    where: list[tuple[str, int]] = []

    def ide(h: DebugHarness) -> None:
        h.stopped()
        h.debugger.set_breakpoints(path, [])
        for step in ("in", "over", "out", "over", "over"):
            top = h.top()
            where.append((top["name"], top["line"]))
            h.debugger.resume(step)
            assert h.stopped()["reason"] == "step"
        top = h.top()
        where.append((top["name"], top["line"]))
        h.debugger.resume(None)

    assert harness.run(FUNCTIONS, ide).error is None
    assert where == [("cell [1]", 5), ("add", 2), ("add", 3), ("cell [1]", 5), ("cell [1]", 6), ("cell [1]", 7)]


def test_step_out_of_a_recursive_call_stops_in_its_caller(harness: DebugHarness) -> None:
    code = "local function fib(n)\n  if n < 2 then return n end\n  return fib(n - 1) + fib(n - 2)\nend\nreturn fib(6)\n"
    path = harness.dump(code)
    harness.debugger.set_breakpoints(path, [{"line": 2, "condition": "n == 3"}])
    seen: dict[str, object] = {}

    def ide(h: DebugHarness) -> None:
        h.stopped()
        seen["depth"] = len(h.stack())
        h.debugger.set_breakpoints(path, [])
        h.debugger.resume("out")
        seen["reason"] = h.stopped()["reason"]
        stack = h.stack()
        seen["after"] = (len(stack), stack[0]["line"], h.evaluate("n"))
        h.debugger.resume(None)

    result = harness.run(code, ide)
    assert result.error is None
    assert seen["reason"] == "step"
    assert seen["after"] == (seen["depth"] - 1, 3, "4")  # in fib(4), one frame less


def test_pause_a_busy_loop_then_change_a_variable_to_end_it(harness: DebugHarness) -> None:
    code = "running = true\nlocal spins = 0\nwhile running do\n  spins = spins + 1\nend\nreturn 'left the loop'\n"
    seen: dict[str, object] = {}

    def ide(h: DebugHarness) -> None:
        import time

        deadline = time.monotonic() + 10
        while not h.debugger.pause():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        body = h.stopped()
        seen["reason"] = body["reason"]
        seen["line"] = h.top()["line"]
        h.evaluate("running = false")
        h.debugger.resume(None)

    result = harness.run(code, ide)
    assert result.error is None
    assert harness.engine.render_values(result.values) == '"left the loop"'
    assert seen["reason"] == "pause" and seen["line"] in (3, 4)


def test_uncaught_error_stops_where_it_was_raised(harness: DebugHarness) -> None:
    harness.debugger.set_exception_filters(["uncaught"])
    code = "local function check(v)\n  if v > 2 then error('too big: ' .. v) end\nend\nfor i = 1, 5 do check(i) end\n"
    seen: dict[str, object] = {}

    def ide(h: DebugHarness) -> None:
        body = h.stopped()
        seen["body"] = body
        seen["top"] = (h.top()["name"], h.top()["line"])
        seen["v"] = h.evaluate("v")
        h.debugger.resume(None)

    result = harness.run(code, ide)
    assert result.error is not None and "too big: 3" in result.error.evalue  # the cell still fails normally
    assert seen["body"]["reason"] == "exception" and "too big: 3" in seen["body"]["text"]
    assert seen["top"] == ("check", 2) and seen["v"] == "3"


def test_raised_filter_stops_on_errors_that_pcall_catches(harness: DebugHarness) -> None:
    code = "local ok, err = pcall(function() local secret = 42; error('caught') end)\nreturn ok\n"
    harness.debugger.set_exception_filters(["uncaught"])
    assert harness.run(code).error is None  # uncaught only: a caught error does not stop
    harness.debugger.set_exception_filters(["raised"])
    seen: dict[str, str] = {}

    def ide(h: DebugHarness) -> None:
        h.stopped()
        seen["secret"] = h.evaluate("secret")
        h.debugger.resume(None)

    result = harness.run(code, ide)
    assert result.error is None and harness.engine.render_values(result.values) == "false"
    assert seen["secret"] == "42"
    with pytest.raises(DebuggerError, match="unknown exception filter"):
        harness.debugger.set_exception_filters(["sometimes"])


def test_scopes_variables_paging_and_set_variable(harness: DebugHarness) -> None:
    code = ("data = {10, 20, 30, 40, 50, name = 'nums', nested = {deep = true}}\ndo local factor = 3\n"
            "local function scale(v)\n  local scaled = v * factor\n  return scaled\nend\nresult = scale(data[2]) end\n")
    harness.break_at(code, 5)
    seen: dict[str, object] = {}

    def ide(h: DebugHarness) -> None:
        h.stopped()
        d = h.debugger
        seen["locals"] = h.scope("Locals")
        seen["upvalues"] = h.scope("Upvalues")
        frame = h.top()["id"]
        scopes = {s["name"]: s for s in h.lua(lambda: d.scopes(frame))}
        globals_ = h.lua(lambda: d.variables(scopes["Globals"]["variablesReference"]))
        data = next(v for v in globals_ if v["name"] == "data")
        seen["data"] = (data["indexedVariables"], data["namedVariables"])
        page = h.lua(lambda: d.variables(data["variablesReference"], "indexed", 1, 2))
        seen["page"] = [(v["name"], v["value"]) for v in page]
        named = h.lua(lambda: d.variables(data["variablesReference"], "named"))
        nested = next(v for v in named if v["name"] == "nested")
        seen["deep"] = h.lua(lambda: d.variables(nested["variablesReference"]))[0]["value"]
        locals_ref = scopes["Locals"]["variablesReference"]
        seen["set"] = h.lua(lambda: d.set_variable(locals_ref, "scaled", "scaled + 1000"))["value"]
        h.lua(lambda: d.set_variable(data["variablesReference"], "name", "'changed'"))
        with pytest.raises(DebuggerError):
            h.lua(lambda: d.set_variable(locals_ref, "nope", "1"))
        h.debugger.resume(None)

    assert harness.run(code, ide).error is None
    assert seen["locals"] == {"v": "20", "scaled": "60"}
    assert seen["upvalues"] == {"factor": "3"}
    assert seen["data"] == (5, 2)
    assert seen["page"] == [("[2]", "20"), ("[3]", "30")]
    assert seen["deep"] == "true"
    assert seen["set"] == "1060"
    assert harness.engine.render_values(harness.engine.evaluate("result").values) == "1060"
    assert harness.engine.render_values(harness.engine.evaluate("data.name").values) == '"changed"'


def test_evaluate_in_a_frame_reads_and_writes_its_locals(harness: DebugHarness) -> None:
    code = "local function f()\n  local n = 1\n  return n\nend\nreturn f()\n"
    harness.break_at(code, 3)
    seen: dict[str, object] = {}

    def ide(h: DebugHarness) -> None:
        h.stopped()
        seen["sum"] = h.evaluate("n + 41")
        h.evaluate("n = 99")
        with pytest.raises(DebuggerError, match="attempt to"):
            h.evaluate("n.x.y")
        with pytest.raises(DebuggerError):
            h.evaluate("this is not lua")
        h.debugger.resume(None)

    result = harness.run(code, ide)
    assert seen["sum"] == "42"
    assert harness.engine.render_values(result.values) == "99"


def test_a_breakpoint_inside_a_coroutine_shows_the_resumer_frames(harness: DebugHarness) -> None:
    code = ("local co = coroutine.create(function(a)\n  local inside = a * 2\n  coroutine.yield(inside)\n"
            "  return 'done'\nend)\n"
            "local ok, v = coroutine.resume(co, 21)\nlocal ok2, w = coroutine.resume(co)\nreturn v, w\n")
    harness.break_at(code, 3)
    seen: dict[str, object] = {}

    def ide(h: DebugHarness) -> None:
        h.stopped()
        stack = h.stack()
        seen["frames"] = [(f["name"], f["line"]) for f in stack]
        seen["inside"] = h.evaluate("inside")
        seen["outer"] = h.evaluate("co ~= nil", stack[-1]["id"])
        h.debugger.resume(None)

    result = harness.run(code, ide)
    assert result.error is None and harness.engine.render_values(result.values) == '42\t"done"'
    frames = seen["frames"]
    assert frames[0][1] == 3 and frames[-1] == ("cell [1]", 6)
    assert seen["inside"] == "42" and seen["outer"] == "true"


def test_breakpoints_of_one_cell_do_not_stop_another_with_the_same_line(harness: DebugHarness) -> None:
    harness.debugger.set_breakpoints(harness.dump("local a = 1\nlocal b = 2\n"), [{"line": 2}])
    other = "local x = 0\nfor i = 1, 1000 do x = x + i end\nreturn x\n"
    result = harness.run(other)  # no controller: a stop would hang the test
    assert harness.engine.render_values(result.values) == "500500"


def test_interrupt_while_stopped_ends_the_cell_and_the_engine_stays_usable(harness: DebugHarness) -> None:
    code = "local n = 0\nn = n + 1\nreturn n\n"
    path = harness.break_at(code, 2)

    def ide(h: DebugHarness) -> None:
        h.stopped()
        assert h.debugger.is_stopped
        h.engine.interrupt()

    result = harness.run(code, ide)
    assert result.error is not None and result.error.ename == "KeyboardInterrupt"
    assert not harness.debugger.is_stopped
    harness.debugger.set_breakpoints(path, [])
    assert harness.engine.render_values(harness.run(code).values) == "1"


def test_no_hook_is_installed_without_breakpoints_or_steps(harness: DebugHarness) -> None:
    interrupter = harness.engine.interrupter
    path = harness.dump("local a = 1\n")
    harness.debugger.set_breakpoints(path, [{"line": 1}])
    assert interrupter.base_hook is not None
    harness.debugger.set_breakpoints(path, [])
    assert interrupter.base_hook is None


def test_requests_that_cannot_be_served_say_why(harness: DebugHarness) -> None:
    d = harness.debugger
    with pytest.raises(DebuggerError, match="not stopped"):
        d.resume(None)
    with pytest.raises(DebuggerError, match="not stopped"):
        harness.lua(d.stack)
    with pytest.raises(DebuggerError, match="unknown variablesReference"):
        harness.lua(lambda: d.variables(12345))
    with pytest.raises(DebuggerError, match="unknown step"):
        d.resume("sideways")
    assert d.pause() is False  # nothing runs
    assert harness.lua(lambda: d.evaluate("1 + 1"))["result"] == "2"  # idle: evaluates in the globals


def test_native_filter_is_used_when_a_compiler_exists(harness: DebugHarness, request: pytest.FixtureRequest) -> None:
    import shutil

    harness.debugger.set_breakpoints(harness.dump("local a = 1\n"), [{"line": 1}])
    expected = request.node.callspec.params["harness"] == "native" and shutil.which("cc") is not None
    assert harness.debugger.native_filter is expected
