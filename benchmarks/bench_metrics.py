"""Time hashbench.metrics against a naive per-query NumPy baseline.

Run from the repository root: ``python -m benchmarks.bench_metrics [--queries Q]
[--database N] [--bits K]``. Prints a table and one ``<metric>: <speed-up>x`` line per
metric, checks that both implementations agree to 1e-6, and writes
``benchmarks/results/metrics.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from hashbench.metrics import map_at_k, pr_curve, precision_at_n

TOLERANCE = 1e-6
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "metrics.json"


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--database", type=int, default=50000)
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--topk", type=int, default=None, help="MAP cut-off (default: all)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of hashbench (best kept)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    qb, db, ql, dl = make_data(args.queries, args.database, args.bits, args.classes, args.seed)
    ns = list(range(100, 1001, 100))
    levels = np.arange(1, 101) / 100.0
    data = (qb, db, ql, dl)
    cases = [
        ("map_at_k", lambda: map_at_k(*data, args.topk), lambda: naive_map(*data, args.topk)),
        ("pr_curve", lambda: pr_curve(*data, levels)[1], lambda: naive_pr_curve(*data, levels)),
        ("precision_at_n", lambda: precision_at_n(*data, ns), lambda: naive_precision_at_n(*data, ns)),
    ]
    print(
        f"{args.queries} queries x {args.database} database x {args.bits} bits, "
        f"{args.classes} classes, topk={args.topk}, torch threads={torch.get_num_threads()}"
    )
    print(f"{'metric':<16}{'hashbench s':>13}{'naive s':>11}{'speed-up':>10}{'max |diff|':>13}")
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
        print(f"{name:<16}{fast_s:>13.3f}{naive_s:>11.3f}{naive_s / fast_s:>9.1f}x{diff:>13.2e}")

    report = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "tolerance": TOLERANCE,
        "all_agree": ok,
        "results": results,
        "environment": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "machine": platform.machine(),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for name, res in results.items():
        print(f"{name}: {res['speedup']:.1f}x")
    if not ok:
        print(f"ERROR: values differ from the naive baseline by > {TOLERANCE}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
