"""The audit ledger's cost per tool call, and how fast a ledger verifies.

    .venv/bin/python bench/ledger.py [--calls N] [--data-dir DIR]

Calls a trivial Python tool ``N`` times (default 2,000) through the process's pipeline, as Lua's
``Tool.call`` does, with ``[audit] enabled = true`` (each call appends one entry, committed before
the call returns) and with it off, in the same run; then times ``AuditLedger.record`` alone (a
durable entry: one transaction with ``synchronous=FULL``, one fsync), the same from 8 threads at
once (group commit: entries recorded at the same time share a transaction), and ``verify`` over
the entries written. The data directory (default: a temporary directory) decides the fsync cost:
put it on the disk you will use.
Exit status 0 (a benchmark, not a test).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

import _common  # noqa: F401  (puts this checkout on sys.path)


def per_call_us(calls: int, data_dir: Path, audit: bool) -> float:
    from aikit_components.components import Components
    from aikit_components.config import Config

    conf_dir = data_dir / ("on" if audit else "off")
    conf_dir.mkdir(parents=True, exist_ok=True)
    (conf_dir / "aikit.toml").write_text(f"[audit]\nenabled = {'true' if audit else 'false'}\n")
    config = Config.load(cwd=conf_dir, env={}, user_dir=conf_dir / "user")
    c = Components.open(config=config, data_dir=conf_dir / "data", plugins=False)
    try:
        c.tools.register(_common.add_tool("bench_add"))
        ctx = c.tool_context()
        ctx.budget.max_tool_calls = None
        for i in range(50):  # warm up
            c.tools.call("bench_add", {"a": i, "b": 1}, ctx)
        started = time.perf_counter()
        for i in range(calls):
            c.tools.call("bench_add", {"a": i, "b": 1}, ctx)
        return (time.perf_counter() - started) / calls * 1e6
    finally:
        c.close()


def threaded_record_us(ledger: object, calls: int, threads: int = 8) -> float:
    """Per entry, ``calls`` entries recorded by ``threads`` threads at once."""
    each = max(calls // threads, 1)

    def work(n: int) -> None:
        for i in range(each):
            ledger.record("tool", {"name": "bench_add", "status": "ok", "thread": n, "i": i})  # type: ignore[attr-defined]

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return (time.perf_counter() - started) / (each * threads) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--data-dir", help="where to write (default: a temporary directory)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.data_dir) as tmp:
        root = Path(tmp)
        off = per_call_us(args.calls, root, audit=False)
        on = per_call_us(args.calls, root, audit=True)
        from aikit_components.control.audit import FILE_NAME, AuditLedger

        ledger = AuditLedger(root / "on" / "data" / FILE_NAME)
        started = time.perf_counter()
        for i in range(args.calls):
            ledger.record("tool", {"name": "bench_add", "status": "ok", "i": i})
        record_us = (time.perf_counter() - started) / args.calls * 1e6
        threaded_us = threaded_record_us(ledger, args.calls)
        started = time.perf_counter()
        result = ledger.verify()
        verify_s = time.perf_counter() - started
        ledger.close()
    print(f"data directory on: {os.path.realpath(args.data_dir or tempfile.gettempdir())}")
    print(f"{'tool call, audit off':<40} {off:10.1f} us")
    print(f"{'safe tool call, audit on (durable)':<40} {on:10.1f} us   (+{on - off:.1f} us a call)")
    print(f"{'AuditLedger.record alone':<40} {record_us:10.1f} us")
    print(f"{'AuditLedger.record, 8 threads at once':<40} {threaded_us:10.1f} us an entry (group commit)")
    print(f"{'verify':<40} {verify_s * 1e3:10.1f} ms for {result.entries} entries "
          f"({verify_s / max(result.entries, 1) * 1e6:.1f} us an entry), intact={result.ok}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
