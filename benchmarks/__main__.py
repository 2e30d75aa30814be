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

from benchmarks.common import results_dir

#: script module → extra arguments in --quick mode
SCRIPTS = {
    "bench_metrics": ["--quick"],
    "bench_pgd": ["--quick"],
    "bench_adversarial": ["--quick"],
    "bench_reuse": ["--quick"],
    "bench_parallel": ["--quick"],
    "bench_gpu": ["--quick"],
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
    results_dir().mkdir(parents=True, exist_ok=True)
    (results_dir() / "summary.json").write_text(json.dumps({"quick": args.quick, "scripts": summary}, indent=2) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
