"""End to end on a small grid, in this process: stage counts, caching, invalidation, records,
determinism, failures, corrupt inputs, mixed precision, memory accounting."""

import json

import pytest
import torch
from runner_helpers import SMALL_CELLS, SMALL_STAGES, metrics, small_plan, timings

from hashbench import plugins
from hashbench.harness.plan import PlanOptions
from hashbench.harness.runner import Runner
from hashbench.harness.store import ArtifactStore
from hashbench.results import load, read_records


def _run(config, results_dir, extra=None, run="smoke", options=None):
    return Runner(results_dir, torch.device("cpu")).run(small_plan(config, extra, options), run)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, config):
    root = tmp_path_factory.mktemp("results")
    return root, _run(config, root)


def test_every_stage_runs_once(first_run):
    root, summary = first_run
    manifest = json.loads((root / "smoke" / "run.json").read_text())
    assert manifest["status"] == "complete" and manifest["cells"] == SMALL_CELLS
    assert manifest["stages"]["executed_by_kind"] == summary.executed
    assert manifest["stages"]["executed"] == sum(SMALL_STAGES.values()) and manifest["stages"]["cached"] == 0
    assert summary.executed == SMALL_STAGES
    assert not summary.failed
    # one timing line per executed stage, each key once
    keys = [t["key"] for t in timings(root)]
    assert len(keys) == len(set(keys)) == sum(SMALL_STAGES.values())


def test_records_and_dataframe(first_run):
    root, _ = first_run
    df = load("smoke", root)
    assert len(df) == SMALL_CELLS
    assert set(df["defense"]) == {"none", "cgat"} and set(df["attack"]) == {"clean", "center"}
    assert df["map"].between(0, 1).all()
    attacked = df[df["attack"] == "center"]
    assert (attacked["linf_max"] <= 8 / 255 + 1e-5).all()
    assert df["split_hash"].nunique() == 1
    record = read_records("smoke", root)[0]
    assert record["status"] == "ok"
    prov = record["provenance"]
    assert {"split", "train"} <= set(prov["artifact_keys"]) and prov["seeds"]["cell"] == 0
    assert prov["plugins"]["method"][0] == "hashbench"
    assert len(prov["dataset_fingerprint"]) == 16


def test_peak_memory_is_recorded_per_stage(first_run):
    root, _ = first_run
    record = next(r for r in read_records("smoke", root) if r["cell"]["attack"] == "center")
    stages = record["provenance"]["stages"]
    assert set(stages) == ({"split", "chance", "pretrain", "train", "encode", "attack", "evaluate"}
                           | ({"defend"} if "defend" in stages else set()))
    for kind, info in stages.items():
        assert info["peak_rss_mb"] > 10, kind  # a Python process with torch loaded
        assert info["peak_gpu_mb"] is None and info["device"] == "cpu"
    assert record["provenance"]["peak_memory_mb"] == {kind: s["peak_rss_mb"] for kind, s in stages.items()}
    log = json.loads((root / "smoke" / "run.json").read_text())["stages"]["log"]
    assert len(log) == sum(SMALL_STAGES.values()) and all(e["status"] == "done" and e["wall_s"] >= 0 for e in log)


def test_records_take_the_perturbation_from_the_attack_meta_or_else_its_tensors(first_run, config, tmp_path,
                                                                                monkeypatch):
    import shutil

    root, _ = first_run
    store = ArtifactStore(root / "store")
    record = next(r for r in read_records("smoke", root) if r["cell"]["attack"] == "center")
    key = record["provenance"]["artifact_keys"]["attack"]
    t = store.load("attack", key).tensors
    expected = {"linf_max": float(t["linf"].max()), "l2_mean": float(t["l2"].mean()),
                "mse_mean": float(t["mse"].mean())}
    assert store.load_meta("attack", key)["perturbation"] == expected
    assert {k: record["perturbation"][k] for k in expected} == expected
    # an attack artifact stored before its meta carried the summary: the record reads the tensors
    copy = tmp_path / "results"
    shutil.copytree(root, copy)
    load_meta = ArtifactStore.load_meta

    def without_summary(self, kind, key):
        meta = load_meta(self, kind, key)
        return {k: v for k, v in meta.items() if k != "perturbation"} if kind == "attack" else meta

    monkeypatch.setattr(ArtifactStore, "load_meta", without_summary)
    assert _run(config, copy).executed == {}
    again = next(r for r in read_records("smoke", copy) if r["cell"]["attack"] == "center")
    assert again["perturbation"] == record["perturbation"]


def test_second_run_recomputes_nothing(first_run, config):
    root, _ = first_run
    before = metrics("smoke", root)
    again = _run(config, root)
    assert again.executed == {}
    assert again.cached_total == SMALL_CELLS  # every evaluation is stored: nothing upstream is needed
    assert metrics("smoke", root) == before


def test_changing_an_attack_parameter_recomputes_only_that_attack(first_run, config):
    root, _ = first_run
    summary = _run(config, root, ["params.attacks.center.iterations=4"], run="smoke-it4")
    assert summary.executed == {"attack": 2, "evaluate": 2}


def test_same_seed_same_numbers(first_run, config, tmp_path):
    root, _ = first_run
    _run(config, tmp_path)
    assert metrics("smoke", root) == metrics("smoke", tmp_path)
    keys = lambda d: {r["cell_id"]: r["provenance"]["artifact_keys"] for r in read_records("smoke", d)}  # noqa: E731
    assert keys(root) == keys(tmp_path)


def test_a_corrupt_input_is_recomputed(first_run, config, tmp_path):
    root, _ = first_run
    import shutil

    shutil.copytree(root / "store", tmp_path / "store")
    store = ArtifactStore(tmp_path / "store")
    train = small_plan(config).cells[0].stages["train"]
    tensors = store.path("train", train.key) / "tensors.safetensors"
    tensors.write_bytes(tensors.read_bytes()[:-16] + b"\0" * 16)  # damaged on disk
    with pytest.warns(UserWarning, match="checksum mismatch"):
        summary = _run(config, tmp_path, ["params.attacks.center.iterations=2"], run="it2")
    # the attacks need the clean model: it is made again (same seed), then used
    assert summary.executed == {"train": 1, "attack": 2, "evaluate": 2} and not summary.failed
    assert store.load("train", train.key).meta["model_spec"]["bits"] == 16


def test_a_failing_stage_fails_its_cells_and_the_rest_finish(config, tmp_path):
    # an absurd learning rate makes CgAT's loss diverge: the defended cells fail, the others finish
    summary = _run(config, tmp_path, ["params.defenses.cgat.lr=1e30"], run="diverged")
    assert len(summary.failed) == 2 and all("-cgat-" in f["cell_id"] for f in summary.failed)
    assert all(f["stage"] == "defend" and "TrainingDiverged" in f["error"] for f in summary.failed)
    records = {r["cell_id"]: r for r in read_records("diverged", tmp_path)}
    assert len(records) == SMALL_CELLS
    failed = [r for r in records.values() if r["status"] == "failed"]
    assert len(failed) == 2 and all(r["failed_stage"] == "defend" and "loss" in r["error"] for r in failed)
    assert all(r["cell"]["defense"] == "cgat" for r in failed)
    assert len(load("diverged", tmp_path)) == 2  # the undefended cells have results
    manifest = json.loads((tmp_path / "diverged" / "run.json").read_text())
    assert manifest["status"] == "failed" and len(manifest["failed"]) == 2


def test_an_exception_in_a_plugin_fails_only_its_cells(config, tmp_path, monkeypatch):
    center = plugins.attacks.get("center")

    class Broken(center):
        name = "broken"

        def perturb(self, model, x, y, target, ctx):
            raise RuntimeError("this attack is broken")

    plugins.attacks.register("broken", Broken)
    try:
        summary = _run(config, tmp_path, ["attacks=[center,broken]"], run="broken")
    finally:
        plugins.attacks.unregister("broken")
    assert len(summary.failed) == 2  # 'broken' on both models
    assert all("this attack is broken" in f["error"] and f["stage"] == "attack" for f in summary.failed)
    assert len(load("broken", tmp_path)) == SMALL_CELLS


def test_the_planned_datasets_are_reused_by_the_stages(config, tmp_path, monkeypatch):
    plan = small_plan(config, ["defenses=[none]", "attacks=[]"])
    assert len(plan.datasets) == 1

    def refuse(*args, **kwargs):
        raise AssertionError("the dataset was opened a second time")

    monkeypatch.setattr(plugins.datasets, "create", refuse)
    summary = Runner(tmp_path, "cpu").run(plan, "reuse")
    assert not summary.failed and summary.executed["split"] == 1


def test_bf16_autocast_and_channels_last_on_cpu(config, tmp_path):
    plain = small_plan(config, ["defenses=[none]", "attacks=[center]"])
    amp = small_plan(config, ["defenses=[none]", "attacks=[center]"], PlanOptions(amp="bf16"))
    a, b = plain.cells[1].stages, amp.cells[1].stages
    assert a["split"].key == b["split"].key  # precision is part of the keys of what it changes
    assert a["train"].key != b["train"].key and a["attack"].key != b["attack"].key
    assert "amp" not in b["attack"].spec.to_json()  # attacks stay fp32 unless asked
    summary = Runner(tmp_path, "cpu", channels_last=True).run(amp, "bf16")
    assert not summary.failed
    assert json.loads((tmp_path / "bf16" / "run.json").read_text())["channels_last"] is True
    records = read_records("bf16", tmp_path)
    assert all(r["provenance"]["amp"] == "bf16" and 0 <= r["metrics"]["map"] <= 1 for r in records)
    with pytest.raises(Exception, match="--amp-attacks needs"):
        PlanOptions(amp_attacks=True)
