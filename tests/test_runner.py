"""End to end on the smoke grid: stage counts, caching, invalidation, records, determinism."""

import json

import pytest
import torch

from hashbench.plan import build_plan
from hashbench.results import load, read_records
from hashbench.runner import LocalRunner


def _run(config, results_dir, grid=None, run="smoke"):
    grid = grid or config.grid("smoke")
    plan = build_plan(config, "smoke", grid)
    return LocalRunner(results_dir, torch.device("cpu")).run(plan, run)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, config):
    root = tmp_path_factory.mktemp("results")
    return root, _run(config, root)


def test_every_stage_runs_once(first_run):
    root, summary = first_run
    manifest = json.loads((root / "smoke" / "run.json").read_text())
    assert manifest["status"] == "complete" and manifest["cells"] == 4
    assert manifest["stages"]["executed_by_kind"] == summary.executed
    assert manifest["stages"]["executed"] == 11 and manifest["stages"]["cached"] == summary.cached_total
    # 1 split, 1 clean model, 1 defended model, codes of both, the attack on both,
    # and 4 evaluations (clean + center for each defense)
    assert summary.executed == {"split": 1, "train": 1, "defend": 1, "encode": 2, "attack": 2, "evaluate": 4}
    assert not summary.failed


def test_records_and_dataframe(first_run):
    root, _ = first_run
    df = load("smoke", root)
    assert len(df) == 4
    assert set(df["defense"]) == {"none", "cgat"} and set(df["attack"]) == {"clean", "center"}
    assert df["map"].between(0, 1).all()
    attacked = df[df["attack"] == "center"]
    assert (attacked["linf_max"] <= 8 / 255 + 1e-5).all()
    assert df["split_hash"].nunique() == 1
    record = read_records("smoke", root)[0]
    prov = record["provenance"]
    assert {"split", "train"} <= set(prov["artifact_keys"]) and prov["seeds"]["cell"] == 0
    assert prov["plugins"]["method"][0] == "hashbench"


def test_second_run_recomputes_nothing(first_run, config):
    root, first = first_run
    again = _run(config, root)
    assert again.executed == {}
    assert again.cached_total >= 1
    assert [r["metrics"] for r in read_records("smoke", root)] == [r["metrics"] for r in read_records("smoke", root)]


def test_changing_an_attack_parameter_recomputes_only_that_attack(first_run, config):
    root, _ = first_run
    grid = config.grid("smoke")
    params = {**grid.params, "attacks": {"center": {"iterations": 4}}}
    summary = _run(config, root, grid.model_copy(update={"params": params}), run="smoke-it4")
    assert summary.executed == {"attack": 2, "evaluate": 2}


def test_same_seed_same_numbers(first_run, config, tmp_path):
    root, _ = first_run
    _run(config, tmp_path)
    ours = {r["cell_id"]: r["metrics"] for r in read_records("smoke", root)}
    theirs = {r["cell_id"]: r["metrics"] for r in read_records("smoke", tmp_path)}
    assert ours == theirs
    keys = lambda d: {r["cell_id"]: r["provenance"]["artifact_keys"] for r in read_records("smoke", d)}
    assert keys(root) == keys(tmp_path)
