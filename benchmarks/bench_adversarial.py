"""Adversarial-training overhead: one CgAT / SAAT iteration vs its theoretical cost.

Run from the repository root: ``python -m benchmarks.bench_adversarial [--quick]``.  The real
defense (``defense.fit`` on a small shapes training set, DPSH's loss, smallcnn at 32×32) runs
with its training loop instrumented: each optimisation step is timed, and right before or after
it (alternating) the theoretical cost is measured on a copy of the model with the same batch:
7 attack passes ``grad(mean(f(x')⊙c), x')`` + forward of ``x_adv`` and ``x`` + one backward of
their loss + the SGD step.  Ratios are of medians over the steps (the first is dropped as
warm-up).  Final line ``adversarial_training_overhead: <worst ratio>``; JSON in
``benchmarks/results/adversarial_training.json``.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from typing import Any, Sequence

import numpy as np
import torch

import hashbench.retrieval.adversarial_training as adversarial_training
from benchmarks.common import build_model, median, ratio_line, write_report
from hashbench import plugins
from hashbench.api.defense import DefenseContext
from hashbench.progress import Reporter
from hashbench.retrieval.training import TrainData

TARGET = 1.15


def _reference_parts(model: torch.nn.Module, x: torch.Tensor, iterations: int, lr: float) -> dict[str, float]:
    """Seconds of the theoretical iteration's parts, each measured directly on ``model`` with batch ``x``."""
    code = torch.sign(torch.randn(x.shape[0], model.bits))
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    model.train()
    t0 = time.perf_counter()
    x_adv = x
    for _ in range(iterations):
        xr = x_adv.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad((model(xr) * code).mean(), xr)
        x_adv = xr.detach() - 1e-3 * grad.sign()
    t1 = time.perf_counter()
    loss = -(model(x_adv) * code).mean() + (model(x) * code).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    t2 = time.perf_counter()
    opt.step()
    t3 = time.perf_counter()
    return {"attack_s": t1 - t0, "train_fwd_bwd_s": t2 - t1, "optimizer_step_s": t3 - t2}


def measure(defense_name: str, batch: int, steps: int, width: int, seed: int = 0) -> dict[str, Any]:
    """Run ``defense_name`` for ``steps`` iterations with every step and its reference timed."""
    dataset = plugins.datasets.create("shapes", {"num_items": batch * steps, "num_classes": 6, "image_size": 32})
    indices = np.arange(batch * steps)
    data = TrainData(dataset, indices, torch.as_tensor(dataset.labels[indices], dtype=torch.float32))
    model = build_model("smallcnn", 32, bits=32, seed=seed, width=width)
    twin = copy.deepcopy(model)
    defense = plugins.defenses.create(defense_name, {"epochs": 1, "batch_size": batch})
    method = plugins.methods.create("dpsh", {})
    ours: list[float] = []
    parts: list[dict[str, float]] = []
    original = adversarial_training.run_epochs

    def instrumented(data_: TrainData, step, **kwargs: Any):
        def timed_step(x: torch.Tensor, y: torch.Tensor, pos: torch.Tensor) -> dict[str, torch.Tensor]:
            reference_first = len(ours) % 2 == 0
            if reference_first:
                parts.append(_reference_parts(twin, x, defense.params.iterations, defense.params.lr))
            start = time.perf_counter()
            out = step(x, y, pos)
            ours.append(time.perf_counter() - start)
            if not reference_first:
                parts.append(_reference_parts(twin, x, defense.params.iterations, defense.params.lr))
            return out

        return original(data_, timed_step, **kwargs)

    adversarial_training.run_epochs = instrumented
    try:
        defense.fit(model, method, data, DefenseContext(torch.device("cpu"), torch.Generator().manual_seed(seed),
                                                       Reporter()))
    finally:
        adversarial_training.run_epochs = original
    ours, parts = ours[1:], parts[1:]  # first step: warm-up
    reference = [sum(p.values()) for p in parts]
    theory = [p["attack_s"] + p["train_fwd_bwd_s"] for p in parts]
    ours_s, ref_s = median(ours), median(reference)
    return {
        "batch": batch, "steps_timed": len(ours), "width": width, "bank_size": len(data),
        "ours_s": ours_s, "reference_s": ref_s,
        "reference_parts_s": {k: median([p[k] for p in parts]) for k in parts[0]},
        "ratio": ours_s / ref_s,
        "ratio_without_optimizer_step": ours_s / median(theory),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller batch, fewer steps")
    parser.add_argument("--steps", type=int, default=None, help="training iterations (default 16; quick 4)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default 32, the papers'; quick 8)")
    parser.add_argument("--width", type=int, default=32, help="smallcnn width")
    parser.add_argument("--defenses", default="cgat,saat")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: robust on a loaded machine)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    steps = args.steps or (4 if args.quick else 16)
    batch = args.batch or (8 if args.quick else 32)
    results = {}
    print(f"{'defense':<8}{'batch':>6}{'ours ms':>10}{'theory ms':>11}{'attack':>9}{'fwd+bwd':>9}{'opt':>7}{'ratio':>8}")
    for name in args.defenses.split(","):
        r = measure(name, batch, steps + 1, args.width)
        results[name] = r
        p = r["reference_parts_s"]
        print(f"{name:<8}{batch:>6}{1e3 * r['ours_s']:>10.1f}{1e3 * r['reference_s']:>11.1f}"
              f"{1e3 * p['attack_s']:>9.1f}{1e3 * p['train_fwd_bwd_s']:>9.1f}{1e3 * p['optimizer_step_s']:>7.1f}"
              f"{r['ratio']:>8.3f}")
    worst = max(r["ratio"] for r in results.values())
    write_report("adversarial_training", {"quick": args.quick, "threads": args.threads, "target_max_ratio": TARGET,
                                          "results": results, "ratio": worst, "meets_target": worst <= TARGET})
    print(ratio_line("adversarial_training_overhead", worst, f"<= {TARGET}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
