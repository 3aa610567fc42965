"""RAG benchmark: retrieval quality on the shipped corpus, and vector search at 100,000 x 384.

    .venv/bin/python bench/rag.py [--n 100000] [--queries 200] [--quick] [-q]

Everything runs in this process (no kernel): ``Components`` on a temporary data directory and a
``LuaEngine`` with every aikit global, as the kernel wires them.

1. corpus: ``examples/rag/corpus`` ingested with ``col:ingest_file`` (default chunking, the local
   all-MiniLM-L6-v2 model), then recall@5 and recall@1 of the 46 questions of
   ``examples/rag/questions.json`` per mode (lexical, vector, hybrid), through ``col:search``.
   A question counts when a hit comes from its source file and contains its answering passage.
2. vectors: N (default 100,000) unit vectors of 384 dimensions drawn around 1,000 Gaussian
   cluster centres (noise ``--sigma`` times the centre scale), plus 200 query vectors drawn the
   same way (not in the index). Ground truth: exact top-10 by numpy brute force (``X @ q``).
   - exact baseline: one query at a time, ``np.argpartition(X @ q)``: latency p50/p95.
   - raw index: ``hnswlib.Index`` (space ip, M=16, ef_construction=100, 2 threads) built directly;
     build time, memory (RSS growth), recall@10 and latency per ``ef`` in a sweep.
   - collection: the same vectors ingested into a RAG collection as documents carrying a
     precomputed ``vector`` (SQLite store + FTS5 + the HNSW index, same M/ef_construction): build
     time, files on disk, RSS growth. Then, from Lua, ``col:search(v, {k = 10})`` with ``v`` a
     Lua table of 384 numbers (mode vector: no embedding model involved): latency p50/p95 of the
     whole call as Lua sees it (Lua -> Python conversion of the vector, generation check, HNSW
     search, fetching the 10 chunks' text and metadata from SQLite, the result table built in
     Lua), and recall@10 against the exact top-10. Target: p95 <= 2 ms at recall@10 >= 0.95.

Latencies are per single query, timed with ``time.perf_counter_ns`` around each call (from Lua:
the cell loops over the queries and records ``os.clock``-free timestamps through a Python
clock binding, see ``_LUA_LOOP``). Ratios against the exact baseline are printed.

Exit status: 0 whether or not the targets are met (a benchmark, not a test); 2 if a
measurement fails.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BenchError, NullOutput, Row, clustered_vectors, pct, print_section, verdict  # noqa: E402

DIM = 384
CLUSTERS = 1000
M, EF_CONSTRUCTION = 16, 100
EF_SWEEP = (16, 32, 64, 128)
TARGET_P95_MS, TARGET_RECALL = 2.0, 0.95


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def clustered(n: int, queries: int, sigma: float, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    return clustered_vectors(n, queries, clusters=CLUSTERS, dim=DIM, sigma=sigma, seed=seed)


def recall(found: list[list[int]], truth: np.ndarray) -> float:
    k = truth.shape[1]
    return sum(len(set(f[:k]) & set(t.tolist())) for f, t in zip(found, truth)) / (k * len(truth))


def ms_stats(samples_ns: list[int]) -> tuple[float, float]:
    return pct(samples_ns, 50) / 1e6, pct(samples_ns, 95) / 1e6


# ----------------------------------------------------------------------------- setup
def open_lua(data: Path) -> tuple[Any, Any]:
    from aikit_components.components import Components
    from aikit_components.config import Config
    from aikit_kernel import runtime
    from aikit_kernel.lua_runtime import build_lua_runtime

    os.chdir(data)
    config = Config.load(cwd=data, env={}, user_dir=data / "user-config")
    components = Components.open(config=config, data_dir=data / "data", plugins=False, loop_getter=runtime.get_loop)
    engine = build_lua_runtime(NullOutput(), components).engine
    return engine, components


def run(engine: Any, code: str) -> list[Any]:
    result = engine.run_cell(code, "[bench]")
    if result.error is not None:
        raise BenchError(f"Lua failed: {result.error.evalue}")
    return result.values


# ----------------------------------------------------------------------------- 1. corpus
def bench_corpus(engine: Any, components: Any, quiet: bool) -> list[Row]:
    from aikit_components.rag.evaluation import answered, load_questions

    corpus = ROOT / "examples" / "rag" / "corpus"
    questions = load_questions(ROOT / "examples" / "rag" / "questions.json")
    os.environ["AIKIT_ALLOWED_PATHS"] = str(corpus)
    components.policy.allowed_paths.append(corpus.resolve())
    started = time.perf_counter()
    run(engine, f"corpus = RAG.collection('corpus') corpus:ingest_file('{corpus}')")
    ingest_s = time.perf_counter() - started
    collection = components.rag.collection("corpus")
    from aikit_kernel.lua.convert import lua_to_python

    rows = [Row("ingest (6 files, first load of the model included)", f"{ingest_s:.1f} s"),
            Row("chunks", str(collection.stats()["chunks"]))]
    results: dict[str, dict[int, float]] = {}
    for mode in ("lexical", "vector", "hybrid"):
        results[mode] = {}
        for k in (5, 1):
            hits_found = 0
            for q in questions:
                engine.set_global("q", q["question"].encode())
                hits = lua_to_python(run(engine, f"return corpus:search(q, {{k = {k}, mode = '{mode}'}})")[0],
                                     engine.internal[b"address"])
                hits_found += answered(hits, q)
            results[mode][k] = hits_found / len(questions)
    for mode, by_k in results.items():
        rows.append(Row(f"recall@5 {mode}", f"{by_k[5]:.3f}"))
    for mode, by_k in results.items():
        rows.append(Row(f"recall@1 {mode}", f"{by_k[1]:.3f}"))
    best = max(results["lexical"][5], results["vector"][5])
    rows.append(Row("hybrid@5 - max(lexical, vector)@5", f"{results['hybrid'][5] - best:+.3f}"))
    return rows


# ----------------------------------------------------------------------------- 2. vectors
_LUA_LOOP = r"""
local col, Q, k, clock = bench_col, bench_queries, bench_k, bench_clock
local times, found = {}, {}
for i = 1, #Q do
  local t0 = clock()
  local hits = col:search(Q[i], {k = k})
  times[i] = clock() - t0
  local ids = {}
  for j = 1, #hits do ids[j] = hits[j].document_id end
  found[i] = ids
end
return times, found
"""


def bench_vectors(engine: Any, components: Any, n: int, nq: int, sigma: float) -> tuple[list[Row], list[Row], list[Row]]:
    import hnswlib

    from aikit_components.rag.collection import Document

    X, Q = clustered(n, nq, sigma)
    truth = np.argsort(-(Q @ X.T), axis=1)[:, :10]

    # exact baseline, one query at a time
    exact_ns = []
    for q in Q:
        t0 = time.perf_counter_ns()
        scores = X @ q
        top = np.argpartition(-scores, 10)[:10]
        top[np.argsort(-scores[top])]
        exact_ns.append(time.perf_counter_ns() - t0)
    exact_p50, exact_p95 = ms_stats(exact_ns)

    # raw hnswlib
    gc.collect()
    before = rss_mb()
    started = time.perf_counter()
    raw = hnswlib.Index(space="ip", dim=DIM)
    raw.init_index(max_elements=n, M=M, ef_construction=EF_CONSTRUCTION)
    raw.add_items(X, np.arange(n), num_threads=os.cpu_count() or 1)
    raw_build = time.perf_counter() - started
    raw_mem = rss_mb() - before
    raw.set_num_threads(1)
    sweep_rows = []
    chosen = None
    for ef in EF_SWEEP:
        raw.set_ef(ef)
        lat, found = [], []
        for q in Q:
            t0 = time.perf_counter_ns()
            labels, _ = raw.knn_query(q[None, :], k=10)
            lat.append(time.perf_counter_ns() - t0)
            found.append(labels[0].tolist())
        r = recall(found, truth)
        p50, p95 = ms_stats(lat)
        sweep_rows.append(Row(f"ef_search={ef}", f"{r:.4f}", f"p50 {p50:.3f} ms  p95 {p95:.3f} ms"))
        if chosen is None and r >= TARGET_RECALL + 0.01:
            chosen = (ef, r, p50, p95)
    if chosen is None:
        chosen = (EF_SWEEP[-1], r, p50, p95)
    ef, raw_recall, raw_p50, raw_p95 = chosen
    del raw
    gc.collect()

    # the collection, built through the library, searched from Lua
    before = rss_mb()
    started = time.perf_counter()
    collection = components.rag.collection("vectors", M=M, ef_construction=EF_CONSTRUCTION, ef_search=ef)
    for start in range(0, n, 10_000):
        docs = [Document(str(i), f"v{i}", {"cluster_block": i // 10_000}, vector=X[i])
                for i in range(start, min(start + 10_000, n))]
        asyncio.run(collection.aingest(docs))
    col_build = time.perf_counter() - started
    col_mem = rss_mb() - before
    stats = collection.stats()
    engine.set_global("bench_col", run(engine, "return RAG.collection('vectors')")[0])
    engine.set_global("bench_queries", engine.table(*[engine.table(*q.tolist()) for q in Q]))
    engine.set_global("bench_k", 10)
    engine.set_global("bench_clock", time.perf_counter_ns)  # a bare Python callable: no (ok, ...) wrapper
    run(engine, _LUA_LOOP)  # warm-up
    times, found_lua = run(engine, _LUA_LOOP)
    lua_ns = [times[i] for i in range(1, nq + 1)]
    found = [[int(found_lua[i][j]) for j in range(1, len(found_lua[i]) + 1)] for i in range(1, nq + 1)]
    lua_recall = recall(found, truth)
    lua_p50, lua_p95 = ms_stats(lua_ns)
    ok = lua_p95 <= TARGET_P95_MS and lua_recall >= TARGET_RECALL

    main_rows = [
        Row("exact numpy search (baseline)", f"{exact_p50:.3f}", f"p95 {exact_p95:.3f} ms  recall 1.0000"),
        Row(f"raw hnswlib, ef_search={ef}", f"{raw_p50:.3f}",
            f"p95 {raw_p95:.3f} ms  recall@10 {raw_recall:.4f}  ({exact_p50 / raw_p50:.0f}x faster than exact)"),
        Row(f"Lua col:search(v, {{k = 10}}), ef={ef}", f"{lua_p50:.3f}",
            f"p95 {lua_p95:.3f} ms  recall@10 {lua_recall:.4f}  ({exact_p50 / lua_p50:.0f}x faster than exact, "
            f"{lua_p50 / raw_p50:.1f}x raw)  target p95 <= {TARGET_P95_MS} ms at recall >= {TARGET_RECALL}: {verdict(ok)}"),
    ]
    build_rows = [
        Row(f"raw hnswlib build (M={M}, ef_construction={EF_CONSTRUCTION})", f"{raw_build:.1f} s",
            f"RSS +{raw_mem:.0f} MB"),
        Row("collection build (SQLite + FTS5 + HNSW, 10 ingests)", f"{col_build:.1f} s",
            f"RSS +{col_mem:.0f} MB, on disk {stats['bytes'] / 2**20:.0f} MB ({stats['index']['kind']})"),
        Row("vectors alone (N x 384 x float32)", f"{X.nbytes / 2**20:.0f} MB"),
    ]
    return main_rows, sweep_rows, build_rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--sigma", type=float, default=1.0, help="cluster noise relative to the centre scale")
    parser.add_argument("--quick", action="store_true", help="20,000 vectors")
    parser.add_argument("-q", action="store_true", help="only the summary")
    args = parser.parse_args()
    n = 20_000 if args.quick else args.n
    with tempfile.TemporaryDirectory(prefix="aikit-bench-rag-") as tmp:
        engine, components = open_lua(Path(tmp))
        try:
            corpus_rows = bench_corpus(engine, components, args.q)
            main_rows, sweep_rows, build_rows = bench_vectors(engine, components, n, args.queries, args.sigma)
        except BenchError as exc:
            print(f"bench failed: {exc}", file=sys.stderr)
            return 2
        finally:
            engine.close()
            components.close()
    print_section("RAG corpus (examples/rag, 46 questions, default chunking, local all-MiniLM-L6-v2)", "value",
                  corpus_rows)
    print_section(f"Vector search, {n:,} x {DIM} clustered (sigma {args.sigma}), {args.queries} queries, k = 10",
                  "p50 ms", main_rows)
    if not args.q:
        print_section("ef_search sweep on the raw index (recall@10 vs exact)", "recall@10", sweep_rows)
    print_section("Build and memory", "value", build_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
