"""The operation pipeline's cost: today's code against the code before the pipeline, same run.

    .venv/bin/python bench/pipeline.py [--baseline REV] [--reps N] [--quick] [--only NAMES]

Every operation (tool call, State write, model call, agent run, workflow step, cell) now runs
through ``aikit_components.operations``. This benchmark checks that the pipeline costs no more than
the hand-written paths it replaced. It checks out ``REV`` (default: the last commit before the
pipeline) into a temporary git worktree and runs ``bench/pipeline_probe.py`` against that tree and
against this checkout, alternating, ``--reps`` times each (default 7; 3 with ``--quick``). Each
probe is a fresh process (``PYTHONPATH`` names the tree under test) that measures:

- a trivial tool called from Lua (``Tool.call("bench_add", {a = i, b = 1})`` in a loop, minus an
  empty loop), with no hook and with one ``tool.before`` hook registered;
- ``State.get`` from Lua; ``State.get``/``State.set`` from Python on the memory backend, and
  ``State.set`` with a ``state.write.before`` hook;
- ``engine.run`` of the 10,000-step DAG of ``bench/workflows.py``.

With ``--only events,hooks,budgets`` the probe of this checkout keeps only those interceptors
(the concerns the code before the pipeline had: events, hooks, the tool-call budget), so the
pipeline itself is compared, without what later issues added as interceptors (the kill switch,
tracing, the audit ledger, approvals, the effect journal).

It prints the median of each figure for both trees and the ratio (pipeline / before). A ratio
at or below about 1.05 is "no slowdown" on this shared machine. Exit status 0 (a benchmark, not a
test); 2 when a probe fails.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROBE = Path(__file__).resolve().parent / "pipeline_probe.py"
BASELINE = "9ddefb9"  # main before aikit_components/operations landed

ROWS = [
    ("lua_tool_call", "tool call from Lua, no hooks", "us", 1e3),
    ("lua_tool_call_hooked", "tool call from Lua, one tool.before hook", "us", 1e3),
    ("lua_state_get", "State.get from Lua", "us", 1e3),
    ("py_state_get", "State.get from Python (memory)", "us", 1e3),
    ("py_state_set", "State.set from Python (memory)", "us", 1e3),
    ("py_state_set_hooked", "State.set, one state.write.before hook", "us", 1e3),
    ("dag_10000", "10,000-step DAG, engine.run", "ms", 1e6),
]


def probe(tree: Path, calls: int, state_calls: int, only: str | None = None) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    if only:
        env["AIKIT_PROBE_INTERCEPTORS"] = only
    done = subprocess.run([sys.executable, str(PROBE), str(calls), str(state_calls)], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"probe failed in {tree}:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default=BASELINE, help="the commit to compare with (default %(default)s)")
    parser.add_argument("--reps", type=int, default=None, help="probe runs per tree (default 7, --quick 3)")
    parser.add_argument("--quick", action="store_true", help="fewer and shorter runs")
    parser.add_argument("--only", metavar="NAMES", help="keep only these interceptors in this checkout's probe "
                        "(comma-separated names, e.g. events,hooks,budgets)")
    args = parser.parse_args(argv)
    reps = args.reps or (3 if args.quick else 7)
    calls, state_calls = (5_000, 20_000) if args.quick else (20_000, 100_000)
    with tempfile.TemporaryDirectory(prefix="aikit-baseline-") as tmp:
        base = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(base), args.baseline],
                       check=True)
        try:
            results: dict[str, list[dict[str, float]]] = {"before": [], "pipeline": []}
            for rep in range(reps):
                for label, tree in (("before", base), ("pipeline", REPO)):
                    results[label].append(probe(tree, calls, state_calls, args.only if tree is REPO else None))
                print(f"  run {rep + 1}/{reps} done", file=sys.stderr)
        except RuntimeError as exc:
            print(exc, file=sys.stderr)
            return 2
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base)], check=False)
    chain = f", interceptors: {args.only}" if args.only else ", every interceptor"
    print(f"operation pipeline vs {args.baseline} (median of {reps} fresh processes each, alternating{chain})")
    print(f"{'measurement':<44}{'before':>12}{'pipeline':>12}{'ratio':>8}")
    for key, title, unit, scale in ROWS:
        before = statistics.median(r[key] for r in results["before"]) / scale
        after = statistics.median(r[key] for r in results["pipeline"]) / scale
        print(f"{title + ' (' + unit + ')':<44}{before:>12.2f}{after:>12.2f}{after / before:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
