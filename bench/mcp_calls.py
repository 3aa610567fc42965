"""The cost of an MCP round trip: a trivial tool called through aikit's MCP client, against aikit's
own server (``aikit mcp serve``) over stdio and over Streamable HTTP, next to the same tool called
directly through the tool registry.

    .venv/bin/python bench/mcp_calls.py [--calls N] [--reps R]

Each figure is the median over ``--reps`` rounds of ``--calls`` sequential awaited calls of
``base64_encode{text = "x"}`` on one loop (the kernel's way: the connection lives on the I/O loop).
It prints microseconds per call and the ratio to the direct call. A benchmark, not a test: exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# This file is named like the SDK package: its directory (sys.path[0] for a script) must not
# shadow `import mcp`.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

TOOL, ARGS = "base64_encode", {"text": "x"}


async def per_call_us(call: Any, calls: int, reps: int) -> float:
    """Median microseconds per call of ``await call()``."""
    for _ in range(min(calls, 20)):  # warm up
        await call()
    rounds = []
    for _ in range(reps):
        started = time.perf_counter()
        for _ in range(calls):
            await call()
        rounds.append((time.perf_counter() - started) / calls * 1e6)
    return statistics.median(rounds)


def start_http_server(env: dict[str, str], cwd: str) -> tuple[subprocess.Popen[str], str]:
    aikit = str(Path(sys.executable).with_name("aikit"))
    proc = subprocess.Popen([aikit, "mcp", "serve", "--port", "0", "--tools", TOOL], env=env, cwd=cwd, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    found: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "serving MCP on " in line and not found:
                found.append(line.rsplit(" ", 1)[1].strip())
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    ready.wait(60)
    if not found:
        proc.kill()
        raise SystemExit("bench/mcp_calls.py: aikit mcp serve --port 0 did not start")
    return proc, found[0]


async def main_async(calls: int, reps: int) -> dict[str, float]:
    from aikit_components.components import Components
    from aikit_components.config import Config

    work = tempfile.mkdtemp(prefix="aikit-bench-mcp-")
    env = {**os.environ, "PYTHONPATH": str(REPO), "AIKIT_DATA_DIR": os.path.join(work, "server-data"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    os.environ.update(env)  # the stdio server inherits it (tools.process_inherit_env below): this checkout
    config = Config({"security": {"allowed_commands": ["aikit"]}, "tools": {"process_inherit_env": True}})
    components = Components.open(config=config, data_dir=Path(work) / "data", plugins=False)
    ctx = components.tool_context()
    ctx.budget.max_tool_calls = None
    tools = components.tools
    http_proc, url = start_http_server(env, work)
    results: dict[str, float] = {}
    try:
        await components.mcp.connect("stdio", {"command": "aikit", "args": ["mcp", "serve", "--stdio", "--tools", TOOL]})
        await components.mcp.connect("http", {"url": url})
        results["direct"] = await per_call_us(lambda: tools.acall(TOOL, ARGS, ctx), calls, reps)
        results["stdio"] = await per_call_us(lambda: tools.acall(f"stdio.{TOOL}", ARGS, ctx), calls, reps)
        results["http"] = await per_call_us(lambda: tools.acall(f"http.{TOOL}", ARGS, ctx), calls, reps)
    finally:
        await components.mcp.aclose()
        http_proc.terminate()
        http_proc.wait(15)
        components.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="calls per round (default 200)")
    parser.add_argument("--reps", type=int, default=5, help="rounds (default 5)")
    args = parser.parse_args()
    results = asyncio.run(main_async(args.calls, args.reps))
    direct = results["direct"]
    print(f"{'path':<34}{'us/call':>12}{'ratio':>10}")
    for key, label in (("direct", "registry.acall (no MCP)"), ("stdio", "MCP over stdio (aikit mcp serve)"),
                       ("http", "MCP over Streamable HTTP")):
        print(f"{label:<34}{results[key]:>12.1f}{results[key] / direct:>10.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
