"""Cost model of a plan: FLOPs per stage, turned into seconds by what this device has shown.

A stage's FLOPs are the backbone's forward FLOPs per image (counted once per backbone
configuration with :class:`torch.utils.flop_counter.FlopCounterMode` on the meta device) times
the number of image passes the stage makes:

| stage | image passes (a backward pass counts as two forwards) |
|---|---|
| chance | no images: 2 · 2 · |query| · |database| · bits per draw (MAP and t-MAP of random codes) |
| pretrain | 3 · pretrain_epochs · |train|, through a head of one output per class |
| train | 3 · epochs · |train| |
| defend | epochs · |train| · (6 + 3 · iterations): clean and adversarial forward/backward, PGD steps |
| prepare | the attack's own count (:meth:`~hashbench.api.attack.Attack.prepare_flops`; unknown if it gives none) |
| encode | |database| + |train| + |query| |
| attack, craft | |query| · the attack's own count per query (:meth:`~hashbench.api.attack.Attack.perturb_flops`; by default 3 · iterations + 2 passes) (a craft is its surrogate's attack) |
| transfer | |query| (the victim encodes the crafted queries) |
| evaluate | Hamming ranking: 2 · |query| · |database| · bits (no images) |

The attacked model's forward pass includes an inference-time defense's purifier (ComDefend) when
the model stage is one (counted in every pass, also for an attack oblivious to it).

Seconds: for each stage kind and plugin, earlier runs on the same device give seconds per
FLOP (``timings.jsonl``).  Without history (the first run), a stage takes its FLOPs divided by
the rate its own network reaches on this device (:func:`network_rate`: the hash model timed at
the stage's batch size, training steps for the stages that back-propagate, forward passes for
encode; see :mod:`hashbench.throughput`), plus reading its images, plus a per-stage overhead
measured on the results' disk (writing and reading an artifact).  An evaluate stage is its
metrics timed on random codes of the split's sizes (:func:`~hashbench.throughput.evaluate_seconds`)
plus writing the cell's record; split and chance use the matrix-multiply rate.  The run's first
training stage also pays torch's one-off optimiser import (:func:`~hashbench.throughput.first_optimiser_s`).
It is an estimate, not a bound: README, "Estimating cost", gives it beside the measured ``demo``
and ``smoke`` runs on this project's 2-core CPU.

Disk: :func:`stage_bytes` sizes each stage's artifact (model checkpoints from the parameter count).

Each kind's own formulas live with the kind (:mod:`hashbench.harness.stages`); this module
dispatches to them and turns FLOPs into seconds.
"""

from __future__ import annotations

import functools
import statistics
import time
from dataclasses import dataclass
from typing import Any, Iterator

import torch

from hashbench.api.dataset import HashDataset
from hashbench.harness.flops import cached_forward_flops, hash_model_builder, plugin_json, train_stage
from hashbench.harness.plan import Plan
from hashbench.harness.sizes import Sizes
from hashbench.harness.stages.base import Work
from hashbench.harness.stages.kinds import KINDS, STAGE_KINDS
from hashbench.harness.stages.spec import PluginSpec, Stage, split_stage
from hashbench.harness.store import ArtifactStore
from hashbench.harness.throughput import (evaluate_seconds, first_optimiser_s, load_seconds, measure_rate, probe_batch,
                                          record_write_s, stage_overhead_s)
from hashbench.harness.timings import device_label

#: output width of the network whose rate is timed: the head is a small share of the FLOPs, so one
#: width serves every code length and class count (one timing per backbone, side, batch and mode)
RATE_OUTPUTS = 32


@functools.lru_cache(maxsize=64)
def _network_rate(backbone_json: str, image_size: int, probe: int, mode: str, device: str) -> float:
    build = hash_model_builder(backbone_json, image_size, RATE_OUTPUTS)
    return measure_rate(build, image_size, cached_forward_flops(backbone_json, image_size, RATE_OUTPUTS), probe, mode,
                        device)


def network_rate(backbone: PluginSpec, image_size: int, batch: int, mode: str, device: str) -> float:
    """FLOP/s of the hash model of ``backbone`` on ``device`` at ``batch`` images
    (:func:`hashbench.throughput.measure_rate` at its :func:`~hashbench.throughput.probe_batch`;
    measured once per process for each backbone, side, probe batch and mode)."""
    spec = plugin_json(backbone)
    probe = probe_batch(batch, cached_forward_flops(spec, image_size, RATE_OUTPUTS), mode, device)
    return _network_rate(spec, image_size, probe, mode, device)


def stage_flops(stage: Stage, sizes: Sizes | None) -> int | None:
    """The model's FLOP count of ``stage`` (see the module table); ``None`` if sizes are unknown."""
    return KINDS[stage.kind].flops(stage, sizes)


def stage_bytes(stage: Stage, sizes: Sizes | None) -> int | None:
    """About what the artifact of ``stage`` will take on disk; ``None`` if unknown.

    A simple model, meant for "is there room", not for accounting:

    | stage | bytes (plus :data:`~hashbench.harness.stages.base.ARTIFACT_OVERHEAD`) |
    |---|---|
    | split | 8 · (|train| + |query| + |database|) + |query| · classes (indices, target labels) |
    | chance, evaluate | :data:`~hashbench.harness.stages.base.SMALL_ARTIFACT` |
    | pretrain | checkpoint of the backbone with a head of one output per class |
    | train, defend | checkpoint: the hash model's state elements (counted on the meta device) × 4 |
    | encode | (|database| + |train| + |query|) · bits (int8 codes) |
    | attack, transfer | |query| · (bits + 12) + 2 · 4 · 3 · side² (codes, three norms, two example batches) |
    | craft | |query| · (4 · 3 · side² + 12) + 2 · 4 · 3 · side² (float32 images, three norms, examples) |
    | prepare | unknown (the attack's own state: a prototype net, a generator) |
    """
    return KINDS[stage.kind].bytes(stage, sizes)


def stage_work(stage: Stage, sizes: Sizes | None) -> Work | None:
    """What :func:`network_rate` to time for ``stage``; ``None`` for a stage without images."""
    return None if sizes is None else KINDS[stage.kind].work(stage, sizes)


def images_read(stage: Stage, sizes: Sizes | None) -> tuple[int, bool]:
    """(images ``stage`` reads from its dataset, whether augmented): every epoch of the training
    stages reads the training set, encode every split, attack and craft the queries (a transfer
    reads its craft's images, not the dataset).  A prepare stage's reads are the attack's own
    business and are not counted."""
    return (0, False) if sizes is None else KINDS[stage.kind].images_read(stage, sizes)


def first_run_seconds(stage: Stage, sizes: Sizes | None, device: str, results_root: str | None,
                      dataset: HashDataset | None = None) -> float | None:
    """Seconds of ``stage`` from its FLOPs and this device's measured rates (no recorded timings):
    FLOPs / the rate of its network, plus reading its images from ``dataset`` (when given), plus
    the per-stage overhead."""
    flops = stage_flops(stage, sizes)
    if flops is None:
        return None
    if stage.kind == "evaluate" and sizes is not None:
        spec = stage.spec
        return (evaluate_seconds(sizes.query, sizes.database, train_stage(stage).spec.bits, sizes.classes or 1,
                                 spec.map_topk, tuple(spec.pn or ()), int(spec.radius))
                + record_write_s(results_root) + stage_overhead_s(results_root))
    work = stage_work(stage, sizes)
    if work is None:
        rate = matmul_flops_per_s(device)
    else:
        rate = network_rate(work.backbone, sizes.image_size, work.batch, work.mode, device)
    seconds = flops / rate + stage_overhead_s(results_root)
    count, augment = images_read(stage, sizes)
    if dataset is not None and count:
        seconds += count * _load_seconds(dataset, augment)
    return seconds


@functools.lru_cache(maxsize=32)
def _load_seconds(dataset: HashDataset, augment: bool) -> float:
    return load_seconds(dataset, augment)




@functools.lru_cache(maxsize=4)
def matmul_flops_per_s(device: str) -> float:
    """This device's fp32 matrix-multiply rate, measured now (a few milliseconds)."""
    dev = torch.device(device)
    n = 512
    a = torch.randn(n, n, device=dev)
    (a @ a).sum().item()  # warm-up
    reps = 8
    start = time.perf_counter()
    for _ in range(reps):
        b = a @ a
    b.sum().item()  # waits for asynchronous devices
    return 2 * n**3 * reps / max(time.perf_counter() - start, 1e-9)


@dataclass
class KindEstimate:
    """One row of ``hashbench plan``."""

    stage: str
    total: int
    cached: int
    to_run: int
    flops: int | None  # FLOPs of the stages to run; None if any is unknown
    estimated_s: float | None
    basis: str | None  # "timings", "flops", "timings+flops", or None when nothing is known

    def as_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "total": self.total, "cached": self.cached, "to_run": self.to_run,
                "flops": self.flops, "estimated_s": self.estimated_s, "basis": self.basis}


def stages_by_kind(plan: Plan, store: ArtifactStore) -> Iterator[tuple[str, list[Stage], list[Stage]]]:
    """(kind, its stages, those not yet in ``store``) for each stage kind of ``plan``, in run order."""
    stages = plan.stages()
    for kind in STAGE_KINDS:
        of_kind = [s for s in stages if s.kind == kind]
        if of_kind:
            yield kind, of_kind, [s for s in of_kind if not store.exists(kind, s.key)]


def estimate_plan(plan: Plan, store: ArtifactStore, device: torch.device, history: list[dict[str, Any]]) -> list[KindEstimate]:
    """Per stage kind: how many stages, how many are in ``store``, and the estimated time of the rest.

    ``history`` is :func:`hashbench.timings.read_timings` of the store; only rows of this
    device count.
    """
    label = device_label(device)
    results_root = str(store.root) if store.root.is_dir() else str(store.root.parent)
    rows = [r for r in history if r.get("device_label") == label or (r.get("device_label") is None and r.get("device") == device.type)]
    per_flop: dict[tuple[str, str], list[float]] = {}
    seconds: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        key = (r["kind"], r.get("plugin", ""))
        seconds.setdefault(key, []).append(float(r["wall_s"]))
        if r.get("flops"):
            per_flop.setdefault(key, []).append(float(r["wall_s"]) / float(r["flops"]))
    by_kind_per_flop = {k: [v for (kind, _), vs in per_flop.items() if kind == k for v in vs] for k in STAGE_KINDS}

    startup = first_optimiser_s()  # before any rate is measured: measure_rate builds an optimiser too
    out = []
    for kind, of_kind, todo in stages_by_kind(plan, store):
        total_flops: int | None = 0
        total_s: float | None = 0.0
        bases = set()
        for stage in todo:
            flops = stage_flops(stage, plan.sizes.get(split_stage(stage).key))
            total_flops = None if flops is None or total_flops is None else total_flops + flops
            key = (kind, stage.spec.plugin)
            if flops and (per_flop.get(key) or by_kind_per_flop[kind]):
                ratio = statistics.median(per_flop.get(key) or by_kind_per_flop[kind])
                estimate, basis = flops * ratio, "timings"
            elif seconds.get(key):
                estimate, basis = statistics.median(seconds[key]), "timings"
            elif flops is not None:
                split = split_stage(stage)
                dataset = plan.datasets.get(split.spec.dataset.key) if split.kind == "split" else None
                estimate = first_run_seconds(stage, plan.sizes.get(split.key), str(device), results_root, dataset)
                if estimate is not None and startup and KINDS[kind].trains:  # the run's first training stage
                    estimate, startup = estimate + startup, 0.0
                basis = "flops"
            else:
                estimate, basis = None, None
            bases.add(basis)
            total_s = None if estimate is None or total_s is None else total_s + estimate
        basis = None if None in bases or not bases else "+".join(sorted(bases))
        out.append(KindEstimate(kind, len(of_kind), len(of_kind) - len(todo), len(todo), total_flops,
                                total_s if todo else 0.0, basis))
    return out
