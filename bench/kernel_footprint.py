"""A kernel's footprint: RAG with the local embedder in a real kernel, and the kernel's memory,
printed against ipykernel's idle RSS.

    .venv/bin/python bench/kernel_footprint.py [--docs N] [--soak-cells N] [--quick] [-q]

Kernels are started with ``KernelManager`` (kernel names ``aikit`` and ``python3``), aikit's on a
throwaway data directory. RSS is the kernel process's ``VmRSS`` once it has settled (two readings
0.5 s apart within 0.5 MB: the deferred warm-up work is done).

1. ipykernel idle RSS (the reference of every memory figure).
2. aikit idle RSS.
3. RAG ingest, in the aikit kernel: one small document first (this loads the embedding model:
   timed, printed), then N generated documents of ~600 characters (default 400) in one
   ``col:ingest``: chunks per second with the local embedder (all-MiniLM-L6-v2 on the CPU).
4. aikit RSS with the embedding model loaded (after 3).
5. first search of a kernel: a new aikit kernel on the same data directory, its first cell
   ``RAG.collection(...):search(q)`` (hybrid: the query is embedded, so the model loads in that
   cell), then the same search again (model loaded) for comparison. In-process, the model is
   loaded once per process and shared by every collection (tests/rag/test_embedder_shared.py).
6. aikit RSS under the handle soak of bench/handles_soak.py (``--soak-cells``, default 1,000;
   its own kernel): the RSS after the last cell.

Exit status: 0 (a benchmark, not a test; nothing here has a pass/fail target but the printed
ratios); 1 if a kernel fails to start; 2 if a cell fails.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import REPO, BenchError, Row, parse_args, print_load, print_section, progress_log
from handles_soak import rss_mb, soak
from jupyter_client import KernelManager

START_TIMEOUT_S = 60.0
CELL_TIMEOUT_S = 600.0
WORDS = ["river", "mountain", "engine", "garden", "protocol", "lantern", "harvest", "signal", "orbit", "ledger",
         "compass", "meadow", "furnace", "archive", "beacon", "canyon", "quartz", "saddle", "thunder", "violet"]


class Kernel:
    """One started kernel with a blocking client (aikit on ``data_dir`` when given)."""

    def __init__(self, name: str, data_dir: Path | None = None) -> None:
        env = {**os.environ}
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: bytecode cached (see kernel_latency.py)
        cwd = None
        if data_dir is not None:
            env["AIKIT_DATA_DIR"] = str(data_dir)
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
            cwd = str(data_dir.parent)
        self.km = KernelManager(kernel_name=name)
        self.km.start_kernel(env=env, cwd=cwd)
        self.kc = self.km.client()
        self.kc.start_channels()
        try:
            self.kc.wait_for_ready(timeout=START_TIMEOUT_S)
        except RuntimeError:
            self.close()
            raise
        self.pid = self.km.provisioner.process.pid  # type: ignore[union-attr]

    def run(self, code: str) -> float:
        """Execute ``code``; its wall time (request to reply) in seconds."""
        t0 = time.perf_counter()
        reply = self.kc.execute(code, silent=False, store_history=False, reply=True, timeout=CELL_TIMEOUT_S)
        elapsed = time.perf_counter() - t0
        if reply["content"]["status"] != "ok":
            raise BenchError(f"cell failed: {reply['content'].get('ename')}: {reply['content'].get('evalue')}\n{code}")
        return elapsed

    def settled_rss(self, limit_s: float = 15.0) -> float:
        last = rss_mb(self.pid)
        end = time.monotonic() + limit_s
        while time.monotonic() < end:
            time.sleep(0.5)
            now = rss_mb(self.pid)
            if abs(now - last) < 0.5:
                return now
            last = now
        return last

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=False)

    def __enter__(self) -> Kernel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def documents_lua(n: int) -> str:
    """A Lua list of n generated documents of ~600 characters."""
    docs = []
    for i in range(n):
        words = [WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(90)]
        docs.append(f'{{id = "d{i}", text = "Document {i}. {" ".join(words)}."}}')
    return "{" + ",\n".join(docs) + "}"


def main(argv: list[str] | None = None) -> int:
    def extra(ap: Any) -> None:
        ap.add_argument("--docs", type=int, default=None, help="documents to ingest (default 400; 100 with --quick)")
        ap.add_argument("--soak-cells", type=int, default=None, help="handle soak cells (default 1000; 300 with --quick)")

    args = parse_args(__doc__, argv, quick_help="100 documents, 300 soak cells", default_reps=1, quick_reps=1,
                      extra=extra)
    n_docs = args.docs or (100 if args.quick else 400)
    soak_cells = args.soak_cells or (300 if args.quick else 1000)
    log = progress_log(args.quiet)
    t_begin = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="aikit-bench-footprint-") as tmp_name:
        data = Path(tmp_name) / "data"
        try:
            log("ipykernel: idle RSS")
            with Kernel("python3") as ipk:
                ipy_idle = ipk.settled_rss()
            log("aikit: idle RSS, model load, ingest")
            with Kernel("aikit", data) as k:
                aikit_idle = k.settled_rss()
                load_s = k.run('RAG.collection("bench"):ingest{{id = "first", text = "This one loads the model."}}')
                with_model = k.settled_rss()
                ingest_s = k.run(f'bench_r = RAG.collection("bench"):ingest({documents_lua(n_docs)})\n'
                                 f'assert(bench_r.documents == {n_docs})')
                chunks_reply = k.kc.execute_interactive('print(bench_r.chunks)', timeout=60,
                                                        output_hook=_capture(out := []))
                if chunks_reply["content"]["status"] != "ok" or not out:
                    raise BenchError("could not read the number of chunks ingested")
                chunks = int(out[0])
                after_ingest = k.settled_rss()
            log("aikit: first search of a new kernel")
            with Kernel("aikit", data) as k:
                search = 'assert(#RAG.collection("bench"):search("which document talks about the orbit", {k = 5}) == 5)'
                first_search_s = k.run(search)
                second_search_s = k.run(search)
        except RuntimeError as exc:
            print(f"error: a kernel did not start: {exc}", file=sys.stderr)
            return 1
        except (BenchError, TimeoutError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    log(f"aikit: handle soak, {soak_cells} cells")
    try:
        curve = soak(soak_cells, max(1, soak_cells // 4), log)
    except (BenchError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    soak_rss = curve[-1][1]

    print()
    print_section("1. RAG in a kernel, local embedder (all-MiniLM-L6-v2, CPU)", "", [
        Row("first ingest cell (model load included)", f"{load_s:.3f} s"),
        Row(f"ingest of {n_docs} documents ({chunks} chunks)", f"{ingest_s:.3f} s"),
        Row("  ingest throughput", f"{chunks / ingest_s:,.0f} chunks/s"),
        Row("first search of a new kernel (model load included)", f"{first_search_s:.3f} s"),
        Row("  the same search again (model loaded)", f"{second_search_s * 1e3:.1f} ms"),
    ])

    def vs(mb: float) -> str:
        return f"{mb / ipy_idle:.2f}x ipykernel idle"

    print_section("2. memory (VmRSS of the kernel process)", "RSS", [
        Row("ipykernel, idle (reference)", f"{ipy_idle:.1f} MB"),
        Row("aikit, idle", f"{aikit_idle:.1f} MB", vs(aikit_idle)),
        Row("aikit, embedding model loaded", f"{with_model:.1f} MB", vs(with_model)),
        Row(f"aikit, after ingesting {chunks} chunks", f"{after_ingest:.1f} MB", vs(after_ingest)),
        Row(f"aikit, handle soak after {curve[-1][0]} cells", f"{soak_rss:.1f} MB", vs(soak_rss)),
    ])
    print_load()
    print(f"total benchmark time {time.perf_counter() - t_begin:.1f} s")
    return 0


def _capture(out: list[str]) -> Any:
    def hook(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            out.extend(msg["content"]["text"].split())
    return hook


if __name__ == "__main__":
    sys.exit(main())
