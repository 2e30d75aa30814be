"""``hashbench doctor``: can this machine run a grid?  Each check returns findings, each problem its fix.

The checks read and never write: the grid is planned as ``hashbench plan`` plans it (datasets
that cannot be opened are reported, not fatal), list-file datasets have a few images per list
decoded through the dataset itself (the project's one image reader), backbones have their
ImageNet weights looked up in torch's hub cache (nothing is downloaded), and the results folder's
free space is compared with what the plan's remaining artifacts will take (:func:`~hashbench.harness.cost.stage_bytes`).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hashbench import plugins
from hashbench.api.dataset import HashDataset
from hashbench.cli.data import NAMES
from hashbench.errors import UserError
from hashbench.harness.config import Config, DatasetDecl
from hashbench.harness.executors.worker import resolve_device
from hashbench.harness.plan import Plan, split_note
from hashbench.harness.pricing import bytes_by_kind
from hashbench.harness.stages.spec import DatasetSpec, PluginSpec
from hashbench.harness.store import ArtifactStore, format_bytes, free_bytes

#: images decoded per list (evenly spaced through it, always its first and last)
SAMPLES_PER_LIST = 8
_SPLIT_ORDER = ("query", "train", "database")


@dataclass(frozen=True)
class Finding:
    """One line of the diagnosis: what was checked, whether it is fine, and how to fix it if not.

    ``warning`` marks a finding worth reading that does not stop the grid from running.
    """

    subject: str
    ok: bool
    detail: str
    fix: str = ""
    warning: bool = False


# -- datasets -----------------------------------------------------------------------------

def plan_datasets(plan: Plan) -> list[tuple[str, DatasetSpec]]:
    """Each distinct dataset spec of the plan (name, resolved spec), in the order first planned."""
    seen: dict[str, tuple[str, DatasetSpec]] = {}
    for stage in plan.stages():
        if stage.kind == "split":
            spec = stage.spec.dataset
            seen.setdefault(spec.key, (spec.name, spec))
    return list(seen.values())


def _data_fix(name: str, root: str, registry: Path) -> str:
    place = f"put the images and list files under {root}, or set datasets.{name}.params.root in {registry}"
    if name in NAMES:
        out = "" if Path(root) == Path("data") / name else f" --out {root}"  # the builder's default is data/NAME
        return f"hashbench data build {name} --from DIR{out} (DIR: the downloaded original files); or {place}"
    return place


def check_dataset(config: Config, name: str, spec: DatasetSpec, plan: Plan) -> list[Finding]:
    """Findings for one dataset of the plan: files present, counts against the declaration,
    unlabelled rows, a sample of images that decode."""
    subject = f"dataset {name}"
    decl = config.dataset(name)
    if spec.type == "shapes":
        return [Finding(subject, True, "embedded (procedural, no files), OK")]
    root = spec.params.get("root")
    if root is not None and not Path(os.path.expanduser(str(root))).is_dir():
        return [Finding(subject, False, f"image root {root} does not exist or is not a folder",
                        _data_fix(name, str(root), config.path))]
    dataset = plan.datasets.get(spec.key)
    if dataset is None:
        why = plan.unavailable.get(name, "it could not be opened")
        fix = _data_fix(name, str(root or "its root"), config.path)
        return [Finding(subject, False, f"cannot be opened: {why}", fix)]
    return [*check_counts(name, dataset, decl), *check_unlabelled(name, dataset, spec),
            *check_images(name, dataset)]


def _lists(dataset: HashDataset) -> dict[str, np.ndarray]:
    """The dataset's own lists (query, train, database), or every item as one list if it has none."""
    predefined = dataset.predefined_split()
    if predefined is None:
        return {"items": np.arange(len(dataset))}
    return {split: np.asarray(getattr(predefined, split)) for split in _SPLIT_ORDER}


def declared_counts(decl: DatasetDecl) -> dict[str, int | None]:
    """The split sizes the registry declares: query, train, database (``None`` where not derivable)."""
    return decl.declared_counts()


def check_counts(name: str, dataset: HashDataset, decl: DatasetDecl) -> list[Finding]:
    """Items per list, exact duplicate lines dropped, and whether the dataset's own split files match the
    declared split sizes (the same note ``hashbench plan`` prints)."""
    subject = f"dataset {name}"
    lists = _lists(dataset)
    counts = ", ".join(f"{split} {len(idx):,}" for split, idx in lists.items())
    fmt = getattr(dataset, "format", None)
    found = [Finding(subject, True, f"{len(dataset):,} items; lists: {counts}" + (f" ({fmt} format)" if fmt else ""))]
    dropped = {split: n for split, n in (getattr(dataset, "duplicate_counts", None) or {}).items() if n}
    if dropped:
        found.append(Finding(subject, True, "lines that repeat an earlier line exactly were dropped: "
                             + ", ".join(f"{split} {n:,}" for split, n in dropped.items()), warning=True))
    s = decl.split
    if "items" in lists or s.draw:
        declared = decl.num_items
        drawn = (f"the split ({s.num_query:,} query / {s.num_train:,} train ⊂ database) is drawn from the "
                 f"{len(dataset):,} items with the run's seed")
        if declared is not None and declared != len(dataset):
            return [*found, Finding(subject, True, f"{len(dataset):,} items, the registry declares {declared:,}; "
                                    + drawn, warning=True)]
        return [*found, Finding(subject, True, drawn)] if s.draw else found
    note = split_note(dataset, decl)
    return found if note is None else [*found, Finding(subject, True, note, warning=True)]


def check_unlabelled(name: str, dataset: HashDataset, spec: DatasetSpec) -> list[Finding]:
    """Rows whose labels are all zero (items relevant to no query), per list."""
    labels = dataset.labels
    found = {split: int((labels[idx].sum(axis=1) == 0).sum()) for split, idx in _lists(dataset).items() if len(idx)}
    found = {split: n for split, n in found.items() if n}
    if not found:
        return []
    counts = ", ".join(f"{split} {n:,}" for split, n in found.items())
    fix = (f"set datasets.{name}.params.drop_unlabeled: true to drop them"
           if "drop_unlabeled" in spec.params else "")
    return [Finding(f"dataset {name}", True, f"unlabelled rows (all-zero labels, relevant to no query): {counts}; "
                    "they are kept", fix, warning=True)]


def sample_indices(n: int, k: int = SAMPLES_PER_LIST) -> np.ndarray:
    """``k`` positions evenly spaced through a list of ``n`` (all of them if ``n <= k``)."""
    if n <= k:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, k).round().astype(np.int64))


def check_images(name: str, dataset: HashDataset) -> list[Finding]:
    """Decode :data:`SAMPLES_PER_LIST` images of each list through the dataset (each item once)."""
    subject = f"dataset {name}"
    decoded: set[int] = set()
    failures: list[str] = []
    shown: list[str] = []
    for split, idx in _lists(dataset).items():
        picked = [int(idx[i]) for i in sample_indices(len(idx))]
        new = [i for i in picked if i not in decoded]
        bad = 0
        for item in new:
            decoded.add(item)
            try:
                dataset.images(np.asarray([item], dtype=np.int64))
            except Exception as exc:  # a plugin may raise anything; the message names the file
                bad += 1
                failures.append(str(exc) if isinstance(exc, UserError) else f"item {item}: {type(exc).__name__}: {exc}")
        shown.append(f"{split} {len(picked) - bad}/{len(picked)}")
    if not failures:
        return [Finding(subject, True, f"sampled images decode ({', '.join(shown)})")]
    return [Finding(subject, False, f"{len(failures)} of {len(decoded)} sampled images do not decode: {failure}",
                    "replace the file or remove its line from the list file (hashbench data build rewrites the "
                    "lists)") for failure in failures]


# -- backbones ----------------------------------------------------------------------------

def plan_backbones(plan: Plan) -> list[PluginSpec]:
    """One backbone spec per (backbone, starting weights) the plan's train stages build."""
    seen: dict[tuple[str, str | None], PluginSpec] = {}
    for stage in plan.stages():
        if stage.kind == "train":
            backbone = stage.spec.backbone
            seen.setdefault((backbone.name, backbone.params.get("pretrained")), backbone)
    return list(seen.values())


def imagenet_cache_path(name: str) -> tuple[Path, str] | None:
    """Where torch's hub cache keeps backbone ``name``'s ImageNet weights, and their URL; ``None`` if the
    plugin does not say (it has no torchvision ``architecture()``)."""
    architecture = getattr(plugins.backbones.get(name), "architecture", None)
    if architecture is None:
        return None
    weights = architecture()[1].IMAGENET1K_V1
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url), weights.url


def check_backbone(backbone: PluginSpec) -> Finding:
    """Whether the backbone's starting weights are here: none needed, a file given, or torch's cache."""
    name = backbone.name
    subject = f"backbone {name}"
    pretrained = backbone.params.get("pretrained")
    if pretrained is None:
        return Finding(subject, True, "needs no ImageNet weights")
    if pretrained == "none":
        return Finding(subject, True, "random initialisation (pretrained: none), no weights needed")
    if pretrained != "imagenet":
        path = Path(pretrained).expanduser()
        if path.is_file():
            return Finding(subject, True, f"weights file {path}")
        return Finding(subject, False, f"weights file {path} does not exist",
                       "give an existing state_dict file with --pretrained FILE, or --pretrained none")
    where = imagenet_cache_path(name)
    if where is None:
        return Finding(subject, True, "ImageNet weights: the plugin loads its own (not checked)", warning=True)
    cache, url = where
    if cache.is_file():
        return Finding(subject, True, f"ImageNet weights cached at {cache}")
    return Finding(subject, False, f"ImageNet weights are not in torch's cache ({cache}); a run would try to "
                   "download them",
                   f"download {url} to {cache}, or pass --pretrained FILE, or --pretrained none (train from scratch)")


# -- device and disk ----------------------------------------------------------------------

def check_device(device: str) -> tuple[Finding, torch.device | None]:
    """The device a run would use: CUDA name and memory, or CPU and its cores."""
    try:
        resolved = resolve_device(device)
    except UserError as exc:
        return Finding("device", False, str(exc), "run with --device cpu (or auto)"), None
    if resolved.type == "cuda":
        props = torch.cuda.get_device_properties(resolved)
        return Finding("device", True, f"CUDA {props.name}, {props.total_memory / 2**30:.1f} GiB"), resolved
    return Finding("device", True, f"CPU, {os.cpu_count() or 'unknown'} cores, {torch.get_num_threads()} torch "
                   "threads"), resolved


def artifact_bytes(plan: Plan, results_dir: Path) -> tuple[int, int]:
    """(bytes the plan's stages not yet in the store will write, how many of them have no size estimate)."""
    per_kind = bytes_by_kind(plan, ArtifactStore(results_dir / "store")).values()
    return sum(b.known for b in per_kind), sum(b.unknown for b in per_kind)


def check_disk(plan: Plan, results_dir: Path) -> Finding:
    """Free space on the results folder's filesystem against the plan's artifact sizes."""
    needed, unknown = artifact_bytes(plan, results_dir)
    free = free_bytes(results_dir)
    extra = f" ({unknown} stages of unknown size not counted)" if unknown else ""
    detail = (f"{format_bytes(free)} free for {results_dir}; the artifacts to write need about "
              f"{format_bytes(needed)}{extra}")
    if free is None:
        return Finding("disk", True, detail, warning=True)
    if free >= needed:
        return Finding("disk", True, detail)
    short = -(-(needed - free) // 2**30)  # GiB, rounded up
    return Finding("disk", False, detail,
                   f"free {short} GiB there, or pass --results-dir on a larger disk")


# -- everything ---------------------------------------------------------------------------

def diagnose(config: Config, plan: Plan, results_dir: Path, device: str = "auto") -> list[Finding]:
    """Every finding for ``plan``: datasets, backbones, the device, the disk (nothing is written)."""
    findings: list[Finding] = []
    for name, spec in plan_datasets(plan):
        with warnings.catch_warnings():  # unlabelled rows are reported as findings
            warnings.simplefilter("ignore")
            findings.extend(check_dataset(config, name, spec, plan))
    findings.extend(check_backbone(b) for b in plan_backbones(plan))
    findings.append(check_device(device)[0])
    findings.append(check_disk(plan, results_dir))
    return findings
