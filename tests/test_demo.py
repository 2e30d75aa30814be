"""The demo grid's claims (slow: minutes on CPU; run with `pytest -m slow`).

Issue 17's bar: a victim far above random codes, attacks that bite, defenses that are not
constant, in the papers' order under the center attack.  MAP values are in points (percent).
"""

import pytest
import torch

from hashbench.harness.config import apply_overrides
from hashbench.harness.plan import build_plan, plan_members
from hashbench.harness.runner import Runner
from hashbench.results import load

METHODS = ["dph", "dpsh", "hashnet", "dch", "csq", "dsdh", "dsdh-c", "greedyhash", "csq-c", "dpn", "hswd", "ortho"]
UNTARGETED = ["center", "mainstay", "hag", "sdha"]
TARGETED = ["p2p", "dhta", "tha", "mainstay-t"]


@pytest.fixture(scope="module")
def demo(config, tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    Runner(root, torch.device("cpu")).run(build_plan(config, "demo", config.grid("demo")), "demo")
    frame = load("demo", root)
    frame[["map", "t_map", "chance_map"]] *= 100.0
    return frame.set_index(["defense", "attack"])


@pytest.mark.slow
def test_the_undefended_victim_learned(demo):
    clean = demo.loc[("none", "clean")]
    assert clean["map"] >= 85.0 and clean["map"] >= clean["chance_map"] + 25.0
    assert clean["distinct_codes"] > 100 and clean["bit_balance"] > 0.5


@pytest.mark.slow
@pytest.mark.parametrize("attack", UNTARGETED)
def test_untargeted_attacks_lower_map_by_30_points(demo, attack):
    assert demo.loc[("none", attack), "map"] <= demo.loc[("none", "clean"), "map"] - 30.0


@pytest.mark.slow
@pytest.mark.parametrize("attack", TARGETED)
def test_targeted_attacks_lower_map_and_raise_t_map(demo, attack):
    clean, attacked = demo.loc[("none", "clean")], demo.loc[("none", attack)]
    assert attacked["map"] <= clean["map"] - 20.0
    assert attacked["t_map"] >= clean["t_map"] + 30.0


@pytest.mark.slow
def test_prosgan_lowers_map_by_10_points(demo):
    assert demo.loc[("none", "prosgan"), "map"] <= demo.loc[("none", "clean"), "map"] - 10.0


@pytest.mark.slow
@pytest.mark.parametrize("defense", ["cgat", "saat", "atrdh"])
def test_defenses_keep_clean_map(demo, defense):
    assert demo.loc[(defense, "clean"), "map"] >= demo.loc[("none", "clean"), "map"] - 10.0


@pytest.mark.slow
def test_cgat_beats_atrdh_beats_none_under_the_center_attack(demo):
    center = demo.xs("center", level="attack")["map"]
    assert center["cgat"] >= center["none"] + 15.0
    assert center["cgat"] >= center["atrdh"] + 5.0


@pytest.mark.slow
def test_every_method_learns_under_quick(config, tmp_path):
    members = apply_overrides(config, config.members("demo"),
                              [f"methods=[{','.join(METHODS)}]", "defenses=[none]", "attacks=[]"])
    Runner(tmp_path, torch.device("cpu")).run(plan_members(config, "demo", members), "methods")
    frame = load("methods", tmp_path).set_index("method")
    for method in METHODS:
        row = frame.loc[method]
        assert 100 * row["map"] >= 85.0, (method, row["map"])
        assert 100 * (row["map"] - row["chance_map"]) >= 25.0, method
