"""Attack-engine overhead: PGD iterations of :func:`hashbench.retrieval.pgd.pgd` vs bare forward+backward.

Run from the repository root: ``python -m benchmarks.bench_pgd [--quick]``.  For each model
(smallcnn at 32×32, batch 128; AlexNet without weights at 64×64, batch 32) the reference is
``T`` bare passes ``grad(mean(f(x)⊙c), x)`` on the same model and batch, and ours is one call
of ``pgd`` with ``T`` iterations (random start, projection, signed step included).  The two
are timed alternately (load on a shared machine hits both equally); ratios are of medians.
Final line ``pgd_overhead: <worst ratio>``; JSON in ``benchmarks/results/pgd.json``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

import torch

from benchmarks.common import build_model, interleaved_medians, median, ratio_line, write_report
from hashbench.retrieval.pgd import PGDConfig, pgd

TARGET = 1.10
CASES = {"smallcnn": (32, 128), "alexnet": (64, 32)}  # backbone: (image size, batch)


def measure(backbone: str, image_size: int, batch: int, iterations: int, repeats: int,
            device: torch.device) -> dict[str, float]:
    """Median seconds per iteration of ours and of the bare reference, and their ratio."""
    model = build_model(backbone, image_size, device=device).eval()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, image_size, image_size, generator=gen).to(device)
    code = torch.sign(torch.randn(batch, model.bits, generator=gen)).to(device)
    config = PGDConfig(epsilon=8 / 255, step_size=2 / 255, iterations=iterations, random_start=True)

    def ours() -> None:
        pgd(model, x, code, config, generator=torch.Generator().manual_seed(1))

    def reference() -> None:
        for _ in range(iterations):
            xr = x.detach().requires_grad_(True)
            torch.autograd.grad((model(xr) * code).mean(), xr)

    sync = torch.cuda.synchronize if device.type == "cuda" else None
    samples = interleaved_medians({"ours": ours, "reference": reference}, repeats, sync=sync)
    ours_s, ref_s = median(samples["ours"]) / iterations, median(samples["reference"]) / iterations
    return {"image_size": image_size, "batch": batch, "iterations_per_call": iterations, "repeats": repeats,
            "ours_s_per_iter": ours_s, "reference_s_per_iter": ref_s, "ratio": ours_s / ref_s}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller batches")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls of each (default 15; quick 4)")
    parser.add_argument("--iterations", type=int, default=5, help="PGD iterations per timed call")
    parser.add_argument("--models", default=",".join(CASES), help="comma-separated subset of " + ",".join(CASES))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: robust on a loaded machine)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    repeats = args.repeats or (4 if args.quick else 15)
    device = torch.device(args.device)
    results = {}
    print(f"{'model':<10}{'size':>6}{'batch':>7}{'ours ms/it':>12}{'bare ms/it':>12}{'ratio':>8}")
    for name in args.models.split(","):
        size, batch = CASES[name]
        if args.quick:
            batch = max(4, batch // 4)
        r = measure(name, size, batch, args.iterations, repeats, device)
        results[name] = r
        print(f"{name:<10}{size:>6}{batch:>7}{1e3 * r['ours_s_per_iter']:>12.2f}"
              f"{1e3 * r['reference_s_per_iter']:>12.2f}{r['ratio']:>8.3f}")
    worst = max(r["ratio"] for r in results.values())
    write_report("pgd", {"quick": args.quick, "threads": args.threads, "target_max_ratio": TARGET, "results": results,
                         "ratio": worst, "meets_target": worst <= TARGET})
    print(ratio_line("pgd_overhead", worst, f"<= {TARGET}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
