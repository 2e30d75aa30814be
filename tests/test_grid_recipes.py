"""Per-method training recipes and per-dataset parameters in grids (issue 18, items 1 and 3):
the hash layer's initialisation, ``params_by_dataset``, the precedence of the layers, errors for
bad keys, and what ``hashbench plan`` shows per cell."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml
from click.testing import CliRunner
from torch import nn

from hashbench.cli.main import main
from hashbench.errors import ConfigError
from hashbench.harness.config import apply_overrides, load_config
from hashbench.harness.plan import away_from_defaults, build_plan, plan_members
from hashbench.harness.stages.context import build_model
from hashbench.harness.stages.spec import PluginSpec
from hashbench.models.hash_model import HashModel

SAAT_RECIPE = {"batch_size": 32, "augment": False, "hash_init": "pytorch_default"}


class _Features(nn.Module):
    """A stand-in backbone: only its ``out_features`` matters to the hash layer."""

    def __init__(self, out_features: int) -> None:
        super().__init__()
        self.out_features = out_features


# --- the hash layer's initialisation ------------------------------------------------------

@torch.no_grad()
def test_hash_init_normal_is_n0_001_with_zero_bias():
    torch.manual_seed(0)
    layer = HashModel(_Features(1024), 64).hash_layer  # the default: CgAT's N(0, 0.01²)
    assert abs(float(layer.weight.std()) - 0.01) < 0.0005
    assert float(layer.weight.abs().max()) > 1 / math.sqrt(1024)  # a normal's tail leaves the uniform bound
    assert torch.count_nonzero(layer.bias) == 0


@torch.no_grad()
def test_hash_init_pytorch_default_is_kaiming_uniform():
    torch.manual_seed(0)
    layer = HashModel(_Features(1024), 64, hash_init="pytorch_default").hash_layer
    bound = 1 / math.sqrt(1024)  # nn.Linear: U(±1/√fan_in) for weight and bias
    assert float(layer.weight.abs().max()) <= bound
    assert abs(float(layer.weight.std()) - bound / math.sqrt(3)) < 0.0005  # ≈ 0.018, not 0.01
    assert 0 < float(layer.bias.abs().max()) <= bound


def test_default_hash_init_draws_as_before():
    """The default keeps the numbers of earlier versions: nn.Linear's draw, then N(0, 0.01²)."""
    torch.manual_seed(3)
    expected = nn.Linear(128, 16)
    nn.init.normal_(expected.weight, std=0.01)
    after = torch.rand(1)
    torch.manual_seed(3)
    layer = HashModel(_Features(128), 16).hash_layer
    assert torch.equal(layer.weight, expected.weight) and torch.equal(torch.rand(1), after)


def test_unknown_hash_init_is_refused():
    with pytest.raises(ValueError, match="unknown hash_init 'xavier' \\(allowed: normal_0.01, pytorch_default\\)"):
        HashModel(_Features(8), 4, hash_init="xavier")


@torch.no_grad()
def test_train_spec_hash_init_reaches_the_model():
    backbone = PluginSpec("smallcnn", {"width": 4, "features": 256}, ("hashbench", "0"))
    torch.manual_seed(0)
    start = build_model(backbone, 32, 32, method=PluginSpec("dph", {"hash_init": "pytorch_default"}, ("hashbench", "0"))).hash_layer
    assert float(start.weight.std()) > 0.03  # 1/√256/√3 ≈ 0.036; N(0, 0.01²) would give 0.01
    torch.manual_seed(0)
    cgat = build_model(backbone, 32, 32, method=PluginSpec("dph", {}, ("hashbench", "0"))).hash_layer
    assert abs(float(cgat.weight.std()) - 0.01) < 0.001 and torch.count_nonzero(cgat.bias) == 0


# --- grids: params_by_dataset and precedence ----------------------------------------------

def _registry(tmp_path, **grid) -> object:
    """The project's registry with one more grid, ``g`` (shapes-tiny and shapes, DPH, ProS-GAN)."""
    raw = yaml.safe_load(load_config().path.read_text())
    raw["grids"]["g"] = {"profile": "quick", "datasets": ["shapes-tiny", "shapes"], "methods": ["dph"],
                         "backbones": ["smallcnn"], "bits": [16], "defenses": ["none"], "attacks": ["prosgan"],
                         **grid}
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _plan(path, overrides=()):
    config = load_config(path)
    members = apply_overrides(config, config.members("g"), list(overrides))
    return plan_members(config, "g", members)


def _attack_params(plan) -> dict[str, dict]:
    return {c.dataset: c.resolved_params()["attack"] for c in plan.cells if c.attack == "prosgan"}


def test_params_by_dataset_reach_only_that_datasets_stages(tmp_path):
    plain = _plan(_registry(tmp_path))
    path = _registry(tmp_path, params_by_dataset={"shapes": {"attacks": {"prosgan": {"rec_weight": 50}},
                                                             "methods": {"dph": {"hash_init": "pytorch_default"}}}})
    plan = _plan(path)
    assert {d: p["rec_weight"] for d, p in _attack_params(plan).items()} == {"shapes-tiny": 10, "shapes": 50}
    train = {c.dataset: c.stages["train"] for c in plan.cells}
    assert train["shapes"].spec.method.params["hash_init"] == "pytorch_default"
    assert train["shapes-tiny"].spec.method.params["hash_init"] == "normal_0.01"
    # keys: shapes' train, prepare and attack stages change; shapes-tiny's and every split stay
    before = {(c.dataset, c.attack): c for c in plain.cells}
    for cell in plan.cells:
        old = before[cell.dataset, cell.attack]
        assert cell.stages["split"].key == old.stages["split"].key
        changed = {k for k, s in cell.stages.items() if s.key != old.stages[k].key}
        if cell.dataset == "shapes-tiny":
            assert changed == set()
        else:
            assert {"train", "encode", "evaluate"} <= changed
            assert ("prepare" in changed) == (cell.attack == "prosgan")


def test_layers_resolve_in_documented_order(tmp_path):
    """defaults < profile set < grid params < params_by_dataset < --set params < --set params_by_dataset."""
    path = _registry(tmp_path, params={"attacks": {"prosgan": {"rec_weight": 70}}},
                     params_by_dataset={"shapes": {"attacks": {"prosgan": {"rec_weight": 50, "width": 4}}}})
    rec = {d: p["rec_weight"] for d, p in _attack_params(_plan(path)).items()}
    assert rec == {"shapes-tiny": 70, "shapes": 50}  # quick's 10 is under both
    everywhere = _attack_params(_plan(path, ["params.attacks.prosgan.rec_weight=30"]))
    assert {d: p["rec_weight"] for d, p in everywhere.items()} == {"shapes-tiny": 30, "shapes": 30}
    assert everywhere["shapes"]["width"] == 4 and everywhere["shapes-tiny"]["width"] == 8  # only rec_weight replaced
    one = _attack_params(_plan(path, ["params.attacks.prosgan.rec_weight=30",
                                      "params_by_dataset.shapes.attacks.prosgan={rec_weight: 40}"]))
    assert {d: p["rec_weight"] for d, p in one.items()} == {"shapes-tiny": 30, "shapes": 40}
    assert _attack_params(_plan(path))["shapes-tiny"]["prototype_steps"] == 100  # the profile's set stays under all


@pytest.mark.parametrize("grid, message", [
    ({"params_by_dataset": {"shapez": {"attacks": {"prosgan": {"rec_weight": 1}}}}},
     "grids.g.params_by_dataset.shapez: 'shapez' is not on the grid's datasets axis. Did you mean 'shapes'?"),
    ({"params_by_dataset": {"shapes": {"attacks": {"prosgn": {"rec_weight": 1}}}}},
     "grids.g.params_by_dataset.shapes.attacks.prosgn: 'prosgn' is not on the grid's attacks axis. "
     "Did you mean 'prosgan'?"),
    ({"params_by_dataset": {"shapes": {"attacks": {"prosgan": {"rec_weigth": 1}}}}},
     "grids.g.params_by_dataset.shapes.attacks.prosgan: unknown parameter 'rec_weigth' of attack 'prosgan'. "
     "Did you mean 'rec_weight'"),
    ({"params_by_dataset": {"shapes": {"atacks": {"prosgan": {"rec_weight": 1}}}}},
     "grids.g.params_by_dataset: shapes: unknown plugin kind 'atacks' (allowed: methods, backbones, defenses, attacks)"),
    ({"params_by_dataset": {"shapes": {"datasets": {"shapes": {"num_items": 5}}}}},
     "a dataset's own parameters go in params.datasets.shapes"),
    ({"params_by_dataset": {"shapes": {"methods": {"dph": {"hash_init": "xavier"}}}}},
     "grids.g: method 'dph' on dataset 'shapes': 'hash_init': Input should be 'normal_0.01' or 'pytorch_default'"),
])
def test_bad_params_by_dataset_is_named(tmp_path, grid, message):
    with pytest.raises(ConfigError) as exc:
        _plan(_registry(tmp_path, **grid))
    assert message in str(exc.value)


@pytest.mark.parametrize("override, message", [
    ("params_by_dataset.shapez.attacks.prosgan.rec_weight=1",
     "--set params_by_dataset.shapez.attacks.prosgan.rec_weight: 'shapez' is not on the grid's datasets axis. "
     "Did you mean 'shapes'?"),
    ("params_by_dataset.shapes.datasets.shapes.num_items=5",
     "a dataset's own parameters are set with params.datasets.shapes.<param>"),
    ("params_by_dataset.shapes.atacks.prosgan.rec_weight=1", "unknown plugin kind 'atacks'. Did you mean 'attacks'?"),
    ("params_by_dataset.shapes.attacks.prosgan.rec_weigth=1", "unknown parameter 'rec_weigth' of attack 'prosgan'. "
     "Did you mean 'rec_weight'"),
    ("params_by_dataset.shapes.attacks=1", "expected params_by_dataset.<dataset>.<kind>.<name>.<param>=VALUE"),
    ("params_by_dataset.shapes.methods.dph.hash_init=xavier",
     "'hash_init': Input should be 'normal_0.01' or 'pytorch_default'"),
])
def test_bad_params_by_dataset_override_is_named(tmp_path, override, message):
    with pytest.raises(ConfigError) as exc:
        _plan(_registry(tmp_path), [override])
    assert message in str(exc.value)


def test_bad_params_by_dataset_exits_2_before_any_work(tmp_path):
    path = _registry(tmp_path, params_by_dataset={"shapes": {"attacks": {"prosgan": {"rec_weigth": 1}}}})
    results = tmp_path / "results"
    result = CliRunner().invoke(main, ["run", "--grid", "g", "--registry", str(path), "--results-dir", str(results)])
    assert result.exit_code == 2, result.output
    assert "Did you mean 'rec_weight'" in result.output and not results.exists()


# --- the paper grids, through `hashbench plan` --------------------------------------------

def _plan_json(*args: str, tmp_path) -> dict:
    # --device h100 prices from a table: no matmul timing on this CPU
    result = CliRunner().invoke(main, ["plan", *args, "--json", "--device", "h100", "--results-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_saat_table1_plan_shows_saat_recipe_and_prosgan_per_dataset(tmp_path):
    info = _plan_json("--grid", "saat-table1", tmp_path=tmp_path)
    cells = info["cell_params"]
    assert len(cells) == info["cells"] == 3 * 4 * 9
    for cell in cells:
        assert {k: cell["params"]["method"][k] for k in SAAT_RECIPE} == SAAT_RECIPE, cell["id"]
        assert cell["params"]["defense"] is None and cell["grids"] == ["saat-table1"]
    rec = {c["dataset"]: c["params"]["attack"]["rec_weight"] for c in cells if c["attack"] == "prosgan"}
    assert rec == {"flickr25k": 100, "nuswide21": 50, "mscoco": 50}
    assert {"kind": "method", "name": "dph", "values": SAAT_RECIPE, "grids": ["saat-table1"],
            "datasets": ["flickr25k", "nuswide21", "mscoco"]} in info["non_default_params"]
    table = CliRunner().invoke(main, ["plan", "--grid", "saat-table1", "--device", "h100",
                                      "--results-dir", str(tmp_path)], env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    assert "batch_size=32 augment=false hash_init=pytorch_default" in table.output
    assert "rec_weight=50.0" in table.output and "cell_params" in table.output


def test_full_plan_keeps_each_papers_recipe(tmp_path):
    cells = _plan_json("--grid", "full", tmp_path=tmp_path)["cell_params"]
    by_method = {}
    for cell in cells:
        params = cell["params"]["method"]
        by_method.setdefault(cell["method"], set()).add((params["batch_size"], params["augment"], params["hash_init"]))
    assert by_method.pop("dph") == {(32, False, "pytorch_default")}  # SAAT's hashing.py
    assert set(by_method) == {"dpsh", "hashnet", "dsdh", "dch", "csq", "dsdh-c"}
    assert all(v == {(64, True, "normal_0.01")} for v in by_method.values())  # CgAT's hashing.py
    rec = {}
    for cell in cells:
        if cell["attack"] == "prosgan":
            rec.setdefault(cell["dataset"], set()).add(cell["params"]["attack"]["rec_weight"])
    assert rec == {"flickr25k": {100}, "nuswide21": {50}, "mscoco": {50}}
    shared = next(c for c in cells if c["id"] == "nuswide21-dpsh-vgg11-32-none-prosgan-s0")
    assert shared["grids"] == ["table2", "table4-vgg11"]


def test_saat_grids_share_one_victim_per_bits(config):
    plan = build_plan(config, "saat", config.grid("saat"), require_data=False)
    trains = {c.stages["train"].key for c in plan.cells}
    assert len(trains) == 3 * 4  # saat-table1's victims are saat-table2's clean models
    assert not [e for e in away_from_defaults(plan) if e["kind"] == "method" and e["values"] != SAAT_RECIPE]


def test_an_axis_override_drops_the_parameters_of_plugins_it_removes(tmp_path):
    """table2 tunes cgat and prosgan; --set defenses=[none] attacks=[p2p] plans without them, no error."""
    result = CliRunner().invoke(main, ["plan", "--grid", "table2", "--json", "--device", "h100",
                                       "--set", "defenses=[none]", "--set", "attacks=[p2p]",
                                       "--results-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    cells = json.loads(result.output)["cell_params"]
    assert {c["defense"] for c in cells} == {"none"} and {c["attack"] for c in cells} <= {"p2p", "clean"}
    kept = CliRunner().invoke(main, ["plan", "--grid", "table2", "--json", "--device", "h100",
                                     "--set", "defenses=[cgat]", "--set", "attacks=[prosgan]",
                                     "--results-dir", str(tmp_path)])
    cells = json.loads(kept.output)["cell_params"]
    assert all(c["params"]["defense"]["faithful_scheduler"] is True for c in cells)
    assert all(c["params"]["attack"]["rec_weight"] == 50 for c in cells if c["attack"] == "prosgan")
