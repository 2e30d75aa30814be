"""Helpers every benchmark script shares: interleaved timing, the JSON report, the ratio line."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from hashbench.retrieval.metrics import ranking_backend

DEFAULT_RESULTS_DIR = Path(__file__).resolve().parent / "results"


def results_dir() -> Path:
    """Where the JSON goes: ``$HASHBENCH_BENCH_RESULTS`` if set (tests), else ``benchmarks/results``."""
    return Path(os.environ.get("HASHBENCH_BENCH_RESULTS") or DEFAULT_RESULTS_DIR)


def environment() -> dict[str, Any]:
    """What the numbers depend on: versions, threads, CPU/GPU and the load while measuring."""
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "device_name": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "ranking_backend": ranking_backend(),
    }
    if hasattr(os, "getloadavg"):
        env["load_average_1m"] = os.getloadavg()[0]
    return env


def interleaved_medians(
    fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 2, sync: Callable[[], None] | None = None
) -> dict[str, list[float]]:
    """Time each function ``repeats`` times, alternating between them (A B A B …) so that
    background load hits every candidate equally; returns every sample, in seconds."""
    sync = sync or (lambda: None)
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    sync()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for i in range(repeats):
        names = list(fns) if i % 2 == 0 else list(reversed(fns))  # no fixed first position
        for name in names:
            start = time.perf_counter()
            fns[name]()
            sync()
            samples[name].append(time.perf_counter() - start)
    return samples


def median(samples: Sequence[float]) -> float:
    return float(statistics.median(samples))


def timestamp() -> str:
    """When a result was written, as every benchmark JSON states it."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def write_report(name: str, report: dict[str, Any], out: Path | None = None) -> Path:
    """Write ``report`` (plus the environment) to ``benchmarks/results/<name>.json``."""
    path = out or results_dir() / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    full = {"benchmark": name, "created": timestamp(), **report,
            "environment": environment()}
    path.write_text(json.dumps(full, indent=2, default=str) + "\n")
    return path


def ratio_line(name: str, ratio: float, target: str) -> str:
    """The final line of every script: ``name: ratio`` (ours vs reference), then the target."""
    shown = f"{ratio:.3f}" if ratio >= 0.01 else f"{ratio:.2e}"  # a reuse ratio can be 3e-4
    return f"{name}: {shown}  (target {target})"


def backbone_params(backbone: str, **params: Any) -> dict[str, Any]:
    """``params`` for ``backbone``, with ImageNet backbones' weights off (timing does not depend on them)."""
    return params if backbone == "smallcnn" else {"pretrained": "none", **params}


def build_model(backbone: str, image_size: int, bits: int = 32, seed: int = 0,
                device: str | torch.device = "cpu", **params: Any) -> torch.nn.Module:
    """A hash model from a registered backbone (ImageNet backbones without weights)."""
    from hashbench import plugins
    from hashbench.models import HashModel

    params = backbone_params(backbone, **params)
    torch.manual_seed(seed)
    plugin = plugins.backbones.create(backbone, params)
    return HashModel(plugin.build(image_size), bits).to(device)


#: the grids the runner benchmarks choose from (``--grid``): ``smoke`` is the issue's (7 methods ×
#: 4 defenses × 9 attacks on shapes-tiny, ≈ 1 min sequential on 2 cores), ``small`` the slice the
#: runner tests use (DPSH × {none, CgAT} × center: one chain of stages, so it cannot show parallel
#: speed-up), ``demo`` the README's first-run grid (≈ 8 min)
RUN_GRIDS = {
    "smoke": ["--grid", "smoke"],
    "small": ["--grid", "smoke", "--set", "methods=[dpsh]", "--set", "defenses=[none,cgat]",
              "--set", "attacks=[center]"],
    "demo": ["--grid", "demo"],
}


def hashbench_cli(args: Sequence[str], *, timeout: float = 3600) -> tuple[float, str]:
    """Run ``python -m hashbench.cli.main <args>`` in a subprocess; (wall seconds, stdout). Raises on failure."""
    import subprocess
    import sys

    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "hashbench.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"hashbench {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall, proc.stdout


def planned_stages(grid: Sequence[str], results_dir: Path) -> int:
    """Stages ``hashbench plan`` says are still to run in ``results_dir``."""
    _, out = hashbench_cli(["plan", *grid, "--json", "--results-dir", str(results_dir)])
    return int(json.loads(out)["total"]["to_run"])


def timed_run(grid: Sequence[str], results_dir: Path, run: str, workers: int = 1) -> dict[str, Any]:
    """One ``hashbench run`` (no report): process wall time plus what its run.json records."""
    wall, _ = hashbench_cli(["run", *grid, "--results-dir", str(results_dir), "--run", run, "--no-report", "-q",
                             "--workers", str(workers)])
    manifest = json.loads((results_dir / run / "run.json").read_text())
    return {"process_s": wall, "runner_s": manifest["wall_s"], "executed": manifest["stages"]["executed"],
            "cached": manifest["stages"]["cached"], "executed_by_kind": manifest["stages"]["executed_by_kind"],
            "status": manifest["status"], "workers": workers}
