"""Kernel latency benchmark: aikit (Lua) against ipykernel and a floor, through the same jupyter_client.

    .venv/bin/python bench/kernel_latency.py [--runs N] [--pipelined N] [--quick]
                                             [--startups N] [--rounds N] [--gap-ms MS]
                                             [--floor-messages] [-q]

Three kernels are started with ``KernelManager`` and driven with its blocking client: aikit and
ipykernel by name (``aikit``, ``python3``), and the floor, ``bench/echo_kernel.py`` (the least a
kernel can do: pyzmq sockets and ``jupyter_client.Session``, busy / reply / idle for every request;
its kernelspec is written to a temporary directory). Four measurements, each for every kernel and
as ratios aikit/ipykernel and aikit/floor:

1. startup: wall time from ``km.start_kernel()`` to the first ``kernel_info_reply`` (median of
   several starts, alternating the kernels; each kernel is shut down cleanly afterwards). One
   untimed start of each kernel comes first, so that neither pays for jupyter_client's one-time
   set-up (provisioner entry points) or a cold OS file cache alone. Target: aikit <= 0.8x ipykernel.
   The kernel process's CPU time at that reply (``/proc/PID/stat``) is printed and checked too:
   on a machine shared with other work it is the steadier figure (wall time includes waiting
   for a CPU).
2. early round trips: right after each timed start of aikit and ipykernel, trivial cells are
   sent back to back (same gap) for ``--early-s`` seconds (default 2) from the first
   ``kernel_info_reply``; the p99 of all those round trips (pooled over the starts) is what a
   user typing right after start-up sees, while deferred start-up work still runs. Target:
   aikit's early p99 <= ipykernel's steady-state p99 (measurement 3). The first of those round
   trips is also printed on its own (median over the starts): it waits for whatever a kernel
   still does after answering kernel_info (aikit builds its Lua runtime and components then).
3. execute round trip (p50/p95/p99) of a trivial cell: from sending ``execute_request`` until BOTH its
   ``execute_reply`` and its IOPub ``status: idle`` have arrived (what a frontend waits for).
   After a warm-up, requests alternate between the two kernels (both are running), with a short
   pause before each request (``--gap-ms``, default 5) so that one kernel's trailing work (history
   writes, thread wake-ups) does not land in the other kernel's measurement on a small machine.
   Target: aikit's p50 <= 1.3x the floor's. The floor publishes busy and idle only; with
   ``--floor-messages`` it also publishes ``execute_input`` and ``execute_result``, as any kernel
   must for a cell whose value is shown (the client's cost of those two IOPub messages is then
   in the floor too).
4. pipelined silent executes per second: N ``execute_request`` with ``silent=True`` sent back to
   back without waiting for replies, then wait for all N replies; N / elapsed. Rounds alternate
   between the kernels; the best round is reported.

Client-side details that apply to both kernels equally:
* the client's ZMQ context uses ``RECONNECT_IVL`` = 5 ms (the default 100 ms would round startup
  times up to the next reconnect attempt while the kernel is not listening yet), and
  ``RCVHWM`` = 0 so that a burst of replies is never dropped by the kernel's ROUTER socket.
* messages are received with the channels' own ``get_msg`` (Session deserialisation and HMAC
  check included) and a ``zmq.Poller`` over the shell and IOPub sockets.

Exit status: 0 whether or not the targets are met (this is a benchmark, not a test);
1 if a kernel fails to start; 2 if a measurement fails (e.g. a reply times out).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty
from typing import Any

import zmq
from _common import pct, print_load
from jupyter_client import KernelManager

REPO = Path(__file__).resolve().parent.parent

START_TIMEOUT_S = 60.0
REPLY_TIMEOUT_S = 30.0
SHUTDOWN_WAIT_S = 10.0
WARMUP_EXECUTES = 20

TARGET_ROUNDTRIP_P50_FLOOR_RATIO = 1.3  # aikit / the echo kernel
TARGET_STARTUP_RATIO = 0.8  # aikit / ipykernel


@dataclass(frozen=True)
class KernelSpec:
    label: str  # as printed
    name: str  # kernelspec name
    trivial: str  # the round-trip cell
    silent: str  # the pipelined silent cell


AIKIT = KernelSpec("aikit", "aikit", "1", "x = 1")
IPYKERNEL = KernelSpec("ipykernel", "python3", "1", "x = 1")
FLOOR = KernelSpec("floor", "aikit-bench-echo", "1", "x = 1")
SPECS = (AIKIT, IPYKERNEL, FLOOR)
ECHO_KERNEL = Path(__file__).resolve().parent / "echo_kernel.py"
_floor_specs: list[Any] = []  # the KernelSpecManager of the floor's temporary kernelspec (made once)
_floor_args: list[str] = []  # extra arguments of the floor kernel (--floor-messages)


def floor_spec_manager() -> Any:
    """A KernelSpecManager that knows only the floor kernel (kernelspec in a temporary directory)."""
    if not _floor_specs:
        import json

        from jupyter_client.kernelspec import KernelSpecManager
        root = Path(tempfile.mkdtemp(prefix="aikit-bench-echo-"))
        spec_dir = root / FLOOR.name
        spec_dir.mkdir()
        (spec_dir / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, str(ECHO_KERNEL), "{connection_file}", *_floor_args],
            "display_name": "echo (benchmark floor)", "language": "text"}))
        _floor_specs.append(KernelSpecManager(kernel_dirs=[str(root)]))
    return _floor_specs[0]


class KernelStartError(RuntimeError):
    """A kernel did not start (or did not answer kernel_info in time)."""


class BenchError(RuntimeError):
    """A measurement could not be completed."""


def kernel_env(spec: KernelSpec) -> dict[str, str]:
    """The environment a kernel starts with (aikit gets the repo on its path if not installed).
    Bytecode caching is on whatever the environment says (PYTHONDONTWRITEBYTECODE): installed
    packages have their .pyc files, a checkout gets them on the untimed first start, else aikit
    alone would compile all its sources on every start."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if spec is AIKIT:
        try:
            import aikit_kernel  # noqa: F401
        except ImportError:
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def process_cpu_s(km: KernelManager) -> float:
    """CPU seconds (user + system) the kernel's process has used so far (NaN if unknown). Unlike
    wall time, it does not count waiting for a CPU that other work on the machine holds."""
    try:
        pid = km.provisioner.process.pid  # type: ignore[union-attr]
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (AttributeError, OSError, ValueError, IndexError):
        return float("nan")


def client_context() -> zmq.Context:
    ctx = zmq.Context()
    ctx.setsockopt(zmq.RECONNECT_IVL, 5)
    ctx.setsockopt(zmq.RCVHWM, 0)
    ctx.setsockopt(zmq.SNDHWM, 0)
    return ctx


@dataclass
class RunningKernel:
    """One started kernel with a connected blocking client."""

    spec: KernelSpec
    km: KernelManager
    ctx: zmq.Context
    kc: Any = None
    startup_s: float = float("nan")
    started_at: float = float("nan")  # perf_counter() at the first kernel_info_reply
    startup_cpu_s: float = float("nan")  # the kernel process's CPU time (user + system) at that reply
    launch_s: float = float("nan")  # of which km.start_kernel() itself (client side, spawning)
    log_file: Any = None  # the kernel's stdout/stderr (shown if it fails to start)
    poller: zmq.Poller = field(default_factory=zmq.Poller)

    # ------------------------------------------------------------------ life cycle
    @classmethod
    def start(cls, spec: KernelSpec) -> RunningKernel:
        """Start the kernel, time start_kernel() -> first kernel_info_reply, prime IOPub."""
        if spec is FLOOR:
            km = KernelManager(kernel_name=spec.name, kernel_spec_manager=floor_spec_manager())
        else:
            km = KernelManager(kernel_name=spec.name)
        km.shutdown_wait_time = SHUTDOWN_WAIT_S
        rk = cls(spec, km, client_context(), log_file=tempfile.TemporaryFile())  # noqa: SIM115  closed in shutdown()
        env = kernel_env(spec)
        try:
            t0 = time.perf_counter()
            km.start_kernel(env=env, stdout=rk.log_file, stderr=rk.log_file)
            rk.launch_s = time.perf_counter() - t0
            kc = km.client(context=rk.ctx)
            kc.start_channels(shell=True, iopub=True, stdin=False, hb=False, control=True)
            rk.kc = kc
            rk.startup_s = rk._first_kernel_info(t0)
            rk.poller.register(kc.shell_channel.socket, zmq.POLLIN)
            rk.poller.register(kc.iopub_channel.socket, zmq.POLLIN)
            rk._prime_iopub()
        except BaseException as exc:
            output = rk.kernel_output()
            rk.shutdown()
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            detail = f"\n--- kernel output (last 2000 bytes) ---\n{output}" if output.strip() else ""
            raise KernelStartError(f"{spec.label} ({spec.name}): {type(exc).__name__}: {exc}{detail}") from exc
        return rk

    def _first_kernel_info(self, t0: float) -> float:
        kc, shell = self.kc, self.kc.shell_channel
        sent = {kc.kernel_info()}
        last_send = time.perf_counter()
        while True:
            try:
                msg = shell.get_msg(timeout=0.05)
            except Empty:
                now = time.perf_counter()
                if now - t0 > START_TIMEOUT_S:
                    raise KernelStartError(f"no kernel_info_reply within {START_TIMEOUT_S:g} s") from None
                if not self.km.is_alive():
                    raise KernelStartError("the kernel process exited") from None
                if now - last_send > 2.0:  # belt and braces: ZMQ queues the first one anyway
                    sent.add(kc.kernel_info())
                    last_send = now
                continue
            if msg["msg_type"] == "kernel_info_reply" and msg["parent_header"].get("msg_id") in sent:
                self.started_at = time.perf_counter()
                self.startup_cpu_s = process_cpu_s(self.km)
                return self.started_at - t0

    def _prime_iopub(self) -> None:
        """Wait until the IOPub subscription is live (a status of one of our requests arrives)."""
        deadline = time.perf_counter() + START_TIMEOUT_S
        kc = self.kc
        sent: set[str] = set()
        while time.perf_counter() < deadline:
            sent.add(kc.kernel_info())
            until = time.perf_counter() + 0.5
            while time.perf_counter() < until:
                try:
                    msg = kc.iopub_channel.get_msg(timeout=0.05)
                except Empty:
                    continue
                if (msg["msg_type"] == "status" and msg["content"].get("execution_state") == "idle"
                        and msg["parent_header"].get("msg_id") in sent):
                    self.drain()
                    return
        raise KernelStartError("IOPub never delivered a status message")

    def drain(self, quiet_s: float = 0.05, limit_s: float = 10.0) -> None:
        """Discard pending shell/IOPub messages until nothing arrives for ``quiet_s``."""
        end = time.perf_counter() + limit_s
        chans = (self.kc.shell_channel, self.kc.iopub_channel)
        while time.perf_counter() < end:
            if not self.poller.poll(int(quiet_s * 1000)):
                return
            for ch in chans:
                while ch.msg_ready():
                    ch.get_msg(timeout=0)

    def kernel_output(self, limit: int = 2000) -> str:
        try:
            self.log_file.seek(0)
            return self.log_file.read()[-limit:].decode(errors="replace")
        except Exception:
            return ""

    def shutdown(self) -> None:
        """Shut the kernel down cleanly (shutdown_request), killing it only as a last resort."""
        try:
            if self.km.has_kernel:
                try:
                    self.km.shutdown_kernel(now=False)
                except Exception:
                    self.km.shutdown_kernel(now=True)
        except Exception as exc:  # never mask the real error
            print(f"warning: could not shut down {self.spec.label}: {exc}", file=sys.stderr)
        finally:
            if self.kc is not None:
                try:
                    self.kc.stop_channels()
                except Exception:
                    pass
            self.ctx.destroy(linger=0)
            if self.log_file is not None:
                self.log_file.close()

    # ------------------------------------------------------------------ measurements
    def round_trip(self) -> float:
        """Seconds from sending a trivial execute_request to having its reply AND its idle."""
        kc = self.kc
        shell, iopub = kc.shell_channel, kc.iopub_channel
        shell_sock, iopub_sock = shell.socket, iopub.socket
        t0 = time.perf_counter()
        msg_id = kc.execute(self.spec.trivial, silent=False, store_history=True)
        got_reply = got_idle = False
        deadline = t0 + REPLY_TIMEOUT_S
        while not (got_reply and got_idle):
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise BenchError(f"{self.spec.label}: execute round trip timed out "
                                 f"(reply={got_reply}, idle={got_idle})")
            for sock, _ in self.poller.poll(int(remaining * 1000) + 1):
                if sock is shell_sock:
                    msg = shell.get_msg(timeout=0)
                    if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "execute_reply":
                        if msg["content"].get("status") != "ok":
                            raise BenchError(f"{self.spec.label}: execute failed: {msg['content']}")
                        got_reply = True
                elif sock is iopub_sock:
                    msg = iopub.get_msg(timeout=0)
                    if (msg["msg_type"] == "status" and msg["parent_header"].get("msg_id") == msg_id
                            and msg["content"].get("execution_state") == "idle"):
                        got_idle = True
        return time.perf_counter() - t0

    def pipelined(self, n: int) -> float:
        """Send ``n`` silent execute_requests without waiting, then wait for all replies; return n/s."""
        kc = self.kc
        shell = kc.shell_channel
        code = self.spec.silent
        self.drain()
        pending: set[str] = set()
        errors = 0
        t0 = time.perf_counter()
        for _ in range(n):
            pending.add(kc.execute(code, silent=True, store_history=False))
        deadline = time.perf_counter() + REPLY_TIMEOUT_S + n * 0.01
        while pending:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise BenchError(f"{self.spec.label}: {len(pending)} of {n} pipelined replies missing")
            try:
                msg = shell.get_msg(timeout=remaining)
            except Empty:
                continue
            msg_id = msg["parent_header"].get("msg_id")
            if msg_id in pending:
                pending.discard(msg_id)
                if msg["content"].get("status") != "ok":
                    errors += 1
        elapsed = time.perf_counter() - t0
        if errors:
            raise BenchError(f"{self.spec.label}: {errors} of {n} silent executes did not return status ok")
        self.drain(quiet_s=0.2)  # the busy/idle pairs on IOPub
        return n / elapsed


# ---------------------------------------------------------------------- the benchmark
def alternating(i: int, items: Iterable[Any]) -> list[Any]:
    """``items`` in order on even i, reversed on odd i (so neither side always goes first)."""
    seq = list(items)
    return seq if i % 2 == 0 else seq[::-1]


def early_round_trips(rk: RunningKernel, window_s: float, gap_s: float) -> list[float]:
    """Round trips sent one after another (``gap_s`` apart) for ``window_s`` seconds after the
    kernel's first kernel_info_reply (its start time is ``rk.started_at``)."""
    out: list[float] = []
    end = rk.started_at + window_s
    while time.perf_counter() < end:
        if gap_s:
            time.sleep(gap_s)
        out.append(rk.round_trip())
    return out


def measure_startup(starts: int, early_s: float, gap_s: float, log: Any, first: dict[str, list[float]] | None = None
                    ) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, list[float]]]:
    """Startup times per kernel (wall, and the kernel process's CPU time), and the round trips of
    the first ``early_s`` seconds after each start (aikit and ipykernel; the floor has no
    deferred work); the first round trip of each start is also added to ``first``."""
    times: dict[str, list[float]] = {s.label: [] for s in SPECS}
    cpu: dict[str, list[float]] = {s.label: [] for s in SPECS}
    early: dict[str, list[float]] = {s.label: [] for s in SPECS if s is not FLOOR}
    for spec in SPECS:  # untimed warm-up start
        RunningKernel.start(spec).shutdown()
    for i in range(starts):
        for spec in alternating(i, SPECS):
            rk = RunningKernel.start(spec)
            try:
                times[spec.label].append(rk.startup_s)
                cpu[spec.label].append(rk.startup_cpu_s)
                if spec.label in early and early_s > 0:
                    trips = early_round_trips(rk, early_s, gap_s)
                    early[spec.label].extend(trips)
                    if first is not None and trips:
                        first.setdefault(spec.label, []).append(trips[0])
                log(f"  start {i + 1}/{starts} {spec.label:<9} {rk.startup_s:.3f} s, CPU {rk.startup_cpu_s:.3f} s "
                    f"(km.start_kernel() returned after {rk.launch_s:.3f} s)")
            finally:
                rk.shutdown()
    return times, cpu, early


def failed(exc: Exception) -> int:
    """Say why the benchmark could not go on; its exit status (1: a kernel did not start, else 2)."""
    if isinstance(exc, KernelStartError):
        print(f"error: kernel failed to start: {exc}", file=sys.stderr)
        return 1
    print(f"error: {exc}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=None, help="execute round trips per kernel (default 200)")
    ap.add_argument("--pipelined", type=int, default=None, help="silent executes per pipelined burst (default 2000)")
    ap.add_argument("--startups", type=int, default=None, help="starts per kernel for the startup median (default 5)")
    ap.add_argument("--rounds", type=int, default=None, help="pipelined bursts per kernel, best reported (default 2)")
    ap.add_argument("--gap-ms", type=float, default=5.0, help="pause before each round trip (default 5 ms)")
    ap.add_argument("--early-s", type=float, default=2.0,
                    help="seconds of round trips right after each start (default 2; 0 to skip)")
    ap.add_argument("--quick", action="store_true", help="fewer runs: 3 starts, 50 round trips, 500 pipelined, 1 round")
    ap.add_argument("--floor-messages", action="store_true",
                    help="the floor also publishes execute_input and execute_result (as a kernel must)")
    ap.add_argument("-q", "--quiet", action="store_true", help="print only the table and the verdict")
    args = ap.parse_args(argv)

    def pick(value: int | None, normal: int, quick: int) -> int:
        return max(1, value if value is not None else (quick if args.quick else normal))

    runs = pick(args.runs, 200, 50)
    burst = pick(args.pipelined, 2000, 500)
    starts = pick(args.startups, 5, 3)
    rounds = pick(args.rounds, 2, 1)
    gap_s = max(0.0, args.gap_ms) / 1e3
    if args.floor_messages:
        _floor_args.append("--execute-messages")

    def log(text: str) -> None:
        if not args.quiet:
            print(text, file=sys.stderr, flush=True)

    t_begin = time.perf_counter()
    log(f"startup: 1 untimed + {starts} starts per kernel, alternating, each followed by {args.early_s:g} s of "
        "round trips")
    try:
        first: dict[str, list[float]] = {}
        startup, startup_cpu, early = measure_startup(starts, args.early_s, gap_s, log, first)
    except (KernelStartError, BenchError) as exc:
        return failed(exc)

    kernels: dict[str, RunningKernel] = {}
    round_trips: dict[str, list[float]] = {s.label: [] for s in SPECS}
    rates: dict[str, list[float]] = {s.label: [] for s in SPECS}
    try:
        for spec in SPECS:
            kernels[spec.label] = RunningKernel.start(spec)
        log(f"execute round trip: {WARMUP_EXECUTES} warm-up, then {runs} per kernel, interleaved")
        for i in range(WARMUP_EXECUTES):
            for spec in alternating(i, SPECS):
                kernels[spec.label].round_trip()
        for i in range(runs):
            for spec in alternating(i, SPECS):
                if gap_s:
                    time.sleep(gap_s)
                round_trips[spec.label].append(kernels[spec.label].round_trip())
        for rk in kernels.values():
            rk.drain()
        log(f"pipelined: {rounds} burst(s) of {burst} silent executes per kernel, alternating")
        for i in range(rounds):
            for spec in alternating(i, SPECS):
                rate = kernels[spec.label].pipelined(burst)
                rates[spec.label].append(rate)
                log(f"  burst {i + 1}/{rounds} {spec.label:<9} {rate:,.0f} executes/s")
    except (KernelStartError, BenchError) as exc:
        return failed(exc)
    finally:
        for rk in kernels.values():
            rk.shutdown()

    a, b, f = AIKIT.label, IPYKERNEL.label, FLOOR.label

    def rt(label: str, p: float) -> float:
        return pct(round_trips[label], p) * 1e3

    def median_ms(values: dict[str, list[float]], label: str) -> float:
        return statistics.median(values[label]) * 1e3 if values.get(label) else float("nan")

    def early_p(label: str, p: float) -> float:
        return pct(early[label], p) * 1e3 if early.get(label) else float("nan")

    # name, aikit, ipykernel, floor, format, (target ratio, against "ipykernel" or "floor")
    rows: list[tuple[str, float, float, float, str, tuple[float, str] | None]] = [
        ("startup to kernel_info (s)", statistics.median(startup[a]), statistics.median(startup[b]),
         statistics.median(startup[f]), "{:.3f}", (TARGET_STARTUP_RATIO, b)),
        ("  its CPU time (s)", statistics.median(startup_cpu[a]), statistics.median(startup_cpu[b]),
         statistics.median(startup_cpu[f]), "{:.3f}", (TARGET_STARTUP_RATIO, b)),
        ("execute round trip p50 (ms)", rt(a, 50), rt(b, 50), rt(f, 50), "{:.3f}", (TARGET_ROUNDTRIP_P50_FLOOR_RATIO, f)),
        ("execute round trip p95 (ms)", rt(a, 95), rt(b, 95), rt(f, 95), "{:.3f}", None),
        ("execute round trip p99 (ms)", rt(a, 99), rt(b, 99), rt(f, 99), "{:.3f}", None),
        ("first execute after start (ms)", median_ms(first, a), median_ms(first, b), float("nan"), "{:.3f}", None),
        (f"first {args.early_s:g} s after start p95 (ms)", early_p(a, 95), early_p(b, 95), float("nan"), "{:.3f}", None),
        (f"first {args.early_s:g} s after start p99 (ms)", early_p(a, 99), early_p(b, 99), float("nan"), "{:.3f}", None),
        ("pipelined silent executes/s", max(rates[a]), max(rates[b]), max(rates[f]), "{:,.0f}", None),
    ]
    print()
    print(f"{'metric':<32} {'aikit':>10} {'ipykernel':>10} {'floor':>10}   {'aikit/ipyk':>10} {'aikit/floor':>11}   target")
    verdicts = []
    for name, va, vb, vf, fmt, target in rows:
        ratio_b = va / vb if vb else float("nan")
        ratio_f = va / vf if vf else float("nan")
        shown_f = fmt.format(vf) if vf == vf else "-"
        tgt = ""
        if target is not None:
            limit, against = target
            ratio = ratio_b if against == b else ratio_f
            tgt = f"aikit/{against} <= {limit:g}"
            verdicts.append((f"{name}: aikit/{against} {ratio:.3f}", limit, ratio <= limit))
        print(f"{name:<32} {fmt.format(va):>10} {fmt.format(vb):>10} {shown_f:>10}   {ratio_b:>10.3f} "
              f"{ratio_f:>11.3f}   {tgt}")
    if early.get(a) and round_trips[b]:
        early_p99, steady_p99 = early_p(a, 99), rt(b, 99)
        verdicts.append((f"aikit's p99 in the first {args.early_s:g} s after start ({early_p99:.3f} ms) vs ipykernel's "
                         f"steady-state p99 ({steady_p99:.3f} ms): ratio {early_p99 / steady_p99:.3f}", 1.0,
                         early_p99 <= steady_p99))
    print()
    print(f"startup: median of {starts} starts each; early: {sum(len(v) for v in early.values())} round trips in the "
          f"first {args.early_s:g} s of those starts; round trip: {runs} interleaved executes each after "
          f"{WARMUP_EXECUTES} warm-up ({args.gap_ms:g} ms gap); pipelined: best of {rounds} burst(s) of {burst}")
    if args.floor_messages:
        print("floor: publishes execute_input and execute_result too (--floor-messages)")
    print_load()
    for name, target, ok in verdicts:
        print(f"{'PASS' if ok else 'FAIL'}: {name} (target <= {target:g})")
    overall = all(ok for *_, ok in verdicts)
    print(f"overall: {'PASS' if overall else 'FAIL'}   (total benchmark time {time.perf_counter() - t_begin:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
