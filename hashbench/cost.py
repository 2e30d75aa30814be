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
| prepare | the attack's own count (:meth:`~hashbench.attack.Attack.prepare_flops`; unknown if it gives none) |
| encode | |database| + |train| + |query| |
| attack, craft | |query| · the attack's own count per query (:meth:`~hashbench.attack.Attack.perturb_flops`; by default 3 · iterations + 2 passes) (a craft is its surrogate's attack) |
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
"""

from __future__ import annotations

import functools
import json
import statistics
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator

import torch
from torch import nn

from . import registries
from .attack import PrepareSizes
from .data.base import HashDataset
from .codes import ENCODE_BATCH
from .store import ArtifactStore, canonical_json
from .defense import InferenceDefense
from .metrics import DEFAULT_RADIUS
from .throughput import (evaluate_seconds, first_optimiser_s, load_seconds, measure_rate, probe_batch, record_write_s,
                         stage_overhead_s)

if TYPE_CHECKING:
    from .plan import Plan, Stage

#: stage kinds that build an optimiser (the first of them in a run pays :func:`first_optimiser_s`)
TRAINING_KINDS = ("pretrain", "train", "defend", "prepare")
GPU_KINDS = ("pretrain", "train", "defend", "prepare", "attack", "craft", "transfer", "encode")


@dataclass(frozen=True)
class Sizes:
    """How many items a split has, and the image side."""

    train: int
    query: int
    database: int
    image_size: int
    classes: int | None = None


def dataset_sizes(dataset: HashDataset, split_spec: dict[str, Any]) -> Sizes:
    """Sizes of the split a ``split`` stage will draw (a predefined split wins, as in ``make_split``)."""
    predefined = None if split_spec.get("mode") == "draw" else dataset.predefined_split()
    if predefined is not None:
        return Sizes(len(predefined.train), len(predefined.query), len(predefined.database), dataset.image_size,
                     dataset.num_classes)
    query = split_spec["num_query"]
    database = split_spec.get("num_database") or max(0, len(dataset) - query)
    return Sizes(split_spec["num_train"], query, database, dataset.image_size, dataset.num_classes)


def declared_sizes(split_spec: dict[str, Any], num_items: int | None, image_size: int | None,
                   classes: int | None = None) -> Sizes | None:
    """Sizes from a dataset's declaration, for data that is not present; ``None`` if unknown."""
    if image_size is None or (num_items is None and split_spec.get("num_database") is None):
        return None
    query = split_spec["num_query"]
    database = split_spec.get("num_database") or max(0, (num_items or 0) - query)
    return Sizes(split_spec["num_train"], query, database, image_size, classes)


def module_flops(build: Callable[[], nn.Module], *input_shapes: tuple[int, ...]) -> int:
    """FLOPs of one forward pass of the network ``build()`` on zero inputs of ``input_shapes``.

    Counted with :class:`torch.utils.flop_counter.FlopCounterMode` on the meta device (no
    memory, no compute); a network that cannot be built there runs once for real, without
    gradients.
    """
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    try:
        with torch.device("meta"):
            net = build()
            inputs = [torch.zeros(shape) for shape in input_shapes]
        with counter:
            net(*inputs)
    except Exception:
        counter = FlopCounterMode(display=False)
        net = build().eval()
        with torch.no_grad(), counter:
            net(*(torch.zeros(shape) for shape in input_shapes))
    return int(counter.get_total_flops())


@functools.lru_cache(maxsize=128)
def class_flops(cls: Callable[..., nn.Module], args: tuple, *input_shapes: tuple[int, ...]) -> int:
    """:func:`module_flops` of ``cls(*args)``, counted once per process for each (class, arguments,
    input shapes): plan estimates and every stage's timing record ask for the same networks."""
    return module_flops(lambda: cls(*args), *input_shapes)


def _hash_model_builder(backbone_json: str, image_size: int, bits: int) -> Callable[[], nn.Module]:
    """A function building the hash model of a backbone spec, without ImageNet weights (counting
    needs the architecture only)."""
    from .models.hash_model import HashModel

    backbone = json.loads(backbone_json)
    params = dict(backbone["params"])
    if "pretrained" in params:
        params["pretrained"] = "none"
    plugin = registries.backbones.create(backbone["name"], params)
    return lambda: HashModel(plugin.build(image_size), bits)


@functools.lru_cache(maxsize=64)
def _forward_flops(backbone_json: str, image_size: int, bits: int) -> int:
    return module_flops(_hash_model_builder(backbone_json, image_size, bits), (1, 3, image_size, image_size))


@functools.lru_cache(maxsize=64)
def _state_numel(backbone_json: str, image_size: int, bits: int) -> int:
    build = _hash_model_builder(backbone_json, image_size, bits)
    try:
        with torch.device("meta"):  # no memory, no weights: only the shapes
            net = build()
    except Exception:
        net = build()
    return sum(t.numel() for t in net.state_dict().values())


def checkpoint_bytes(backbone: dict[str, Any], image_size: int, bits: int) -> int:
    """Bytes of a stored hash model: its state's element count (built on the meta device) × 4 (fp32)."""
    spec = {"name": backbone["name"], "params": backbone["params"]}
    return 4 * _state_numel(canonical_json(spec), image_size, bits)


def forward_flops(backbone: dict[str, Any], image_size: int, bits: int) -> int:
    """FLOPs of one image's forward pass through the hash model (cached per backbone configuration)."""
    spec = {"name": backbone["name"], "params": backbone["params"]}
    return _forward_flops(canonical_json(spec), image_size, bits)


@functools.lru_cache(maxsize=64)
def _purifier_flops(defense_json: str, image_size: int) -> int:
    defense = json.loads(defense_json)
    plugin = registries.defenses.create(defense["name"], defense["params"])
    return module_flops(plugin.build_purifier, (1, 3, image_size, image_size))


def purifier_flops(defense: dict[str, Any], image_size: int) -> int:
    """FLOPs of one image's pass through an inference-time defense's purifier; 0 for a defense
    that trains the model instead."""
    if not issubclass(registries.defenses.get(defense["name"]), InferenceDefense):
        return 0
    return _purifier_flops(canonical_json({"name": defense["name"], "params": defense["params"]}), image_size)


def _defend_stage(stage: Stage) -> Stage | None:
    """The defend stage whose model ``stage`` uses, if any (the clean model has none)."""
    s: Stage | None = stage
    while s is not None and s.kind not in ("defend", "train"):
        s = s.inputs.get("model") or s.inputs.get("encode")
    return s if s is not None and s.kind == "defend" else None


def model_forward_flops(stage: Stage, sizes: Sizes, train: Stage) -> int:
    """One image's forward pass through the model ``stage`` encodes or attacks: the hash model of
    ``train``, behind the purifier of an inference-time defense."""
    f = forward_flops(train.spec["backbone"], sizes.image_size, train.spec["bits"])
    defend = _defend_stage(stage) if stage.kind != "defend" else None
    return f + (purifier_flops(defend.spec["defense"], sizes.image_size) if defend is not None else 0)


#: output width of the network whose rate is timed: the head is a small share of the FLOPs, so one
#: width serves every code length and class count (one timing per backbone, side, batch and mode)
RATE_OUTPUTS = 32


@functools.lru_cache(maxsize=64)
def _network_rate(backbone_json: str, image_size: int, probe: int, mode: str, device: str) -> float:
    build = _hash_model_builder(backbone_json, image_size, RATE_OUTPUTS)
    return measure_rate(build, image_size, _forward_flops(backbone_json, image_size, RATE_OUTPUTS), probe, mode, device)


def network_rate(backbone: dict[str, Any], image_size: int, batch: int, mode: str, device: str) -> float:
    """FLOP/s of the hash model of ``backbone`` on ``device`` at ``batch`` images
    (:func:`hashbench.throughput.measure_rate` at its :func:`~hashbench.throughput.probe_batch`;
    measured once per process for each backbone, side, probe batch and mode)."""
    spec = canonical_json({"name": backbone["name"], "params": backbone["params"]})
    probe = probe_batch(batch, _forward_flops(spec, image_size, RATE_OUTPUTS), mode, device)
    return _network_rate(spec, image_size, probe, mode, device)


@dataclass(frozen=True)
class Work:
    """The network a stage runs and how: its backbone, batch and :func:`network_rate` mode."""

    backbone: dict[str, Any]
    batch: int
    mode: str


def stage_work(stage: Stage, sizes: Sizes | None) -> Work | None:
    """What :func:`network_rate` to time for ``stage``; ``None`` for a stage without images."""
    if sizes is None:
        return None
    if stage.kind == "pretrain":
        if not sizes.classes:
            return None
        return Work(stage.spec["backbone"], min(_param(stage.spec, "backbone", "pretrain_batch_size", 64), sizes.train),
                    "train")
    train = _train_stage(stage)
    if train is None or stage.kind not in ("train", "defend", "prepare", "attack", "craft", "encode", "transfer"):
        return None
    part, items = {"train": ("method", sizes.train), "defend": ("defense", sizes.train),
                   "prepare": ("attack", sizes.train), "attack": ("attack", sizes.query),
                   "craft": ("attack", sizes.query), "encode": (None, sizes.database),
                   "transfer": (None, sizes.query)}[stage.kind]
    batch = ENCODE_BATCH if part is None else _param(stage.spec, part, "batch_size", 32)
    return Work(train.spec["backbone"], max(1, min(batch, items)),
                "infer" if stage.kind in ("encode", "transfer") else "train")


def images_read(stage: Stage, sizes: Sizes | None) -> tuple[int, bool]:
    """(images ``stage`` reads from its dataset, whether augmented): every epoch of the training
    stages reads the training set, encode every split, attack and craft the queries (a transfer
    reads its craft's images, not the dataset).  A prepare stage's reads are the attack's own
    business and are not counted."""
    if sizes is None:
        return 0, False
    spec = stage.spec
    if stage.kind == "pretrain":
        return _param(spec, "backbone", "pretrain_epochs", 1) * sizes.train, True
    if stage.kind == "train":
        return _param(spec, "method", "epochs", 1) * sizes.train, bool(_param(spec, "method", "augment", 1))
    if stage.kind == "defend":
        return _param(spec, "defense", "epochs", 1) * sizes.train, bool(_param(spec, "defense", "augment", 0))
    if stage.kind == "encode":
        return sizes.database + sizes.train + sizes.query, False
    if stage.kind in ("attack", "craft"):
        return sizes.query, False
    return 0, False


def first_run_seconds(stage: Stage, sizes: Sizes | None, device: str, results_root: str | None,
                      dataset: HashDataset | None = None) -> float | None:
    """Seconds of ``stage`` from its FLOPs and this device's measured rates (no recorded timings):
    FLOPs / the rate of its network, plus reading its images from ``dataset`` (when given), plus
    the per-stage overhead."""
    flops = stage_flops(stage, sizes)
    if flops is None:
        return None
    if stage.kind == "evaluate" and sizes is not None:
        pn = tuple(stage.spec.get("pn") or ())
        return (evaluate_seconds(sizes.query, sizes.database, _train_stage(stage).spec["bits"], sizes.classes or 1,
                                 stage.spec.get("map_topk"), pn, int(stage.spec.get("radius", DEFAULT_RADIUS)))
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


def _train_stage(stage: Stage) -> Stage | None:
    s: Stage | None = stage
    while s is not None and s.kind != "train":
        s = s.inputs.get("model") or s.inputs.get("encode")
    return s


def _param(spec: dict[str, Any], part: str, name: str, default: int) -> int:
    value = (spec.get(part) or {}).get("params", {}).get(name)
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def stage_flops(stage: Stage, sizes: Sizes | None) -> int | None:
    """The model's FLOP count of ``stage`` (see the module table); ``None`` if sizes are unknown."""
    if stage.kind == "split":
        return 0
    if sizes is not None and stage.kind == "chance":  # MAP and t-MAP of each draw
        return 2 * 2 * sizes.query * sizes.database * stage.spec["bits"] * stage.spec["draws"]
    if sizes is not None and sizes.classes and stage.kind == "pretrain":  # a head of one output per class
        passes = 3 * _param(stage.spec, "backbone", "pretrain_epochs", 1) * sizes.train
        return forward_flops(stage.spec["backbone"], sizes.image_size, sizes.classes) * passes
    train = _train_stage(stage)
    if sizes is None or train is None:
        return None
    bits = train.spec["bits"]
    if stage.kind == "evaluate":
        return 2 * sizes.query * sizes.database * bits
    f = model_forward_flops(stage, sizes, train)
    spec = stage.spec
    if stage.kind == "train":
        passes = 3 * _param(spec, "method", "epochs", 1) * sizes.train
    elif stage.kind == "defend":
        passes = _param(spec, "defense", "epochs", 1) * sizes.train * (6 + 3 * _param(spec, "defense", "iterations", 0))
    elif stage.kind == "prepare":
        return _attack_flops(spec["attack"], "prepare_flops",
                             PrepareSizes(sizes.train, sizes.image_size, bits, sizes.classes, f))
    elif stage.kind == "encode":
        passes = sizes.database + sizes.train + sizes.query
    elif stage.kind in ("attack", "craft"):
        per_query = _attack_flops(spec["attack"], "perturb_flops",
                                  PrepareSizes(sizes.train, sizes.image_size, bits, sizes.classes, f))
        return None if per_query is None else sizes.query * per_query
    elif stage.kind == "transfer":
        passes = sizes.query
    else:
        return None
    return f * passes


def _attack_flops(attack: dict[str, Any], method: str, sizes: PrepareSizes) -> int | None:
    """The attack plugin's own count (``prepare_flops`` or ``perturb_flops``); ``None`` if it gives
    none or fails (an estimate never fails a plan)."""
    try:
        flops = getattr(registries.attacks.create(attack["name"], attack["params"]), method)(sizes)
    except Exception:
        return None
    return int(flops) if flops is not None else None


#: bytes every artifact adds to its tensors: manifest, metadata, safetensors headers (about)
ARTIFACT_OVERHEAD = 4096
#: an evaluate or chance artifact: metrics, curves and example rankings, all small (about)
SMALL_ARTIFACT = 64 * 1024


def stage_bytes(stage: Stage, sizes: Sizes | None) -> int | None:
    """About what the artifact of ``stage`` will take on disk; ``None`` if unknown.

    A simple model, meant for "is there room", not for accounting:

    | stage | bytes (plus :data:`ARTIFACT_OVERHEAD`) |
    |---|---|
    | split | 8 · (|train| + |query| + |database|) + |query| · classes (indices, target labels) |
    | chance, evaluate | :data:`SMALL_ARTIFACT` |
    | pretrain | checkpoint of the backbone with a head of one output per class |
    | train, defend | checkpoint: the hash model's state elements (counted on the meta device) × 4 |
    | encode | (|database| + |train| + |query|) · bits (int8 codes) |
    | attack, transfer | |query| · (bits + 12) + 2 · 4 · 3 · side² (codes, three norms, two example batches) |
    | craft | |query| · (4 · 3 · side² + 12) + 2 · 4 · 3 · side² (float32 images, three norms, examples) |
    | prepare | unknown (the attack's own state: a prototype net, a generator) |
    """
    if stage.kind in ("chance", "evaluate"):
        return SMALL_ARTIFACT + ARTIFACT_OVERHEAD
    if sizes is None or stage.kind == "prepare":
        return None
    items = sizes.train + sizes.query + sizes.database
    if stage.kind == "split":
        return 8 * items + sizes.query * (sizes.classes or 0) + ARTIFACT_OVERHEAD
    if stage.kind == "pretrain":
        if not sizes.classes:
            return None
        return checkpoint_bytes(stage.spec["backbone"], sizes.image_size, sizes.classes) + ARTIFACT_OVERHEAD
    train = _train_stage(stage)
    if train is None:
        return None
    bits = train.spec["bits"]
    if stage.kind in ("train", "defend"):
        return checkpoint_bytes(train.spec["backbone"], sizes.image_size, bits) + ARTIFACT_OVERHEAD
    if stage.kind == "encode":
        return items * bits + ARTIFACT_OVERHEAD
    if stage.kind in ("attack", "transfer"):
        return sizes.query * (bits + 12) + 2 * 4 * 3 * sizes.image_size**2 + ARTIFACT_OVERHEAD
    if stage.kind == "craft":
        return sizes.query * (4 * 3 * sizes.image_size**2 + 12) + 2 * 4 * 3 * sizes.image_size**2 + ARTIFACT_OVERHEAD
    return None


def split_stage(stage: Stage) -> Stage:
    return stage if stage.kind == "split" else stage.inputs["split"]


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
    from .plan import STAGE_KINDS

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
    from .plan import STAGE_KINDS, dataset_key
    from .timings import device_label, stage_plugin

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
            key = (kind, stage_plugin(stage))
            if flops and (per_flop.get(key) or by_kind_per_flop[kind]):
                ratio = statistics.median(per_flop.get(key) or by_kind_per_flop[kind])
                estimate, basis = flops * ratio, "timings"
            elif seconds.get(key):
                estimate, basis = statistics.median(seconds[key]), "timings"
            elif flops is not None:
                split = split_stage(stage)
                dataset = plan.datasets.get(dataset_key(split.spec["dataset"])) if "dataset" in split.spec else None
                estimate = first_run_seconds(stage, plan.sizes.get(split.key), str(device), results_root, dataset)
                if estimate is not None and startup and kind in TRAINING_KINDS:  # the run's first training stage
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
