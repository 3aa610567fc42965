"""The kill switch: how long ``aikit.stop`` takes to stop a run with a model call, a program and an
HTTP request in flight.

    .venv/bin/python bench/stop.py [--reps N]

Everything runs in this process on a ``Components`` (temporary data directory, ``plugins=False``)
and aikit's I/O loop, against a local HTTP server (127.0.0.1, an ephemeral port) that answers the
model call and the HTTP request with a first part and then holds the rest until released. Each
repetition runs a parallel workflow with three steps: an ``llm`` step (the openai provider pointed
at the server), a ``command`` step (``sleep 3600``) and an ``http_request`` step; once both
connections are open and the program runs, it publishes ``aikit.stop`` and measures

- stopped: until the run has ended (every step recorded ``cancelled``: the record is checked);
- closed: until this process has no connection to the server left and the program is gone.

It prints the median and the worst over ``--reps`` (default 5). The target is 1 s. Exit status
0 (a benchmark, not a test); 2 when a run does not stop as it should.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (puts this checkout on sys.path)
import psutil


class HoldingServer:
    """Answers every request with the first half of its body, then waits until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "1000")
                self.end_headers()
                self.wfile.write(b'{"id": "held", ')
                self.wfile.flush()
                server.release.wait(60)

            do_GET = do_POST

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def in_flight(port: int) -> tuple[int, int]:
    """(connections to the server, live `sleep 3600` programs) of this process."""
    me = psutil.Process()
    connections = sum(1 for c in me.net_connections(kind="tcp")
                      if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED)
    programs = 0
    for child in me.children(recursive=True):
        try:
            if child.cmdline()[-1:] == ["3600"] and child.status() != psutil.STATUS_ZOMBIE:
                programs += 1
        except psutil.NoSuchProcess:
            pass
    return connections, programs


def wait_for(condition: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench/stop.py: gave up waiting: {what}")
        time.sleep(0.002)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    from aikit_components.components import Components
    from aikit_components.config import Config
    from aikit_components.workflows.engine import run as run_workflow
    from aikit_components.workflows.model import Step, Workflow
    from aikit_kernel import runtime

    server = HoldingServer()
    stopped_ms: list[float] = []
    closed_ms: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.chdir(root)
        (root / "aikit.toml").write_text(f'[providers.openai]\nbase_url = "{server.url}/v1"\napi_key = "k"\n'
                                         "retries = 0\n\n[security]\nallow_private_hosts = true\n")
        # (a project file grants rights, such as reaching the local server, only when trusted)
        config = Config.load(cwd=root, env={"AIKIT_TRUST_PROJECT_CONFIG": "1"}, user_dir=root / "user")
        c = Components.open(config=config, data_dir=root / "data", plugins=False, loop_getter=runtime.get_loop)
        _ = c.tools
        ended: dict[str, str] = {}
        c.events.subscribe("workflow.step.failed", lambda e: ended.__setitem__(e.payload["step"], e.payload["status"]))
        try:
            for _rep in range(args.reps):
                wf = Workflow("busy", mode="parallel", fail_fast=False, steps=[
                    Step("model", kind="llm", params={"prompt": "talk", "model": "openai/m"}),
                    Step("program", kind="command", params={"command": ["sleep", "3600"]}),
                    Step("request", kind="tool", target="http_request", params={"url": f"{server.url}/slow"}),
                ])
                future = runtime.submit(run_workflow(wf, components=c))
                wait_for(lambda: in_flight(server.port) == (2, 1), "a model call, a request and a program in flight")
                started = time.perf_counter()
                c.events.publish("aikit.stop", {"by": "bench"}, source="bench")
                wait_for(future.done, "the run to end")
                stopped_ms.append((time.perf_counter() - started) * 1000)
                wait_for(lambda: in_flight(server.port) == (0, 0), "the connections closed and the program gone")
                closed_ms.append((time.perf_counter() - started) * 1000)
                if sorted(ended) != ["model", "program", "request"] or set(ended.values()) != {"cancelled"}:
                    print(f"bench/stop.py: the steps ended {ended}, not all cancelled")
                    return 2
                ended.clear()
        finally:
            runtime.submit(c.models.aclose()).result(10)
            c.close()
            server.close()
    print(f"{'run stopped (all steps cancelled)':<45} median {statistics.median(stopped_ms):7.1f} ms   "
          f"worst {max(stopped_ms):7.1f} ms")
    print(f"{'connections closed and program gone':<45} median {statistics.median(closed_ms):7.1f} ms   "
          f"worst {max(closed_ms):7.1f} ms")
    print(f"target: 1000 ms; {args.reps} runs; load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
