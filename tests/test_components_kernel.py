"""Components through real kernels over ZMQ: cell lifecycle events and hooks, and several kernels
sharing one data directory (state, sessions, artifacts)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aikit_components.sessions import SessionStore
from aikit_components.state import State
from tests.support.kernels import Kernel, start_kernel


@pytest.fixture
def kernel(tmp_path: Path):
    k = start_kernel(tmp_path / "data", cwd=tmp_path)
    yield k
    k.shutdown(now=True)


def lua_string(result_text: str | None) -> str:
    """A Lua string literal from an execute_result as Python text (simple strings only)."""
    assert result_text is not None and result_text.startswith('"'), result_text
    return json.loads(result_text)


def test_cell_subscription_sees_earlier_cells_at_later_safe_points(kernel: Kernel) -> None:
    def count_of(code: str) -> int:
        return kernel.ok(code).content["execution_count"]

    n1 = count_of("seen = {}\n"
                  "sub = Event.subscribe('cell.*', function(e)\n"
                  "  local p = e.payload\n"
                  "  seen[#seen + 1] = e.topic .. ':' .. p.execution_count .. (p.status and (':' .. p.status) or '')\n"
                  "end)")
    n2 = count_of("x = 1")
    # cell 3 reads `seen` before its own end-of-cell safe point: it sees cell 1's finish and cell 2
    # (delivered at cell 2's end), but not cell 2's finish (published after cell 2's last safe point)
    third = kernel.ok("return table.concat(seen, ',')")
    n3 = third.content["execution_count"]
    assert lua_string(third.result_text) == f"cell.finished:{n1}:ok,cell.started:{n2}"
    failed = kernel.execute("error('boom')")
    assert failed.content["status"] == "error"
    n4 = failed.content["execution_count"]
    last = kernel.ok("Event.dispatch() return table.concat(seen, ',')")
    n5 = last.content["execution_count"]
    assert lua_string(last.result_text) == ",".join([
        f"cell.finished:{n1}:ok", f"cell.started:{n2}", f"cell.finished:{n2}:ok", f"cell.started:{n3}",
        f"cell.finished:{n3}:ok", f"cell.started:{n4}", f"cell.finished:{n4}:error", f"cell.started:{n5}",
    ])
    # a pull subscription queues cell events without any safe point
    n6 = count_of("pull = Event.subscribe('cell.finished')")
    assert kernel.value("local e = pull:receive(0) return e.payload.execution_count, e.payload.status, e.source") == \
        f'{n6}\t"ok"\t"kernel"'
    kernel.assert_alive()


def test_cell_before_hook_cancels_cells(kernel: Kernel) -> None:
    kernel.ok("Hook.register('cell.before', function(ctx)\n"
              "  if ctx.payload.code:find('forbidden', 1, true) then return Hook.cancel('no forbidden cells') end\n"
              "end, {name = 'guard'})")
    cancelled = kernel.execute("print('forbidden') x = 42")
    content = cancelled.content
    assert content["status"] == "error" and content["ename"] == "cancelled"
    assert "no forbidden cells" in content["evalue"]
    errors = cancelled.of_type("error")
    assert errors and errors[0]["content"]["ename"] == "cancelled"
    assert cancelled.stdout == ""  # the cell never ran
    assert kernel.value("return x") == "nil"
    kernel.assert_alive()
    assert kernel.value("return 'allowed'") == '"allowed"'
    # hooks see (and may rewrite) the code
    kernel.ok("Hook.register('cell.before', function(ctx) "
              "ctx.payload.code = ctx.payload.code:gsub('SHOUT', 'string.upper') end)")
    assert kernel.value("return SHOUT('quiet')") == '"QUIET"'
    kernel.ok("for _, h in ipairs(Hook.list('cell.before')) do print(h.name) end")
    assert kernel.execute("return 'forbidden again'").content["ename"] == "cancelled"


def test_cell_after_and_cell_error_hooks_see_every_cell(kernel: Kernel) -> None:
    """``cell.after`` fires after every cell with its status; ``cell.error`` only after a failed
    one; a hook that raises is reported and the cell's own result is unchanged."""
    kernel.ok("after, errors = {}, {}\n"
              "Hook.register('cell.after', function(ctx)\n"
              "  local p = ctx.payload\n"
              "  after[#after + 1] = p.execution_count .. ':' .. p.status\n"
              "end)\n"
              "Hook.register('cell.error', function(ctx)\n"
              "  errors[#errors + 1] = ctx.payload.execution_count .. ':' .. ctx.payload.error.evalue\n"
              "end)\n"
              "Hook.register('cell.after', function() error('after-hook bug') end, {name = 'buggy', priority = 9})")
    ok = kernel.ok("return 1 + 1")
    assert ok.result_text == "2"
    failed = kernel.execute("error('kaboom')")
    assert failed.content["status"] == "error" and "kaboom" in failed.content["evalue"]
    n_ok, n_failed = ok.content["execution_count"], failed.content["execution_count"]
    report = kernel.ok("return table.concat(after, ','), table.concat(errors, ',')")
    seen_after, seen_errors = report.result_text.split("\t")
    assert f"{n_ok}:ok" in lua_string(seen_after) and f"{n_failed}:error" in lua_string(seen_after)
    assert lua_string(seen_errors).startswith(f"{n_failed}:") and "kaboom" in lua_string(seen_errors)
    assert f"{n_ok}:" not in lua_string(seen_errors)
    kernel.assert_alive()


def test_two_kernels_share_one_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "shared"
    a = start_kernel(data, cwd=tmp_path)
    try:
        b = start_kernel(data, cwd=tmp_path)
        try:
            id_a = lua_string(a.value("return Session.current().id"))
            assert lua_string(a.value("return Session.current().id")) == id_a  # stable across cells
            id_b = lua_string(b.value("return Session.current().id"))
            assert id_a != id_b
            sessions = lua_string(a.value("local ids = {} for _, s in ipairs(Session.list()) do ids[#ids + 1] = s.id end "
                                          "table.sort(ids) return table.concat(ids, ',')"))
            assert sessions.split(",") == sorted([id_a, id_b])

            # concurrent atomic updates from two processes
            code = "for i = 1, 200 do State.update('global', 'n', function(v) return (v or 0) + 1 end) end return 'done'"
            ids = a.kc.execute(code), b.kc.execute(code)
            ra, rb = a.request(ids[0], timeout=60), b.request(ids[1], timeout=60)
            assert ra.content["status"] == "ok" and rb.content["status"] == "ok"
            assert a.value("return State.get('global', 'n')") == "400"
            assert b.value("return State.get('global', 'n')") == "400"
            # session scopes stay private to each kernel
            a.ok("State.set('session', 'mine', 'a')")
            assert b.value("return State.get('session', 'mine')") == "nil"

            # artifacts put by one kernel are listed (and readable) by the other
            a.ok("Artifact.put('report.md', '# from a') Artifact.put('report.md', '# from a, v2')")
            listed = b.value("local out = {} for _, x in ipairs(Artifact.list()) do "
                             "out[#out + 1] = x.name .. '@' .. x.version .. '@' .. x.session_id end "
                             "return table.concat(out, ',')")
            assert lua_string(listed) == f"report.md@2@{id_a}"
            assert lua_string(b.value("return Artifact.get('report.md').content")) == "# from a, v2"
            assert b.value(f"return #Artifact.list{{session = '{id_b}'}}") == "0"
        finally:
            b.shutdown()
    finally:
        a.shutdown()
    assert State.open_default(data).get("global", "n") == 400


def test_aikit_session_env_resumes_a_session(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with SessionStore(data) as store:
        earlier = store.create(name="earlier run")
        store.complete(earlier.id, "completed")
    with State.open_default(data, session_id=earlier.id) as state:
        state.set("session", "progress", {"step": 3})
    k = start_kernel(data, cwd=tmp_path, AIKIT_SESSION=earlier.id)
    try:
        assert lua_string(k.value("return Session.current().id")) == earlier.id
        assert lua_string(k.value("return Session.current().name")) == "earlier run"
        assert lua_string(k.value("return Session.current().status")) == "active"
        assert k.value("return State.get('session', 'progress').step") == "3"
        assert lua_string(k.value("return Session.current().id")) == earlier.id
    finally:
        k.shutdown()
    with SessionStore(data) as store:
        assert store.get(earlier.id).status == "completed"  # a clean shutdown completes it again


def test_a_bad_kernel_setting_is_reported_in_the_first_cell_and_components_still_work(tmp_path: Path) -> None:
    (tmp_path / "aikit.toml").write_text('[kernel]\nlog_level = "LOUD"\n')
    k = start_kernel(tmp_path / "data", cwd=tmp_path)
    try:
        first = k.ok("State.set('global', 'k', 1) return State.get('global', 'k')")
        stderr = "".join(m["content"]["text"] for m in first.of_type("stream") if m["content"]["name"] == "stderr")
        assert "default kernel settings used: kernel.log_level must be one of" in stderr
        assert first.result_text == "1"
        assert "stderr" not in {m["content"]["name"] for m in k.ok("return 2").of_type("stream")}  # said once
    finally:
        k.shutdown()
