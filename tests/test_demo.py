"""The demo grid's claims (slow: minutes on CPU; run with `pytest -m slow`)."""

import pytest
import torch

from hashbench.plan import build_plan
from hashbench.results import load
from hashbench.runner import LocalRunner


@pytest.mark.slow
def test_center_attack_hurts_and_cgat_defends(config, tmp_path):
    plan = build_plan(config, "demo", config.grid("demo"))
    LocalRunner(tmp_path, torch.device("cpu")).run(plan, "demo")
    maps = load("demo", tmp_path).set_index(["defense", "attack"])["map"]
    assert maps["none", "center"] < maps["none", "clean"] - 0.05
    assert maps["cgat", "center"] > maps["none", "center"]
