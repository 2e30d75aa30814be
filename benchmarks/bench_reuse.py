"""Reuse: a second ``hashbench run`` of a finished grid costs a small fraction of the first.

Run from the repository root: ``python -m benchmarks.bench_reuse [--grid small|smoke|demo]``.  In a fresh results
folder: ``hashbench plan`` (stages to run), the first ``hashbench run`` (every planned stage must
execute), then the same command again (nothing may execute).  The ratio is second / first
runner time (``wall_s`` of run.json: from planning done to records written; the process times,
which add Python and torch start-up, are reported too).  Default grid: ``smoke`` (≈ 1 min for
the first run on 2 cores); ``--grid demo`` is the issue's own case (≈ 8 min); ``--grid small`` a
single chain of 11 stages.  Final line ``reuse: <ratio>``; JSON in
``benchmarks/results/reuse.json``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from benchmarks.common import RUN_GRIDS, planned_stages, ratio_line, timed_run, write_report

TARGET = 0.05


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", choices=list(RUN_GRIDS), default=None, help="which grid (default: smoke; quick: small)")
    parser.add_argument("--quick", action="store_true", help="the small grid unless --grid says otherwise")
    args = parser.parse_args(argv)
    grid_name = args.grid or ("small" if args.quick else "smoke")
    grid = RUN_GRIDS[grid_name]
    with tempfile.TemporaryDirectory(prefix="hashbench-bench-") as tmp:
        root = Path(tmp)
        planned = planned_stages(grid, root)
        first = timed_run(grid, root, "bench")
        second = timed_run(grid, root, "bench")
    ratio = second["runner_s"] / first["runner_s"]
    process_ratio = second["process_s"] / first["process_s"]
    ok = first["executed"] == planned and second["executed"] == 0 and first["status"] == second["status"] == "complete"
    print(f"grid: {grid_name} ({' '.join(grid)}); planned stages: {planned}")
    print(f"{'run':<8}{'runner s':>10}{'process s':>11}{'executed':>10}{'cached':>8}")
    for name, r in (("first", first), ("second", second)):
        print(f"{name:<8}{r['runner_s']:>10.2f}{r['process_s']:>11.2f}{r['executed']:>10}{r['cached']:>8}")
    print(f"process-time ratio (with start-up): {process_ratio:.3f}")
    write_report("reuse", {"grid": grid_name, "grid_args": grid, "planned": planned,
                           "first": first, "second": second, "ratio": ratio, "process_ratio": process_ratio,
                           "executed_equals_planned": first["executed"] == planned, "second_executed": second["executed"],
                           "target_max_ratio": TARGET, "meets_target": ok and ratio < TARGET})
    if not ok:
        print(f"ERROR: executed {first['executed']} of {planned} planned stages, then {second['executed']} again",
              file=sys.stderr)
    print(ratio_line("reuse", ratio, f"< {TARGET}"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
