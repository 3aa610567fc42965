"""`aikit dashboard` over HTTP: the runs list (traces and mission run records, errors first,
filters), a run's waterfall, the live event stream, and access (loopback Host check, token on
every request, refusal to bind a non-loopback address without a token). Real servers on loopback
ports over real SQLite span stores; the browser view is tested in test_dashboard_browser.py."""

from __future__ import annotations

import http.client
import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from bs4 import BeautifulSoup

from aikit_components.telemetry.store import SpanStore
from aikit_kernel.dashboard import AccessError, AccessPolicy, DashboardServer, is_loopback, serve_in_thread
from tests.support.dashboard import AIKIT, ROOT, DashboardProcess
from tests.support.traces import MS, agent_cell_trace, finished, new_trace_id, span

NOW = time.time_ns()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SpanStore]:
    """The span store the dashboard reads, written by the test as another process would."""
    s = SpanStore(tmp_path / "traces.sqlite")
    yield s
    s.close()


def _serve(tmp_path: Path, token: str | None = None) -> tuple[DashboardServer, Any]:
    server = DashboardServer(tmp_path / "traces.sqlite", tmp_path / "runs", AccessPolicy("127.0.0.1", 0, token),
                             poll_interval=0.05)
    return server, serve_in_thread(server)


@pytest.fixture
def dashboard(tmp_path: Path, store: SpanStore) -> Iterator[DashboardServer]:
    server, thread = _serve(tmp_path)
    yield server
    server.shutdown()
    thread.join(timeout=20)


def get(server: DashboardServer, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.policy.port, timeout=30)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def runs(server: DashboardServer, query: str = "") -> list[dict[str, Any]]:
    status, _, body = get(server, "/api/runs" + query)
    assert status == 200, body
    return json.loads(body)["runs"]


def write_record(runs_dir: Path, run_id: str, status: str, started: float, steps: dict[str, dict[str, Any]],
                 **extra: Any) -> None:
    runs_dir.mkdir(exist_ok=True)
    record = {"run_id": run_id, "workflow": "nightly", "status": status, "started_at": started,
              "ended_at": started + 2.0, "duration_s": 2.0, "steps": steps, "error": None,
              "mission": {"name": "nightly report"}, **extra}
    (runs_dir / f"{run_id}.json").write_text(json.dumps(record), encoding="utf-8")


def three_traces(store: SpanStore) -> tuple[list, list, list]:
    """An ok script run (oldest), a cell whose tool call failed, and a cell still running (newest)."""
    tid = new_trace_id()
    script = [span(tid, "aikit run hello.lua", "script", 0, 30, t0=NOW - 60_000 * MS)]
    failed = agent_cell_trace(t0=NOW - 30_000 * MS)
    running = agent_cell_trace(running=True, t0=NOW - 1_000 * MS)
    store.write(script + failed + running)
    return script, failed, running


def test_runs_list_errors_first_with_tokens_and_cost(dashboard: DashboardServer, store: SpanStore,
                                                     tmp_path: Path) -> None:
    script, failed, running = three_traces(store)
    write_record(tmp_path / "runs", "run-ok", "succeeded", NOW / 1e9 - 10,
                 {"fetch": {"id": "fetch", "status": "succeeded", "started_at": NOW / 1e9 - 10,
                            "ended_at": NOW / 1e9 - 9}})
    listed = runs(dashboard)
    assert [(r["source"], r["status"], r["kind"]) for r in listed] == [
        ("trace", "error", "cell"), ("trace", "running", "cell"), ("record", "ok", "mission"), ("trace", "ok", "script")]
    err = listed[0]
    assert err["trace_id"] == failed[0].trace_id and err["name"] == "execute_request"
    assert (err["spans"], err["errors"], err["input_tokens"], err["output_tokens"]) == (8, 1, 1832, 294)
    assert err["cost_usd"] == pytest.approx(0.000451) and err["duration_s"] == pytest.approx(1.5)
    live = listed[1]
    assert live["running"] and live["duration_s"] >= 1.0
    assert listed[2]["name"] == "nightly report" and listed[2]["duration_s"] == 2.0
    newest_first = runs(dashboard, "?errors_first=0")
    assert [r["status"] for r in newest_first] == ["running", "ok", "error", "ok"]


def test_runs_filters(dashboard: DashboardServer, store: SpanStore, tmp_path: Path) -> None:
    script, failed, running = three_traces(store)
    write_record(tmp_path / "runs", "run-bad", "failed", NOW / 1e9 - 5, {})
    assert [r["kind"] for r in runs(dashboard, "?kind=script")] == ["script"]
    assert [r["id"] for r in runs(dashboard, "?status=running")] == [running[0].trace_id]
    assert {r["id"] for r in runs(dashboard, "?status=error")} == {failed[0].trace_id, "run-bad"}
    assert {r["id"] for r in runs(dashboard, "?agent=writer")} == {failed[0].trace_id, running[0].trace_id}
    assert runs(dashboard, "?agent=nobody") == []
    assert [r["id"] for r in runs(dashboard, "?limit=1")] == ["run-bad"]
    for bad in ("?limit=x", "?limit=0", "?status=maybe"):
        assert get(dashboard, "/api/runs" + bad)[0] == 400


def test_a_run_waterfall_from_its_trace_or_its_run_record(dashboard: DashboardServer, store: SpanStore,
                                                          tmp_path: Path) -> None:
    _, failed, _ = three_traces(store)
    status, headers, body = get(dashboard, f"/api/runs/trace/{failed[0].trace_id}/waterfall")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    soup = BeautifulSoup(body, "html.parser")
    assert soup.select_one(".aikit-waterfall")["data-trace-id"] == failed[0].trace_id
    assert len(soup.select("tr.aikit-span")) == 8 and len(soup.select("tr[data-status=error]")) == 1
    assert get(dashboard, f"/api/runs/trace/{failed[0].trace_id[:10]}/waterfall")[0] == 200  # a unique prefix

    start = NOW / 1e9 - 20
    write_record(tmp_path / "runs", "run-7", "failed", start, {
        "fetch": {"id": "fetch", "status": "succeeded", "started_at": start, "ended_at": start + 0.5},
        "report": {"id": "report", "status": "failed", "started_at": start + 0.5, "ended_at": start + 2,
                   "error": {"code": "E_TOOL", "message": "disk full"}}})
    status, _, body = get(dashboard, "/api/runs/record/run-7/waterfall")
    assert status == 200
    rows = BeautifulSoup(body, "html.parser").select("tr.aikit-span")
    assert [(r.td.get_text().lstrip("✗ "), r["data-depth"], r["data-status"]) for r in rows] == [
        ("invoke_workflow nightly report", "0", "error"), ("fetch", "1", "ok"), ("report", "1", "error")]
    assert "E_TOOL: disk full" in rows[2].find("title").get_text()

    write_record(tmp_path / "runs", "run-8", "failed", start, {}, trace_id=failed[0].trace_id)
    body = get(dashboard, "/api/runs/record/run-8/waterfall")[2]
    assert len(BeautifulSoup(body, "html.parser").select("tr.aikit-span")) == 8  # the record's own trace
    assert "run-8" not in [r["id"] for r in runs(dashboard)], "a record whose trace is listed is not repeated"

    assert get(dashboard, f"/api/runs/trace/{new_trace_id()}/waterfall")[0] == 404
    assert get(dashboard, "/api/runs/record/nope/waterfall")[0] == 404
    assert get(dashboard, "/api/runs/trace/not-hex/waterfall")[0] == 400


def test_trace_json_and_standalone_page(dashboard: DashboardServer, store: SpanStore) -> None:
    _, failed, _ = three_traces(store)
    status, _, body = get(dashboard, f"/api/traces/{failed[0].trace_id}")
    data = json.loads(body)
    assert status == 200 and {s["span_id"] for s in data["spans"]} == {s.span_id for s in failed}
    status, headers, body = get(dashboard, f"/trace/{failed[0].trace_id}")
    assert status == 200 and b"<script" not in body and b"aikit-waterfall" in body
    assert "script-src 'self'" in headers["Content-Security-Policy"]


def test_page_and_assets(dashboard: DashboardServer) -> None:
    status, headers, body = get(dashboard, "/")
    assert status == 200 and headers["Content-Security-Policy"].startswith("default-src 'none'")
    soup = BeautifulSoup(body, "html.parser")
    assert soup.find("script")["src"] == "/app.js" and soup.select_one("#runs") and soup.select_one("#live")
    assert get(dashboard, "/app.js")[0] == 200 and b"EventSource" in get(dashboard, "/app.js")[2]
    assert get(dashboard, "/app.css")[0] == 200
    assert get(dashboard, "/nothing")[0] == 404
    conn = http.client.HTTPConnection("127.0.0.1", dashboard.policy.port, timeout=30)
    conn.request("POST", "/api/runs", body=b"{}")
    assert conn.getresponse().status == 405
    conn.close()


class EventStream:
    """A server-sent event client over http.client: ``next()`` returns (event, data)."""

    def __init__(self, server: DashboardServer, headers: dict[str, str] | None = None) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", server.policy.port, timeout=30)
        self.conn.request("GET", "/api/events", headers=headers or {})
        self.response = self.conn.getresponse()

    def next(self) -> tuple[str, dict[str, Any]]:
        event, data = "", ""
        while True:
            line = self.response.readline().decode()
            assert line, "the event stream ended"
            if line == "\n" and event:
                return event, json.loads(data)
            if line.startswith("event: "):
                event = line[7:].strip()
            elif line.startswith("data: "):
                data += line[6:].strip()

    def close(self) -> None:
        self.conn.close()


def test_live_updates_over_server_sent_events(dashboard: DashboardServer, store: SpanStore, tmp_path: Path) -> None:
    stream = EventStream(dashboard)
    try:
        assert stream.response.status == 200
        assert stream.response.getheader("Content-Type").startswith("text/event-stream")
        assert stream.next()[0] == "hello"
        running = agent_cell_trace(running=True, t0=NOW)
        store.write(running[:2])  # the cell and the agent start
        event, data = stream.next()
        assert event == "change" and data["traces"] == [running[0].trace_id] and not data["full"]
        assert [r["status"] for r in runs(dashboard)] == ["running"]
        store.write(finished(running, 2000, t0=NOW))  # everything ends
        while running[0].trace_id not in data["traces"]:
            event, data = stream.next()
        assert [r["status"] for r in runs(dashboard)] == ["error"]
        write_record(tmp_path / "runs", "run-9", "succeeded", NOW / 1e9, {})
        event, data = stream.next()
        assert event == "change" and data["records"] is True
    finally:
        stream.close()


@pytest.fixture
def token_dashboard(tmp_path: Path, store: SpanStore) -> Iterator[DashboardServer]:
    server, thread = _serve(tmp_path, token="s3cret-token")
    yield server
    server.shutdown()
    thread.join(timeout=20)


def test_a_token_is_checked_on_every_request(token_dashboard: DashboardServer, store: SpanStore) -> None:
    _, failed, _ = three_traces(store)
    paths = ["/", "/app.js", "/api/runs", "/api/events", f"/api/runs/trace/{failed[0].trace_id}/waterfall",
             f"/trace/{failed[0].trace_id}"]
    for path in paths:
        assert get(token_dashboard, path)[0] == 401, path
        assert get(token_dashboard, path, {"Authorization": "Bearer wrong"})[0] == 401, path
        assert get(token_dashboard, path, {"Cookie": f"aikit_dashboard_{token_dashboard.policy.port}=wrong"})[0] == 401
    assert get(token_dashboard, "/api/runs", {"Authorization": "Bearer s3cret-token"})[0] == 200
    status, headers, _ = get(token_dashboard, "/?token=s3cret-token")
    assert status == 303 and headers["Location"] == "/"
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    jar = {"Cookie": cookie.split(";", 1)[0]}
    assert get(token_dashboard, "/", jar)[0] == 200
    assert get(token_dashboard, "/api/runs?token=s3cret-token&kind=cell")[2] == b""  # redirected, token dropped
    assert get(token_dashboard, "/api/runs?token=s3cret-token&kind=cell")[1]["Location"] == "/api/runs?kind=cell"
    stream = EventStream(token_dashboard, jar)
    try:
        assert stream.next()[0] == "hello"
    finally:
        stream.close()


def test_a_loopback_dashboard_answers_only_to_loopback_host_names(dashboard: DashboardServer) -> None:
    port = dashboard.policy.port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"):
        assert get(dashboard, "/api/runs", {"Host": host})[0] == 200, host
    for host in (f"evil.example:{port}", "attacker.test", f"192.168.1.5:{port}"):
        assert get(dashboard, "/api/runs", {"Host": host})[0] == 403, host


def test_binding_a_non_loopback_address_needs_a_token() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("[::1]") and is_loopback("localhost")
    assert is_loopback("127.0.0.2") and not is_loopback("0.0.0.0") and not is_loopback("192.168.1.20")
    assert not is_loopback("example.com") and not is_loopback("::")
    with pytest.raises(AccessError, match="not a loopback address, without a token"):
        AccessPolicy.for_bind("0.0.0.0", 8080, None)
    with pytest.raises(AccessError):
        AccessPolicy.for_bind("192.168.1.20", 8080, "")
    assert AccessPolicy.for_bind("192.168.1.20", 8080, "t").token == "t"
    with pytest.raises(AccessError, match="letters, digits"):
        AccessPolicy.for_bind("127.0.0.1", 8080, "a b;c")
    assert AccessPolicy.for_bind("127.0.0.1", 8080, None).token is None


def test_cli_refuses_a_non_loopback_host_without_a_token(tmp_path: Path) -> None:
    env = DashboardProcess(tmp_path).env()
    proc = subprocess.run([str(AIKIT), "dashboard", "--host", "0.0.0.0", "--port", "0"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert proc.returncode == 2
    assert "aikit: error: dashboard: refusing to serve the dashboard on 0.0.0.0" in proc.stderr
    assert "--token" in proc.stderr and proc.stdout == ""
    (tmp_path / "a-file").write_text("not a directory")
    proc = subprocess.run([str(AIKIT), "dashboard", "--port", "0", "--store", str(tmp_path / "a-file" / "t.db")],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 1 and "aikit: error: dashboard: cannot open the span store" in proc.stderr
    proc = subprocess.run([str(AIKIT), "dashboard", "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0 and "examples:" in proc.stdout and "aikit dashboard --port 0" in proc.stdout


def test_cli_serves_the_store_of_the_data_dir_with_a_new_token(tmp_path: Path) -> None:
    store = SpanStore(tmp_path / "traces.sqlite")
    try:
        _, failed, _ = three_traces(store)
    finally:
        store.close()
    with DashboardProcess(tmp_path, "--new-token") as dash:
        token = dash.printed.split("?token=", 1)[1]
        assert len(token) >= 24
        port = int(dash.url.rsplit(":", 1)[1].strip("/"))
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/api/runs")
        assert conn.getresponse().status == 401
        conn.close()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/api/runs", headers={"Authorization": f"Bearer {token}"})
        resp = conn.getresponse()
        listed = json.loads(resp.read())["runs"]
        conn.close()
        assert resp.status == 200 and listed[0]["trace_id"] == failed[0].trace_id


def test_config_sets_the_token(tmp_path: Path) -> None:
    config_dir = tmp_path / "home" / ".config" / "aikit"
    config_dir.mkdir(parents=True)
    (config_dir / "aikit.toml").write_text('[dashboard]\ntoken = "from-config"\n', encoding="utf-8")
    with DashboardProcess(tmp_path) as dash:
        assert dash.printed.endswith("?token=from-config")


def test_running_spans_keep_the_trace_running_until_the_root_ends(dashboard: DashboardServer, store: SpanStore) -> None:
    tid = new_trace_id()
    root = span(tid, "invoke_agent writer", "agent", 0, None, t0=NOW, gen_ai__agent__name="writer")
    store.write([root])
    assert runs(dashboard)[0]["status"] == "running"
    store.write([replace(root, end_ns=NOW + 5 * MS, status="OK")])
    assert runs(dashboard)[0]["status"] == "ok" and runs(dashboard)[0]["duration_s"] == pytest.approx(0.005)


def test_a_real_mission_run_record_is_listed_with_its_steps(tmp_path: Path, store: SpanStore) -> None:
    # tracing off: the run leaves only its record (with tracing on, the run is listed as its trace, once)
    env = {**DashboardProcess(tmp_path).env(), "AIKIT_TELEMETRY__ENABLED": "false"}
    mission = ROOT / "examples" / "missions" / "config_audit.yaml"
    proc = subprocess.run([str(AIKIT), "mission", "run", str(mission)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=180)  # it writes config_audit/ in its working directory
    assert proc.returncode == 0, proc.stdout + proc.stderr
    record = json.loads(next((tmp_path / "runs").glob("*.json")).read_text(encoding="utf-8"))
    server, thread = _serve(tmp_path)
    try:
        listed = runs(server)
        assert [(r["id"], r["kind"], r["status"], r["name"]) for r in listed] == [
            (record["run_id"], "mission", "ok", "Config audit")]
        assert listed[0]["spans"] == len(record["steps"]) and listed[0]["duration_s"] == record["duration_s"]
        body = get(server, f"/api/runs/record/{record['run_id']}/waterfall")[2]
        rows = BeautifulSoup(body, "html.parser").select("tr.aikit-span")
        names = [r.td.get_text() for r in rows[1:]]
        assert sorted(names) == sorted(record["steps"])
        starts = [record["steps"][n]["started_at"] for n in names]
        assert starts == sorted(starts), "steps in start order"
        assert {r["data-depth"] for r in rows[1:]} == {"1"} and all(r["data-status"] == "ok" for r in rows)
    finally:
        server.shutdown()
        thread.join(timeout=20)
