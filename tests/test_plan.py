"""Planning: the paper grids and their union, stage sharing, overrides, grid files, the dataset
fingerprint in split keys, and the cost model."""

import platform
from collections import Counter

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from runner_helpers import SMALL_STAGES, small_plan, unregistered
from torch.utils.flop_counter import FlopCounterMode

from hashbench import plugins
from hashbench.errors import ConfigError
from hashbench.harness.config import apply_overrides, load_config, load_grid_file
from hashbench.harness.cost import estimate_plan, stage_flops
from hashbench.harness.flops import forward_flops
from hashbench.harness.plan import build_plan, plan_members
from hashbench.harness.sizes import Sizes
from hashbench.harness.stages.spec import PluginSpec
from hashbench.harness.store import ArtifactStore
from hashbench.models.hash_model import HashModel
from hashbench.results.schema import CLEAN

PAPER_GRIDS = ("table1", "table2", "table3", "table4", "table5", "saat", "full")


def _axes(config, name):
    names: dict[str, set] = {}
    for _, grid in config.members(name):
        for kind in ("methods", "backbones", "defenses", "attacks"):
            names.setdefault(kind, set()).update(getattr(grid, kind))
    return {k: sorted(v) for k, v in names.items()}


def _plan_or_skip(config, name):
    waiting = unregistered(_axes(config, name))
    if waiting:
        pytest.skip(f"waiting for plugins to be registered: {', '.join(waiting)}")
    return build_plan(config, name, config.grid(name), require_data=False)


@pytest.fixture(scope="module")
def full(config):
    return _plan_or_skip(config, "full")


def test_full_plans_every_shared_stage_once(full, config):
    counts = full.counts()
    # clean models: DPSH × 3 datasets × 3 bit lengths (Tables 1–4), 5 methods on NUS-WIDE at 32 bits
    # (Table 5), DPH × 3 datasets × 4 bit lengths (SAAT)
    assert counts["train"] == 9 + 5 + 12
    trains = [s for s in full.stages() if s.kind == "train"]
    ids = Counter((s.spec.method.name, s.inputs["split"].spec.dataset.name, s.spec.bits) for s in trains)
    assert len(ids) == 26 and max(ids.values()) == 1  # each trained once per method × dataset × bits × seed
    # defended models: ATRDH and CgAT of the 14 CgAT models, ATRDH and SAAT of the 12 DPH models
    assert counts["defend"] == 14 * 2 + 12 * 2
    # each model's database encoded once
    encodes = [s for s in full.stages() if s.kind == "encode"]
    assert counts["encode"] == 26 + 52 == len({s.inputs["model"].key for s in encodes})
    # attacks: Tables 1–3: 27 models × 6 attacks, plus the center attack on the 9 models at 32 bits
    # (Table 4); Table 5: 15 models × 6; SAAT: 12 victims × 8 attacks, 24 defended × 3
    assert counts["attack"] == 27 * 6 + 9 + 15 * 6 + 12 * 8 + 24 * 3
    assert counts["evaluate"] == counts["attack"] + counts["encode"] == len(full.cells)
    prepared = {n for n in plugins.attacks.names() if plugins.attacks.get(n).has_prepare()}
    assert counts.get("prepare", 0) == sum(s.spec.attack.name in prepared for s in full.stages() if s.kind == "attack")
    # one split per dataset × seed × target rule, shared by every cell of a paper (so its targeted
    # attacks share target labels): the CgAT grids draw targets by DHTA's rule, the SAAT grids by SAAT's
    assert counts["split"] == 6
    by_dataset = {}
    for cell in full.cells:
        by_dataset.setdefault((cell.dataset, cell.grid.startswith("saat")), set()).add(cell.stages["split"].key)
    assert {k: len(v) for k, v in by_dataset.items()} == {(d, saat): 1 for d in ("flickr25k", "nuswide21", "mscoco")
                                                          for saat in (False, True)}
    assert set(full.unavailable) == {"flickr25k", "nuswide21", "mscoco"}  # no data here: provisional keys


def test_union_is_the_union_of_its_members(full, config):
    keys, total = set(), 0
    for name in ("table1", "table2", "table3", "table4", "table5", "saat"):
        plan = build_plan(config, name, config.grid(name), require_data=False)
        keys |= {s.key for s in plan.stages()}
        total += len(plan.stages())
    assert keys == {s.key for s in full.stages()}
    assert total > len(keys)  # the tables share stages (Table 4 reuses Tables 1–3's models and attacks)


def test_paper_grids_match_the_papers(config):
    for name in PAPER_GRIDS:
        assert name in config.data.grids
    t1 = config.grid("table1")
    assert (t1.datasets, t1.backbones, t1.bits, t1.defenses) == (["flickr25k"], ["alexnet"], [16, 32, 64],
                                                                  ["none", "atrdh", "cgat"])
    assert t1.attacks == ["p2p", "dhta", "prosgan", "tha", "hag", "sdha"]
    members = dict(config.members("table4"))
    assert all(g.bits == [32] and "center" in g.attacks for g in members.values())
    assert sorted(d for g in members.values() for d in g.datasets) == ["flickr25k", "mscoco", "nuswide21"]
    t5 = config.grid("table5")
    assert t5.methods == ["hashnet", "dsdh", "dch", "csq", "dsdh-c"] and t5.bits == [32]
    saat = dict(config.members("saat"))
    assert all(g.methods == ["dph"] and g.backbones == ["alexnet"] and g.bits == [16, 32, 48, 64] for g in saat.values())
    assert {d for g in saat.values() for d in g.defenses} == {"none", "atrdh", "saat"}
    assert [m for m, _ in config.members("full")][:3] == ["table1", "table2", "table3"]


def test_smoke_grid_counts(config):
    plan = _plan_or_skip(config, "smoke")
    grid = config.grid("smoke")
    models = len(grid.datasets) * len(grid.methods) * len(grid.backbones) * len(grid.bits) * len(grid.seeds)
    defended = models * sum(not plugins.defenses.get(d).identity for d in grid.defenses)
    encodes = models * len(grid.defenses)
    counts = plan.counts()
    assert counts["split"] == len(grid.datasets) * len(grid.seeds)
    assert counts["train"] == models and counts.get("defend", 0) == defended and counts["encode"] == encodes
    assert counts["attack"] == encodes * len(grid.attacks)
    assert counts.get("prepare", 0) == encodes * sum(plugins.attacks.get(a).has_prepare() for a in grid.attacks)
    assert counts["evaluate"] == len(plan.cells) == encodes * (len(grid.attacks) + 1)


def test_small_grid(config):
    plan = small_plan(config)
    assert plan.counts() == SMALL_STAGES
    assert {c.attack for c in plan.cells} == {CLEAN, "center"}


# --- unions ---------------------------------------------------------------------------------

def _registry(tmp_path, config, grids=None, datasets=None):
    raw = yaml.safe_load(config.path.read_text())
    raw["grids"].update(grids or {})
    raw["datasets"].update(datasets or {})
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _tiny(**extra):
    return {"profile": "smoke", "datasets": ["shapes-tiny"], "methods": ["dpsh"], "backbones": ["smallcnn"],
            "bits": [16], "defenses": ["none"], "attacks": [], "params": {"backbones": {"smallcnn": {"width": 8}}},
            **extra}


def test_union_dedupes_shared_stages_and_rejects_conflicts(tmp_path, config):
    path = _registry(tmp_path, config, {
        "u1": _tiny(bits=[16, 32]), "u2": _tiny(bits=[32, 64]), "both": {"union": ["u1", "u2"]},
        "clash": {"union": ["u1", "u3"]},
        "u3": _tiny(params={"backbones": {"smallcnn": {"width": 4}}}),
    })
    cfg = load_config(path)
    plan = build_plan(cfg, "both", cfg.grid("both"))
    # one warm start shared by the three code lengths; a random-codes reference per code length
    assert plan.counts() == {"split": 1, "chance": 3, "pretrain": 1, "train": 3, "encode": 3, "evaluate": 3}
    assert plan.members == ["u1", "u2"] and len(plan.cells) == 3
    with pytest.raises(ConfigError, match=r"cell shapes-tiny-dpsh-smallcnn-16-none-clean-s0 is in grids 'u1' and 'u3'"):
        build_plan(cfg, "clash", cfg.grid("clash"))


def test_union_errors_name_the_member(tmp_path, config):
    with pytest.raises(ConfigError, match=r"grids\.bad\.union\[1\]: unknown grid 'tabel1'. Did you mean 'table1'"):
        load_config(_registry(tmp_path, config, {"bad": {"union": ["table2", "tabel1"]}}))
    with pytest.raises(ConfigError, match=r"makes a cycle \(a → b → a\)"):
        load_config(_registry(tmp_path, config, {"a": {"union": ["b"]}, "b": {"union": ["a"]}}))
    with pytest.raises(ConfigError, match=r"grids\.c\.datasets: unknown key"):
        load_config(_registry(tmp_path, config, {"c": {"union": ["table1"], "datasets": ["x"]}}))


# --- overrides and grid files ---------------------------------------------------------------

def test_overrides_set_axes_and_parameters(config):
    members = apply_overrides(config, config.members("smoke"), [
        "attacks=[center]", "bits=32", "defenses=[none]", "methods=[dpsh]", "params.attacks.center.iterations=5",
        "params.defenses.none={}", "seeds=[0,1]",
    ])
    (_, grid), = members
    assert grid.attacks == ["center"] and grid.bits == [32] and grid.seeds == [0, 1]
    assert grid.params["attacks"]["center"] == {"iterations": 5}
    plan = plan_members(config, "smoke", members)
    assert {s.spec.attack.params["iterations"] for s in plan.stages() if s.kind == "attack"} == {5}
    assert plan.counts()["split"] == 2


def test_overrides_apply_to_every_union_member(config):
    members = apply_overrides(config, config.members("table4"), ["bits=[16]", "params.attacks.center.iterations=7"])
    assert [g.bits for _, g in members] == [[16], [16]]
    assert all(g.params["attacks"]["center"]["iterations"] == 7 for _, g in members)


@pytest.mark.parametrize(("override", "message"), [
    ("atacks=[hag]", "--set atacks: unknown grid key 'atacks'. Did you mean 'attacks'?"),
    ("params.atacks.center.iterations=5", "--set params.atacks.center.iterations: unknown plugin kind 'atacks'. "
                                          "Did you mean 'attacks'?"),
    ("params.attacks.centre.iterations=5", "'centre' is not on the grid's attacks axis. Did you mean 'center'?"),
    ("params.attacks.center.iteratons=5", "unknown parameter 'iteratons' of attack 'center'. Did you mean 'iterations'?"),
    ("bits=[0]", "--set bits: Value error, bit lengths must be positive"),
    ("profile=smok", "--set profile: unknown profile 'smok'. Did you mean 'smoke'?"),
    ("bits", "--set 'bits': expected KEY=VALUE"),
    ("bits=[16", "--set bits: cannot parse '[16' as a YAML value"),
    ("attacks.center=1", "--set attacks.center: 'attacks' has no sub-keys"),
])
def test_override_errors_name_the_key(config, override, message):
    with pytest.raises(ConfigError) as err:
        apply_overrides(config, config.members("smoke"), ["methods=[dpsh]", override])
    assert message in str(err.value)


def test_an_override_naming_an_unknown_plugin_fails_at_planning(config):
    members = apply_overrides(config, config.members("smoke"), ["attacks=[centr]"])
    with pytest.raises(ConfigError, match=r"grids.smoke \(with --set\).attacks\[0\]: unknown attack 'centr'. Did you mean 'center'"):
        plan_members(config, "smoke", members, sources={"smoke": f"{config.path}: grids.smoke (with --set)"})


def test_grid_file(tmp_path, config):
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(_tiny(bits=[8, 16])))
    name, grid = load_grid_file(path, config)
    assert name == "mine" and grid.bits == [8, 16]
    plan = plan_members(config, name, config.members(name, grid))
    assert plan.counts()["train"] == 2
    union = tmp_path / "two.yml"
    union.write_text("union: [table1, table2]\n")
    assert [m for m, _ in config.members(*load_grid_file(union, config))] == ["table1", "table2"]
    path.write_text(yaml.safe_dump(_tiny(bitz=[8])))
    with pytest.raises(ConfigError, match=r"mine.yaml: bitz: unknown key"):
        load_grid_file(path, config)
    path.write_text("methods: [dpsh\n")
    with pytest.raises(ConfigError, match=r"mine.yaml:2:1: invalid YAML"):
        load_grid_file(path, config)
    with pytest.raises(ConfigError, match=r"cannot read grid file"):
        load_grid_file(tmp_path / "absent.yaml", config)


# --- the dataset fingerprint -----------------------------------------------------------------

def _listfile_dataset(root):
    rows = {"train": [("a.png", "1 0"), ("b.png", "0 1")], "test": [("q.png", "1 1")],
            "database": [("a.png", "1 0"), ("b.png", "0 1"), ("c.png", "1 0")]}
    for i, name in enumerate(["a.png", "b.png", "c.png", "q.png"]):
        Image.fromarray(np.full((20, 20, 3), 40 * i, dtype=np.uint8)).save(root / name)
    for stem, lines in rows.items():
        (root / f"{stem}.txt").write_text("".join(f"{p} {lab}\n" for p, lab in lines))


def test_split_key_follows_the_list_files(tmp_path, config):
    _listfile_dataset(tmp_path)
    decl = {"type": "listfile", "params": {"root": str(tmp_path), "image_size": 16, "resize": 16},
            "split": {"num_query": 1, "num_train": 2}}
    grid = {**_tiny(datasets=["lf"]), "params": {"backbones": {"smallcnn": {"width": 8}}}}
    cfg = load_config(_registry(tmp_path, config, {"lf": grid}, {"lf": decl}))

    def split_key():
        plan = build_plan(cfg, "lf", cfg.grid("lf"))
        return plan.cells[0].stages["split"].key, plan.cells[0].stages["train"].key

    first = split_key()
    assert split_key() == first
    with (tmp_path / "database.txt").open("a") as f:
        f.write("q2.png 0 1\n")
    Image.fromarray(np.zeros((20, 20, 3), dtype=np.uint8)).save(tmp_path / "q2.png")
    second = split_key()
    assert second[0] != first[0] and second[1] != first[1]  # new split, so everything downstream is new


def test_missing_data_is_an_error_when_planning_a_run(config):
    with pytest.raises(ConfigError, match=r"datasets.flickr25k: image root data/flickr25k is not a directory"):
        build_plan(config, "table1", config.grid("table1"))


# --- cost -------------------------------------------------------------------------------------

def test_forward_flops_match_a_real_forward(config):
    spec = PluginSpec("smallcnn", {"width": 8, "features": 64}, ("hashbench", "0"))
    counter = FlopCounterMode(display=False)
    model = HashModel(plugins.backbones.create("smallcnn", dict(spec.params)).build(32), 16)
    with counter, torch.no_grad():
        model(torch.zeros(1, 3, 32, 32))
    assert forward_flops(spec, 32, 16) == counter.get_total_flops() > 0


def test_stage_flops_follow_the_cost_model(config):
    plan = small_plan(config)
    cell = next(c for c in plan.cells if c.attack == "center" and c.defense == "cgat")
    sizes = Sizes(train=120, query=40, database=200, image_size=32, classes=6)
    assert plan.sizes[cell.stages["split"].key] == sizes
    train = cell.stages["train"]
    f = forward_flops(train.spec.backbone, 32, 16)
    epochs = train.spec.method.params["epochs"]
    assert stage_flops(train, sizes) == 3 * epochs * 120 * f
    iters = cell.stages["attack"].spec.attack.params["iterations"]
    assert stage_flops(cell.stages["attack"], sizes) == 40 * (3 * iters + 2) * f
    assert stage_flops(cell.stages["encode"], sizes) == (200 + 120 + 40) * f
    assert stage_flops(cell.stages["evaluate"], sizes) == 2 * 40 * 200 * 16
    defend = cell.stages["defend"].spec.defense.params
    assert stage_flops(cell.stages["defend"], sizes) == defend["epochs"] * 120 * (6 + 3 * defend["iterations"]) * f


def test_estimates_without_history_come_from_flops(config, tmp_path):
    rows = {r.stage: r for r in estimate_plan(small_plan(config), ArtifactStore(tmp_path), torch.device("cpu"), [])}
    assert rows["train"].basis == "flops" and rows["train"].estimated_s > 0 and rows["train"].cached == 0
    history = [{"kind": "train", "plugin": "dpsh", "device": "cpu", "device_label": f"cpu {platform.machine()}",
                "wall_s": 2.0, "flops": rows["train"].flops // 2}]
    rows = {r.stage: r for r in estimate_plan(small_plan(config), ArtifactStore(tmp_path), torch.device("cpu"), history)}
    assert rows["train"].basis == "timings" and rows["train"].estimated_s == pytest.approx(4.0)


def _prepare_stage(config, attack: str):
    plan = small_plan(config, ["defenses=[none]", f"attacks=[{attack}]"])
    return next(s for s in plan.stages() if s.kind == "prepare"), plan


def test_tha_prepare_is_priced_as_its_prototype_training(config):
    stage, _ = _prepare_stage(config, "tha")
    p = stage.spec.attack.params
    sizes = Sizes(120, 40, 200, 32, 6)
    h1, h2 = p["proto_hidden"]
    classes, bits, batch, train = 6, 16, p["proto_batch_size"], 120
    per_label = 2 * (classes * h1 + h1 * h2 + h2 * bits)  # three Linear layers, 2 FLOPs per multiply-add
    steps = p["epochs"] * p["steps_per_epoch"]
    expected = steps * 3 * (batch * per_label + 2 * batch * train * (bits + classes))
    assert stage_flops(stage, sizes) == expected


def test_prosgan_prepare_counts_its_gan_on_every_training_image(config):
    stage, plan = _prepare_stage(config, "prosgan")
    sizes = Sizes(120, 40, 200, 32, 6)
    flops = stage_flops(stage, sizes)
    train = next(s for s in plan.stages() if s.kind == "train")
    f = forward_flops(train.spec.backbone, 32, 16)
    model_passes = stage.spec.attack.params["epochs"] * 120 * 3 * f
    assert flops > model_passes > 0  # the generator and discriminator cost on top of the attacked model


def test_prepare_cost_is_unknown_without_classes_or_a_count(config, monkeypatch):
    stage, _ = _prepare_stage(config, "tha")
    assert stage_flops(stage, Sizes(120, 40, 200, 32, classes=None)) is None
    tha = plugins.attacks.get("tha")

    def broken(self, sizes):
        raise RuntimeError("cannot count")

    monkeypatch.setattr(tha, "prepare_flops", broken)
    assert stage_flops(stage, Sizes(120, 40, 200, 32, 6)) is None  # an estimate never fails the plan
    monkeypatch.setattr(tha, "prepare_flops", plugins.attacks.get("center").prepare_flops)
    assert stage_flops(stage, Sizes(120, 40, 200, 32, 6)) is None  # the base class: unknown
