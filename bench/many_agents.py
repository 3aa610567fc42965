"""Many agents at once: N agent runs (default 1,000), each making 3 model calls with one tool call
between them, against a local OpenAI-compatible server that answers each call after 20 ms.

    .venv/bin/python bench/many_agents.py [--runs N] [--delay-ms MS] [--server asyncio|threads] [--quick] [-q]

The server is a child process (its CPU is not this process's) speaking HTTP/1.1 with keep-alive
on asyncio protocols: a chat completion asks for one ``calculate`` tool call while the
conversation holds fewer than two tool results, then answers; every reply is sent ``--delay-ms``
after the request arrived. So a run is model, tool, model, tool, model: its critical path (the
ideal wall time of any number of runs at once) is 3 x the delay (the built-in ``calculate`` tool
costs microseconds). The server shares the machine's cores with the client measured, so it is
kept cheap: it counts the tool results in the request's bytes rather than decoding it, and reads
and answers in an ``asyncio.Protocol`` rather than on streams: ~60 us of CPU per request (it
was ~80 us, 1,000 runs, same load).
``--server threads``: ``tests/support/llm_server.py``'s ``LocalServer`` instead, a thread per
connection, whose own CPU per request is several times higher.

1. Python: ``Components`` configured for the server (``[providers.openai]``), N agents
   (``components.new_agent``), their N ``agent.run`` started at once on aikit's I/O loop
   (``asyncio.gather``). Wall time from the start to the last answer, against the ideal. Before
   the timed runs, the garbage collector is set as aikit's processes set it (the kernel of step 2,
   ``aikit_kernel/collector.py``): what is loaded is frozen, full collections are spaced out.
2. Lua, in a real kernel (``KernelManager``, kernel ``aikit``, an ``aikit.toml`` for the server
   in its working directory): a parallel workflow of N agent steps (unbounded concurrency), each
   an inline agent spec; one cell runs it. Wall time of that cell (execute_request to its reply),
   against the ideal. Meanwhile a ``kernel_info_request`` is sent on the control channel every
   50 ms: the p50 and max of its round trips say whether the kernel stays responsive.

0. The floor, first: the same N runs' requests (the conversation an agent sends, three calls per
   run on one keep-alive connection) made by hand from a bare asyncio client in this process, no
   aikit and no httpx: what CPython on this machine allows, against which the ideal is set.
   Around it, the CPU time of the server process and of the floor's client thread give the
   machine's bound: the least wall time any client can take here with this server, which is one
   thread (its CPU time cannot exceed the wall time) and shares the machine's cores with the
   client. When the bound is above the target, the target cannot be met on this machine.

One untimed run of 10 agents first (connections, imports). Targets: wall <= 1.2x the ideal
(Python and Lua); kernel_info during the run < 50 ms (max).

Exit status: 0 whether or not the targets are met (a benchmark, not a test); 2 if a run fails.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from queue import Empty
from typing import Any

import psutil
from _common import REPO, BenchError, Row, median, pct, print_section, print_verdicts, progress_log

TARGET_WALL_RATIO = 1.2
TARGET_KERNEL_INFO_MS = 50.0
RUN_TIMEOUT_S = 600.0


# ---------------------------------------------------------------------- the server (child process)
def reply_body(body: bytes) -> bytes:
    """The scripted answer to a chat completion request: a tool call while fewer than two tool
    results are in the conversation, then the final answer. The tool results are counted in the
    request's bytes, not by decoding it: ``"role": "tool"`` (or ``"role":"tool"``) cannot occur
    inside a JSON string, whose quotes are escaped."""
    from tests.support.agents import call, chat

    tool_results = body.count(b'"role": "tool"') + body.count(b'"role":"tool"')
    if tool_results < 2:
        return json.dumps(chat(None, [call("calculate", {"expression": f"{tool_results} + 1"})])).encode()
    return json.dumps(chat("done")).encode()


def serve(delay_s: float, kind: str) -> None:
    """``--serve``: run the scripted OpenAI server, print its URL, stop when stdin closes."""
    if kind == "asyncio":
        asyncio.run(serve_asyncio(delay_s))
        return
    from tests.support.agents import OPENAI
    from tests.support.llm_server import LocalServer, Recorded, Reply

    server = LocalServer(record=False)

    def respond(request: Recorded) -> Reply:
        return Reply(body=reply_body(request.body), delay_s=delay_s)

    server.respond(OPENAI, respond)
    print(server.url, flush=True)
    sys.stdin.read()
    server.close()


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection of :func:`serve_asyncio`: each request (with a
    Content-Length body) is answered ``delay_s`` after it arrived, in the order they arrived."""

    def __init__(self, loop: asyncio.AbstractEventLoop, delay_s: float) -> None:
        self.loop = loop
        self.delay_s = delay_s
        self.buffer = bytearray()
        self.replies: deque[bytes] = deque()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            length = 0
            for line in bytes(self.buffer[:end]).split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            arrived = self.loop.time()
            body = reply_body(bytes(self.buffer[end + 4:end + 4 + length]))
            del self.buffer[:end + 4 + length]
            self.replies.append(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                                + str(len(body)).encode() + b"\r\n\r\n" + body)
            self.loop.call_at(arrived + self.delay_s, self._answer)

    def _answer(self) -> None:  # the same delay for every request: the oldest reply is due first
        reply = self.replies.popleft()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve_asyncio(delay_s: float) -> None:
    """HTTP/1.1 with keep-alive on asyncio protocols (:class:`_Connection`): each request is
    answered ``delay_s`` after it arrived; answers on one connection keep their order."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Connection(loop, delay_s), "127.0.0.1", 0, backlog=4096)
    print(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


class ServerProcess:
    def __init__(self, delay_s: float, kind: str = "asyncio") -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve", "--delay-ms", str(delay_s * 1e3),
                                      "--server", kind],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http://127.0.0.1:"):
            raise BenchError(f"the local server did not start (printed {self.url!r})")

    def cpu_time(self) -> float:
        """The server process's CPU time so far (user + system), in seconds."""
        times = psutil.Process(self.proc.pid).cpu_times()
        return times.user + times.system

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def write_config(directory: Path, url: str) -> None:
    from tests.support.agents import config_text

    # Every run is charged to the session: room for all of them (and no approvals to wait for).
    (directory / "aikit.toml").write_text(config_text(url))


# ---------------------------------------------------------------------- 1. Python
def python_runs(url: str, tmp: Path, n: int, warm: int) -> float:
    from aikit_components.agents import AgentSpec
    from aikit_components.components import Components
    from aikit_components.config import Config
    from aikit_kernel import runtime
    from aikit_kernel.collector import freeze_heap, space_full_collections

    directory = tmp / "python"
    directory.mkdir()
    write_config(directory, url)
    config = Config.load(cwd=directory, env={"AIKIT_TRUST_PROJECT_CONFIG": "1"}, user_dir=directory / "user-config")
    components = Components.open(config=config, data_dir=directory / "data", plugins=False,
                                 loop_getter=runtime.get_loop)
    try:
        def batch(count: int) -> float:
            agents = [components.new_agent(AgentSpec(name=f"a{i}", model="openai/m", tools=["calculate"]))
                      for i in range(count)]

            async def go() -> float:
                t0 = time.perf_counter()
                results = await asyncio.gather(*(a.run("go") for a in agents))
                elapsed = time.perf_counter() - t0
                bad = [r for r in results if getattr(r, "text", None) != "done"]
                if bad:
                    raise BenchError(f"{len(bad)} of {count} Python runs did not answer 'done': {bad[0]!r}")
                return elapsed

            return runtime.submit(go()).result(RUN_TIMEOUT_S)

        batch(warm)
        # The garbage collector as aikit's own processes set it (a kernel: aikit_kernel/collector.py):
        # what was loaded so far frozen out of the collections, full collections spaced out. As the
        # kernel of the Lua run does it; without this, full collections traversing the components
        # and the runs at once took 12-30% of this process's CPU.
        thresholds = gc.get_threshold()
        freeze_heap(collect=True)
        space_full_collections()
        try:
            return batch(n)
        finally:
            gc.set_threshold(*thresholds)
            gc.unfreeze()
    finally:
        try:
            runtime.submit(components.models.aclose()).result(10)
        finally:
            components.close()


# ---------------------------------------------------------------------- 0. the floor: no aikit
_FLOOR_TOOLS = [{"type": "function", "function": {
    "name": "calculate", "description": "Evaluate an arithmetic expression.",
    "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]}}}]


async def _floor_run(host: str, port: int) -> str:
    """One run's three model calls (and the conversation between them), by hand: one connection,
    HTTP/1.1 with keep-alive, the JSON bodies an agent sends, the answers read and decoded."""
    reader, writer = await asyncio.open_connection(host, port)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "go"}]
    try:
        while True:
            body = json.dumps({"model": "m", "messages": messages, "tools": _FLOOR_TOOLS}).encode()
            writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: " + host.encode()
                         + b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode()
                         + b"\r\n\r\n" + body)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            message = json.loads(await reader.readexactly(length))["choices"][0]["message"]
            messages.append(message)
            calls = message.get("tool_calls")
            if not calls:
                return str(message.get("content"))
            messages.append({"role": "tool", "tool_call_id": calls[0]["id"], "content": "1"})
    finally:
        writer.close()


@dataclass(frozen=True)
class Floor:
    """The floor's timed batch: its wall time, the CPU its client thread and the server spent."""

    wall: float
    client_cpu: float
    server_cpu: float

    def machine_bound(self, cores: int) -> float:
        """The least wall time any client can take here: the server is one thread, so its CPU is
        spent one second per second of wall time at most, and the server's CPU plus the least a
        client spends (the floor's) share the machine's cores."""
        return max(self.server_cpu, (self.server_cpu + self.client_cpu) / cores)


def floor_runs(url: str, n: int, warm: int, server_cpu: Callable[[], float]) -> Floor:
    """The floor: the same n runs' requests from a bare asyncio client in this process (no aikit,
    no httpx, no tool, no record): what CPython and this machine allow. ``server_cpu()``: the
    server process's CPU time so far, read around the timed batch."""
    host, port = url.removeprefix("http://").split(":")

    async def batch(count: int) -> Floor:
        server_before, client_before = server_cpu(), time.thread_time()
        t0 = time.perf_counter()
        answers = await asyncio.gather(*(_floor_run(host, int(port)) for _ in range(count)))
        elapsed = time.perf_counter() - t0
        figures = Floor(elapsed, time.thread_time() - client_before, server_cpu() - server_before)
        if any(a != "done" for a in answers):
            raise BenchError(f"the floor's runs did not all answer 'done': {answers[:3]!r}")
        return figures

    async def both() -> Floor:
        await batch(warm)
        return await batch(n)

    return asyncio.run(both())


# ---------------------------------------------------------------------- 2. Lua, in a kernel
LUA_BUILD = """
local steps = {{}}
for i = 1, {n} do
  steps[i] = {{id = 's' .. i, agent = {{name = 'a' .. i, model = 'openai/m', tools = {{'calculate'}}}}, input = 'go'}}
end
bench_wf = Workflow.new{{name = 'many_{n}', mode = 'parallel', steps = steps}}
"""
LUA_RUN = """
local r = bench_wf:run()
local done = 0
for _, step in pairs(r.steps) do if step.output and step.output.text == 'done' then done = done + 1 end end
assert(done == {n}, ('%d of {n} agent steps answered'):format(done))
"""


def lua_runs(url: str, tmp: Path, n: int, warm: int, log: Any) -> tuple[float, list[float]]:
    from jupyter_client import KernelManager

    directory = tmp / "lua"
    directory.mkdir()
    write_config(directory, url)
    env = {**os.environ, "AIKIT_DATA_DIR": str(directory / "data"), "AIKIT_TRUST_PROJECT_CONFIG": "1"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    km = KernelManager(kernel_name="aikit")
    km.start_kernel(env=env, cwd=str(directory))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)

        def execute(code: str) -> float:
            t0 = time.perf_counter()
            reply = kc.execute_interactive(code, timeout=RUN_TIMEOUT_S, output_hook=lambda msg: None)
            elapsed = time.perf_counter() - t0
            if reply["content"]["status"] != "ok":
                raise BenchError(f"Lua cell failed: {reply['content'].get('ename')}: {reply['content'].get('evalue')}")
            return elapsed

        execute(LUA_BUILD.format(n=warm))
        execute(LUA_RUN.format(n=warm))
        execute(LUA_BUILD.format(n=n))
        pings: list[float] = []
        stop = threading.Event()

        def ping() -> None:
            while not stop.wait(0.05):
                t0 = time.perf_counter()
                msg = kc.session.msg("kernel_info_request")
                kc.control_channel.send(msg)
                while True:
                    try:
                        reply = kc.control_channel.get_msg(timeout=10)
                    except Empty:
                        pings.append(float("inf"))
                        break
                    if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
                        pings.append(time.perf_counter() - t0)
                        break

        pinger = threading.Thread(target=ping, daemon=True)
        pinger.start()
        try:
            wall = execute(LUA_RUN.format(n=n))
        finally:
            stop.set()
            pinger.join(15)
        log(f"  kernel_info on control during the run: {len(pings)} answered")
        return wall, pings
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)


# ---------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=None, help="agent runs at once (default 1000; 200 with --quick)")
    ap.add_argument("--delay-ms", type=float, default=20.0, help="the server's answer delay (default 20 ms)")
    ap.add_argument("--quick", action="store_true", help="200 runs")
    ap.add_argument("--server", choices=("asyncio", "threads"), default="asyncio",
                    help="the local server: asyncio (default) or a thread per connection (tests' LocalServer)")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("-q", "--quiet", action="store_true", help="print only the tables and the verdict")
    args = ap.parse_args(argv)
    delay_s = args.delay_ms / 1e3
    if args.serve:
        serve(delay_s, args.server)
        return 0
    n = max(1, args.runs if args.runs is not None else (200 if args.quick else 1000))
    warm = min(10, n)
    log = progress_log(args.quiet)
    ideal = 3 * delay_s
    t_begin = time.perf_counter()
    server = ServerProcess(delay_s, args.server)
    try:
        with tempfile.TemporaryDirectory(prefix="aikit-bench-many-") as tmp_name:
            tmp = Path(tmp_name)
            log(f"floor: {n} runs' requests from a bare asyncio client (after {warm} untimed)")
            floor = floor_runs(server.url, n, warm, server.cpu_time)
            floor_wall = floor.wall
            log(f"  {floor_wall:.3f} s")
            log(f"Python: {n} agent runs at once (after {warm} untimed)")
            py_wall = python_runs(server.url, tmp, n, warm)
            log(f"  {py_wall:.3f} s")
            log(f"Lua (kernel): a parallel workflow of {n} agent steps (after {warm} untimed)")
            lua_wall, pings = lua_runs(server.url, tmp, n, warm, log)
            log(f"  {lua_wall:.3f} s")
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        server.close()

    ping_ms = [p * 1e3 for p in pings] or [float("nan")]
    cores = len(os.sched_getaffinity(0))
    bound = floor.machine_bound(cores)
    py_ok, lua_ok = py_wall <= TARGET_WALL_RATIO * ideal, lua_wall <= TARGET_WALL_RATIO * ideal
    ping_ok = max(ping_ms) < TARGET_KERNEL_INFO_MS
    rows = [
        Row(f"ideal (critical path: 3 x {args.delay_ms:g} ms)", f"{ideal:.3f}"),
        Row(f"floor: the same {3 * n} requests, bare asyncio client", f"{floor_wall:.3f}",
            f"{floor_wall / ideal:.2f}x ideal"),
        Row("  CPU in it: the server's (one thread) / the client's", f"{floor.server_cpu:.3f} / {floor.client_cpu:.3f}"),
        Row(f"machine bound: max(server CPU, all CPU / {cores} cores)", f"{bound:.3f}",
            f"{bound / ideal:.2f}x ideal: no client gets below it here"),
        Row(f"Python: {n} agent.run at once", f"{py_wall:.3f}", f"{py_wall / ideal:.2f}x ideal (target <= "
            f"{TARGET_WALL_RATIO:g}x)", "PASS" if py_ok else "FAIL"),
        Row(f"Lua: workflow of {n} agent steps (kernel)", f"{lua_wall:.3f}", f"{lua_wall / ideal:.2f}x ideal (target "
            f"<= {TARGET_WALL_RATIO:g}x)", "PASS" if lua_ok else "FAIL"),
        Row("  Python / floor, Lua / floor", f"{py_wall / floor_wall:.2f}x / {lua_wall / floor_wall:.2f}x"),
        Row("  model calls per second (Python / Lua)", f"{3 * n / py_wall:,.0f} / {3 * n / lua_wall:,.0f}"),
    ]
    print()
    print_section(f"1-2. {n} agent runs x (3 model calls + 2 tool calls), server delay {args.delay_ms:g} ms", "s", rows)
    print_section("3. kernel responsiveness during the Lua run (kernel_info on control, every 50 ms)", "ms", [
        Row("p50", f"{median(ping_ms):.2f}"),
        Row("p95", f"{pct(ping_ms, 95):.2f}"),
        Row("max", f"{max(ping_ms):.2f}", f"target < {TARGET_KERNEL_INFO_MS:g} ms", "PASS" if ping_ok else "FAIL"),
    ])
    print_verdicts([
        (f"Python wall <= {TARGET_WALL_RATIO:g}x ideal", py_ok),
        (f"Lua wall <= {TARGET_WALL_RATIO:g}x ideal", lua_ok),
        (f"kernel_info during the run < {TARGET_KERNEL_INFO_MS:g} ms", ping_ok),
    ])
    print(f"total benchmark time {time.perf_counter() - t_begin:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
