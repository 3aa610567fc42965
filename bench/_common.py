"""Helpers shared by the benchmarks: statistics, units, the report table, a silent OutputSink."""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

SizesT = TypeVar("SizesT")

# The checkout this file is in: the benchmarks import aikit from it, installed or not.
REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def add_tool(name: str) -> Any:
    """The trivial tool the benchmarks call: ``add(a, b)`` registered as ``name`` (category bench)."""
    from aikit_components.tools import tool

    @tool(name=name, category="bench")
    def add(a: int, b: int) -> int:
        """Add two integers.

        Args:
            a: The first integer.
            b: The second integer.
        """
        return a + b

    return add


class BenchError(RuntimeError):
    """A measurement could not be completed."""


class NullOutput:
    """An OutputSink that discards everything (the benchmarked code prints nothing)."""

    def write(self, name: str, text: str) -> None:
        pass

    def display(self, data: dict[str, Any], metadata: dict[str, Any], display_id: str | None, update: bool) -> None:
        pass

    def clear(self, wait: bool) -> None:
        pass

    def flush(self) -> None:
        pass

    def readline(self, prompt: str, password: bool = False) -> str | None:
        return None


def pct(values: list[float], p: float) -> float:
    """Percentile with linear interpolation (p in 0..100)."""
    xs = sorted(values)
    if len(xs) == 1:
        return xs[0]
    k = (len(xs) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def median(values: list[float]) -> float:
    return statistics.median(values)


def us(ns: float) -> float:
    return ns / 1e3


def ms(ns: float) -> float:
    return ns / 1e6


@dataclass
class Row:
    label: str
    value: str
    target: str = ""
    verdict: str = ""


def print_section(title: str, header: str, rows: list[Row]) -> None:
    print(title)
    width = max(len(r.label) for r in rows) + 2
    print(f"  {'':<{width}}{header:>14}")
    for r in rows:
        tail = f"   {r.target}  {r.verdict}" if r.target else ""
        print(f"  {r.label:<{width}}{r.value:>14}{tail}")
    print()


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def print_load() -> None:
    """The machine's load at the end of a benchmark (other work on it inflates every number)."""
    try:
        load = os.getloadavg()
        print(f"load average (1/5/15 min) at the end: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} "
              f"on {os.cpu_count()} CPUs (other work on the machine inflates every number)")
    except OSError:
        pass


def clustered_vectors(n: int, queries: int, *, clusters: int, dim: int, sigma: float = 1.0,
                      seed: int = 7) -> tuple[Any, Any]:
    """``n`` unit vectors and ``queries`` more (float32, numpy), drawn around ``clusters`` random
    centres with spread ``sigma``: data shaped like embeddings, for index benchmarks."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)

    def draw(count: int) -> Any:
        out = np.empty((count, dim), dtype=np.float32)
        for start in range(0, count, 20_000):
            m = min(20_000, count - start)
            block = centres[rng.integers(0, clusters, m)] + sigma * rng.standard_normal((m, dim)).astype(np.float32)
            out[start:start + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
        return out

    return draw(n), draw(queries)


def print_verdicts(verdicts: Sequence[tuple[str, bool]]) -> None:
    """The machine's load at the end (other work inflates every number), then each target's verdict."""
    print_load()
    for name, ok in verdicts:
        print(f"{verdict(ok)}: {name}")


def parse_args(doc: str, argv: Sequence[str] | None, *, quick_help: str, default_reps: int, quick_reps: int,
               extra: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.Namespace:
    """The options every benchmark takes (--quick, --reps, -q) plus any ``extra`` ones."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help=quick_help)
    ap.add_argument("--reps", type=int, default=None,
                    help=f"repetitions per measurement (default {default_reps}; {quick_reps} with --quick)")
    if extra is not None:
        extra(ap)
    ap.add_argument("-q", "--quiet", action="store_true", help="print only the tables and the verdict")
    return ap.parse_args(argv)


def chosen_sizes(args: argparse.Namespace, normal: SizesT, quick: SizesT) -> SizesT:
    """``quick`` or ``normal`` (a dataclass with a ``reps`` field), with --reps applied."""
    sizes = quick if args.quick else normal
    if args.reps is not None:
        sizes = dataclasses.replace(sizes, reps=max(1, args.reps))  # type: ignore[type-var]
    return sizes


def progress_log(quiet: bool) -> Callable[[str], None]:
    """A logger for progress lines (stderr), silent with -q."""
    def log(text: str) -> None:
        if not quiet:
            print(text, file=sys.stderr, flush=True)
    return log
