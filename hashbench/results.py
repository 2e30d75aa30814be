"""Result records: one schema-versioned JSON file per evaluated cell, loaded as a tidy DataFrame.

A run is a folder ``<results_dir>/<run>/`` holding ``run.json`` (the run's manifest) and
``records/<cell-id>.json``.  Each record has the cell's coordinates, its resolved
parameters, its metrics (numbers as numbers; MAP as a fraction in [0, 1]), perturbation
statistics in pixel units of [0, 1] images, timings in seconds and provenance.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import UserError

RECORD_SCHEMA_VERSION = 1

#: Columns of ``load(run)``, in order; curve columns hold lists.
COLUMNS = [
    "run", "dataset", "method", "backbone", "bits", "defense", "attack", "seed", "targeted",
    "map", "t_map", "map_topk", "num_queries", "num_database",
    "linf_max", "l2_mean", "mse_mean", "epsilon",
    "attack_wall_s", "train_wall_s", "defend_wall_s",
    "pr_recall", "pr_precision", "pn_n", "pn_precision",
    "split_hash", "cell_id",
]


def default_results_dir() -> Path:
    return Path("results")


def run_dir(run: str | Path, results_dir: str | Path | None = None) -> Path:
    """The folder of ``run``: a path to an existing folder, or a run name under ``results_dir``."""
    path = Path(run)
    if path.is_dir() and (path / "run.json").exists():
        return path
    return Path(results_dir or default_results_dir()) / str(run)


def list_runs(results_dir: str | Path | None = None) -> list[str]:
    root = Path(results_dir or default_results_dir())
    if not root.is_dir():
        return []
    runs = [p for p in root.iterdir() if (p / "run.json").exists()]
    return [p.name for p in sorted(runs, key=lambda p: (p / "run.json").stat().st_mtime)]


def latest_run(results_dir: str | Path | None = None) -> str:
    runs = list_runs(results_dir)
    if not runs:
        where = Path(results_dir or default_results_dir()).resolve()
        raise UserError(f"no runs found under {where}; run `hashbench run` first or pass --results-dir")
    return runs[-1]


def read_records(run: str | Path, results_dir: str | Path | None = None) -> list[dict[str, Any]]:
    folder = run_dir(run, results_dir)
    if not (folder / "run.json").exists():
        known = ", ".join(list_runs(results_dir)) or "none"
        raise UserError(f"run '{run}' not found at {folder} (runs there: {known})")
    records = []
    for path in sorted((folder / "records").glob("*.json")):
        record = json.loads(path.read_text())
        version = record.get("schema_version")
        if version != RECORD_SCHEMA_VERSION:
            raise UserError(
                f"{path}: record schema version {version}, this hashbench reads {RECORD_SCHEMA_VERSION}; "
                "upgrade hashbench or re-run"
            )
        records.append(record)
    return records


def read_manifest(run: str | Path, results_dir: str | Path | None = None) -> dict[str, Any]:
    path = run_dir(run, results_dir) / "run.json"
    if not path.exists():
        raise UserError(f"run '{run}' not found at {path.parent}")
    return json.loads(path.read_text())


def flatten(record: dict[str, Any]) -> dict[str, Any]:
    """One DataFrame row of a record."""
    cell, metrics = record["cell"], record["metrics"]
    pert = record.get("perturbation") or {}
    timing = record.get("timing") or {}
    return {
        "run": record["run"],
        **{k: cell[k] for k in ("dataset", "method", "backbone", "bits", "defense", "attack", "seed")},
        "targeted": record["targeted"],
        "map": metrics["map"],
        "t_map": metrics.get("t_map"),
        "map_topk": metrics.get("map_topk"),
        "num_queries": metrics["num_queries"],
        "num_database": metrics["num_database"],
        "linf_max": pert.get("linf_max"),
        "l2_mean": pert.get("l2_mean"),
        "mse_mean": pert.get("mse_mean"),
        "epsilon": pert.get("epsilon"),
        "attack_wall_s": timing.get("attack_wall_s"),
        "train_wall_s": timing.get("train_wall_s"),
        "defend_wall_s": timing.get("defend_wall_s"),
        "pr_recall": metrics["pr_curve"]["recall"],
        "pr_precision": metrics["pr_curve"]["precision"],
        "pn_n": metrics["p_at_n"]["n"],
        "pn_precision": metrics["p_at_n"]["precision"],
        "split_hash": record["provenance"]["split_hash"],
        "cell_id": record["cell_id"],
    }


def load(run: str | Path, results_dir: str | Path | None = None) -> pd.DataFrame:
    """A tidy DataFrame with one row per evaluated cell of ``run`` (columns: :data:`COLUMNS`).

    Cells whose record says ``status: "failed"`` have no metrics and are left out.
    """
    rows = [flatten(r) for r in read_records(run, results_dir) if r.get("status") != "failed"]
    return pd.DataFrame(rows, columns=COLUMNS)
