"""GPU throughput: PGD images/s on AlexNet and VGG11 at 224×224, fp32 and AMP, vs the device's peak.

Run from the repository root: ``python -m benchmarks.bench_gpu [--quick] [--demo]``.  Without
CUDA it prints why and writes a JSON saying it was skipped.  With CUDA, for each backbone
(no pretrained weights; the cost does not depend on them) and precision it times ``pgd`` with
``--iterations`` steps on a batch, and reports images·iterations/s and the achieved FLOP/s
(each iteration: a forward, counted by :func:`hashbench.harness.flops.forward_flops`, plus a backward
counted as twice the forward) as a fraction of the peak measured with a large matmul in the
same precision.  The process is set up as the runner sets up its workers (deterministic
kernels); AMP is the runner's own autocast (:func:`hashbench.harness.stages.autocast`, bf16 unless
``--amp fp16``); fp32 is strict fp32 (TF32 off for convolutions and matmuls, the peak's too).  ``--demo`` also times ``hashbench run --grid demo`` on the device.
Final line ``gpu_pgd_peak_fraction: <best fraction>``; JSON in ``benchmarks/results/gpu.json``
(device name included).

``--device cpu`` measures the same figures on the CPU (``cpu_pgd_peak_fraction``, JSON in
``cpu_throughput.json``, so figures measured on a GPU are never overwritten); with
``--models smallcnn --image-size 32`` it is small enough for the test suite, which keeps the
code path a GPU run takes exercised on machines without one.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from benchmarks.common import (RUN_GRIDS, backbone_params, build_model, median, ratio_line, results_dir, timed_run,
                               write_report)
from hashbench.errors import UserError
from hashbench.harness.determinism import use_deterministic_kernels
from hashbench.harness.executors.worker import resolve_device
from hashbench.harness.flops import forward_flops
from hashbench.harness.stages.context import AMP_DTYPES, autocast
from hashbench.harness.stages.spec import PluginSpec
from hashbench.harness.timings import device_label
from hashbench.retrieval.pgd import PGDConfig, pgd

MODELS = ("alexnet", "vgg11")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(dtype: torch.dtype, device: torch.device, size: int, repeats: int = 10) -> float:
    """FLOP/s of a square ``size`` matmul in ``dtype``: the practical peak of ``device``."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def measure(backbone: str, image_size: int, batch: int, iterations: int, repeats: int, amp: str | None,
            device: torch.device, peak_size: int) -> dict[str, Any]:
    """Median seconds of one ``pgd`` call and what they mean in images/s and FLOP/s."""
    model = build_model(backbone, image_size, device=device).eval()
    x = torch.rand(batch, 3, image_size, image_size, device=device)
    code = torch.sign(torch.randn(batch, model.bits, device=device))
    config = PGDConfig(8 / 255, 2 / 255, iterations, random_start=True)

    def once() -> None:
        with autocast(device, amp):
            pgd(model, x, code, config, generator=torch.Generator().manual_seed(0))

    once()
    synchronize(device)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        once()
        synchronize(device)
        samples.append(time.perf_counter() - start)
    seconds = median(samples)
    fwd = forward_flops(PluginSpec(backbone, backbone_params(backbone), ("hashbench", "")), image_size, model.bits)
    achieved = 3 * fwd * batch * iterations / seconds
    peak = matmul_peak(AMP_DTYPES.get(amp, torch.float32), device, peak_size)
    return {"image_size": image_size, "batch": batch, "iterations": iterations, "repeats": repeats,
            "seconds": seconds, "images_per_s": batch / seconds, "image_iterations_per_s": batch * iterations / seconds,
            "forward_flops_per_image": fwd, "achieved_flops": achieved, "peak_flops": peak,
            "peak_matmul_size": peak_size, "peak_fraction": achieved / peak}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller batches, fewer repeats")
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N, cpu or auto")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated backbones (default alexnet,vgg11)")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=None, help="images per PGD call (default 128; quick 32)")
    parser.add_argument("--iterations", type=int, default=10, help="PGD iterations per timed call")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per case (default 10; quick 3)")
    parser.add_argument("--amp", choices=list(AMP_DTYPES), default="bf16", help="the mixed precision timed beside fp32")
    parser.add_argument("--peak-size", type=int, default=None,
                        help="side of the matmul that measures the peak (default 8192 on CUDA, 2048 on CPU)")
    parser.add_argument("--demo", action="store_true", help="also time `hashbench run --grid demo` on the device")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        msg = "skipped: no CUDA device (torch.cuda.is_available() is False)"
        print(msg)
        existing = results_dir() / "gpu.json"
        if not existing.exists() or "skipped" in json.loads(existing.read_text()):
            write_report("gpu", {"skipped": msg})  # never overwrite figures measured on a GPU
        print("gpu_pgd_peak_fraction: skipped (no CUDA)")
        return 0
    try:
        device = resolve_device(args.device)  # the runner's own check of --device
    except UserError as exc:
        parser.error(str(exc))
    on_gpu = device.type == "cuda"
    use_deterministic_kernels()
    if on_gpu:
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32; the peak is measured the same way
        torch.backends.cudnn.allow_tf32 = False
    batch = args.batch or (32 if args.quick else 128)
    repeats = args.repeats or (3 if args.quick else 10)
    peak_size = args.peak_size or (8192 if on_gpu else 2048)
    name = device_label(device)
    results: dict[str, Any] = {}
    print(f"device: {name}")
    print(f"{'model':<10}{'precision':>10}{'images/s':>11}{'img*it/s':>11}{'TFLOP/s':>9}{'peak':>9}{'fraction':>10}")
    for backbone in args.models.split(","):
        for amp in (None, args.amp):
            r = measure(backbone, args.image_size, batch, args.iterations, repeats, amp, device, peak_size)
            precision = amp or "fp32"
            results[f"{backbone}/{precision}"] = r
            print(f"{backbone:<10}{precision:>10}{r['images_per_s']:>11.1f}{r['image_iterations_per_s']:>11.1f}"
                  f"{r['achieved_flops'] / 1e12:>9.3f}{r['peak_flops'] / 1e12:>9.2f}{r['peak_fraction']:>10.3f}")
    demo = None
    if args.demo:
        with tempfile.TemporaryDirectory(prefix="hashbench-bench-") as tmp:
            demo = timed_run([*RUN_GRIDS["demo"], "--device", args.device], Path(tmp), "demo")
        print(f"demo grid on {name}: {demo['runner_s']:.1f} s runner, {demo['process_s']:.1f} s process")
    best = max(r["peak_fraction"] for r in results.values())
    report = "gpu" if on_gpu else "cpu_throughput"
    write_report(report, {"device_name": name, "device": str(device), "quick": args.quick,
                          "models": args.models.split(","), "amp": args.amp, "results": results, "demo": demo,
                          "ratio": best})
    print(ratio_line(f"{'gpu' if on_gpu else 'cpu'}_pgd_peak_fraction", best, "as high as possible; no fixed target"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
