"""The local executor: runs a plan's stages once each, in dependency order, and writes records.

A stage whose artifact is already in the store (and passes its checksum) is a cache hit.
A stage that fails marks the cells that depend on it failed; the other cells go on.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .errors import HashbenchError, UserError
from .plan import Cell, Plan, Stage
from .progress import Reporter
from .results import RECORD_SCHEMA_VERSION
from .stages import EXECUTORS, StageContext
from .store import Artifact, ArtifactStore
from .timings import record_timing

#: model artifacts are large; keep only a few in memory
_MAX_CACHED_MODELS = 4


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available (use --device cpu or auto)")
    if name not in ("cpu", "cuda"):
        raise UserError(f"--device: unknown device '{name}' (allowed: auto, cpu, cuda)")
    return torch.device(name)


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_json_atomic(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(value, f, indent=2, sort_keys=True, allow_nan=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@dataclass
class RunSummary:
    run: str
    folder: Path
    executed: dict[str, int] = field(default_factory=dict)
    cached: dict[str, int] = field(default_factory=dict)
    failed: list[dict[str, str]] = field(default_factory=list)
    cells: int = 0
    wall_s: float = 0.0

    @property
    def executed_total(self) -> int:
        return sum(self.executed.values())

    @property
    def cached_total(self) -> int:
        return sum(self.cached.values())


class LocalRunner:
    """Runs a :class:`Plan` sequentially in this process."""

    def __init__(self, results_dir: str | Path, device: torch.device, reporter: Reporter | None = None) -> None:
        self.results_dir = Path(results_dir)
        self.store = ArtifactStore(self.results_dir / "store")
        self.device = device
        self.reporter = reporter or Reporter()
        self._memo: OrderedDict[str, Artifact] = OrderedDict()
        self._failed: dict[str, str] = {}
        self._executed: dict[str, int] = {}
        self._cached: dict[str, int] = {}
        self._commit: str | None = None
        self.ctx = StageContext(device=device, reporter=self.reporter, artifact=self.artifact)

    # -- stage execution -------------------------------------------------------------
    def artifact(self, stage: Stage) -> Artifact:
        """The stage's artifact: from memory, from the store, or computed now (inputs first)."""
        if stage.key in self._memo:
            self._memo.move_to_end(stage.key)
            return self._memo[stage.key]
        if stage.key in self._failed:
            raise _StageFailed(self._failed[stage.key])
        art = self.store.load_verified(stage.kind, stage.key)
        if art is None:
            for dep in stage.inputs.values():
                self.artifact(dep)
            art = self._execute(stage)
        else:
            self._cached[stage.kind] = self._cached.get(stage.kind, 0) + 1
        self._remember(stage, art)
        return art

    def _execute(self, stage: Stage) -> Artifact:
        try:
            art = EXECUTORS[stage.kind](self.ctx, stage)
        except Exception as exc:  # a broken plugin or stage fails its cells, not the run
            message = f"{stage.kind} stage {stage.key[:12]} failed: {exc}"
            self._failed[stage.key] = message
            raise _StageFailed(message) from exc
        art.meta.setdefault("device", str(self.device))
        self.store.save(stage.kind, stage.key, art)
        record_timing(self.store, stage, float(art.meta.get("wall_s", 0.0)), str(self.device))
        self._executed[stage.kind] = self._executed.get(stage.kind, 0) + 1
        self.reporter.log(f"done  {stage.label}  {art.meta.get('wall_s', 0.0):.1f}s")
        return art

    def _remember(self, stage: Stage, art: Artifact) -> None:
        self._memo[stage.key] = art
        models = [k for k, a in self._memo.items() if any(n.startswith("model.") for n in a.tensors)]
        for key in models[:-_MAX_CACHED_MODELS]:
            del self._memo[key]

    # -- a whole plan ------------------------------------------------------------------
    def run(self, plan: Plan, run: str) -> RunSummary:
        folder = self.results_dir / run
        start = time.perf_counter()
        self._commit = git_commit()
        manifest = {
            "run": run, "grid": plan.grid_name, "profile": plan.profile_name, "created": now(),
            "finished": None, "status": "running", "hashbench_version": __version__, "git_commit": self._commit,
            "device": str(self.device), "device_name": _device_name(self.device), "python": platform.python_version(),
            "torch": torch.__version__, "platform": platform.platform(), "cells": len(plan.cells),
            "command": " ".join(sys.argv),
        }
        write_json_atomic(folder / "run.json", manifest)
        summary = RunSummary(run, folder, cells=len(plan.cells))
        wanted = {c.cell_id for c in plan.cells}
        for stale in (folder / "records").glob("*.json") if (folder / "records").exists() else []:
            if stale.stem not in wanted:
                stale.unlink()  # a record from an earlier version of this run's grid
        with self.reporter.task(f"run {run}", len(plan.cells)) as advance:
            for cell in plan.cells:
                try:
                    evaluation = self.artifact(cell.evaluate)
                    write_json_atomic(folder / "records" / f"{cell.cell_id}.json", self._record(run, cell, evaluation))
                except _StageFailed as exc:
                    summary.failed.append({"cell_id": cell.cell_id, "error": str(exc)})
                    self.reporter.log(f"FAILED {cell.cell_id}: {exc}")
                    (folder / "records" / f"{cell.cell_id}.json").unlink(missing_ok=True)
                advance(1)
        summary.executed, summary.cached = dict(self._executed), dict(self._cached)
        summary.wall_s = time.perf_counter() - start
        manifest.update(finished=now(), status="failed" if summary.failed else "complete", failed=summary.failed,
                        stages={"executed": summary.executed_total, "cached": summary.cached_total,
                                "executed_by_kind": summary.executed, "cached_by_kind": summary.cached},
                        wall_s=summary.wall_s)
        write_json_atomic(folder / "run.json", manifest)
        return summary

    def _record(self, run: str, cell: Cell, evaluation: Artifact) -> dict[str, Any]:
        metas = {kind: self.artifact(stage).meta for kind, stage in cell.stages.items() if kind != "evaluate"}
        split = cell.stages["split"]
        attack_meta = metas.get("attack")
        perturbation = None
        if attack_meta is not None:
            t = self.artifact(cell.stages["attack"]).tensors
            perturbation = {"linf_max": float(t["linf"].max()), "l2_mean": float(t["l2"].mean()),
                            "mse_mean": float(t["mse"].mean()), "epsilon": attack_meta["epsilon"],
                            "bounded": attack_meta["bounded"]}
        params = {"dataset": split.spec["dataset"]["params"], "split": split.spec["split"]}
        for kind in ("train", "defend", "attack"):
            if kind in cell.stages:
                spec = cell.stages[kind].spec
                for part in ("method", "backbone", "defense", "attack"):
                    if part in spec:
                        params[part] = spec[part]["params"]
        plugins = {part: cell.stages[kind].spec[part]["origin"]
                   for kind, part in (("train", "method"), ("train", "backbone"), ("defend", "defense"), ("attack", "attack"))
                   if kind in cell.stages}
        return {
            "schema_version": RECORD_SCHEMA_VERSION,
            "run": run,
            "cell_id": cell.cell_id,
            "cell": cell.coords,
            "targeted": bool(attack_meta and attack_meta["targeted"]),
            "params": params,
            "metrics": evaluation.meta["metrics"],
            "perturbation": perturbation,
            "timing": {"train_wall_s": metas["train"]["wall_s"],
                       "defend_wall_s": metas["defend"]["wall_s"] if "defend" in metas else None,
                       "attack_wall_s": attack_meta["wall_s"] if attack_meta else None,
                       "evaluate_wall_s": evaluation.meta["wall_s"]},
            "provenance": {
                "hashbench_version": __version__, "git_commit": self._commit,
                "python": platform.python_version(), "torch": torch.__version__,
                "device": metas["train"].get("device", str(self.device)),
                "seeds": {"cell": cell.seed, **{k: s.spec["seed"] for k, s in cell.stages.items() if "seed" in s.spec}},
                "split_hash": metas["split"]["hash"],
                "artifact_keys": {k: s.key for k, s in cell.stages.items()},
                "plugins": plugins,
                "peak_memory_mb": peak_memory_mb(self.device),
                "created": now(),
            },
        }


class _StageFailed(HashbenchError):
    pass


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()
