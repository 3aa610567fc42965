"""The Lua engine in-process: cell semantics, pretty-printing, introspection and the sandbox."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aikit_kernel.lua import source
from aikit_kernel.lua.cells import HASH_SEED, CellFiles, murmur2_x86
from aikit_kernel.lua.engine import LuaEngine
from aikit_kernel.lua.interrupt import lua_library
from tests.support.lua import LateInterrupt, RecordingOutput


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LuaEngine]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AIKIT_DATA_DIR", str(tmp_path / "data"))
    engine = LuaEngine(RecordingOutput(), max_memory=64 * 1024 * 1024)
    yield engine
    engine.close()


def value(engine: LuaEngine, code: str) -> str:
    result = engine.run_cell(code, "[1]")
    assert result.error is None, result.error
    return engine.render_values(result.values)


def test_murmur2_matches_ipykernel_and_jupyterlab() -> None:
    from ipykernel.compiler import murmur2_x86 as reference

    for code in ["", "a", "ab", "abc", "abcd", "print('héllo')\nx = 1\n", "x" * 1001]:
        assert murmur2_x86(code, HASH_SEED) == reference(code, HASH_SEED)


def test_cell_files_are_named_like_jupyterlab_expects() -> None:
    cells = CellFiles(prefix="/tmp/aikit_test_prefix/")
    path = cells.write("x = 1", "[7]")
    assert path == f"/tmp/aikit_test_prefix/{murmur2_x86('x = 1', HASH_SEED)}.lua"
    assert Path(path).read_text() == "x = 1"
    assert cells.prettify(f"{path}:1: boom") == "[7]:1: boom"


def test_tokenizer_knows_strings_and_comments() -> None:
    code = 'x = [==[a]]b]==] --[[c\nd]] "e\\"f" \'g\' -- h\nlocal y = 1.5e3 .. z'
    assert [(t.kind, t.text) for t in source.tokenize(code)] == [
        ("name", "x"), ("symbol", "="), ("string", "[==[a]]b]==]"), ("comment", "--[[c\nd]]"),
        ("string", '"e\\"f"'), ("string", "'g'"), ("comment", "-- h"), ("keyword", "local"), ("name", "y"),
        ("symbol", "="), ("number", "1.5e3"), ("symbol", ".."), ("name", "z"),
    ]
    assert source.tokenize("s = 'open")[-1].kind == "string"  # unterminated: to the end of the line


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("local x = 1", "x = 1"),
        ("local a, b", "a, b = nil, nil"),
        ("local function f() local y = 2 end", "function f() local y = 2 end"),
        ("local c <const> = 3", "c  = 3"),
        ("local h <close> = nil", "local h <close> = nil"),
        ("do local z = 1 end", "do local z = 1 end"),
        ("s = 'local q = 1' -- local r", "s = 'local q = 1' -- local r"),
    ],
)
def test_top_level_locals_become_persistent(code: str, expected: str) -> None:
    assert source.persist_top_level_locals(code) == expected


def test_trailing_expression_rules(engine: LuaEngine) -> None:
    assert value(engine, "1 + 1") == "2"
    assert value(engine, "local a = 2\na * 21") == "42"
    assert value(engine, "x = 1") == ""
    assert value(engine, "return 1, 'two', nil") == '1\t"two"\tnil'
    assert value(engine, "1.0, 2^53, 0/0, math.huge") == "1.0\t9.007199254741e+15\tnan\tmath.huge"


def test_locals_persist_and_functions_see_them(engine: LuaEngine) -> None:
    engine.run_cell("local n = 10\nlocal function add(k) return n + k end", "[1]")
    assert value(engine, "add(5)") == "15"


def test_pretty_print_is_cycle_safe_and_truncated(engine: LuaEngine) -> None:
    assert value(engine, "local t = {1, 2, x = {y = 'z'}}\nt") == '{1, 2, x = {y = "z"}}'
    assert "<cycle: table" in value(engine, "local c = {} c.me = c\nc")
    big = value(engine, "local t = {} for i = 1, 10000 do t[i] = i end\nt")
    assert "... (9900 more)" in big and len(big) < 2000
    assert value(engine, 'setmetatable({}, {__tostring = function() return "custom" end})') == "custom"


def test_runtime_error_names_cell_and_line(engine: LuaEngine) -> None:
    result = engine.run_cell("local x = 1\nlocal y = nil\nreturn y.field", "[4]")
    assert result.error is not None
    assert result.error.ename == "LuaError"
    assert result.error.evalue.startswith("[4]:3: attempt to index a nil value")
    assert any("[4]:3: in main chunk" in line for line in result.error.traceback)
    assert not any("[aikit]" in line for line in result.error.traceback)


def test_error_values_keep_their_message(engine: LuaEngine) -> None:
    structured = engine.run_cell("error({code = 'quota', message = 'too many calls'})", "[1]").error
    assert structured is not None and (structured.ename, structured.evalue) == ("quota", "too many calls")
    table_err = engine.run_cell("error({1, 2})", "[1]").error
    assert table_err is not None and "{1, 2}" in table_err.evalue
    tostring_err = engine.run_cell("error(setmetatable({}, {__tostring = function() return 'mine' end}))", "[1]").error
    assert tostring_err is not None and tostring_err.evalue == "mine"
    nil_err = engine.run_cell("error()", "[1]").error
    assert nil_err is not None and "nil" in nil_err.evalue


def test_syntax_error(engine: LuaEngine) -> None:
    result = engine.run_cell("x = = 1", "[2]")
    assert result.error is not None and result.error.ename == "LuaSyntaxError"
    assert result.error.evalue.startswith("[2]:1:")


@pytest.mark.parametrize(
    ("code", "status"),
    [("x = 1", "complete"), ("1 +", "incomplete"), ("for i = 1, 2 do", "incomplete"), ("s = [[open", "incomplete"),
     ("f(", "incomplete"), ("x = = 1", "invalid"), ("end", "invalid"), ("", "complete"), ("print('a')", "complete")],
)
def test_is_complete(engine: LuaEngine, code: str, status: str) -> None:
    assert engine.introspection.is_complete(code)[0] == status


def test_incomplete_indent_follows_block_depth(engine: LuaEngine) -> None:
    assert engine.introspection.is_complete("for i = 1, 2 do\n  if i then")[1] == "    "


def test_completion(engine: LuaEngine) -> None:
    engine.run_cell("local player = {name = 'x', score = 1}\nfunction player.jump() end\nlocal s = 'txt'", "[1]")
    assert engine.introspection.complete("pla", 3)[:3] == (["player"], 0, 3)
    assert engine.introspection.complete("player.s", 8)[0] == ["score"]
    assert engine.introspection.complete("player:j", 8)[0] == ["jump"]
    assert "upper" in engine.introspection.complete("s:u", 3)[0]
    assert engine.introspection.complete("string.for", 10)[:3] == (["format"], 7, 10)
    assert "while" in engine.introspection.complete("whi", 3)[0]
    assert engine.introspection.complete("x = 'pla", 8)[0] == []  # inside a string
    assert engine.introspection.complete("x = 'é' .. pla", 14)[1] == 11  # code points, not bytes


def test_inspect(engine: LuaEngine) -> None:
    engine.run_cell("local cfg = {retries = 3, 10, 20}\nlocal fmt = string.format", "[1]")
    assert engine.introspection.inspect("string.format", 10).startswith("string.format(")
    assert engine.introspection.inspect("fmt", 1).startswith("string.format(")  # aliases keep their doc
    assert engine.introspection.inspect("display", 3).startswith("display(") if engine.docs.get("display") else True
    info = engine.introspection.inspect("cfg", 2)
    assert info is not None and "table" in info and "retries" in info
    assert engine.introspection.inspect("while", 2).startswith("while")
    assert engine.introspection.inspect("print(", 6).startswith("print(")  # inside a call's arguments
    assert engine.introspection.inspect("x = string.format('%d', {1, 2}, ", 31).startswith("string.format(")
    assert engine.introspection.inspect("nosuchname", 3) is None


@pytest.mark.parametrize(
    "code",
    ["while true do end", "local co = coroutine.wrap(function() while true do end end) co()",
     "while true do pcall(function() while true do end end) end", "sleep(30)",
     "local ok = xpcall(function() while true do end end, function(e) return e end) while true do end",
     "local co = coroutine.create(function() while true do coroutine.yield() end end) "
     "while true do coroutine.resume(co) end"],
)
def test_interrupt_stops_code(engine: LuaEngine, code: str) -> None:
    LateInterrupt(engine, 0.2)
    started = time.perf_counter()
    result = engine.run_cell(code, "[1]")
    elapsed = time.perf_counter() - started
    assert result.error is not None and result.error.ename == "KeyboardInterrupt"
    assert elapsed < 20  # stopped, not run out (the loops never end, the sleep lasts 30 s)
    assert value(engine, "1 + 1") == "2"


def test_interrupt_when_idle_does_not_leak_into_next_cell(engine: LuaEngine) -> None:
    assert engine.interrupt() is False
    assert value(engine, "local s = 0 for i = 1, 1e6 do s = s + i end\ns") == "500000500000"


def test_an_interrupt_pending_as_a_run_begins_stops_it_and_only_it(engine: LuaEngine) -> None:
    """What the kernel tells the engine as a run begins (an interrupt arrived for the request
    before any run was active) stops that run; taking it forgets it."""
    pending = [True]

    def take() -> bool:
        was, pending[0] = pending[0], False
        return was

    engine.interrupter.take_pending = take
    result = engine.run_cell("while true do end", "[1]")
    assert result.error is not None and result.error.ename == "KeyboardInterrupt"
    assert value(engine, "1 + 1") == "2"  # the next run goes on


def test_no_hook_is_installed_while_no_interrupt_is_pending(engine: LuaEngine) -> None:
    """Any Lua hook slows the VM 2-3x: none may be set on the running state (main or coroutine)
    unless an interrupt was requested, also after an interrupted cell."""
    lib = lua_library()
    engine.set_global("hooked", lambda address: bool(lib.lua_gethook(int(address, 16))))
    probe = (
        "local function here() return (tostring(coroutine.running()):match('0x%x+')) end\n"
        "assert(not hooked(here()), 'hook on the main state')\n"
        "assert(not coroutine.wrap(function() return hooked(here()) end)(), 'hook in a coroutine')\n"
        "assert(not select(2, pcall(function() return hooked(here()) end)), 'hook inside pcall')\n"
        "return 'clean'"
    )
    assert value(engine, probe) == '"clean"'
    timer = LateInterrupt(engine, 0.2)
    assert engine.run_cell("while true do end", "[2]").error.ename == "KeyboardInterrupt"
    timer.join()
    assert not lib.lua_gethook(engine.interrupter.main_state)  # disarmed once the cell ended
    assert value(engine, probe) == '"clean"'


def test_memory_limit_is_a_clear_error(engine: LuaEngine) -> None:
    result = engine.run_cell("local t = {} for i = 1, 1e8 do t[i] = i end", "[1]")
    assert result.error is not None and result.error.ename == "LuaMemoryError"
    assert "memory limit (64 MiB)" in result.error.evalue
    assert value(engine, "t = nil collectgarbage() return 1 + 1") == "2"


@pytest.mark.parametrize(
    "expr",
    ["load", "loadstring", "dofile", "loadfile", "require", "package", "debug", "python", "io.popen", "os.execute",
     "os.exit", "string.dump", "('').dump", "getmetatable('').__index.dump", "collectgarbage == nil and 1 or nil"],
)
def test_sandbox_hides_escapes(engine: LuaEngine, expr: str) -> None:
    assert value(engine, expr) == "nil"


def test_files_confined_to_allowed_paths(engine: LuaEngine, tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to("/etc/hostname")
    assert value(engine, "local f = assert(io.open('ok.txt', 'w')) f:write('hi', 1) f:close() "
                         "return io.open('ok.txt'):read('a')") == '"hi1"'
    denied = value(engine, "io.open('/etc/hostname')")
    assert denied.startswith("nil\t") and "outside the allowed paths" in denied
    assert "outside the allowed paths" in value(engine, "io.open('link')")
    assert "outside the allowed paths" in value(engine, "io.open('../../etc/hostname')")
    err = engine.run_cell("for l in io.lines('/etc/hostname') do end", "[1]").error
    assert err is not None and "outside the allowed paths" in err.evalue


def test_stdin_not_allowed_is_a_clear_error(engine: LuaEngine) -> None:
    err = engine.run_cell("io.read()", "[1]").error
    assert err is not None and err.ename == "stdin_not_allowed" and "allow_stdin" in err.evalue


def test_getenv_is_allowlisted(engine: LuaEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    assert value(engine, "os.getenv('OPENAI_API_KEY')") == "nil"
    assert value(engine, "os.getenv('HOME') ~= nil") == "true"


def test_python_objects_are_unreachable(engine: LuaEngine) -> None:
    # Host functions are wrapped in Lua closures; no Python object is reachable from the env.
    probe = (
        "local n = 0 for _, v in pairs(_G) do if type(v) == 'userdata' then n = n + 1 end "
        "if type(v) == 'table' then for _, w in pairs(v) do if type(w) == 'userdata' then n = n + 1 end end end end return n"
    )
    assert value(engine, probe) == "0"


def test_cursor_past_the_end_is_clamped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aikit_kernel.interpreter import LuaInterpreter

    monkeypatch.setenv("AIKIT_DATA_DIR", str(tmp_path / "data"))
    from aikit_kernel.lua_runtime import build_lua_runtime

    interpreter = LuaInterpreter(build_lua_runtime(RecordingOutput()))
    try:
        assert interpreter.inspect("string.format", 15, 0)["found"] is True  # JupyterLab sends such cursors
        assert interpreter.complete("pri", 99)["matches"] == ["print"]
        assert interpreter.complete("", -3)["cursor_start"] == 0
    finally:
        interpreter.shutdown()


def test_tables_display_as_json_records_also_as_a_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aikit_kernel.lua_runtime import build_lua_runtime

    monkeypatch.setenv("AIKIT_DATA_DIR", str(tmp_path / "data"))
    out = RecordingOutput()
    engine = build_lua_runtime(out).engine
    try:
        assert engine.run_cell("display({{a = 1}, {a = 2, b = 'x'}})\ndisplay({1, 2})\n"
                               "display.table({{a = 1}})", "[1]").error is None
        records, plain, table_only = (out.displays[i][0] for i in range(3))
        assert "<th>a</th><th>b</th>" in records["text/html"]
        assert records["application/json"] == [{"a": 1}, {"a": 2, "b": "x"}]
        assert plain["application/json"] == [1, 2] and "text/html" not in plain
        assert "<th>a</th>" in table_only["text/html"] and "application/json" not in table_only
        failed = engine.run_cell("display.table({1, 2})", "[2]").error
        assert failed is not None and "list of records" in failed.evalue
    finally:
        engine.close()


def test_cell_files_are_removed_on_close(engine: LuaEngine) -> None:
    path = engine.cells.write("x = 1", "[1]")
    assert Path(path).exists()
    engine.close()
    assert not Path(path).exists()


def test_trailing_call_after_statements_is_the_result(engine: LuaEngine) -> None:
    assert value(engine, "local t = {}\nt.n = 2\nmath.max(t.n, 1)") == "2"
    assert value(engine, "local s = 'a'\nstring.rep(s,\n  3)") == '"aaa"'  # a call spanning lines
    assert value(engine, "local s = 'a'\nstring.rep(s, 3);") == ""  # a trailing ; keeps the cell quiet
    assert value(engine, "y = 5\nx = 1\n-y") == ""  # `x = 1 - y`: one statement, no result
    assert value(engine, "x") == "-4"


def test_a_cell_run_again_runs_afresh(engine: LuaEngine) -> None:
    """Cells run again use their kept compiled chunk: every run is a fresh function (its locals,
    its closures), each form of cell keeps its result rule, and a cell that replaces _ENV does
    not hand its replacement to its next run."""
    for _ in range(3):
        assert value(engine, "1 + 1") == "2"
        assert value(engine, "local t = {}\nt.n = 2\nmath.max(t.n, 1)") == "2"
        assert value(engine, "x = 1") == ""
    engine.run_cell("counters = {}", "[1]")
    for _ in range(3):  # a closure made by each run sees that run's own local
        engine.run_cell("do local k = #counters + 1\ncounters[k] = function() return k end end", "[2]")
    assert value(engine, "counters[1](), counters[2](), counters[3]()") == "1\t2\t3"
    for _ in range(2):
        assert engine.run_cell("n = (n or 0) + 1\n_ENV = {}", "[3]").error is None
    assert value(engine, "n") == "2"


@pytest.mark.parametrize("code", ["1", "-7", "2^62 // 1", "math.maxinteger", "math.mininteger", "true", "false",
                                  "1 == 1", "0x10"])
def test_integer_and_boolean_results_render_as_lua_prints_them(engine: LuaEngine, code: str) -> None:
    result = engine.run_cell(code, "[1]")
    assert result.error is None
    assert engine.render_result(result.values) == engine.render_values(result.values)
    assert engine.render_result(result.values) == value(engine, f"tostring({code})").strip('"')
