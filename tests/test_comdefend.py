"""ComDefend, the inference-time defense: the purifier's networks and loss, the straight-through
threshold, the purified model, white-box vs oblivious attacks through the harness, and the report."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import attacks.center as center_module
from hashbench import plugins
from hashbench.api.defense import DefenseContext, InferenceDefense
from hashbench.errors import ConfigError
from hashbench.harness.config import apply_overrides
from hashbench.harness.plan import plan_members
from hashbench.harness.runner import Runner
from hashbench.harness.stages.context import model_artifact
from hashbench.models.hash_model import HashModel
from hashbench.models.purifier import ComDefendNet, PurifiedModel, attacked_model, binarize, comdefend_loss
from hashbench.progress import Reporter
from hashbench.report.leaderboard import leaderboards
from hashbench.results import load, read_records
from hashbench.retrieval.training import TrainData
from hashbench.testing import check_defense

#: a purifier small enough for a few CPU seconds
TINY = {"hidden": [4, 8], "noise": 2.0, "epochs": 2, "batch_size": 8, "lr": 0.003, "beta1": 0.9}


@pytest.fixture(scope="module")
def tiny() -> TrainData:
    dataset = plugins.datasets.create("shapes", {"num_items": 40, "num_classes": 6, "image_size": 32})
    indices = np.arange(24)
    return TrainData(dataset, indices, torch.as_tensor(dataset.labels[indices], dtype=torch.float32))


def hash_model(seed: int = 0) -> HashModel:
    torch.manual_seed(seed)
    return HashModel(plugins.backbones.create("smallcnn", {"width": 8, "features": 32}).build(32), 16).eval()


def fit(data: TrainData, seed: int = 0, **params) -> tuple[PurifiedModel, dict, HashModel]:
    model = hash_model()
    defense = plugins.defenses.create("comdefend", {**TINY, **params})
    torch.manual_seed(seed)  # the purifier's initialisation, as the defend stage seeds it
    ctx = DefenseContext(torch.device("cpu"), torch.Generator().manual_seed(seed), Reporter())
    defended, log = defense.fit(model, plugins.methods.create("dpsh", {}), data, ctx)
    return defended, log, model


# -- the networks and the loss ---------------------------------------------------------------------

def test_the_paper_architecture_compresses_to_twelve_channels_at_full_resolution():
    net = ComDefendNet()
    convs = [m for m in net.com if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 32, 64, 128, 256, 128, 64, 32, 12]
    assert [c.out_channels for c in net.rec if isinstance(c, torch.nn.Conv2d)] == [32, 64, 128, 256, 128, 64, 32, 16, 3]
    assert all(c.kernel_size == (3, 3) and c.stride == (1, 1) for c in convs)
    assert sum(isinstance(m, torch.nn.ELU) for m in net.com) == 8  # none after the code layer
    assert isinstance(net.rec[-1], torch.nn.Sigmoid)


def test_purifier_keeps_the_shape_and_returns_images_in_the_unit_range():
    torch.manual_seed(0)
    net = ComDefendNet((4, 8), code_channels=5)
    x = torch.rand(3, 3, 16, 20)
    with torch.no_grad():
        assert net.compress(x).shape == (3, 5, 16, 20)
        out = net(x)
    assert out.shape == x.shape
    assert 0 <= float(out.min()) <= float(out.max()) <= 1


def test_bad_architectures_are_refused():
    with pytest.raises(ValueError, match="positive"):
        ComDefendNet((4, 0))
    with pytest.raises(ConfigError, match="'hidden'"):
        plugins.defenses.create("comdefend", {"hidden": []})
    with pytest.raises(ConfigError, match="'noise'"):
        plugins.defenses.create("comdefend", {"noise": -1.0})


def test_the_loss_on_hand_made_tensors():
    x = torch.tensor([[0.0, 1.0]])
    reconstruction = torch.tensor([[0.5, 0.5]])
    soft_code = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    losses = comdefend_loss(x, reconstruction, soft_code, lam=0.1)
    assert float(losses["mse"]) == pytest.approx(0.25)  # (0.25 + 0.25) / 2
    assert float(losses["code"]) == pytest.approx(0.5)  # (1 + 0 + 0 + 1) / 4
    assert float(losses["loss"]) == pytest.approx(0.25 + 0.1 * 0.5)


def test_binarize_thresholds_and_passes_the_gradient_straight_through():
    code = torch.tensor([-3.0, -1e-3, 0.0, 2.0, 1e8], requires_grad=True)
    bits = binarize(code)
    assert bits.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]  # exact 0/1, even for a huge code
    weights = torch.tensor([1.0, -2.0, 3.0, 4.0, 5.0])
    (bits * weights).sum().backward()
    assert code.grad.tolist() == weights.tolist()


def test_attacks_get_a_gradient_through_the_purifier():
    """Without the straight-through threshold the input gradient would be exactly zero."""
    torch.manual_seed(0)
    model = PurifiedModel(ComDefendNet((4, 8)), hash_model())
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    model(x).sum().backward()
    assert torch.isfinite(x.grad).all() and float(x.grad.abs().sum()) > 0


# -- the defended model --------------------------------------------------------------------------

def test_the_defended_model_is_the_purifier_then_the_model():
    torch.manual_seed(1)
    purifier, model = ComDefendNet((4, 8)).eval(), hash_model()
    defended = PurifiedModel(purifier, model)
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(defended(x), model(purifier(x)))
        assert torch.equal(defended(x, alpha=3.0), model(purifier(x), alpha=3.0))
        assert torch.equal(defended.logits(x), model.logits(purifier(x)))
    assert defended.bits == 16 and isinstance(defended, HashModel)
    assert attacked_model(defended) is defended
    assert attacked_model(PurifiedModel(purifier, model, attack_sees_purifier=False)) is model
    assert attacked_model(model) is model


def test_fit_trains_only_the_purifier_on_clean_images(tiny):
    defended, log, model = fit(tiny)
    assert isinstance(defended, PurifiedModel) and defended.hash_model is model
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), hash_model().state_dict().values()))
    untrained = ComDefendNet((4, 8))
    assert any(not torch.equal(a, b) for a, b in zip(defended.purifier.state_dict().values(),
                                                      untrained.state_dict().values()))
    assert len(log["history"]) == 2 and log["iterations"] == 2 * 3
    assert all(math.isfinite(v) for epoch in log["history"] for v in epoch.values())
    assert {"loss", "mse", "code"} <= set(log["history"][0])
    assert 0 < log["purified_mse"] < 1 and 0 <= log["code_ones"] <= 1
    assert not defended.training and defended.attack_sees_purifier


def test_fit_is_deterministic_for_a_seed(tiny):
    first, _, _ = fit(tiny, seed=3)
    second, _, _ = fit(tiny, seed=3)
    other, _, _ = fit(tiny, seed=4)
    a, b, c = (m.purifier.state_dict() for m in (first, second, other))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_the_artifact_keeps_the_purifier_under_its_own_prefix(tiny):
    defended, _, model = fit(tiny)
    method = plugins.methods.create("dpsh", {})
    purified = model_artifact(defended, method, {}).tensors
    plain = model_artifact(model, method, {}).tensors
    assert {k for k in purified if k.startswith("model.")} == set(plain)  # the clean model's, unchanged
    assert all(torch.equal(purified[k], plain[k]) for k in plain)
    assert {k[len("purifier."):] for k in purified if k.startswith("purifier.")} == set(defended.purifier.state_dict())


class _TamperingComDefend(plugins.defenses.get("comdefend")):
    """Breaks the inference-time contract: it also changes the hash model."""

    def fit(self, model, method, data, ctx):
        defended, log = super().fit(model, method, data, ctx)
        with torch.no_grad():
            defended.hash_model.hash_layer.bias.add_(0.1)
        return defended, log


def test_the_contract_check_refuses_a_purifier_defense_that_changes_the_hash_model():
    check_defense("comdefend", params=TINY)  # the real one passes
    with pytest.raises(AssertionError, match="changed the hash model; an inference-time defense trains only its purifier"):
        check_defense(_TamperingComDefend, params=TINY)


def test_comdefend_is_an_inference_time_defense_in_the_smoke_grid_only(config):
    cls = plugins.defenses.get("comdefend")
    assert issubclass(cls, InferenceDefense) and cls.inference_time and not cls.identity
    assert not plugins.defenses.get("cgat").inference_time and not plugins.defenses.get("none").inference_time
    assert "comdefend" in config.grid("smoke").defenses
    assert "comdefend" not in config.grid("demo").defenses  # the demo's numbers are pinned by slow tests


# -- through the harness: white-box and oblivious --------------------------------------------------

def _plan(config, oblivious: bool):
    sets = ["methods=[dpsh]", "defenses=[none,comdefend]", "attacks=[center]"]
    if oblivious:
        sets.append("params.defenses.comdefend.attack_sees_purifier=false")
    return plan_members(config, "smoke", apply_overrides(config, config.members("smoke"), sets))


def _cell(plan, defense: str, attack: str):
    return next(c for c in plan.cells if c.defense == defense and c.attack == attack)


def test_the_oblivious_setting_changes_the_attack_keys_only_downstream_of_the_defense(config):
    white, oblivious = _plan(config, False), _plan(config, True)
    for kind in ("attack", "evaluate"):
        assert _cell(white, "comdefend", "center").stages[kind].key != _cell(oblivious, "comdefend", "center").stages[kind].key
        assert _cell(white, "none", "center").stages[kind].key == _cell(oblivious, "none", "center").stages[kind].key
    assert _cell(white, "comdefend", "center").stages["train"].key == _cell(oblivious, "comdefend", "center").stages["train"].key
    assert _cell(oblivious, "comdefend", "center").stages["defend"].spec.defense.params["attack_sees_purifier"] is False


def test_white_box_attacks_see_the_purifier_and_oblivious_ones_the_bare_model(config, tmp_path, monkeypatch):
    seen: list[str] = []
    perturb = center_module.CenterAttack.perturb

    def spy(self, model, *args, **kwargs):
        seen.append(type(model).__name__)
        return perturb(self, model, *args, **kwargs)

    monkeypatch.setattr(center_module.CenterAttack, "perturb", spy)
    runner = Runner(tmp_path, "cpu", threads=1)
    maps = {}
    for name, oblivious in (("white", False), ("oblivious", True)):
        seen.clear()
        runner.run(_plan(config, oblivious), name)
        records = {(r["cell"]["defense"], r["cell"]["attack"]): r for r in read_records(name, tmp_path)}
        assert all(r["status"] == "ok" for r in records.values()), records
        kinds = set(seen)
        maps[name] = {k: r["metrics"]["map"] for k, r in records.items()}
        if oblivious:
            assert kinds == {"HashModel"}  # both cells: the undefended model and comdefend's bare hash model
        else:
            assert kinds == {"HashModel", "PurifiedModel"}
    # the same purifier (same seed) in both runs: clean numbers agree; only the attack changed
    assert maps["white"][("comdefend", "clean")] == maps["oblivious"][("comdefend", "clean")]
    assert maps["white"][("none", "center")] == maps["oblivious"][("none", "center")]
    # the purifier is applied: the defended clean numbers differ from the undefended ones
    assert maps["white"][("comdefend", "clean")] != maps["white"][("none", "clean")]
    board = leaderboards(load("white", tmp_path))[0]
    marked = {e.defense: e.inference_time for e in board.entries}
    assert marked == {"none": False, "comdefend": True}
    labels = {e.defense: e.model for e in board.entries}
    assert labels == {"none": "DPSH (undefended)", "comdefend": "DPSH + ComDefend (inference-time)"}
