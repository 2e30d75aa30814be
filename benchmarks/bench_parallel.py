"""Parallel scaling: the ``smoke`` grid with ``--workers 2`` vs ``--workers 1``.

Run from the repository root: ``python -m benchmarks.bench_parallel [--quick] [--grid small|smoke|demo]``.
Each run starts from an empty results folder; the configurations alternate in order and reverse
order (``--repeats`` rounds) so background load hits all equally.  Ratios are taken within each
round, between runs made back to back, and the figure is their median: this machine's speed drifts
by ±20% over minutes, which a ratio of runs minutes apart (the ratio of the medians, also printed)
would carry into the figure.  Times are runner times (``wall_s`` of run.json).  Three configurations:

- ``--workers 1``: one process with every core as torch intra-op threads (the default);
- ``--workers N``: N processes with cores/N threads each;
- ``--workers 1 --threads 1``: the same stages on one thread, which separates what the runner's
  process parallelism gains from what intra-op threads already gave ``--workers 1``.

The final line ``parallel_speedup: <ratio>`` is ``--workers 1`` / ``--workers N``.  Its ceiling is
set by intra-op threading: with N·(1-thread speed) against the speed of one process on all
cores, the best possible ratio is about N / intra_op_speedup.  JSON in
``benchmarks/results/parallel.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from benchmarks.common import RUN_GRIDS, median, ratio_line, timed_run, write_report

TARGET = 1.5


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one run of each")
    parser.add_argument("--grid", choices=list(RUN_GRIDS), default="smoke", help="which grid (default: smoke)")
    parser.add_argument("--repeats", type=int, default=None, help="rounds of the three runs (default 3; quick 1)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="extra --set for the grid, e.g. methods=[dpsh,dph] (later ones win)")
    args = parser.parse_args(argv)
    grid = [*RUN_GRIDS[args.grid], *(a for o in args.overrides for a in ("--set", o))]
    repeats = args.repeats or (1 if args.quick else 3)
    many_label = str(args.workers)
    configs = {"1": (1, []), many_label: (args.workers, []), "1-thread": (1, ["--threads", "1"])}
    runs: dict[str, list[dict]] = {label: [] for label in configs}
    for i in range(repeats):
        for label in (list(configs) if i % 2 == 0 else list(reversed(configs))):
            workers, extra = configs[label]
            with tempfile.TemporaryDirectory(prefix="hashbench-bench-") as tmp:
                r = timed_run([*grid, *extra], Path(tmp), "bench", workers)
            if r["status"] != "complete":
                print(f"ERROR: run {label} ended {r['status']}", file=sys.stderr)
                return 1
            runs[label].append(r)
    t = {label: [r["runner_s"] for r in rs] for label, rs in runs.items()}
    med = {label: median(times) for label, times in t.items()}
    of_medians = med["1"] / med[many_label]
    rounds = {"speedup": [a / b for a, b in zip(t["1"], t[many_label])],
              "intra_op_speedup": [a / b for a, b in zip(t["1-thread"], t["1"])],
              "equal_threads_speedup": [a / b for a, b in zip(t["1-thread"], t[many_label])]}
    speedup, intra_op, equal_threads = (median(rounds[k]) for k in rounds)
    print(f"grid: {args.grid} ({' '.join(grid)}); {repeats} run(s) each, {runs['1'][0]['executed']} stages per run")
    print(f"{'run':<22}{'median runner s':>17}{'median process s':>18}{'runner s of each run':>34}")
    names = {"1": "--workers 1", many_label: f"--workers {args.workers}", "1-thread": "--workers 1 --threads 1"}
    for label, rs in runs.items():
        print(f"{names[label]:<22}{med[label]:>17.2f}{median([r['process_s'] for r in rs]):>18.2f}"
              f"{json.dumps([round(r['runner_s'], 2) for r in rs]):>34}")
    print(f"--workers {args.workers} speed-up in each round: {json.dumps([round(r, 3) for r in rounds['speedup']])}; "
          f"ratio of the medians: {of_medians:.3f}")
    print(f"intra-op speed-up of --workers 1 (1 thread / all cores): {intra_op:.3f}; "
          f"ceiling for --workers {args.workers} ≈ {args.workers / intra_op:.2f}")
    print(f"--workers {args.workers} vs --workers 1 --threads 1 (equal threads per process): {equal_threads:.3f}")
    write_report("parallel", {"grid": args.grid, "grid_args": grid, "overrides": args.overrides,
                              "workers": args.workers, "runs": runs, "median_s": med, "round_ratios": rounds,
                              "ratio_of_medians": of_medians, "intra_op_speedup": intra_op,
                              "ceiling": args.workers / intra_op,
                              "equal_threads_speedup": equal_threads,
                              "ratio": speedup, "target_min_ratio": TARGET, "meets_target": speedup >= TARGET})
    print(ratio_line("parallel_speedup", speedup, f">= {TARGET}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
