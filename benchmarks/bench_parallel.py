"""Parallel scaling: the small smoke grid with ``--workers 2`` vs ``--workers 1``.

Run from the repository root: ``python -m benchmarks.bench_parallel [--quick] [--full]``.  Each
run starts from an empty results folder; runs alternate 1, 2, 2, 1, … (``--repeats`` pairs) so
background load hits both equally, and the speed-up is the ratio of median runner times
(``wall_s`` of run.json).  The ideal speed-up is bounded by the plan's critical path (a defended
model needs its clean one, its attack needs its codes).  Final line
``parallel_speedup: <ratio>``; JSON in ``benchmarks/results/parallel.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from benchmarks.common import FULL_GRID, SMALL_GRID, median, ratio_line, timed_run, write_report

TARGET = 1.5


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one run of each")
    parser.add_argument("--full", action="store_true", help="the demo grid instead of the small smoke grid")
    parser.add_argument("--repeats", type=int, default=None, help="pairs of runs (default 2; quick 1)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="extra --set for the grid, e.g. methods=[dpsh,dph] (later ones win)")
    args = parser.parse_args(argv)
    grid = [*(FULL_GRID if args.full else SMALL_GRID), *(a for o in args.overrides for a in ("--set", o))]
    repeats = args.repeats or (1 if args.quick else 2)
    runs: dict[int, list[dict]] = {1: [], args.workers: []}
    for i in range(repeats):
        for workers in ((1, args.workers) if i % 2 == 0 else (args.workers, 1)):
            with tempfile.TemporaryDirectory(prefix="hashbench-bench-") as tmp:
                r = timed_run(grid, Path(tmp), "bench", workers)
            if r["status"] != "complete":
                print(f"ERROR: run with {workers} workers ended {r['status']}", file=sys.stderr)
                return 1
            runs[workers].append(r)
    one, many = median([r["runner_s"] for r in runs[1]]), median([r["runner_s"] for r in runs[args.workers]])
    speedup = one / many
    print(f"grid: {' '.join(grid)}; {repeats} run(s) each, "
          f"{runs[1][0]['executed']} stages per run")
    print(f"{'workers':<9}{'median runner s':>17}{'runs':>40}")
    for workers, rs in runs.items():
        print(f"{workers:<9}{median([r['runner_s'] for r in rs]):>17.2f}"
              f"{json.dumps([round(r['runner_s'], 2) for r in rs]):>40}")
    write_report("parallel", {"grid": "demo" if args.full else "small-smoke", "grid_args": grid,
                              "overrides": args.overrides, "workers": args.workers,
                              "runs": {str(k): v for k, v in runs.items()}, "median_s": {"1": one, str(args.workers): many},
                              "ratio": speedup, "target_min_ratio": TARGET, "meets_target": speedup >= TARGET})
    print(ratio_line("parallel_speedup", speedup, f">= {TARGET}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
