"""The ``pretrain`` stage: a backbone's supervised warm start, planned, cached and used by training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import yaml
from click.testing import CliRunner
from PIL import Image

from hashbench.cli.main import main
from hashbench.harness.config import apply_overrides
from hashbench.harness.plan import plan_members
from hashbench.harness.runner import Runner
from hashbench.harness.store import ArtifactStore
from hashbench.results import read_records

FAST = ["methods=[dpsh]", "defenses=[none]", "attacks=[]"]


def _plan(config, *extra: str):
    members = apply_overrides(config, config.members("smoke"), FAST + list(extra))
    return plan_members(config, "smoke", members)


def _stage(plan, kind: str):
    found = [s for s in plan.stages() if s.kind == kind]
    return found[0] if found else None


def test_pretrain_is_planned_before_train_only_when_asked(config):
    plan = _plan(config, "params.backbones.smallcnn.pretrain_epochs=2")
    pretrain, train = _stage(plan, "pretrain"), _stage(plan, "train")
    assert train.inputs["pretrain"] is pretrain and pretrain.inputs["split"] is _stage(plan, "split")
    assert plan.counts()["pretrain"] == 1
    assert plan.cells[0].stages["pretrain"] is pretrain  # its seed and key reach the records' provenance

    none = _plan(config, "params.backbones.smallcnn.pretrain_epochs=0")
    assert _stage(none, "pretrain") is None and "pretrain" not in _stage(none, "train").inputs
    assert _stage(none, "train").key != train.key


def test_pretrain_parameters_are_in_the_keys_downstream_only(config):
    a = _plan(config, "params.backbones.smallcnn.pretrain_epochs=2")
    b = _plan(config, "params.backbones.smallcnn.pretrain_epochs=2", "params.backbones.smallcnn.pretrain_lr=0.01")
    assert _stage(a, "split").key == _stage(b, "split").key
    assert _stage(a, "pretrain").key != _stage(b, "pretrain").key
    assert _stage(a, "train").key != _stage(b, "train").key
    # the hashing method's parameters do not touch the warm start: it is shared
    c = _plan(config, "params.backbones.smallcnn.pretrain_epochs=2", "params.methods.dpsh.lr=0.02")
    assert _stage(a, "pretrain").key == _stage(c, "pretrain").key and _stage(a, "train").key != _stage(c, "train").key


def test_the_imagenet_backbones_keep_the_papers_start(config):
    from hashbench import plugins

    for name in ("alexnet", "vgg11"):
        assert plugins.backbones.get(name).Params().pretrain_epochs == 0
    assert plugins.backbones.get("smallcnn").Params().pretrain_epochs > 0


def test_warm_start_learns_the_labels_and_training_starts_from_it(config, tmp_path):
    # a negligible hashing lr: the trained backbone's weights must be the warm start's
    plan = _plan(config, "params.backbones.smallcnn.pretrain_epochs=4", "params.backbones.smallcnn.pretrain_lr=0.01",
                 "params.methods.dpsh.lr=1e-12")
    Runner(tmp_path, torch.device("cpu")).run(plan, "warm")
    store = ArtifactStore(tmp_path / "store")
    warm = store.load("pretrain", _stage(plan, "pretrain").key)
    trained = store.load("train", _stage(plan, "train").key)
    history = [h["loss"] for h in warm.meta["history"]]
    assert len(history) == 4 and history[-1] < history[0] - 0.05
    weights = [k for k in warm.tensors if k.endswith(".weight")]
    assert weights
    for key in weights:
        start = warm.tensors[key]
        assert torch.allclose(trained.tensors[f"model.{key}"], start, atol=1e-6), key
    # the classifier head is not kept: the hash layer is new
    assert not any("hash_layer" in k for k in warm.tensors)
    record = read_records("warm", tmp_path)[0]
    assert "pretrain" in record["provenance"]["artifact_keys"]
    assert "pretrain" in record["provenance"]["seeds"]


def _list_dataset(root: Path) -> None:
    """24 images of two classes that differ in colour (red / blue), three list files."""
    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True)
    rows = []
    for i in range(24):
        cls = i % 2
        pixels = rng.integers(0, 60, (32, 32, 3), dtype=np.uint8)
        pixels[..., 2 * cls] += 180
        Image.fromarray(pixels).save(root / "img" / f"{i}.png")
        rows.append(f"img/{i}.png {1 - cls} {cls}\n")
    (root / "train.txt").write_text("".join(rows[:12]))
    (root / "database.txt").write_text("".join(rows[:20]))
    (root / "test.txt").write_text("".join(rows[20:]))


def test_a_list_file_dataset_is_warm_started_too(config, tmp_path):
    _list_dataset(tmp_path / "data")
    raw = yaml.safe_load(Path(config.path).read_text())
    raw["datasets"]["lists"] = {"type": "listfile", "params": {"root": str(tmp_path / "data"), "image_size": 32},
                                "split": {"num_query": 4, "num_train": 12}, "map_topk": None, "pn": [5]}
    raw["grids"]["lists"] = {"profile": "smoke", "datasets": ["lists"], "methods": ["dpsh"], "backbones": ["smallcnn"],
                             "bits": [8], "defenses": ["none"], "attacks": [], "seeds": [0],
                             "params": {"backbones": {"smallcnn": {"width": 4, "features": 16, "pretrain_epochs": 3}}}}
    registry = tmp_path / "registry.yaml"
    registry.write_text(yaml.safe_dump(raw, sort_keys=False))
    result = CliRunner().invoke(main, ["run", "--grid", "lists", "--registry", str(registry), "--results-dir",
                                       str(tmp_path / "results"), "--quiet", "--no-report"])
    assert result.exit_code == 0, result.output
    timings = [json.loads(line) for line in (tmp_path / "results/store/timings.jsonl").read_text().splitlines()]
    assert [t["plugin"] for t in timings if t["kind"] == "pretrain"] == ["smallcnn"]
    record = read_records("lists", tmp_path / "results")[0]
    assert record["metrics"]["chance"]["map"] is not None
    assert record["metrics"]["code_health"]["items"] == 20
