"""What tracing costs: a realistic workload with tracing off, on with the local span store, and on
with OTLP/HTTP export to a local receiver as well; and what it adds to a trivial tool call.

    .venv/bin/python bench/tracing.py [--reps N] [--quick] [--baseline DIR] [--instructions]

The workload, in one process per measurement (a fresh ``Components`` on a temporary data directory,
configured by ``[telemetry]`` through the environment, as a user would):

- an agent (``openai/m``) with three tools (``hash``, ``uuid``, ``calculate``) against a local
  OpenAI-compatible replay server (an ``http.server`` on loopback started here that answers each
  conversation with one call of each tool, then a plain answer: 4 model calls, 3 tool calls);
- a RAG vector search (``k = 5``) in a 200-document collection with precomputed vectors;
- a 20-step workflow of tool steps (a chain of ``hash`` calls);

all under one root span, as a cell runs. Each probe runs the workload ``--iterations`` times after
a warm-up and reports the median. The trivial tool call is ``registry.call("bench_add", {a, b})``
(a two-integer ``@tool``) inside an open span, the best of 5 loops each timed up to the end of
the writer's flush of its spans (so the writer's work is counted); also ``State.set`` (memory backend),
which tracing records as span events.

Modes are alternated (off, store, otlp, off, ...) ``--reps`` times; the table shows the median of
the probes' medians, and the ratios to "off". Targets: <= 1.02 with the local store; <= 5 us added
to a trivial tool call. ``--baseline DIR`` also runs the store and OTLP probes with the aikit of
another checkout (e.g. ``git worktree add /tmp/base main``), alternated with these, for a before
and after on the same machine at the same time. Spans a full queue dropped are counted ("dropped").

``--instructions`` counts instead of timing, which a loaded machine does not disturb: it runs
``valgrind --tool=callgrind`` on a process making 6N trivial tool calls and on one making N,
tracing off and with the local store (and with ``--baseline``, the baseline's too), and prints
the instructions per call (the difference over 5N), the writer thread's work included.

A benchmark, not a test: exit status 0 (2 when a probe fails).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
MODES = ("off", "store", "otlp")
TOOLS = ("hash", "uuid", "calculate")
TOOL_ARGS = {"hash": {"text": "bench"}, "uuid": {}, "calculate": {"expression": "6 * 7"}}


# ---------------------------------------------------------------------- servers (parent process)
def _chat(content: str | None, tool: str | None, n: int) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool is not None:
        message["tool_calls"] = [{"id": f"call_{n}", "type": "function",
                                  "function": {"name": tool, "arguments": json.dumps(TOOL_ARGS[tool])}}]
    return {"id": f"chatcmpl-{n}", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if tool else "stop"}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}}


class _Replay(BaseHTTPRequestHandler):
    """One tool call per tool in order, then an answer, judged from the conversation so far."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path.endswith("/v1/traces") or self.path.endswith("/v1/metrics"):  # the OTLP receiver
            self._send(b"", "application/x-protobuf")
            return
        body = json.loads(raw)
        done = sum(1 for m in body["messages"] if m["role"] == "tool")
        tool = TOOLS[done] if done < len(TOOLS) else None
        self._send(json.dumps(_chat(None if tool else "done", tool, done)).encode(), "application/json")

    def _send(self, data: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


def serve() -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Replay)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


# ---------------------------------------------------------------------- one probe (child process)
def probe(url: str, iterations: int, calls: int) -> dict[str, float]:
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "bench"))

    import numpy as np
    from _common import add_tool

    from aikit_components.agents import AgentSpec
    from aikit_components.components import Components
    from aikit_components.config import Config
    from aikit_components.state import State
    from aikit_components.storage.memory import MemoryStateBackend
    from aikit_components.tools import Budget
    from aikit_components.workflows import Step, Workflow
    from aikit_components.workflows import engine as wf_engine
    from aikit_kernel import runtime

    with tempfile.TemporaryDirectory(prefix="aikit-bench-tracing-") as tmp:
        cwd = Path(tmp)
        (cwd / "aikit.toml").write_text(f'[providers.openai]\nbase_url = "{url}/v1"\napi_key = "k"\nretries = 0\n')
        config = Config.load(cwd=cwd, env=dict(os.environ), user_dir=cwd / "user")
        c = Components.open(config=config, data_dir=cwd / "data", plugins=False, loop_getter=runtime.get_loop)
        c.tools.register(add_tool("bench_add"))
        agent = c.new_agent(AgentSpec(name="bench", model="openai/m", tools=list(TOOLS)),
                            context=lambda: c.tool_context(caller="agent:bench", budget=Budget(None, None)))
        collection = c.rag.collection("bench")
        rng = np.random.default_rng(1)
        vectors = rng.standard_normal((200, 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        runtime.submit(collection.aingest([{"id": f"d{i}", "text": f"document {i}", "vector": v.tolist()}
                                           for i, v in enumerate(vectors)])).result(60)
        query = vectors[7].tolist()
        steps = [Step(f"s{i}", kind="tool", target="hash", params={"text": f"step {i}"},
                      depends_on=[f"s{i - 1}"] if i else []) for i in range(20)]
        workflow = Workflow(name="bench_chain", steps=steps, mode="dag")
        telemetry = c.telemetry
        unlimited = c.tool_context(caller="workflow:bench_chain", budget=Budget(None, None))

        async def workload() -> None:
            result = await agent.run("go")
            assert result.text == "done" and len(result.tool_calls) == 3, result
            await collection.asearch(query, k=5, mode="vector")
            record = await wf_engine.run(workflow, components=c, durable_steps=False, tool_context=unlimited)
            assert record.status == "succeeded", record.status

        async def timed_workload() -> int:
            start = time.perf_counter_ns()
            with telemetry.span("bench workload", attributes={"aikit.operation.kind": "script"}):
                await workload()
            return time.perf_counter_ns() - start

        for _ in range(3):
            runtime.submit(timed_workload()).result(60)
        samples = [runtime.submit(timed_workload()).result(60) for _ in range(iterations)]

        memory_state = State(MemoryStateBackend(), events=c.events, hooks=c.hooks, pipeline=c.pipeline)
        registry, ctx = c.tools, c.tool_context(caller="bench", budget=Budget(None, None))
        call = registry.call

        def per_call(fn: Any) -> float:
            # the flush is timed too: the writer's work for these spans is part of their cost
            # (without it a loop shorter than the writer's wake-up threshold would leave it out)
            best = []
            for _ in range(5):
                telemetry.flush()
                start = time.perf_counter_ns()
                for i in range(calls):
                    fn(i)
                telemetry.flush()
                best.append((time.perf_counter_ns() - start) / calls)
            return min(best)

        with telemetry.span("bench calls"):
            tool_ns = per_call(lambda i: call("bench_add", {"a": i, "b": 1}, ctx))
            state_ns = per_call(lambda i: memory_state.set("global", "k", i))
        telemetry.flush()
        stats = telemetry.stats() if hasattr(telemetry, "stats") else {}
        dropped = max((s.get("dropped", 0) for s in stats.values()), default=0)
        c.close()
        return {"workload_ns": statistics.median(samples), "tool_ns": tool_ns, "state_ns": state_ns,
                "dropped": dropped}


def calls_probe(calls: int, repo: Path, warmup: int = 200) -> None:
    """``calls`` trivial tool calls inside one span with the aikit of ``repo``, then everything
    written (for --instructions), after ``warmup`` calls written likewise (the same number in the
    runs compared: the store's statements for batches of that size are prepared by then, once per
    process, as in a long session, and not counted as the calls' cost)."""
    sys.path.insert(0, str(repo))
    sys.path.insert(0, str(repo / "bench"))

    from _common import add_tool

    from aikit_components.components import Components
    from aikit_components.config import Config
    from aikit_components.tools import Budget
    from aikit_kernel import runtime

    with tempfile.TemporaryDirectory(prefix="aikit-bench-tracing-") as tmp:
        cwd = Path(tmp)
        config = Config.load(cwd=cwd, env=dict(os.environ), user_dir=cwd / "user")
        c = Components.open(config=config, data_dir=cwd / "data", plugins=False, loop_getter=runtime.get_loop)
        c.tools.register(add_tool("bench_add"))
        ctx = c.tool_context(caller="bench", budget=Budget(None, None))
        call = c.tools.call
        with c.telemetry.span("bench warm-up"):  # in both runs: the difference is the calls alone
            for i in range(warmup):
                call("bench_add", {"a": i, "b": 1}, ctx)
        c.telemetry.flush()
        with c.telemetry.span("bench calls"):
            for i in range(calls):
                call("bench_add", {"a": i, "b": 1}, ctx)
        c.telemetry.flush()
        c.close()


# ---------------------------------------------------------------------- the runs (parent process)
def probe_env(mode: str, repo: Path, url: str = "") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIKIT_", "OTEL_"))}
    env["PYTHONPATH"] = str(repo)
    if mode == "off":
        env["AIKIT_TELEMETRY__ENABLED"] = "false"
    if mode == "otlp":
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = url
    return env


def run_probe(mode: str, url: str, iterations: int, calls: int, repo: Path = REPO) -> dict[str, float]:
    """One probe in a child process, with the aikit (and this benchmark's probe) of ``repo``."""
    script = repo / "bench" / "tracing.py"
    done = subprocess.run([sys.executable, str(script), "--probe", url, str(iterations), str(calls)],
                          env=probe_env(mode, repo, url), capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"probe {mode} ({repo}) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def count_instructions(mode: str, calls: int, repo: Path, warmup: int) -> int:
    """Instructions (callgrind's Ir, all threads) of a process making ``calls`` trivial tool calls."""
    with tempfile.TemporaryDirectory(prefix="aikit-bench-callgrind-") as tmp:
        out = Path(tmp) / "callgrind.out"
        env = probe_env(mode, repo)
        env["AIKIT_TELEMETRY__QUEUE_SIZE"] = str(10 * calls + 1000)  # count every span's cost: none dropped
        done = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
                               str(Path(__file__).resolve()), "--calls-probe", str(calls), str(repo), str(warmup)],
                              env=env, capture_output=True, text=True, timeout=3600)
        if done.returncode != 0:
            raise RuntimeError(f"callgrind {mode} ({repo}) failed:\n{done.stderr[-3000:]}")
        for line in out.read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError("callgrind wrote no totals")


def instructions(calls: int, baseline: Path | None) -> int:
    """Print the instructions per trivial tool call: tracing off, with the store (and the baseline's)."""
    import shutil

    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    runs = [("off", "off", REPO), ("store", "store", REPO)]
    if baseline is not None:
        runs += [("baseline off", "off", baseline), ("baseline store", "store", baseline)]
    per_call: dict[str, float] = {}
    for label, mode, repo in runs:
        # (two processes that both make calls: what a process does once, which varies by some
        # 20 million instructions from run to run, cancels out over the many calls in between)
        few, many = count_instructions(mode, calls, repo, calls), count_instructions(mode, 6 * calls, repo, calls)
        per_call[label] = (many - few) / (5 * calls)
        print(f"  {label}: {few:,} Ir with {calls} calls, {many:,} with {6 * calls}", file=sys.stderr)
    print(f"{'instructions per trivial tool call':40}{'Ir':>12}{'added':>12}")
    for label, value in per_call.items():
        off = per_call["baseline off" if label.startswith("baseline") else "off"]
        added = "" if label.endswith("off") else f"{value - off:>12,.0f}"
        print(f"{label:40}{value:>12,.0f}{added}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--probe":
        print(json.dumps(probe(argv[1], int(argv[2]), int(argv[3]))))
        return 0
    if argv and argv[0] == "--calls-probe":
        calls_probe(int(argv[1]), Path(argv[2]), int(argv[3]) if len(argv) > 3 else 200)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=None, help="probes per mode (default 5, --quick 2)")
    parser.add_argument("--quick", action="store_true", help="fewer and shorter runs")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="another checkout whose store and OTLP probes run alternated with these")
    parser.add_argument("--instructions", action="store_true",
                        help="count instructions per trivial tool call with callgrind instead of timing")
    args = parser.parse_args(argv)
    baseline = args.baseline.resolve() if args.baseline else None
    if args.instructions:
        try:
            return instructions(500 if args.quick else 2_000, baseline)
        except RuntimeError as exc:
            print(exc, file=sys.stderr)
            return 2
    reps = args.reps or (2 if args.quick else 5)
    iterations, calls = (10, 2_000) if args.quick else (30, 10_000)
    columns = [("off", "off", REPO), ("store", "local store", REPO), ("otlp", "store + OTLP", REPO)]
    if baseline is not None:
        columns += [("store", "base: store", baseline), ("otlp", "base: + OTLP", baseline)]
    server, url = serve()
    results: list[list[dict[str, float]]] = [[] for _ in columns]
    try:
        for rep in range(reps):
            for i, (mode, _, repo) in enumerate(columns):
                results[i].append(run_probe(mode, url, iterations, calls, repo))
            print(f"  run {rep + 1}/{reps} done", file=sys.stderr)
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 2
    finally:
        server.shutdown()
    med = [{k: statistics.median(r.get(k, 0) for r in rs) for k in rs[0]} for rs in results]
    off = med[0]
    width = 14
    print(f"{'':34}" + "".join(f"{label:>{width}}" for _, label, _ in columns))
    print(f"{'workload (agent, RAG, 20 steps)':34}" + "".join(f"{m['workload_ns'] / 1e6:>{width - 2}.2f}ms" for m in med))
    print(f"{'  ratio to off':34}" + "".join(f"{m['workload_ns'] / off['workload_ns']:>{width}.3f}" for m in med)
          + "   (target <= 1.02 with the store)")
    for key, label in (("tool_ns", "trivial tool call"), ("state_ns", "State.set (memory)")):
        print(f"{label:34}" + "".join(f"{m[key] / 1e3:>{width - 2}.2f}us" for m in med))
        print(f"{'  added by tracing':34}{'':>{width}}" + "".join(f"{(m[key] - off[key]) / 1e3:>{width - 2}.2f}us"
                                                             for m in med[1:])
              + ("   (target <= 5 us)" if key == "tool_ns" else ""))
    print(f"{'spans dropped (queue full)':34}" + "".join(f"{m.get('dropped', 0):>{width}.0f}" for m in med))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
