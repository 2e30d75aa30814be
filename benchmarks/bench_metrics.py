"""Time hashbench.retrieval.metrics against a naive per-query NumPy baseline, and measure its memory.

Run from the repository root: ``python -m benchmarks.bench_metrics [--quick] [--queries Q]
[--database N] [--bits K] [--radius R]``.  Prints a table (one row per metric: map_at_k, pr_curve,
precision_at_n, recall_at_n, precision_at_radius), checks that both implementations agree to 1e-6 (and, where the compiled ranking
kernel is installed, times the NumPy fallback too: its values must be identical), then measures in a
subprocess the peak memory of ``pr_curve`` on 5,000 × 200,000 × 64 (peak RSS and the
tracemalloc peak of the call) next to what a dense vectorised evaluation would need.  The
final line is ``metrics: <smallest speed-up>``; JSON in ``benchmarks/results/metrics.json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from benchmarks.common import write_report
from hashbench.retrieval import metrics as metrics_module
from hashbench.retrieval.metrics import (DEFAULT_RADIUS, map_at_k, pr_curve, precision_at_n, precision_at_radius,
                                         ranking_backend, recall_at_n)

TOLERANCE = 1e-6
TARGET = 20.0
MEMORY_LIMIT = 2 * 1024**3
#: Bytes per (query, item) pair of a dense vectorised evaluation: float32 distances, int64
#: argsort indices, float32 label products, the gathered bool relevance, int64 cumulative hits.
DENSE_BYTES_PER_PAIR = 4 + 8 + 4 + 1 + 8
#: Random 64-bit codes have no item within 2 bits of a query (probability about 1e-16), so both
#: sides would agree on an all-zero precision; within 24 bits lies about 2.5% of the database,
#: which makes the comparison real.  The time does not depend on the radius.
BENCH_RADIUS = 24


# ---------------------------------------------------------------------------
# Naive baseline: one query at a time, the way research evaluation code does it.
# The only change from the usual code is kind="stable" in argsort: the default sort
# breaks distance ties arbitrarily, so its numbers would not be comparable at all.


def naive_ranking(
    qb: np.ndarray, db: np.ndarray, ql: np.ndarray, dl: np.ndarray
) -> Iterator[np.ndarray]:
    """Yield each query's relevance vector along its ranking."""
    k = qb.shape[1]
    for i in range(qb.shape[0]):
        hamm = 0.5 * (k - db @ qb[i])
        order = np.argsort(hamm, kind="stable")
        yield (dl @ ql[i] > 0)[order]


def naive_map(qb, db, ql, dl, topk: int | None) -> float:
    aps = []
    for gnd in naive_ranking(qb, db, ql, dl):
        tgnd = gnd if topk is None else gnd[:topk]
        tsum = int(tgnd.sum())
        if tsum == 0:
            aps.append(0.0)
            continue
        count = np.linspace(1, tsum, tsum)
        tindex = np.flatnonzero(tgnd) + 1.0
        aps.append(float(np.mean(count / tindex)))
    return float(np.mean(aps))


def naive_precision_at_n(qb, db, ql, dl, ns: Sequence[int]) -> np.ndarray:
    sums = np.zeros(len(ns))
    for gnd in naive_ranking(qb, db, ql, dl):
        for i, n in enumerate(ns):
            m = min(n, len(gnd))
            sums[i] += gnd[:m].sum() / m
    return sums / qb.shape[0]


def naive_recall_at_n(qb, db, ql, dl, ns: Sequence[int]) -> np.ndarray:
    """DeepHash-pytorch's recall along the ranking (cumsum / all relevant), read at each N;
    a query without relevant items scores 0, as hashbench defines it."""
    sums = np.zeros(len(ns))
    for gnd in naive_ranking(qb, db, ql, dl):
        total = gnd.sum()
        if total == 0:
            continue
        for i, n in enumerate(ns):
            sums[i] += gnd[: min(n, len(gnd))].sum() / total
    return sums / qb.shape[0]


def naive_precision_at_radius(qb, db, ql, dl, radius: int) -> float:
    """DHTA's ``hamming_precision``: per query, the items within the radius and the relevant
    ones among them (0 when none is within)."""
    k = qb.shape[1]
    scores = []
    for i in range(qb.shape[0]):
        within = 0.5 * (k - db @ qb[i]) <= radius
        total = int(within.sum())
        hits = int(np.count_nonzero(within & (dl @ ql[i] > 0)))
        scores.append(hits / total if total else 0.0)
    return float(np.mean(scores))


def naive_pr_curve(qb, db, ql, dl, levels: np.ndarray) -> np.ndarray:
    sums = np.zeros(len(levels))
    counts = np.zeros(len(levels))
    for gnd in naive_ranking(qb, db, ql, dl):
        total = int(gnd.sum())
        positions = np.flatnonzero(gnd) + 1
        for i, r in enumerate(levels):
            n = int(np.floor(r * total + 1e-9))
            if n > 0:
                sums[i] += n / positions[n - 1]
                counts[i] += 1
    with np.errstate(invalid="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


# ---------------------------------------------------------------------------


def make_data(queries: int, database: int, bits: int, classes: int, seed: int):
    rng = np.random.default_rng(seed)
    qb = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(queries, bits))
    db = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(database, bits))
    # Multi-hot labels with about 1.5 classes per item; a few items have none.
    ql = (rng.random((queries, classes)) < 1.5 / classes).astype(np.float32)
    dl = (rng.random((database, classes)) < 1.5 / classes).astype(np.float32)
    return qb, db, ql, dl


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    best, value = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best, value


def max_diff(a: object, b: object) -> float:
    a = np.atleast_1d(np.asarray(a, dtype=np.float64))
    b = np.atleast_1d(np.asarray(b, dtype=np.float64))
    if a.shape != b.shape or not np.array_equal(np.isnan(a), np.isnan(b)):
        return float("inf")
    both = ~np.isnan(a)
    return float(np.max(np.abs(a[both] - b[both]), initial=0.0))


def memory_child(queries: int, database: int, bits: int, classes: int, seed: int) -> dict[str, float]:
    """In this (fresh) process: peak RSS and tracemalloc peak of one ``pr_curve`` call."""
    import tracemalloc

    qb, db, ql, dl = make_data(queries, database, bits, classes, seed)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tracemalloc.start()
    start = time.perf_counter()
    pr_curve(qb, db, ql, dl, np.arange(1, 101) / 100.0)
    seconds = time.perf_counter() - start
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"queries": queries, "database": database, "bits": bits, "seconds": seconds,
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "rss_before_call_bytes": rss_before, "tracemalloc_peak_bytes": traced_peak,
            "dense_naive_bytes": queries * database * DENSE_BYTES_PER_PAIR}


def measure_memory(queries: int, database: int, bits: int, classes: int, seed: int) -> dict[str, float]:
    """Run :func:`memory_child` in a subprocess so that its peak RSS is the call's alone."""
    code = ("import json, sys; from benchmarks.bench_metrics import memory_child; "
            f"print(json.dumps(memory_child({queries}, {database}, {bits}, {classes}, {seed})))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[1])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="500 x 20,000 timing and 1,000 x 200,000 memory instead of the issue's sizes")
    parser.add_argument("--queries", type=int, default=None, help="default 2,000 (quick 500)")
    parser.add_argument("--database", type=int, default=None, help="default 50,000 (quick 20,000)")
    parser.add_argument("--memory-queries", type=int, default=None, help="default 5,000 (quick 1,000); 0 skips")
    parser.add_argument("--memory-database", type=int, default=200000)
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--topk", type=int, default=None, help="MAP cut-off (default: all)")
    parser.add_argument("--radius", type=int, default=BENCH_RADIUS,
                        help=f"Hamming radius of precision_at_radius (default {BENCH_RADIUS}; the metric's own "
                             f"default is {DEFAULT_RADIUS})")
    parser.add_argument("--repeat", type=int, default=3, help="runs of hashbench (best kept)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/metrics.json")
    args = parser.parse_args(argv)
    args.queries = args.queries or (500 if args.quick else 2000)
    args.database = args.database or (20000 if args.quick else 50000)
    if args.memory_queries is None:
        args.memory_queries = 1000 if args.quick else 5000

    qb, db, ql, dl = make_data(args.queries, args.database, args.bits, args.classes, args.seed)
    ns = list(range(100, 1001, 100))
    levels = np.arange(1, 101) / 100.0
    data = (qb, db, ql, dl)
    cases = [
        ("map_at_k", lambda: map_at_k(*data, args.topk), lambda: naive_map(*data, args.topk)),
        ("pr_curve", lambda: pr_curve(*data, levels)[1], lambda: naive_pr_curve(*data, levels)),
        ("precision_at_n", lambda: precision_at_n(*data, ns), lambda: naive_precision_at_n(*data, ns)),
        ("recall_at_n", lambda: recall_at_n(*data, ns), lambda: naive_recall_at_n(*data, ns)),
        ("precision_at_radius", lambda: precision_at_radius(*data, args.radius),
         lambda: naive_precision_at_radius(*data, args.radius)),
    ]
    print(
        f"{args.queries} queries x {args.database} database x {args.bits} bits, "
        f"{args.classes} classes, topk={args.topk}, torch threads={torch.get_num_threads()}, "
        f"ranking: {ranking_backend()}"
    )
    compiled = ranking_backend() == "compiled"
    print(f"{'metric':<20}{'hashbench s':>13}{'naive s':>11}{'speed-up':>10}{'max |diff|':>13}"
          + (f"{'NumPy ranking s':>17}{'speed-up':>10}" if compiled else ""))
    results = {}
    ok = True
    for name, fast, naive in cases:
        fast_s, fast_value = timed(fast, args.repeat)
        naive_s, naive_value = timed(naive, 1)
        diff = max_diff(fast_value, naive_value)
        ok &= diff <= TOLERANCE
        results[name] = {
            "hashbench_s": fast_s,
            "naive_s": naive_s,
            "speedup": naive_s / fast_s,
            "max_abs_diff": diff,
            "agree": diff <= TOLERANCE,
        }
        row = f"{name:<20}{fast_s:>13.3f}{naive_s:>11.3f}{naive_s / fast_s:>9.1f}x{diff:>13.2e}"
        if compiled:  # what an installation without a C compiler gets: the NumPy fallback
            kernel, metrics_module._kernel = metrics_module._kernel, None
            try:
                numpy_s, numpy_value = timed(fast, args.repeat)
            finally:
                metrics_module._kernel = kernel
            identical = max_diff(numpy_value, fast_value) == 0.0
            ok &= identical
            results[name].update(numpy_ranking_s=numpy_s, numpy_ranking_speedup=naive_s / numpy_s,
                                 numpy_ranking_identical=identical)
            row += f"{numpy_s:>17.3f}{naive_s / numpy_s:>9.1f}x"
        print(row)

    worst = min(r["speedup"] for r in results.values())
    memory = None
    if args.memory_queries > 0:
        memory = measure_memory(args.memory_queries, args.memory_database, args.bits, args.classes, args.seed)
        memory["within_limit"] = memory["peak_rss_bytes"] <= MEMORY_LIMIT
        gib = 1024**3
        print(f"pr_curve memory, {args.memory_queries} x {args.memory_database} x {args.bits}: "
              f"peak RSS {memory['peak_rss_bytes'] / gib:.2f} GiB (process, limit 2 GiB), "
              f"tracemalloc peak {memory['tracemalloc_peak_bytes'] / gib:.3f} GiB, {memory['seconds']:.1f} s; "
              f"dense naive would need {memory['dense_naive_bytes'] / gib:.1f} GiB (not run)")
    write_report("metrics", {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "tolerance": TOLERANCE, "all_agree": ok, "results": results, "memory": memory,
        "ratio": worst, "target_min_ratio": TARGET,
        "meets_target": ok and worst >= TARGET and (memory is None or memory["within_limit"]),
    }, args.out)
    for name, res in results.items():
        print(f"{name}: {res['speedup']:.1f}x")
    if not ok:
        print(f"ERROR: values differ from the naive baseline by > {TOLERANCE}, or the NumPy ranking from the "
              "compiled one", file=sys.stderr)
        return 1
    print(f"metrics: {worst:.3f}  (smallest speed-up; target >= {TARGET})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
