"""Plan accuracy: the first-run estimate of ``hashbench plan`` against the measured run, per stage kind.

Run from the repository root: ``python -m benchmarks.bench_plan [--grid smoke|demo|small]``.  In a
fresh results folder: ``hashbench plan --json`` (no recorded timings yet, so basis ``flops``:
FLOPs / the measured rate of each stage's network, plus image reading and the per-stage
overhead), then ``hashbench run`` of the same grid (one worker, no report).  Per stage kind it
prints the estimate, the measured seconds (the sum of the stages' ``wall_s`` in
``timings.jsonl``) and their ratio; the total is compared with the runner's wall time
(``run.json``: planning done → records written).  The target is a ratio within 0.7–1.3 (the
±30% of issue 19).  Measure on an idle machine: the estimate times the networks when ``plan``
runs, the run's time is taken later, and background load hits them unequally.  Final line
``plan: <estimate / measured>``; JSON in ``benchmarks/results/plan.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Sequence

from benchmarks.common import RUN_GRIDS, hashbench_cli, ratio_line, timed_run, write_report

LOW, HIGH = 0.7, 1.3


def measured_by_kind(results_dir: Path) -> dict[str, float]:
    """Seconds per stage kind that the run recorded (``store/timings.jsonl``)."""
    seconds: dict[str, float] = defaultdict(float)
    for line in (results_dir / "store" / "timings.jsonl").read_text().splitlines():
        row = json.loads(line)
        seconds[row["kind"]] += float(row["wall_s"])
    return dict(seconds)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", choices=list(RUN_GRIDS), default=None, help="which grid (default: smoke; quick: small)")
    parser.add_argument("--quick", action="store_true", help="the small grid unless --grid says otherwise")
    args = parser.parse_args(argv)
    grid_name = args.grid or ("small" if args.quick else "smoke")
    grid = RUN_GRIDS[grid_name]
    with tempfile.TemporaryDirectory(prefix="hashbench-bench-") as tmp:
        root = Path(tmp)
        _, out = hashbench_cli(["plan", *grid, "--json", "--results-dir", str(root)])
        plan = json.loads(out)
        run = timed_run(grid, root, "bench")
        measured = measured_by_kind(root)
    rows = []
    print(f"{'stage':<10} {'estimate s':>11} {'measured s':>11} {'ratio':>7}")
    for row in plan["stages"]:
        kind, estimate = row["stage"], row["estimated_s"]
        actual = measured.get(kind, 0.0)
        ratio = estimate / actual if estimate is not None and actual > 0 else None
        rows.append({"stage": kind, "stages": row["to_run"], "estimated_s": estimate, "measured_s": actual,
                     "ratio": ratio, "basis": row["basis"]})
        shown = "-" if ratio is None else f"{ratio:.2f}"
        print(f"{kind:<10} {estimate or 0:>11.1f} {actual:>11.1f} {shown:>7}")
    total = plan["total"]["estimated_s"]
    ratio = total / run["runner_s"]
    print(f"{'total':<10} {total:>11.1f} {run['runner_s']:>11.1f} {ratio:>7.2f}   (measured: the runner's wall time; "
          f"the process took {run['process_s']:.1f} s with start-up)")
    ok = LOW <= ratio <= HIGH and run["status"] == "complete"
    write_report("plan", {"grid": grid_name, "args": grid, "rows": rows, "estimated_s": total,
                          "runner_s": run["runner_s"], "process_s": run["process_s"], "ratio": ratio,
                          "target": [LOW, HIGH], "ok": ok})
    print(ratio_line("plan", ratio, f"{LOW}–{HIGH}"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
