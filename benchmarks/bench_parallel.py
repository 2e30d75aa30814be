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

The final line ``parallel_speedup: <ratio>`` is ``--workers 1`` / ``--workers N``, with the
ceiling beside the target.  The ceiling is
set by intra-op threading and by the hardware: N one-thread processes run at ``h`` times one such
process alone (``h`` = N on ideal hardware; less where the cores share caches, memory bandwidth or a
clock budget), against one process on all cores at ``intra_op_speedup`` times one thread, so the best
possible ratio is ``h / intra_op_speedup``.  A probe measures ``h`` first: the smoke grid's network
(smallcnn, 32×32) training on one thread, in one process alone and then in N at once.  JSON in
``benchmarks/results/parallel.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from benchmarks.common import RUN_GRIDS, build_model, median, ratio_line, timed_run, write_report

TARGET = 1.5


def probe_child(threads: int) -> None:
    """In a fresh process: the smoke grid's network (smallcnn, 32×32, batch 32) training on
    ``threads`` threads.  Prints ``ready``, then for every line ``<seconds>`` on stdin trains that
    long and prints the steps per second; an empty line ends it."""
    import torch

    torch.set_num_threads(threads)
    model = build_model("smallcnn", 32, bits=16, seed=0, width=8, features=64)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    images = torch.rand(32, 3, 32, 32)

    def step() -> None:
        optimizer.zero_grad()
        model(images).pow(2).mean().backward()
        optimizer.step()

    for _ in range(10):
        step()
    print("ready", flush=True)
    for line in sys.stdin:
        if not line.strip():
            return
        seconds, steps, start = float(line), 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            step()
            steps += 1
        print(steps / (time.perf_counter() - start), flush=True)


def hardware_scaling(workers: int, seconds: float, rounds: int = 10) -> dict[str, float]:
    """``h``: the summed training speed of ``workers`` one-thread processes running at once over
    one of them running alone.  The same processes alternate between the two (``rounds`` times,
    ``seconds`` each), so the machine's drift over minutes hits both alike; the figure is the median
    of the rounds' ratios."""
    code = "from benchmarks.bench_parallel import probe_child; probe_child(1)"
    root = Path(__file__).resolve().parents[1]
    children = [subprocess.Popen([sys.executable, "-c", code], cwd=root, stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True) for _ in range(workers)]

    def measure(group: list[subprocess.Popen]) -> list[float]:
        for child in group:
            child.stdin.write(f"{seconds}\n")
            child.stdin.flush()
        return [float(child.stdout.readline()) for child in group]

    try:
        for child in children:  # all imported and warmed up before any timing
            if child.stdout.readline().strip() != "ready":
                raise RuntimeError("the hardware-scaling probe failed to start")
        alone, together = [], []
        for _ in range(rounds):
            alone += measure(children[:1])
            together.append(sum(measure(children)))
        for child in children:
            child.communicate("\n", timeout=60)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    ratios = [t / a for a, t in zip(alone, together)]
    return {"scaling": median(ratios), "round_scalings": ratios, "one_alone_steps_per_s": alone,
            "together_steps_per_s": together, "seconds": seconds}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one run of each")
    parser.add_argument("--grid", choices=list(RUN_GRIDS), default="smoke", help="which grid (default: smoke)")
    parser.add_argument("--repeats", type=int, default=None, help="rounds of the three runs (default 3; quick 1)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--probe-seconds", type=float, default=None,
                        help="each phase of the hardware-scaling probe (default 1.5, ten rounds; quick 0.5); 0 skips it")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="extra --set for the grid, e.g. methods=[dpsh,dph] (later ones win)")
    args = parser.parse_args(argv)
    grid = [*RUN_GRIDS[args.grid], *(a for o in args.overrides for a in ("--set", o))]
    repeats = args.repeats or (1 if args.quick else 3)
    many_label = str(args.workers)
    probe_s = args.probe_seconds if args.probe_seconds is not None else (0.5 if args.quick else 1.5)
    hardware = hardware_scaling(args.workers, probe_s) if probe_s > 0 else None
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
    ceiling = (hardware["scaling"] if hardware else args.workers) / intra_op
    if hardware:
        print(f"hardware scaling h: {args.workers} one-thread training processes at once run "
              f"{hardware['scaling']:.3f}x one alone (median of rounds "
              f"{json.dumps([round(v, 3) for v in hardware['round_scalings']])})")
    print(f"intra-op speed-up of --workers 1 (1 thread / all cores): {intra_op:.3f}; "
          f"ceiling for --workers {args.workers} ≈ {'h' if hardware else args.workers} / intra-op = {ceiling:.2f}"
          f" (on ideal hardware {args.workers / intra_op:.2f}); reached {speedup / ceiling:.0%}")
    print(f"--workers {args.workers} vs --workers 1 --threads 1 (equal threads per process): {equal_threads:.3f}")
    write_report("parallel", {"grid": args.grid, "grid_args": grid, "overrides": args.overrides,
                              "workers": args.workers, "runs": runs, "median_s": med, "round_ratios": rounds,
                              "ratio_of_medians": of_medians, "intra_op_speedup": intra_op,
                              "ceiling": ceiling, "ideal_hardware_ceiling": args.workers / intra_op,
                              "hardware": hardware, "fraction_of_ceiling": speedup / ceiling,
                              "equal_threads_speedup": equal_threads,
                              "ratio": speedup, "target_min_ratio": TARGET, "meets_target": speedup >= TARGET})
    # the ceiling beside the target: on this VM it moves with how much of the second core is ours
    kind = "measured" if hardware else "ideal-hardware"
    print(ratio_line("parallel_speedup", speedup, f">= {TARGET}; this machine's {kind} ceiling {ceiling:.2f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
