"""Building a cell's result record (schema :data:`~hashbench.results.schema.RECORD_SCHEMA_VERSION`):
its coordinates, resolved parameters, metrics, perturbation, timings and provenance, from the
stored metas of its stages."""

from __future__ import annotations

import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from hashbench import __version__
from hashbench.harness.plan import Cell
from hashbench.harness.stages.attack import perturbation_summary
from hashbench.harness.store import ArtifactStore
from hashbench.results.schema import RECORD_SCHEMA_VERSION

#: stage metas, by the cell's stage name (``None`` for a stage whose meta could not be read)
Metas = dict[str, "dict[str, Any] | None"]


def git_commit() -> str | None:
    """The commit of the hashbench checkout, if it is one."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def provenance(cell: Cell, metas: Metas, commit: str | None) -> dict[str, Any]:
    """Seeds, split, versions, artifact keys, plugin origins, per-stage time and memory."""
    per_stage = {kind: {k: (metas[kind] or {}).get(k) for k in ("wall_s", "peak_rss_mb", "peak_gpu_mb", "device")}
                 for kind in cell.stages}
    # per stage: GPU memory where the stage ran on a GPU, else the process's resident set
    peaks = {kind: s["peak_gpu_mb"] if s["peak_gpu_mb"] is not None else s["peak_rss_mb"]
             for kind, s in per_stage.items()}
    train_meta = metas.get("train") or {}
    split_meta = metas.get("split") or {}
    return {
        "hashbench_version": __version__, "git_commit": commit,
        "python": platform.python_version(), "torch": torch.__version__,
        "device": train_meta.get("device"),
        "seeds": {"cell": cell.seed, **{k: s.spec.seed for k, s in cell.stages.items() if hasattr(s.spec, "seed")}},
        "split_hash": split_meta.get("hash"),
        "split_sizes": split_meta.get("sizes"),
        "split_source": split_meta.get("source"),
        "dataset_fingerprint": cell.stages["split"].spec.fingerprint,
        "artifact_keys": {k: s.key for k, s in cell.stages.items()},
        "plugins": {part: list(getattr(cell.stages[kind].spec, part).origin)
                    for kind, part in (("train", "method"), ("train", "backbone"), ("defend", "defense"),
                                       ("attack", "attack"), ("craft", "attack")) if kind in cell.stages},
        "amp": cell.stages["train"].spec.amp,
        "peak_memory_mb": {kind: mb for kind, mb in peaks.items() if mb is not None},
        "stages": per_stage,
        "grid": cell.grid,
        "created": now(),
    }


def failed_record(run: str, cell: Cell, metas: Metas, commit: str | None, message: str, kind: str,
                  tb: str | None) -> dict[str, Any]:
    """The record of a cell one of whose stages failed (``kind``), with the error and traceback."""
    return {"schema_version": RECORD_SCHEMA_VERSION, "status": "failed", "run": run, "cell_id": cell.cell_id,
            "cell": cell.coords, "error": message, "failed_stage": kind, "traceback": tb,
            "provenance": provenance(cell, metas, commit)}


def ok_record(run: str, cell: Cell, metas: Metas, commit: str | None, store: ArtifactStore) -> dict[str, Any]:
    """The record of an evaluated cell (``metas["evaluate"]`` must be readable)."""
    evaluation = metas["evaluate"]
    split = cell.stages["split"].spec
    attack_meta = metas.get("attack") or metas.get("transfer") or {}  # a transfer copies its craft's figures
    stats = attack_meta.get("perturbation")
    attack = cell.stages.get("attack")
    if stats is None and attack is not None and store.exists("attack", attack.key):
        stats = perturbation_summary(store.load("attack", attack.key).tensors)  # stored before its meta held it
    perturbation = None if stats is None else {**stats, "epsilon": attack_meta.get("epsilon"),
                                               "bounded": attack_meta.get("bounded")}
    params = {"dataset": dict(split.dataset.params), "split": split.split}
    for kind in ("train", "defend", "attack", "craft"):
        if kind in cell.stages:
            params.update({part: dict(plugin.params) for part, plugin in cell.stages[kind].spec.plugins().items()})
    evaluated = cell.evaluate.spec.attack
    wall = lambda kind: (metas.get(kind) or {}).get("wall_s")  # noqa: E731
    return {
        "schema_version": RECORD_SCHEMA_VERSION,
        "status": "ok",
        "run": run,
        "cell_id": cell.cell_id,
        "cell": cell.coords,
        "targeted": bool(evaluated and evaluated.targeted),
        "params": params,
        "metrics": evaluation["metrics"],
        "perturbation": perturbation,
        # a transfer cell's attack time is its surrogate's crafting (its transfer stage only encodes)
        "timing": {"train_wall_s": wall("train"), "defend_wall_s": wall("defend"),
                   "attack_wall_s": wall("attack") if "attack" in cell.stages else wall("craft"),
                   "evaluate_wall_s": wall("evaluate")},
        "provenance": provenance(cell, metas, commit),
    }
