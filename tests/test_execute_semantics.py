"""Execution semantics of the aikit kernel over real ZMQ: execution counts, results, errors,
persistence of top-level locals, user_expressions, stop_on_error, busy/idle framing, output
floods, comms, kernel_info and history across restarts."""

from __future__ import annotations

import base64
import re
import uuid

import pytest
from jupyter_kernel_test.msgspec_v5 import validate_message

from tests.support.kernels import Kernel, start_kernel

pytestmark = pytest.mark.xdist_group("execute_semantics")


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Kernel:
    k = start_kernel(tmp_path_factory.mktemp("exec-data"))
    yield k
    k.shutdown()


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def assert_framed(msgs: list[dict], msg_id: str) -> None:
    """busy first, idle last, every message parented by ``msg_id``."""
    assert msgs, "no IOPub messages"
    assert all(m["parent_header"]["msg_id"] == msg_id for m in msgs)
    assert msgs[0]["msg_type"] == "status" and msgs[0]["content"]["execution_state"] == "busy", msgs[0]
    assert msgs[-1]["msg_type"] == "status" and msgs[-1]["content"]["execution_state"] == "idle", msgs[-1]
    assert [m["msg_type"] for m in msgs].count("status") == 2


# ---------------------------------------------------------------------------------------------
# execution_count, execute_input, execute_result
# ---------------------------------------------------------------------------------------------
def test_execution_count_increments_and_matches_input_and_result(kernel: Kernel) -> None:
    first = kernel.ok("1 + 1")
    n = first.content["execution_count"]
    (inp,) = first.of_type("execute_input")
    (res,) = first.of_type("execute_result")
    assert inp["content"] == {"code": "1 + 1", "execution_count": n}
    assert res["content"]["execution_count"] == n
    assert res["content"]["data"]["text/plain"] == "2"
    second = kernel.ok("2 + 2")
    assert second.content["execution_count"] == n + 1


def test_store_history_false_does_not_increment(kernel: Kernel) -> None:
    n = kernel.ok("1").content["execution_count"]
    quiet = kernel.ok("3 * 3", store_history=False)
    assert quiet.content["execution_count"] == n
    assert quiet.result_text == "9"  # not silent: the result is still shown
    assert len(quiet.of_type("execute_input")) == 1
    assert kernel.ok("1").content["execution_count"] == n + 1


def test_silent_publishes_nothing_and_does_not_increment(kernel: Kernel) -> None:
    n = kernel.ok("1").content["execution_count"]
    name = unique("silent_side_effect")
    silent = kernel.ok(f"{name} = 5\n1 + 1", silent=True)
    assert silent.content["execution_count"] == n
    assert silent.of_type("execute_input") == []
    assert silent.of_type("execute_result") == []
    assert [m["msg_type"] for m in silent.iopub] == ["status", "status"]
    assert kernel.value(name) == "5"  # it did run
    assert kernel.ok("1").content["execution_count"] == n + 2  # only the two visible cells counted


def test_no_result_for_statements(kernel: Kernel) -> None:
    r = kernel.ok(f"{unique('stmt')} = 1")
    assert r.of_type("execute_result") == []
    r = kernel.ok('print("only output")')
    assert r.of_type("execute_result") == []
    assert r.stdout == "only output\n"


# ---------------------------------------------------------------------------------------------
# Lua semantics of cells
# ---------------------------------------------------------------------------------------------
def test_top_level_locals_persist_across_cells(kernel: Kernel) -> None:
    name = unique("loc")
    kernel.ok(f"local {name} = 20")
    kernel.ok(f"local function {name}_f(x) return x + {name} end")
    assert kernel.value(f"{name}_f(1)") == "21"
    assert kernel.value(f"{name} * 2") == "40"
    kernel.ok(f"local {name}_a, {name}_b = 1")  # `local a, b = 1`: b becomes nil
    assert kernel.value(f"return {name}_a, {name}_b") == "1\tnil"


def test_block_locals_stay_local(kernel: Kernel) -> None:
    name = unique("inner")
    kernel.ok(f"do local {name} = 1 end")
    assert kernel.value(f"{name} == nil") == "true"


def test_multiple_return_values(kernel: Kernel) -> None:
    assert kernel.value('return 1, "two", {3}') == '1\t"two"\t{3}'
    assert kernel.value("1, 2") == "1\t2"


def test_trailing_expression_after_statements(kernel: Kernel) -> None:
    assert kernel.value("local a = 2\na * 21") == "42"
    assert kernel.value("local t = {}\nfor i = 1, 3 do t[i] = i * i end\nt") == "{1, 4, 9}"


def test_error_traceback_names_cell_and_line(kernel: Kernel) -> None:
    r = kernel.execute('local x = 1\n\nerror("bad thing")')
    n = r.content["execution_count"]
    assert r.content["status"] == "error"
    assert r.content["ename"] == "LuaError"
    assert f"[{n}]:3:" in r.content["evalue"] and "bad thing" in r.content["evalue"]
    tb = "\n".join(r.content["traceback"])
    assert f"[{n}]:3" in tb
    assert "aikit_" not in tb and ".lua" not in tb  # cell file paths are replaced by labels
    (err,) = r.of_type("error")
    assert err["content"]["ename"] == "LuaError"
    assert err["content"]["traceback"] == r.content["traceback"]
    assert r.of_type("execute_result") == []


def test_error_in_function_defined_in_earlier_cell(kernel: Kernel) -> None:
    name = unique("fails")
    first = kernel.ok(f"function {name}()\n  error('deep')\nend")
    m = first.content["execution_count"]
    r = kernel.execute(f"{name}()")
    n = r.content["execution_count"]
    assert r.content["status"] == "error"
    tb = "\n".join(r.content["traceback"])
    assert f"[{m}]:2" in tb and f"[{n}]:1" in tb


def test_syntax_error(kernel: Kernel) -> None:
    r = kernel.execute("x = = 1")
    assert r.content["status"] == "error"
    assert r.content["ename"] == "LuaSyntaxError"
    assert re.search(r"\[\d+\]:1:", r.content["evalue"]), r.content["evalue"]


def test_non_string_error_values_keep_their_message(kernel: Kernel) -> None:
    r = kernel.execute("error({1, 2})")
    assert r.content["status"] == "error" and "table" in r.content["evalue"] and "{1, 2}" in r.content["evalue"]
    r = kernel.execute('error(setmetatable({}, {__tostring = function() return "custom msg" end}))')
    assert "custom msg" in r.content["evalue"]
    r = kernel.execute('error({code = "my_code", message = "structured"})')
    assert r.content["ename"] == "my_code" and r.content["evalue"] == "structured"


# ---------------------------------------------------------------------------------------------
# user_expressions
# ---------------------------------------------------------------------------------------------
def test_user_expressions_ok_and_error(kernel: Kernel) -> None:
    name = unique("ue")
    r = kernel.ok(f"{name} = 7", user_expressions={"sum": "1 + 2", "var": f"{name} * 6", "bad": "nosuch.field",
                                                    "multi": "1, 'x'"})
    ue = r.content["user_expressions"]
    assert ue["sum"] == {"status": "ok", "data": {"text/plain": "3"}, "metadata": {}}
    assert ue["var"]["data"]["text/plain"] == "42"
    assert ue["multi"]["data"]["text/plain"] == '1\t"x"'
    assert ue["bad"]["status"] == "error"
    assert ue["bad"]["ename"] == "LuaError"
    assert "nosuch" in ue["bad"]["evalue"]
    assert isinstance(ue["bad"]["traceback"], list)
    # user_expressions are evaluated quietly: no extra outputs
    assert r.of_type("execute_result") == [] and r.of_type("error") == []


# ---------------------------------------------------------------------------------------------
# stop_on_error and busy/idle framing of pipelined requests
# ---------------------------------------------------------------------------------------------
def pipeline(kernel: Kernel, codes: list[str], stop_on_error: bool) -> tuple[list[str], dict, dict]:
    ids = [kernel.kc.execute(c, stop_on_error=stop_on_error, allow_stdin=False) for c in codes]
    replies = kernel.shell_replies(ids)
    iopub = kernel.collect_iopub(ids)
    return ids, replies, iopub


def test_stop_on_error_aborts_queued_requests(kernel: Kernel) -> None:
    a, b = unique("ran_a"), unique("ran_b")
    # The first cell sleeps so the next two are surely queued when it fails.
    ids, replies, iopub = pipeline(kernel, ['sleep(0.3) error("first fails")', f"{a} = true", f"{b} = true"], True)
    assert replies[ids[0]]["content"]["status"] == "error"
    assert replies[ids[1]]["content"]["status"] == "aborted"
    assert replies[ids[2]]["content"]["status"] == "aborted"
    for msg_id in ids:
        assert_framed(iopub[msg_id], msg_id)
    # aborted requests publish no execute_input and did not run
    assert iopub[ids[1]][1:-1] == [] and iopub[ids[2]][1:-1] == []
    assert kernel.value(f"return {a}, {b}") == "nil\tnil"
    # the abort is over: the next request runs
    kernel.assert_alive()


def test_stop_on_error_false_runs_the_rest(kernel: Kernel) -> None:
    a, b = unique("ran_a"), unique("ran_b")
    ids, replies, iopub = pipeline(kernel, ['sleep(0.3) error("first fails")', f"{a} = 1", f"{b} = 2"], False)
    assert [replies[i]["content"]["status"] for i in ids] == ["error", "ok", "ok"]
    assert kernel.value(f"return {a}, {b}") == "1\t2"


def test_busy_idle_order_for_each_request(kernel: Kernel) -> None:
    kc = kernel.kc
    ids = [
        kc.execute('print("x")', allow_stdin=False),
        kc.complete("string.fo"),
        kc.inspect("print"),
        kc.is_complete("for i = 1, 2 do"),
        kc.kernel_info(),
        kc.history(hist_access_type="tail", n=2),
        kc.comm_info(),
        kc.execute("error('e')", stop_on_error=False, allow_stdin=False),
        kc.execute("1 + 1", allow_stdin=False),
    ]
    replies = kernel.shell_replies(ids)
    arrival: list[dict] = []
    iopub = kernel.collect_iopub(ids, arrival=arrival)
    for msg_id in ids:
        assert_framed(iopub[msg_id], msg_id)
        validate_message(replies[msg_id], None, msg_id)
        for m in iopub[msg_id]:
            validate_message(m, None, msg_id)
    # shell requests are served one at a time, in order: their IOPub messages do not interleave
    order = [m["parent_header"]["msg_id"] for m in arrival]
    runs = [mid for i, mid in enumerate(order) if i == 0 or order[i - 1] != mid]
    assert runs == ids, "IOPub messages of different requests interleaved"


def test_output_flood_delivers_every_line_then_idle(kernel: Kernel) -> None:
    r = kernel.ok("for i = 1, 1e5 do print(i) end", timeout=60)
    streams = r.of_type("stream")
    assert all(m["content"]["name"] == "stdout" for m in streams)
    lines = r.stdout.split("\n")
    assert lines[-1] == ""
    assert lines[:-1] == [str(i) for i in range(1, 100001)]
    # the final message of the request is idle, after every stream message
    assert r.iopub[-1]["content"]["execution_state"] == "idle"
    kernel.assert_alive()


def test_interleaved_stdout_stderr_keep_order(kernel: Kernel) -> None:
    r = kernel.ok('io.write("a") io.stderr:write("b") io.write("c") print("d")')
    seq = [(m["content"]["name"], m["content"]["text"]) for m in r.of_type("stream")]
    assert seq == [("stdout", "a"), ("stderr", "b"), ("stdout", "cd\n")]


# ---------------------------------------------------------------------------------------------
# comms
# ---------------------------------------------------------------------------------------------
def test_comm_info_reply(kernel: Kernel) -> None:
    r = kernel.request(kernel.kc.comm_info())
    assert r.reply["msg_type"] == "comm_info_reply"
    assert r.content == {"status": "ok", "comms": {}}
    r = kernel.request(kernel.kc.comm_info(target_name="jupyter.widget"))
    assert r.content["comms"] == {}


def test_comm_open_unknown_target_is_closed(kernel: Kernel) -> None:
    comm_id = uuid.uuid4().hex
    msg = kernel.kc.session.msg("comm_open", {"comm_id": comm_id, "target_name": "no.such.target", "data": {}})
    kernel.kc.shell_channel.send(msg)
    msgs = kernel.collect_iopub([msg["header"]["msg_id"]])[msg["header"]["msg_id"]]
    assert_framed(msgs, msg["header"]["msg_id"])
    closes = [m for m in msgs if m["msg_type"] == "comm_close"]
    assert len(closes) == 1
    assert closes[0]["content"]["comm_id"] == comm_id
    kernel.assert_alive()


# ---------------------------------------------------------------------------------------------
# kernel_info
# ---------------------------------------------------------------------------------------------
def test_kernel_info_fields(kernel: Kernel) -> None:
    r = kernel.request(kernel.kc.kernel_info())
    c = r.content
    assert c["status"] == "ok"
    assert c["protocol_version"].startswith("5.")
    assert c["implementation"] == "aikit"
    li = c["language_info"]
    assert li["name"] == "lua"
    assert li["version"].startswith("5.4.")
    assert li["mimetype"] == "text/x-lua"
    assert li["file_extension"] == ".lua"
    assert li["pygments_lexer"] == "lua"
    assert li["codemirror_mode"] == "lua"
    assert isinstance(c["banner"], str) and "Lua 5.4" in c["banner"]
    assert c["help_links"] and all({"text", "url"} <= set(link) for link in c["help_links"])
    assert all(link["url"].startswith("https://") for link in c["help_links"])


def test_kernel_info_on_control_while_busy(kernel: Kernel) -> None:
    """Control requests are answered even while a cell runs."""
    kc = kernel.kc
    busy = kc.execute("sleep(0.5)", allow_stdin=False)
    kernel.wait_for_iopub(busy, "execute_input")
    msg = kc.session.msg("kernel_info_request", {})
    kc.control_channel.send(msg)
    reply = kc.control_channel.get_msg(timeout=5)
    assert reply["parent_header"]["msg_id"] == msg["header"]["msg_id"]
    assert reply["content"]["language_info"]["name"] == "lua"
    # answered before the cell finished
    assert kernel.shell_reply(busy)["content"]["status"] == "ok"
    kernel.collect_iopub([busy])


# ---------------------------------------------------------------------------------------------
# history across a restart (own kernel: restarting the shared one would reset its state)
# ---------------------------------------------------------------------------------------------
def test_history_survives_restart(tmp_path) -> None:
    k = start_kernel(tmp_path / "data")
    try:
        marker = f'"{unique("before_restart")}"'
        before = k.ok(marker)
        session_before = before.reply["header"]["session"]
        hist = k.request(k.kc.history(hist_access_type="tail", n=5)).content["history"]
        old_session = hist[-1][0]
        assert hist[-1][2] == marker

        k.km.restart_kernel(now=False)
        k.kc.wait_for_ready(timeout=60)

        after = k.ok("1 + 1")
        assert after.content["execution_count"] == 1  # a fresh kernel
        assert after.reply["header"]["session"] != session_before
        hist = k.request(k.kc.history(hist_access_type="tail", n=10)).content["history"]
        sources = [h[2] for h in hist]
        assert marker in sources
        assert sources[-1] == "1 + 1"
        new_session = hist[-1][0]
        assert new_session > old_session
        # range on the previous session (-1 = one before the current) finds it too
        prev = k.request(k.kc.history(hist_access_type="range", session=-1, start=1, stop=None)).content["history"]
        assert marker in [h[2] for h in prev]
        found = k.request(k.kc.history(hist_access_type="search", pattern='"before_restart*')).content["history"]
        assert [h[2] for h in found] == [marker]
    finally:
        k.shutdown()


# ---------------------------------------------------------------------------------------------
# Regression tests for bugs found in review (each was a strict xfail until fixed)
# ---------------------------------------------------------------------------------------------
def test_result_rendering_error_gives_a_proper_error_reply(kernel: Kernel) -> None:
    r = kernel.execute('setmetatable({}, {__len = function() error("len boom") end})')
    c = r.content
    if c["status"] == "ok":  # rendering fell back to something sensible: fine too
        assert r.result_text
    else:
        assert "execution_count" in c, c
        assert c["ename"] == "LuaError" and "len boom" in c["evalue"]
        assert "/tmp/" not in c["evalue"] and re.search(r"\[\d+\]:1", c["evalue"])
        assert len(r.of_type("error")) == 1
    kernel.assert_alive()


def test_display_of_value_with_failing_tostring(kernel: Kernel) -> None:
    r = kernel.execute('display(setmetatable({1}, {__tostring = function() error("no tostring") end}))')
    assert r.content["status"] == "ok", r.content
    (shown,) = r.of_type("display_data")
    assert "text/plain" in shown["content"]["data"]


def test_display_json_of_tables_with_equal_tostring(kernel: Kernel) -> None:
    r = kernel.ok('local mt = {__tostring = function() return "same" end}\n'
                  "display(setmetatable({setmetatable({1}, mt)}, mt))")
    (shown,) = r.of_type("display_data")
    assert shown["content"]["data"].get("application/json") == [[1]]


def test_sleep_cell_shows_no_result(kernel: Kernel) -> None:
    r = kernel.ok("sleep(0)")
    assert r.of_type("execute_result") == []


def test_cell_varargs_are_empty(kernel: Kernel) -> None:
    assert kernel.value('select("#", ...)') == "0"


def test_display_image_sends_the_exact_bytes(kernel: Kernel) -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\xff binary"
    lua_bytes = "".join(f"\\{b}" for b in png)
    r = kernel.ok(f'display.image("{lua_bytes}")\ndisplay.image("GIF89a", "image/gif")')
    first, second = r.of_type("display_data")
    assert base64.b64decode(first["content"]["data"]["image/png"]) == png  # image/png by default
    assert first["content"]["data"]["text/plain"] == f"<image image/png, {len(png)} bytes>"
    assert base64.b64decode(second["content"]["data"]["image/gif"]) == b"GIF89a"
    bad = kernel.execute('display.image("x", "text/html")')
    assert bad.content["status"] == "error" and "unsupported mime type" in bad.content["evalue"]
    assert bad.of_type("display_data") == []
    kernel.assert_alive()
