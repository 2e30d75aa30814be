"""The record schema: its version, the columns of :func:`hashbench.results.load` and how a record
becomes one row.  Records are built by :mod:`hashbench.results.records`."""

from __future__ import annotations

from typing import Any

#: The ``attack`` value of a cell that evaluates the clean queries (no attack).
CLEAN = "clean"

RECORD_SCHEMA_VERSION = 1

#: Columns of ``load(run)``, in order; curve columns hold lists.  ``surrogate`` is ``None`` for the
#: white-box cells and names the model whose adversarial queries attacked this one in a transfer
#: cell (:func:`hashbench.harness.plan.model_id`); tables of a model's own robustness take the white-box rows.
COLUMNS = [
    "run", "dataset", "method", "backbone", "bits", "defense", "attack", "surrogate", "seed", "targeted",
    "map", "t_map", "map_topk", "num_queries", "num_database", "precision_radius", "radius",
    "chance_map", "chance_t_map", "distinct_codes", "bit_balance", "dead_bits",
    "linf_max", "l2_mean", "mse_mean", "epsilon", "bounded",
    "attack_wall_s", "train_wall_s", "defend_wall_s",
    "pr_recall", "pr_precision", "pn_n", "pn_precision", "rn_n", "rn_recall",
    "split_hash", "cell_id",
]


def flatten(record: dict[str, Any]) -> dict[str, Any]:
    """One DataFrame row of a record."""
    cell, metrics = record["cell"], record["metrics"]
    pert = record.get("perturbation") or {}
    timing = record.get("timing") or {}
    chance = metrics.get("chance") or {}
    health = metrics.get("code_health") or {}
    radius = metrics.get("precision_radius") or {}  # absent from records written before it existed
    recall = metrics.get("r_at_n") or {}
    return {
        "run": record["run"],
        **{k: cell[k] for k in ("dataset", "method", "backbone", "bits", "defense", "attack", "seed")},
        "surrogate": cell.get("surrogate"),  # absent from records written before transfer cells existed
        "targeted": record["targeted"],
        "map": metrics["map"],
        "t_map": metrics.get("t_map"),
        "map_topk": metrics.get("map_topk"),
        "num_queries": metrics["num_queries"],
        "num_database": metrics["num_database"],
        "precision_radius": radius.get("precision"),  # precision within Hamming radius `radius`
        "radius": radius.get("radius"),
        "chance_map": chance.get("map"),  # random balanced codes on the same split and cut-off
        "chance_t_map": chance.get("t_map"),
        "distinct_codes": health.get("distinct_codes"),  # the model's database codes
        "bit_balance": health.get("bit_balance"),
        "dead_bits": health.get("dead_bits"),
        "linf_max": pert.get("linf_max"),
        "l2_mean": pert.get("l2_mean"),
        "mse_mean": pert.get("mse_mean"),
        "epsilon": pert.get("epsilon"),
        "bounded": pert.get("bounded"),  # False: a generative attack without an ε-ball (ProS-GAN)
        "attack_wall_s": timing.get("attack_wall_s"),
        "train_wall_s": timing.get("train_wall_s"),
        "defend_wall_s": timing.get("defend_wall_s"),
        "pr_recall": metrics["pr_curve"]["recall"],
        "pr_precision": metrics["pr_curve"]["precision"],
        "pn_n": metrics["p_at_n"]["n"],
        "pn_precision": metrics["p_at_n"]["precision"],
        "rn_n": recall.get("n"),
        "rn_recall": recall.get("recall"),
        "split_hash": record["provenance"]["split_hash"],
        "cell_id": record["cell_id"],
    }
