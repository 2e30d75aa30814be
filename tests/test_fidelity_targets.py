"""Issue 18, item 4: the target labels the split draws for every targeted attack.

SAAT's ``select_target_label`` draws any non-zero database label vector that shares no class
with the query.  The CgAT group's DHTA (TAD ``dhta.py``) keeps only the vectors that occur more
than its n_t = 9 anchors times (otherwise DHTA's anchor vote repeats a few items and collapses
towards P2P) and counts the all-zero vector like the others.  The CgAT grids take that rule
(``targets: {min_count: 10, zero_label: true}``), the SAAT grids the default.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from hashbench.data.splits import Split, select_target_labels
from hashbench.errors import ConfigError, DataError
from hashbench.harness.config import TargetSpec, apply_overrides, load_config
from hashbench.harness.plan import build_plan
from hashbench.harness.stages.context import StageContext
from hashbench.harness.stages.split import run_split
from hashbench.progress import Reporter

CGAT_RULE = {"min_count": 10, "zero_label": True}


def rows(*groups: tuple[list[int], int]) -> np.ndarray:
    return np.concatenate([np.repeat(np.array([v], dtype=np.uint8), n, axis=0) for v, n in groups])


# queries have class 0; [0,0,1,0] labels 9 database items (≤ n_t), [0,1,0,0] 12 and [0,0,0,1] 10
QUERIES = rows(([1, 0, 0, 0], 300))
DATABASE = rows(([1, 0, 0, 0], 20), ([0, 1, 0, 0], 12), ([0, 0, 1, 0], 9), ([0, 0, 0, 1], 10), ([0, 0, 0, 0], 15))


def drawn(**rule) -> set[tuple[int, ...]]:
    targets, fallbacks = select_target_labels(QUERIES, DATABASE, np.random.default_rng(0), **rule)
    assert fallbacks == 0 and not (targets * QUERIES).any()  # never a shared class
    return {tuple(t) for t in targets}


def test_rare_label_vectors_are_never_targets_under_the_dhta_rule():
    assert drawn(min_count=10) == {(0, 1, 0, 0), (0, 0, 0, 1)}
    assert drawn() == {(0, 1, 0, 0), (0, 0, 1, 0), (0, 0, 0, 1)}  # SAAT's rule keeps the rare one
    with pytest.raises(DataError, match="targets.min_count"):
        select_target_labels(QUERIES, DATABASE, np.random.default_rng(0), min_count=21)


def test_the_zero_label_is_a_target_only_when_admitted():
    assert (0, 0, 0, 0) in drawn(**CGAT_RULE)
    assert (0, 0, 0, 0) not in drawn(min_count=10)
    with pytest.raises(ValueError, match="min_count"):
        select_target_labels(QUERIES, DATABASE, np.random.default_rng(0), min_count=0)


def test_the_default_rule_draws_as_before():
    """The default keeps SAAT's candidates and the same draws (earlier splits keep their targets)."""
    a, _ = select_target_labels(QUERIES, DATABASE, np.random.default_rng(3))
    b, _ = select_target_labels(QUERIES, DATABASE, np.random.default_rng(3), min_count=1, zero_label=False)
    np.testing.assert_array_equal(a, b)
    assert TargetSpec().stage_spec() == {}
    assert TargetSpec(**CGAT_RULE).stage_spec() == {"targets": CGAT_RULE}


@pytest.fixture(scope="module")
def config():
    return load_config()


def split_specs(config, grid: str) -> list[dict]:
    plan = build_plan(config, grid, config.grid(grid), require_data=False)
    return [cell.stages["split"].spec.split for cell in plan.cells]


@pytest.mark.parametrize("grid", ["table1", "table2", "table3", "table4", "table5"])
def test_cgat_grids_take_the_dhta_rule(config, grid):
    specs = split_specs(config, grid)
    assert specs and all(s.get("targets") == CGAT_RULE for s in specs)


@pytest.mark.parametrize("grid", ["saat-table1", "saat-table2", "demo"])
def test_saat_grids_and_the_demo_take_saats_rule(config, grid):
    assert all("targets" not in s for s in split_specs(config, grid))


def test_full_plans_one_split_per_rule(config):
    """A dataset of both papers gets two split stages (same items, other targets) in ``full``."""
    plan = build_plan(config, "full", config.grid("full"), require_data=False)
    flickr = {c.stages["split"].key: c.stages["split"].spec.split.get("targets")
              for c in plan.cells if c.dataset == "flickr25k"}
    assert sorted(map(str, flickr.values())) == sorted([str(CGAT_RULE), "None"])


def test_override_and_bad_value(config):
    members = apply_overrides(config, [("demo", config.grid("demo"))], ["targets={min_count: 3}"])
    assert members[0][1].targets == TargetSpec(min_count=3)
    with pytest.raises(ConfigError, match="--set targets"):
        apply_overrides(config, [("demo", config.grid("demo"))], ["targets={min_count: 0}"])
    with pytest.raises(ConfigError, match="--set targets"):
        apply_overrides(config, [("demo", config.grid("demo"))], ["targets={anchors: 9}"])


def test_the_split_stage_applies_the_grids_rule(tmp_path: Path):
    """End to end through the planner and the split stage, on a shapes split with rare vectors."""
    grid = {"profile": "paper", "datasets": ["few"], "methods": ["dpsh"], "backbones": ["smallcnn"], "bits": [16],
            "defenses": ["none"], "attacks": ["dhta"]}
    registry = {
        "datasets": {"few": {"type": "shapes", "params": {"num_items": 300, "num_classes": 6, "image_size": 32},
                             "split": {"num_query": 60, "num_train": 100}, "map_topk": None}},
        "profiles": {"paper": {"description": "defaults"}},
        "grids": {"any": grid, "dhta": {**grid, "targets": {"min_count": 6}}},
    }
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump(registry))
    cfg = load_config(path)
    ctx = StageContext(torch.device("cpu"), Reporter(), artifact=lambda stage: None)

    def targets_and_counts(name: str) -> tuple[np.ndarray, dict]:
        stage = build_plan(cfg, name, cfg.grid(name)).cells[0].stages["split"]
        art = run_split(ctx, stage)
        split = Split.from_tensors(art.tensors, art.meta["seed"])
        labels = (ctx.dataset(stage.spec.dataset).labels[split.database] != 0).astype(np.uint8)
        vectors, counts = np.unique(labels, axis=0, return_counts=True)
        return split.target_labels, {tuple(v): int(c) for v, c in zip(vectors, counts)}

    strict, counts = targets_and_counts("dhta")
    assert min(counts[tuple(t)] for t in strict) >= 6
    loose, _ = targets_and_counts("any")
    assert min(counts[tuple(t)] for t in loose) < 6  # the rule had rare vectors to leave out
