"""Tracing in real kernels and real ``aikit run`` processes, exported over OTLP/HTTP to a receiver
the test starts on loopback (which decodes the protobuf), and the failures that must never break a
run: a receiver that is down, refuses or hangs; a malformed OTEL_EXPORTER_OTLP_HEADERS; a locked
or full span store; a huge attribute."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.kernels import REPO, kernel_env, make_kernelspec, start_kernel

CELL = "Tool.call('hash', {text = 'x'}) State.set('global', 'k', 1) return 1 + 1"


def ancestors(spans: list[dict[str, Any]], span: dict[str, Any]) -> list[str]:
    """The names of ``span``'s ancestors, nearest first."""
    by_id = {s["span_id"]: s for s in spans}
    names = []
    while span.get("parent_span_id") in by_id:
        span = by_id[span["parent_span_id"]]
        names.append(span["name"])
    return names


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def aikit_run(tmp_path: Path, script: str, **env: Any) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "script.lua"
    path.write_text(script)
    return subprocess.run([sys.executable, "-m", "aikit_kernel.cli.main", "run", str(path)], cwd=tmp_path,
                          env=kernel_env(tmp_path / "data", **env), capture_output=True, text=True, timeout=120)


def test_a_cell_tree_hangs_under_its_execute_request(tmp_path: Path, otlp_receiver: Any) -> None:
    receiver = otlp_receiver()
    kernel = start_kernel(tmp_path / "data", cwd=tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
                          OTEL_EXPORTER_OTLP_HEADERS="x-tenant=aikit-tests")
    try:
        msg_id = kernel.kc.execute(CELL)
        result = kernel.request(msg_id)
        assert result.content["status"] == "ok"
        receiver.wait_for(lambda r: r.named("execute_request") and r.named("execute_tool hash"))
        request = receiver.named("execute_request")[0]
        a = request["attributes"]
        assert request["kind"] == "SERVER" and request.get("parent_span_id") is None
        assert a["jupyter.msg_id"] == msg_id and a["jupyter.execution_count"] == result.content["execution_count"]
        assert a["jupyter.session_id"] == kernel.kc.session.session and a["aikit.operation.kind"] == "cell"
        tool = receiver.named("execute_tool hash")[0]
        assert tool["trace_id"] == request["trace_id"]
        assert ancestors(receiver.spans, tool) == [f"cell [{result.content['execution_count']}]", "execute_request"]
        assert tool["attributes"]["gen_ai.tool.name"] == "hash" and tool["scope"] == "aikit"
        assert request["resource"]["service.name"] == "aikit"
        assert "state.set" in receiver.named(f"cell [{result.content['execution_count']}]")[0]["events"]
        assert receiver.headers[0]["x-tenant"] == "aikit-tests"
        # the same trace in the local store, read from Lua in the next cell
        text = kernel.value("local t = Trace.last() return t.name .. ' ' .. t.kind .. ' ' .. t.trace_id")
        assert text == f'"execute_request cell {request["trace_id"]}"'
        # a completion request has its own span
        complete = kernel.kc.complete("Tra", 3)
        kernel.request(complete)
        receiver.wait_for(lambda r: r.named("complete_request"))
        assert receiver.named("complete_request")[0]["attributes"]["jupyter.msg_id"] == complete
        # so does an inspection, and a debug request on the control channel (JupyterLab's debugger)
        inspect = kernel.kc.inspect("Tool", 4)
        kernel.request(inspect)
        debug = kernel.kc.session.msg("debug_request", {"seq": 1, "type": "request", "command": "debugInfo",
                                                        "arguments": {}})
        kernel.kc.control_channel.send(debug)
        while kernel.kc.control_channel.get_msg(timeout=60)["parent_header"].get("msg_id") != debug["header"]["msg_id"]:
            pass
        receiver.wait_for(lambda r: r.named("inspect_request") and r.named("debug_request"))
        assert receiver.named("inspect_request")[0]["attributes"]["jupyter.msg_id"] == inspect
        served = receiver.named("debug_request")[0]
        assert served["kind"] == "SERVER" and served.get("parent_span_id") is None
        assert served["attributes"]["jupyter.msg_id"] == debug["header"]["msg_id"]
        assert served["attributes"]["jupyter.session_id"] == kernel.kc.session.session
        assert served["attributes"]["jupyter.msg_type"] == "debug_request"
    finally:
        kernel.shutdown()


def test_aikit_run_has_a_root_span_and_continues_a_traceparent(tmp_path: Path, otlp_receiver: Any) -> None:
    receiver = otlp_receiver()
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    done = aikit_run(tmp_path, "print(Tool.call('hash', {text = 'x'}))", OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
                     TRACEPARENT=parent)
    assert done.returncode == 0, done.stderr
    receiver.wait_for(lambda r: r.named("aikit run script.lua"))
    root = receiver.named("aikit run script.lua")[0]
    assert root["trace_id"] == "0af7651916cd43dd8448eb211c80319c" and root["parent_span_id"] == "b7ad6b7169203331"
    assert root["attributes"]["aikit.operation.kind"] == "script"
    tool = receiver.named("execute_tool hash")[0]
    assert tool["parent_span_id"] == root["span_id"]
    receiver.wait_for(lambda r: r.metrics_requests >= 1)  # metrics go to the same collector
    listed = subprocess.run([sys.executable, "-m", "aikit_kernel.cli.main", "trace", "show", root["trace_id"][:10]],
                            cwd=tmp_path, env=kernel_env(tmp_path / "data"), capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and "aikit run script.lua" in listed.stdout and "execute_tool hash" in listed.stdout


def test_a_collector_that_refuses_or_hangs_never_breaks_a_run(tmp_path: Path, otlp_receiver: Any) -> None:
    script = "for i = 1, 50 do Tool.call('hash', {text = tostring(i)}) end print('done')"
    for mode in ("refuse", "hang"):
        receiver = otlp_receiver(mode)
        done = aikit_run(tmp_path, script, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url)
        assert done.returncode == 0 and done.stdout.strip().endswith("done"), (mode, done.stderr)
        assert receiver.requests >= 1, mode
        warnings = [line for line in done.stderr.splitlines() if "aikit tracing" in line]
        # one warning when the first export fails, one count of the spans lost at exit
        assert 1 <= len(warnings) <= 2 and "could not be sent" in warnings[-1], (mode, done.stderr)
        assert "Traceback" not in done.stderr, done.stderr
        receiver.release()
    down = f"http://127.0.0.1:{free_port()}"
    done = aikit_run(tmp_path, script, OTEL_EXPORTER_OTLP_ENDPOINT=down)
    assert done.returncode == 0 and done.stdout.strip().endswith("done"), done.stderr
    assert "Traceback" not in done.stderr and len([x for x in done.stderr.splitlines() if "aikit tracing" in x]) <= 2
    # the local store has every run regardless
    listed = subprocess.run([sys.executable, "-m", "aikit_kernel.cli.main", "trace", "list", "--json"], cwd=tmp_path,
                            env=kernel_env(tmp_path / "data"), capture_output=True, text=True, timeout=60)
    import json

    assert len(json.loads(listed.stdout)) == 3


def test_malformed_headers_warn_once_and_spans_still_go(tmp_path: Path, otlp_receiver: Any) -> None:
    receiver = otlp_receiver()
    done = aikit_run(tmp_path, "print(Tool.call('hash', {text = 'x'}))", OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
                     OTEL_EXPORTER_OTLP_HEADERS="authorization=Bearer%20s3cret,garbage-without-equals")
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "OTEL_EXPORTER_OTLP_HEADERS" in line]
    assert len(warnings) == 1 and "malformed" in warnings[0] and "s3cret" not in done.stderr
    receiver.wait_for(lambda r: r.named("aikit run script.lua"))
    assert receiver.headers[0]["authorization"] == "Bearer s3cret"


def test_a_locked_store_warns_once_and_the_run_goes_on(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    store = data / "traces.sqlite"
    first = aikit_run(tmp_path, "print('warm')")  # creates the store
    assert first.returncode == 0, first.stderr
    holder = sqlite3.connect(store, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # a writer that never lets go (another process's stuck transaction)
    try:
        done = aikit_run(tmp_path, "for i = 1, 20 do Tool.call('hash', {text = 'x'}) end print('done')",
                         AIKIT_TELEMETRY__STORE_MAX_MB="1")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert done.returncode == 0 and done.stdout.strip() == "done", done.stderr
    warnings = [line for line in done.stderr.splitlines() if "aikit tracing" in line]
    assert len(warnings) == 1 and "span store" in warnings[0] and "locked" in warnings[0], done.stderr


def test_a_full_disk_warns_once_and_the_run_goes_on(tmp_path: Path) -> None:
    # The disk fills up while spans are written: RLIMIT_FSIZE makes every write that would grow a
    # file past 256 KiB fail (EFBIG) as a full disk would. A first run creates the small stores
    # (sessions, state) under the limit; the second writes far more spans than fit.
    first = aikit_run(tmp_path, "print('warm')")
    assert first.returncode == 0, first.stderr
    script = "for i = 1, 300 do Tool.call('hash', {text = string.rep('x', 3000) .. i}) end print('done')"
    path = tmp_path / "script.lua"
    path.write_text(script)
    prelude = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
               "resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024)); "
               "from aikit_kernel.cli.main import main; sys.exit(main(sys.argv[1:]))")
    # the audit ledger is off here: it would hit the limit too, and its failure fails the call
    # (an entry that cannot be written must not be acknowledged; tests/control/test_audit.py)
    env = kernel_env(tmp_path / "data", AIKIT_TELEMETRY__CAPTURE_CONTENT="true", AIKIT_AUDIT__ENABLED="false")
    done = subprocess.run([sys.executable, "-c", prelude, "run", str(path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip().endswith("done"), done.stderr
    warnings = [line for line in done.stderr.splitlines() if "aikit tracing" in line]
    assert len(warnings) == 1 and "span store" in warnings[0], done.stderr


def test_a_huge_attribute_is_cut_with_one_warning(tmp_path: Path) -> None:
    script = "local big = string.rep('y', 100000) for i = 1, 3 do Tool.call('hash', {text = big}) end print('done')"
    done = aikit_run(tmp_path, script, AIKIT_TELEMETRY__CAPTURE_CONTENT="true")
    assert done.returncode == 0 and done.stdout.strip() == "done", done.stderr
    warnings = [line for line in done.stderr.splitlines() if "aikit tracing" in line]
    assert len(warnings) == 1 and "cut" in warnings[0], done.stderr
    store = sqlite3.connect(tmp_path / "data" / "traces.sqlite")
    sizes = [len(a) for (a,) in store.execute("SELECT attributes FROM spans WHERE name = 'execute_tool hash'")]
    store.close()
    assert len(sizes) == 3 and all(16_000 < n < 20_000 for n in sizes)


def test_disabled_tracing_records_nothing(tmp_path: Path) -> None:
    done = aikit_run(tmp_path, "print(Tool.call('hash', {text = 'x'}) ~= nil)", OTEL_SDK_DISABLED="true")
    assert done.returncode == 0 and done.stdout.strip() == "true", done.stderr
    assert not (tmp_path / "data" / "traces.sqlite").exists()
    assert os.path.isdir(REPO)


def test_serve_metrics_port_serves_prometheus_text(tmp_path: Path) -> None:
    import urllib.request

    port = free_port()
    argv = [sys.executable, "-m", "aikit_kernel.cli.main", "serve", "-f", "{connection_file}", "--metrics-port", str(port)]
    spec = make_kernelspec(tmp_path / "specs", "aikit-metrics", argv=argv)
    kernel = start_kernel(tmp_path / "data", kernel_name="aikit-metrics", kernel_spec_manager=spec, cwd=tmp_path)
    try:
        kernel.ok("Tool.call('hash', {text = 'x'}) pcall(Tool.call, 'hash', {})")
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
        assert "aikit_tool_duration" in text and 'gen_ai_tool_name="hash"' in text
        assert "aikit_operation_failures" in text and 'error_type="invalid_argument"' in text
    finally:
        kernel.shutdown()


def test_an_agent_in_a_cell_crosses_to_the_io_loop_and_back(tmp_path: Path, llm_server: Any,
                                                           otlp_receiver: Any) -> None:
    from tests.support.agents import OPENAI, answer, call, config_text

    (tmp_path / "aikit.toml").write_text(config_text(llm_server.url))
    llm_server.reply(OPENAI, answer(None, [call("twice", {"n": 21}, "call_k1")]), answer("42"))
    receiver = otlp_receiver()
    kernel = start_kernel(tmp_path / "data", cwd=tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url)
    try:
        # a Lua-defined tool called by the agent on the I/O loop runs back on the Lua thread
        text = kernel.value("""
            Tool.define{name = 'twice', description = 'Doubles n',
                        params = {type = 'object', properties = {n = {type = 'number'}}},
                        fn = function(a) return Tool.call('calculate', {expression = a.n .. ' * 2'}) end}
            local r = Agent.new{name = 'k', model = 'openai/m', tools = {'twice'}}:run('double 21')
            return r.text .. ' ' .. r.trace_id""")
        receiver.wait_for(lambda r: r.named("execute_request") and r.named("execute_tool calculate"))
        request = receiver.named("execute_request")[0]
        assert text == f'"42 {request["trace_id"]}"'
        calc = receiver.named("execute_tool calculate")[0]
        assert ancestors(receiver.spans, calc)[:3] == ["execute_tool twice", "invoke_agent k", "cell [1]"]
        assert ancestors(receiver.spans, calc)[-1] == "execute_request"
        twice = receiver.named("execute_tool twice")[0]
        assert twice["attributes"]["gen_ai.tool.call.id"] == "call_k1"
    finally:
        kernel.shutdown()
