"""The ``ray`` executor of workflows (``aikit_components/distributed``) on a real local Ray cluster:
steps really run in worker processes, and retries, timeouts, interrupts, a lost worker and
resume behave as in a local run. Few tests, one xdist group: Ray's start-up is paid once."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from aikit_components.components import Components
from aikit_components.config import Config
from aikit_components.workflows import engine
from aikit_components.workflows.model import Step, Workflow
from tests.support.lua import Lua, later
from tests.support.processes import kill_leftovers, processes_with, wait_until

pytestmark = [pytest.mark.xdist_group("ray"), pytest.mark.usefixtures("ray_cluster")]


@pytest.fixture(autouse=True)
def _ship_this_module_by_value() -> None:
    """pytest may import this module under a name the workers cannot import: its step functions
    travel by value."""
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture
def components(tmp_path: Path) -> Any:
    config = Config.load(cwd=tmp_path, env={}, user_dir=tmp_path / "user-config")
    with Components.open(config=config, data_dir=tmp_path / "data", plugins=False) as c:
        yield c


def remote_events(components: Any) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    components.events.subscribe("workflow.step.remote", lambda e: seen.append(e.payload))
    return seen


# --------------------------------------------------------------------------- Python steps
def worker_pid(params: Any, ctx: Any) -> dict[str, Any]:
    return {"pid": os.getpid(), "attempt": ctx.attempt, "upstream": ctx.output("first")}


def die_on_first_attempt(params: Any, ctx: Any) -> dict[str, Any]:
    if ctx.attempt == 1:
        os.kill(os.getpid(), signal.SIGKILL)  # the worker process is lost mid-step
    return {"pid": os.getpid(), "attempt": ctx.attempt}


def fail_until_file(params: Any, ctx: Any) -> str:
    if not os.path.exists(params["path"]):
        raise RuntimeError(f"{params['path']} is missing")
    return "ok"


def trace_id(params: Any, ctx: Any) -> int:
    from opentelemetry import trace

    return trace.get_current_span().get_span_context().trace_id


def test_steps_run_in_worker_processes_and_results_come_back(components: Any) -> None:
    seen = remote_events(components)
    wf = Workflow("remote", [
        Step("first", "command", params={"command": ["echo", "from a worker"]}),
        Step("second", "function", fn=worker_pid, depends_on=["first"]),
        Step("digest", "tool", target="hash", params={"text": "{{steps.first.output.stdout}}"}, depends_on=["first"]),
        Step("here", "noop", params={"x": 1}),
    ], executor="ray", max_concurrency=1)
    record = asyncio.run(engine.run(wf, components=components))
    assert record.status == "succeeded", [v.error["message"] for v in record.steps.values() if v.error]
    out = record.steps["second"].output
    assert out["pid"] != os.getpid() and out["attempt"] == 1
    assert out["upstream"]["stdout"] == "from a worker\n"
    assert isinstance(record.steps["digest"].output, str) and record.steps["digest"].output
    pids = {e["step"]: e["pid"] for e in seen}
    assert set(pids) == {"first", "second", "digest"}  # the noop stayed here
    assert os.getpid() not in pids.values()
    stored = engine.load_run(components, record.run_id)
    assert stored is not None and stored.steps["second"].output["pid"] == out["pid"]


def test_hooks_and_events_of_ray_steps_keep_their_meaning(components: Any) -> None:
    """Hooks run in the driver around a step that runs on a worker: ``before`` modifies the
    parameters the worker gets, ``after`` replaces the output it returned; the step events are
    published as for a local step."""
    from aikit_components.hooks import HookResult

    events: list[tuple[str, str]] = []
    components.events.subscribe("workflow.step.*", lambda e: events.append((e.topic, e.payload["step"])))
    components.hooks.register("workflow.step.before", lambda ctx: HookResult.modify(
        {**ctx.payload, "params": {**ctx.payload["params"], "text": "changed by the hook"}}))
    components.hooks.register("workflow.step.after", lambda ctx: HookResult.replace(
        {"worker_said": ctx.payload["output"]}) if ctx.payload["step"] == "digest" else None)
    wf = Workflow("hooked", [Step("digest", "tool", target="hash", params={"text": "original"})], executor="ray")
    record = asyncio.run(engine.run(wf, components=components))
    assert record.status == "succeeded", [v.error for v in record.steps.values() if v.error]
    expected = asyncio.run(components.tools.acall("hash", {"text": "changed by the hook"},
                                                  components.tool_context(caller="test")))
    assert record.steps["digest"].output == {"worker_said": expected}
    assert ("workflow.step.started", "digest") in events and ("workflow.step.finished", "digest") in events


def test_a_ray_tool_step_is_journaled_and_a_call_in_doubt_is_not_run_again(tmp_path: Path) -> None:
    """The effect journal covers a tool step that runs on a worker: its call is journaled in the
    driver, and after a crash during it (a "started" entry with no end) a resume holds the step
    in doubt instead of writing again."""
    from aikit_components.control.approvals import digest

    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "aikit.toml").write_text(f'[security]\nallowed_paths = ["{out}"]\n')  # shipped to the workers
    config = Config.load(cwd=tmp_path, env={"AIKIT_TRUST_PROJECT_CONFIG": "1"}, user_dir=tmp_path / "user-config")
    target = out / "written.txt"
    params = {"path": str(target), "content": "once"}
    wf = Workflow("journaled", [Step("write", "tool", target="write_file", params=params)], executor="ray")
    with Components.open(config=config, data_dir=tmp_path / "data", plugins=False) as components:
        record = asyncio.run(engine.run(wf, components=components))
        assert record.status == "succeeded", [v.error for v in record.steps.values() if v.error]
        assert target.read_text() == "once"
        [entry] = components.journal.entries(record.run_id)
        assert (entry.call_key, entry.name, entry.status) == ("write@1#0", "write_file", "finished")
        target.unlink()
        components.journal.started("crashed", "write@1#0", "tool", "write_file", digest(params))  # the crash
        held = asyncio.run(engine.run(wf, components=components, run_id="crashed"))
        assert held.status == "needs_approval" and not target.exists()


def test_an_llm_step_calls_the_model_from_a_worker_with_the_configured_key(llm_server: Any, tmp_path: Path) -> None:
    from tests.support.llm_server import Reply

    (tmp_path / "aikit.toml").write_text(f"""
[providers.openai]
base_url = "{llm_server.url}/v1"
api_key = "secret-test-key"
retries = 0
""")
    llm_server.reply("/v1/chat/completions", Reply.json({
        "id": "c", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello from the model"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}))
    config = Config.load(cwd=tmp_path, env={}, user_dir=tmp_path / "user-config")
    with Components.open(config=config, data_dir=tmp_path / "data", plugins=False) as components:
        seen = remote_events(components)
        wf = Workflow("ask", [Step("ask", "llm", params={"prompt": "hi", "model": "openai/m"})], executor="ray")
        record = asyncio.run(engine.run(wf, components=components))
    assert record.status == "succeeded", [v.error for v in record.steps.values()]
    assert record.steps["ask"].output["text"] == "hello from the model"
    assert llm_server.requests[0].headers.get("authorization") == "Bearer secret-test-key"
    assert seen[0]["pid"] != os.getpid()


def test_a_lost_worker_is_retried_or_fails_per_the_step_policy(components: Any) -> None:
    retried = Workflow("lost", [Step("s", "function", fn=die_on_first_attempt, retries=1)], executor="ray")
    record = asyncio.run(engine.run(retried, components=components))
    assert record.status == "succeeded", [v.error["message"] for v in record.steps.values() if v.error]
    assert record.steps["s"].attempts == 2 and record.steps["s"].output["attempt"] == 2

    once = Workflow("lost-once", [Step("s", "function", fn=die_on_first_attempt)], executor="ray")
    record = asyncio.run(engine.run(once, components=components))
    assert record.status == "failed"
    error = record.steps["s"].error
    assert error["code"] == "worker_lost" and "retries" in error["message"]


def test_step_timeout_cancels_the_ray_task_and_its_program(components: Any) -> None:
    marker = f"{30 + (uuid.uuid4().int % 1000) / 1000:.3f}"  # a unique `sleep` argument
    wf = Workflow("slow", [Step("wait", "command", params={"command": ["sleep", marker]}, timeout_s=2)],
                  executor="ray")
    try:
        record = asyncio.run(engine.run(wf, components=components))
        assert record.steps["wait"].status == "timed_out", record.to_dict()
        assert record.status == "failed"
        wait_until(lambda: processes_with(marker) == [], timeout=20)  # ray.cancel reached the worker
    finally:
        kill_leftovers(marker)


def test_the_kill_switch_cancels_the_ray_tasks_and_their_programs(components: Any) -> None:
    """``aikit stop`` (the ``aikit.stop`` event on the kernel's bus) cancels a run's Ray tasks."""
    marker = f"{50 + (uuid.uuid4().int % 1000) / 1000:.3f}"
    wf = Workflow("stoppable", [Step("wait", "command", params={"command": ["sleep", marker]})], executor="ray")

    async def run_then_stop() -> Any:
        run = asyncio.ensure_future(engine.run(wf, components=components))
        started = await asyncio.to_thread(wait_until, lambda: processes_with(marker) or run.done(), 120)
        assert started and not run.done(), "the step's program did not start on a worker"
        components.events.publish("aikit.stop", {"by": "test"})
        await asyncio.wait({run}, timeout=60)
        return run

    try:
        run = asyncio.run(run_then_stop())
        assert run.cancelled(), "the stop did not cancel the run"  # as in a local run (tests/control/test_stop.py)
        wait_until(lambda: processes_with(marker) == [], timeout=20)  # ray.cancel reached the worker
        assert processes_with(marker) == []
    finally:
        kill_leftovers(marker)


MISSION = """
name: "remote mission"
version: "1.0"
config: {executor: ray}
steps:
  - id: digest
    step_type: hash
    parameters: {text: "hi"}
  - id: encoded
    step_type: base64_encode
    depends_on: [digest]
    parameters: {text: "{{digest.output}}"}
"""


def test_a_mission_with_config_executor_ray_runs_its_steps_on_workers(components: Any) -> None:
    from aikit_components.workflows.missions import parse_mission

    seen = remote_events(components)
    mission = parse_mission(MISSION, registry=components.tools)
    assert mission.workflow.executor == "ray"
    record = asyncio.run(engine.run(mission.workflow, components=components))
    assert record.status == "succeeded", record.to_dict()
    assert sorted(e["step"] for e in seen) == ["digest", "encoded"]
    assert all(e["pid"] != os.getpid() and e["executor"] == "ray" for e in seen)


def test_resume_reuses_finished_steps_and_reruns_the_rest(components: Any, tmp_path: Path) -> None:
    seen = remote_events(components)
    flag = tmp_path / "ready"
    wf = Workflow("resumable", [
        Step("a", "function", fn=worker_pid),
        Step("b", "function", fn=fail_until_file, params={"path": str(flag)}, depends_on=["a"]),
    ], executor="ray")
    first = asyncio.run(engine.run(wf, components=components))
    assert first.status == "failed" and "missing" in first.steps["b"].error["message"]
    flag.write_text("")
    seen.clear()
    second = asyncio.run(engine.run(wf, components=components, resume=first.run_id))
    assert second.status == "succeeded" and second.steps["b"].output == "ok"
    assert [e["step"] for e in seen] == ["b"]  # a was reused, not run again
    assert second.steps["a"].output == first.steps["a"].output


def test_the_trace_context_reaches_the_worker(components: Any) -> None:
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    parent = SpanContext(trace_id=0x1234_5678_9ABC_DEF0_1234_5678_9ABC_DEF0, span_id=0x1122_3344_5566_7788,
                         is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    wf = Workflow("traced", [Step("t", "function", fn=trace_id)], executor="ray")

    async def traced() -> Any:
        with trace.use_span(NonRecordingSpan(parent)):
            return await engine.run(wf, components=components)

    record = asyncio.run(traced())
    assert record.steps["t"].output == parent.trace_id


# --------------------------------------------------------------------------- Lua steps
def test_lua_steps_ship_with_their_data_and_run_in_a_fresh_runtime(make_lua: Any) -> None:
    lua: Lua = make_lua()
    seen = remote_events(lua.components)
    record = lua.run("""
        factor = 3                      -- a notebook global (data): shipped by value
        local words = {"a", "bb"}       -- an upvalue (data): shipped by value
        local wf = Workflow.new{name = "lua-remote", executor = "ray", steps = {
          {id = "count", fn = function(params, ctx)
             local n = 0
             for _, w in ipairs(words) do n = n + #w end
             return {n = n * factor + params.extra, step = ctx.step, hash = Tool.call("hash", {text = "x"})}
           end, params = {extra = 1}},
        }}
        return wf:run()
    """)
    assert record["status"] == "succeeded", record["steps"]["count"]["error"]
    out = record["steps"]["count"]["output"]
    assert out["n"] == 10 and out["step"] == "count" and out["hash"]
    assert [e["pid"] != os.getpid() for e in seen] == [True]


def test_a_lua_step_that_cannot_be_shipped_is_an_error_before_the_run(make_lua: Any) -> None:
    lua: Lua = make_lua()
    failure = lua.fail("""
        local function helper(x) return x * 2 end
        Workflow.new{name = "stuck", executor = "ray", steps = {
          {id = "uses_helper", fn = function(params) return helper(params.x) end},
        }}
    """)
    text = str(failure.evalue)
    assert "uses_helper" in text and "'helper', a function" in text and "cannot be shipped to a Ray worker" in text
    assert lua.run("return 1 + 1") == 2  # the runtime is alive


def test_an_interrupt_cancels_the_ray_tasks(make_lua: Any) -> None:
    lua: Lua = make_lua()
    marker = f"{40 + (uuid.uuid4().int % 1000) / 1000:.3f}"
    try:
        timer = later(1.0, lambda: wait_until(lambda: processes_with(marker), timeout=60) and lua.engine.interrupt())
        result = lua.engine.run_cell(f"""
            local wf = Workflow.new{{name = "interrupted", executor = "ray", steps = {{
              {{id = "wait", command = {{"sleep", "{marker}"}}}},
            }}}}
            return wf:run()
        """, "[interrupt]")
        timer.join()
        assert result.error is not None and result.error.interrupted
        wait_until(lambda: processes_with(marker) == [], timeout=20)
        assert lua.run("return 'alive'") == "alive"
    finally:
        kill_leftovers(marker)


# --------------------------------------------------------------------------- RAG fan-out
class EmbeddingServer:
    """An OpenAI-format ``/v1/embeddings`` endpoint on loopback: 8-dimensional vectors from the
    SHA-256 of each text; records the pid of the process each request came from."""

    def __init__(self) -> None:
        import hashlib
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        import psutil

        server = self
        self.pids: list[int | None] = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
                port = self.client_address[1]
                owners = [c.pid for c in psutil.net_connections(kind="tcp") if c.laddr and c.laddr.port == port]
                server.pids.append(owners[0] if owners else None)
                data = [{"object": "embedding", "index": i,
                         "embedding": [b / 255 for b in hashlib.sha256(t.encode()).digest()[:8]]}
                        for i, t in enumerate(texts)]
                payload = json.dumps({"object": "list", "model": body["model"], "data": data,
                                      "usage": {"prompt_tokens": 1, "total_tokens": 1}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_rag_ingestion_fans_embedding_out_to_workers(make_lua: Any, tmp_path: Path) -> None:
    server = EmbeddingServer()
    try:
        (tmp_path / "aikit.toml").write_text(f"""
[providers.openai]
base_url = "{server.url}/v1"
api_key = "test-key"
retries = 0

[rag]
embedder = "openai/toy"
embedding_cache = false
""")
        docs = tmp_path / "docs"
        docs.mkdir()
        for i in range(6):
            (docs / f"note{i}.md").write_text(f"# Note {i}\n\nThe number {i} is {'even' if i % 2 == 0 else 'odd'}.\n")
        lua: Lua = make_lua()
        result = lua.run(f"""
            local col = RAG.collection("notes")
            local report = col:ingest_file("{docs}", {{executor = "ray"}})
            return {{report = report, stats = col:stats()}}
        """)
        assert result["report"]["documents"] == 6, result
        assert result["stats"]["chunks"] >= 6
        assert server.pids and all(pid is not None and pid != os.getpid() for pid in server.pids), server.pids
        hits = lua.run('return RAG.collection("notes"):search("The number 4 is even.", {k = 6, mode = "vector"})')
        assert sorted(hit["metadata"]["source"] for hit in hits) == [f"note{i}.md" for i in range(6)]
        failure = lua.fail(f'RAG.collection("notes"):ingest_file("{docs}", {{executor = "spark"}})')
        assert "executor must be 'local' or 'ray'" in str(failure.evalue)
    finally:
        server.close()
