"""GPU throughput: PGD images/s on AlexNet and VGG11 at 224×224, fp32 and AMP, vs the GPU's peak.

Run from the repository root: ``python -m benchmarks.bench_gpu [--quick] [--demo]``.  Without
CUDA it prints why and writes a JSON saying it was skipped.  With CUDA, for each backbone
(no pretrained weights; the cost does not depend on them) and precision it times ``pgd`` with
``--iterations`` steps on a batch, and reports images·iterations/s and the achieved FLOP/s
(each iteration: a forward, counted by :func:`hashbench.cost.forward_flops`, plus a backward
counted as twice the forward) as a fraction of the peak measured with a large matmul in the
same precision.  ``--demo`` also times ``hashbench run --grid demo`` on the GPU.  Final line
``gpu_pgd_peak_fraction: <best fraction>``; JSON in ``benchmarks/results/gpu.json`` (device
name included).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Sequence

import torch

from benchmarks.common import RUN_GRIDS, build_model, median, ratio_line, results_dir, timed_run, write_report
from hashbench.cost import forward_flops
from hashbench.pgd import PGDConfig, pgd

MODELS = ("alexnet", "vgg11")


def matmul_peak(dtype: torch.dtype, size: int = 8192, repeats: int = 10) -> float:
    """FLOP/s of a large square matmul in ``dtype``: the practical peak of this GPU."""
    a = torch.randn(size, size, device="cuda", dtype=dtype)
    b = torch.randn(size, size, device="cuda", dtype=dtype)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def measure(backbone: str, batch: int, iterations: int, repeats: int, amp: bool) -> dict[str, Any]:
    model = build_model(backbone, 224, device="cuda").eval()
    x = torch.rand(batch, 3, 224, 224, device="cuda")
    code = torch.sign(torch.randn(batch, model.bits, device="cuda"))
    config = PGDConfig(8 / 255, 2 / 255, iterations, random_start=True)
    context = torch.autocast("cuda", dtype=torch.bfloat16) if amp else nullcontext()

    def once() -> None:
        with context:
            pgd(model, x, code, config, generator=torch.Generator().manual_seed(0))

    once()
    torch.cuda.synchronize()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        once()
        torch.cuda.synchronize()
        samples.append(time.perf_counter() - start)
    seconds = median(samples)
    fwd = forward_flops({"name": backbone, "params": {"pretrained": "none"}}, 224, model.bits)
    achieved = 3 * fwd * batch * iterations / seconds
    peak = matmul_peak(torch.bfloat16 if amp else torch.float32)
    return {"batch": batch, "iterations": iterations, "seconds": seconds,
            "images_per_s": batch / seconds, "image_iterations_per_s": batch * iterations / seconds,
            "forward_flops_per_image": fwd, "achieved_flops": achieved, "peak_flops": peak,
            "peak_fraction": achieved / peak}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller batches, fewer repeats")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--demo", action="store_true", help="also time `hashbench run --grid demo` on the GPU")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        msg = "skipped: no CUDA device (torch.cuda.is_available() is False)"
        print(msg)
        existing = results_dir() / "gpu.json"
        if not existing.exists() or "skipped" in json.loads(existing.read_text()):
            write_report("gpu", {"skipped": msg})  # never overwrite figures measured on a GPU
        print("gpu_pgd_peak_fraction: skipped (no CUDA)")
        return 0
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32; the peak is measured the same way
    batch, repeats = (32, 3) if args.quick else (128, 10)
    results: dict[str, Any] = {}
    print(f"device: {torch.cuda.get_device_name()}")
    print(f"{'model':<9}{'precision':>10}{'images/s':>11}{'img*it/s':>11}{'TFLOP/s':>9}{'peak':>9}{'fraction':>10}")
    for name in MODELS:
        for amp in (False, True):
            r = measure(name, batch, args.iterations, repeats, amp)
            key = f"{name}/{'bf16' if amp else 'fp32'}"
            results[key] = r
            print(f"{name:<9}{'bf16' if amp else 'fp32':>10}{r['images_per_s']:>11.1f}{r['image_iterations_per_s']:>11.1f}"
                  f"{r['achieved_flops'] / 1e12:>9.2f}{r['peak_flops'] / 1e12:>9.1f}{r['peak_fraction']:>10.3f}")
    demo = None
    if args.demo:
        with tempfile.TemporaryDirectory(prefix="hashbench-bench-") as tmp:
            demo = timed_run([*RUN_GRIDS["demo"], "--device", "cuda"], Path(tmp), "demo")
        print(f"demo grid on the GPU: {demo['runner_s']:.1f} s runner, {demo['process_s']:.1f} s process")
    best = max(r["peak_fraction"] for r in results.values())
    write_report("gpu", {"device_name": torch.cuda.get_device_name(), "quick": args.quick, "results": results,
                         "demo": demo, "ratio": best})
    print(ratio_line("gpu_pgd_peak_fraction", best, "as high as possible; no fixed target"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
