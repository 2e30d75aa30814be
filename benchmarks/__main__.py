"""Run every benchmark: ``python -m benchmarks [--quick] [--only NAME,...]`` (also ``hashbench bench``).

Each script runs in its own process (fresh memory, its own final line); at the end the final
``name: ratio`` lines are gathered into a summary and ``benchmarks/results/summary.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Sequence

from benchmarks.common import results_dir, timestamp

#: script module → extra arguments in --quick mode
SCRIPTS = {
    "bench_metrics": ["--quick"],
    "bench_pgd": ["--quick"],
    "bench_adversarial": ["--quick"],
    "bench_reuse": ["--quick"],
    "bench_parallel": ["--quick"],
    "bench_gpu": ["--quick"],
    "bench_plan": ["--quick"],
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="each script's smaller configuration")
    parser.add_argument("--only", default=None, help="comma-separated script names, e.g. bench_pgd,bench_reuse")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(SCRIPTS)
    unknown = [n for n in names if n not in SCRIPTS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(SCRIPTS)}")
    summary, status = {}, 0
    for name in names:
        print(f"== {name}", flush=True)
        start = time.perf_counter()
        cmd = [sys.executable, "-m", f"benchmarks.{name}", *(SCRIPTS[name] if args.quick else [])]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        print(proc.stdout, end="", flush=True)
        lines = proc.stdout.strip().splitlines()
        summary[name] = {"returncode": proc.returncode, "seconds": time.perf_counter() - start,
                         "final_line": lines[-1] if lines else ""}
        status = status or proc.returncode
    print("== summary")
    for name, s in summary.items():
        print(f"{s['final_line']}   [{name}, {s['seconds']:.0f} s{', FAILED' if s['returncode'] else ''}]")
    write_summary(summary, args.quick)
    return status


def write_summary(summary: dict[str, dict], quick: bool) -> None:
    """``summary.json``: these scripts' entries, merged over the earlier entries of the others
    (so ``--only`` re-runs one figure without dropping the rest); each entry says when it ran."""
    path = results_dir() / "summary.json"
    scripts: dict[str, dict] = {}
    if path.exists():
        try:
            earlier = json.loads(path.read_text())
        except ValueError:
            earlier = {}
        if earlier.get("quick") == quick:
            scripts = earlier.get("scripts", {})
    stamp = timestamp()
    scripts.update({name: {**entry, "created": stamp} for name, entry in summary.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"quick": quick, "scripts": {n: scripts[n] for n in SCRIPTS if n in scripts}},
                               indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
