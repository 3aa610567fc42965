"""A kernel process: settings, sockets, history, signals and watchers around one :class:`Kernel`
(``aikit serve``, ``python -m aikit_kernel``)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from typing import Any

from aikit_components.liveness import process_alive

from . import runtime
from .collector import space_full_collections
from .history import HistoryStore, PostgresHistoryStore, open_history
from .kernel import SWITCH_INTERVAL_S, Kernel
from .protocol import Protocol
from .transport import ConnectionFileError, Transport

log = logging.getLogger(__name__)


async def watch_parent(kernel: Kernel, interval: float = 1.0) -> None:
    """Shut down when the Jupyter client that started us dies, as ipykernel does, so a crashed
    frontend leaves no orphan kernels. Only for kernels started by a client (it sets
    JPY_PARENT_PID); a kernel started by hand stays up."""
    try:
        parent = int(os.environ["JPY_PARENT_PID"])
    except (KeyError, ValueError):
        return
    while not kernel.shutting_down:
        if os.getppid() == 1 or not process_alive(parent):
            log.warning("parent process %d is gone: shutting down", parent)
            kernel.request_shutdown()
            return
        await asyncio.sleep(interval)


async def watch_idle(kernel: Kernel, timeout_s: float) -> None:
    """Shut down once no request has arrived and nothing has run for ``timeout_s`` seconds
    (``aikit serve --idle-timeout``)."""
    while not kernel.shutting_down:
        idle = time.monotonic() - kernel.last_activity
        if not kernel.busy and idle >= timeout_s:
            log.warning("idle for %.0f s (--idle-timeout): shutting down", idle)
            kernel.request_shutdown()
            return
        await asyncio.sleep(max(0.2, min(1.0, timeout_s - idle)))


def _prometheus_readers(port: int) -> list[Any]:
    """A Prometheus metric reader, its text served on 127.0.0.1:``port`` (printed)."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import start_http_server

    reader = PrometheusMetricReader()
    server, _ = start_http_server(port, addr="127.0.0.1")
    print(f"aikit kernel: metrics (Prometheus) on http://127.0.0.1:{server.server_port}/metrics", file=sys.stderr,
          flush=True)
    return [reader]


def run_kernel(connection_file: str | None, dap_port: int | None = None, metrics_port: int | None = None, *,
               idle_timeout_s: float | None = None, pid_file: str | None = None) -> int:
    """Start a kernel on ``connection_file`` and serve until shutdown; returns the exit status.
    IDEs can also attach to the kernel's Lua debugger over DAP on ``dap_port`` (default: the
    ``kernel.dap_port`` setting; 0 here means any free port, printed). ``metrics_port``: serve
    the kernel's metrics as Prometheus text on 127.0.0.1 at that port (``/metrics``).
    ``idle_timeout_s``: shut down after that long without requests; ``pid_file``: written at
    start, removed at exit. SIGTERM shuts down cleanly (a running cell is interrupted, the session
    and the stores are closed)."""
    from aikit_components.config import data_dir

    from .interpreter import LuaInterpreter
    from .lua_runtime import open_lua_runtime
    from .settings import load_settings
    from .transport import ConnectionInfo

    # Several threads share the GIL here (the I/O loop, the Lua thread, the control thread, the
    # span writer, the group-commit writers, the deferred warm-up imports); a thread that wants it
    # waits up to one switch interval per thread ahead of it. 5 ms (the default) is several round
    # trips' worth of waiting whenever another thread computes. 0.1 ms: with 1,000 agent runs
    # starting at once, kernel_info on control answered in at most 8-17 ms (six runs; 0.5 ms gave
    # 14-88 ms), at no cost in the runs' wall time or the execute round trip (bench/many_agents.py,
    # bench/kernel_latency.py).
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    space_full_collections()
    loaded = load_settings()
    settings = loaded.settings
    logging.basicConfig(level=settings.log_level, stream=sys.stderr,
                        format="[aikit %(levelname)s %(name)s] %(message)s")
    if dap_port is None:
        dap_port = settings.dap_port
    if connection_file and os.path.exists(connection_file):
        try:
            info = ConnectionInfo.load(connection_file)
        except (ConnectionFileError, OSError) as exc:
            print(f"aikit kernel: {exc}", file=sys.stderr)
            return 2
    else:
        info = ConnectionInfo.fresh()
    protocol = Protocol(info.key, info.signature_scheme)

    async def setup() -> Transport:
        return Transport(info)

    transport = runtime.run_sync(setup())
    if connection_file and not os.path.exists(connection_file):
        info.write(connection_file)
        print(f"aikit kernel: connect with `jupyter console --existing {connection_file}`", file=sys.stderr)
    try:
        history: HistoryStore | PostgresHistoryStore | None = open_history(data_dir(), protocol.session_id, loaded.config)
    except Exception as exc:  # an unwritable data dir must not stop the kernel
        log.warning("history disabled: %s", exc)
        history = None
    readers = _prometheus_readers(metrics_port) if metrics_port is not None else None
    # The tool registry is warmed by Kernel.serve_forever in the first idle second, not by a
    # thread of its own (Components.warm_up): its imports (~300 ms of CPU) held the GIL while the
    # first cells ran (issue 11, early p99).
    # Without a DAP server to start on the interpreter's debugger first, the interpreter is built on
    # the main thread once the sockets are served: kernel_info is answered meanwhile.
    kernel = Kernel(transport, protocol, lambda out: LuaInterpreter(open_lua_runtime(out, loaded=loaded,
                                                                                     metric_readers=readers)),
                    history, max_message_bytes=settings.max_message_bytes,
                    early_info=LuaInterpreter if dap_port is None else None, freeze_heap=True)
    runtime.on_sigint(kernel.interrupt_from_signal)
    runtime.on_signal(signal.SIGTERM, lambda: kernel.request_shutdown("interrupted"))
    runtime.submit(watch_parent(kernel))
    if idle_timeout_s:
        runtime.submit(watch_idle(kernel, idle_timeout_s))
    if pid_file:
        with open(pid_file, "w", encoding="utf-8") as f:
            f.write(f"{os.getpid()}\n")
    transport.start_heartbeat()
    if dap_port is not None and kernel.interpreter.debugger is not None:
        from .debug.server import DapServer

        dap = DapServer(kernel.interpreter.debugger)
        try:
            bound = runtime.run_sync(dap.listen("127.0.0.1", dap_port), timeout=10)
            print(f"aikit kernel: Lua debugger (DAP) on 127.0.0.1:{bound}", file=sys.stderr, flush=True)
        except OSError as exc:
            log.error("cannot serve DAP on port %d: %s", dap_port, exc)
    serving = runtime.submit(kernel.serve_sockets())
    kernel.messenger.status("starting", None)
    try:
        kernel.serve_forever()
    finally:
        serving.cancel()

        async def close() -> None:
            if history is not None:
                history.close()
            transport.close()

        try:
            runtime.run_sync(close(), timeout=5)
        except Exception:
            log.exception("error while closing sockets")
        if pid_file:
            try:
                os.unlink(pid_file)
            except OSError:
                pass
    return 0
