"""The first-run estimate: measured network rates, image reading and the per-stage overhead."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hashbench.data.shapes import Shapes
from hashbench.harness import cost, flops, throughput
from hashbench.harness.cost import estimate_plan, images_read, stage_flops, stage_work
from hashbench.harness.sizes import Sizes
from hashbench.harness.stages.kinds import KINDS
from hashbench.harness.stages.spec import PluginSpec, Stage
from hashbench.harness.stages.train import TrainSpec
from hashbench.harness.store import ArtifactStore

from runner_helpers import small_plan


def test_measure_rate_counts_flops_per_second_of_the_timed_steps(monkeypatch):
    clock = iter(range(100))
    monkeypatch.setattr(throughput.time, "perf_counter", lambda: float(next(clock)))  # each step: 1 s
    monkeypatch.setattr(throughput, "PROBE_SECONDS", 2.5)  # three timed steps
    net = lambda: nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))  # noqa: E731
    assert throughput.measure_rate(net, 8, forward_flops=1000, batch=4, mode="train", device="cpu") == 3 * 1000 * 4
    assert throughput.measure_rate(net, 8, forward_flops=1000, batch=4, mode="infer", device="cpu") == 1000 * 4


def test_measure_rate_rejects_an_unknown_mode():
    with pytest.raises(ValueError, match="'train' or 'infer'"):
        throughput.measure_rate(lambda: nn.Identity(), 8, 1, 1, "backward", "cpu")


def test_probe_batch_is_capped_on_a_cpu_for_large_networks():
    assert throughput.probe_batch(64, forward_flops=10**6, mode="train", device="cpu") == 64
    assert throughput.probe_batch(64, forward_flops=10**10, mode="infer", device="cpu") == 5  # 5e10 / 1e10
    assert throughput.probe_batch(64, forward_flops=10**12, mode="train", device="cpu") == 1


def test_load_seconds_times_the_dataset_reads():
    data = Shapes(Shapes.Params(num_items=64))
    assert 0 < throughput.load_seconds(data, augment=True) < 1


def test_stage_overhead_leaves_nothing_in_the_results_folder(tmp_path):
    throughput.stage_overhead_s.cache_clear()
    assert 0 < throughput.stage_overhead_s(str(tmp_path)) < 5
    assert list(tmp_path.iterdir()) == []


def test_a_method_without_augmentation_reads_plain_images():
    # a bool is no count: augment=False used to fall back to the "augmented" default
    sizes = Sizes(train=120, query=40, database=200, image_size=32, classes=6)
    smallcnn = PluginSpec("smallcnn", {}, ("hashbench", "0"))
    for augment in (False, True):
        dph = PluginSpec("dph", {"epochs": 3, "augment": augment}, ("hashbench", "0"))
        assert images_read(Stage(TrainSpec(dph, smallcnn, 16, 0)), sizes) == (360, augment)


def test_stages_read_their_images_and_time_their_own_network(config):
    plan = small_plan(config)
    cell = next(c for c in plan.cells if c.attack == "center" and c.defense == "cgat")
    sizes = Sizes(train=120, query=40, database=200, image_size=32, classes=6)
    train, defend = cell.stages["train"], cell.stages["defend"]
    epochs = train.spec.method.params["epochs"]
    assert images_read(train, sizes) == (epochs * 120, train.spec.method.params["augment"])
    assert images_read(cell.stages["encode"], sizes) == (360, False)
    assert images_read(cell.stages["attack"], sizes) == (40, False)
    assert images_read(cell.stages["evaluate"], sizes) == (0, False)
    assert stage_work(train, sizes).batch == min(train.spec.method.params["batch_size"], 120)
    assert stage_work(defend, sizes).mode == "train" and stage_work(cell.stages["encode"], sizes).mode == "infer"
    assert stage_work(cell.stages["attack"], sizes).batch <= 40  # never more than the queries
    assert stage_work(cell.stages["evaluate"], sizes) is None


def test_first_run_estimate_is_flops_over_the_network_rate_plus_reads_and_overhead(config, tmp_path, monkeypatch):
    rates = {"train": 2e9, "infer": 5e9}
    monkeypatch.setattr(cost, "network_rate", lambda backbone, side, batch, mode, device: rates[mode])
    monkeypatch.setattr(cost, "stage_overhead_s", lambda root: 0.5)
    monkeypatch.setattr(cost, "_load_seconds", lambda dataset, augment: 0.01 if augment else 0.001)
    plan = small_plan(config)
    rows = {r.stage: r for r in estimate_plan(plan, ArtifactStore(tmp_path), torch.device("cpu"), [])}
    stages = [s for s in plan.stages() if s.kind == "train"]
    sizes = plan.sizes[stages[0].inputs["split"].key]
    expected = 0.0
    for stage in stages:
        count, augment = images_read(stage, sizes)
        expected += stage_flops(stage, sizes) / 2e9 + 0.5 + count * (0.01 if augment else 0.001)
    assert rows["train"].basis == "flops" and rows["train"].estimated_s == pytest.approx(expected)
    encode = [s for s in plan.stages() if s.kind == "encode"]
    assert rows["encode"].estimated_s == pytest.approx(
        sum(stage_flops(s, sizes) / 5e9 + 0.5 + 0.001 * images_read(s, sizes)[0] for s in encode))


def test_transfer_optimisers_price_every_gradient_of_a_step():
    from hashbench import plugins
    from hashbench.api.attack import PrepareSizes

    sizes = PrepareSizes(train=120, image_size=32, bits=16, classes=6, model_forward_flops=1000)
    bim = plugins.attacks.create("bim", {"iterations": 10})
    si = plugins.attacks.create("si-ni-fgsm", {"iterations": 10, "scales": 3})
    vmi = plugins.attacks.create("vmi-fgsm", {"iterations": 10, "samples": 2})
    assert bim.perturb_flops(sizes) == (3 * 10 + 2) * 1000
    assert si.perturb_flops(sizes) == (3 * 10 * 3 + 2) * 1000  # three scaled copies per gradient
    assert vmi.perturb_flops(sizes) == (3 * 10 * 3 + 2) * 1000  # the point and two neighbours
    center = plugins.attacks.create("center", {"iterations": 7})
    assert center.perturb_flops(sizes) == (3 * 7 + 2) * 1000  # the default of an iterative attack


def test_attack_stage_flops_are_the_plugins_count_per_query(config):
    plan = small_plan(config, ["attacks=[si-ni-fgsm]", "defenses=[none,comdefend]"])
    sizes = Sizes(train=120, query=40, database=200, image_size=32, classes=6)
    by_defense = {c.defense: c for c in plan.cells if c.attack == "si-ni-fgsm"}
    plain, purified = by_defense["none"].stages, by_defense["comdefend"].stages
    f = flops.forward_flops(plain["train"].spec.backbone, 32, plain["train"].spec.bits)
    p = plain["attack"].spec.attack.params
    passes = 3 * p["iterations"] * p["scales"] + 2
    assert stage_flops(plain["attack"], sizes) == 40 * passes * f
    # behind ComDefend, every pass also runs the purifier
    purifier = flops.purifier_flops(purified["defend"].spec.defense, 32)
    assert purifier > 0 and flops.purifier_flops(PluginSpec("cgat", {}, ("hashbench", "0")), 32) == 0
    assert stage_flops(purified["attack"], sizes) == 40 * passes * (f + purifier)
    assert stage_flops(purified["encode"], sizes) == 360 * (f + purifier)


def test_evaluate_first_run_is_its_metrics_probe_plus_the_record_and_the_overhead(config, monkeypatch):
    calls = []

    def probe(queries, database, bits, classes, topk, pn, radius):
        calls.append((queries, database, bits, classes, topk, pn, radius))
        return 0.25

    monkeypatch.setattr(cost, "evaluate_seconds", probe)
    monkeypatch.setattr(cost, "record_write_s", lambda root: 0.125)
    monkeypatch.setattr(cost, "stage_overhead_s", lambda root: 0.5)
    plan = small_plan(config)
    evaluate = next(s for s in plan.stages() if s.kind == "evaluate")
    sizes = Sizes(train=120, query=40, database=200, image_size=32, classes=6)
    assert cost.first_run_seconds(evaluate, sizes, "cpu", None) == pytest.approx(0.875)
    assert calls == [(40, 200, evaluate.inputs["encode"].inputs["model"].spec.bits, 6, evaluate.spec.map_topk,
                      tuple(evaluate.spec.pn), evaluate.spec.radius)]


def test_evaluate_probe_scales_with_the_queries(monkeypatch):
    ticks = iter(range(100))
    monkeypatch.setattr(throughput.time, "perf_counter", lambda: float(next(ticks)))
    throughput.evaluate_seconds.cache_clear()
    # every timed call reads one tick: 1 s for the probe's 64 queries, scaled to 640
    assert throughput.evaluate_seconds(640, 50, 16, 4, 10, (5, 10), 2) == pytest.approx(10.0)
    throughput.evaluate_seconds.cache_clear()
    assert throughput.evaluate_seconds(0, 50, 16, 4, 10, (5,), 2) == 0.0


def test_record_write_probe_leaves_nothing_in_the_results_folder(tmp_path):
    throughput.record_write_s.cache_clear()
    assert 0 < throughput.record_write_s(str(tmp_path)) < 5
    assert list(tmp_path.iterdir()) == []


def test_the_first_training_stage_pays_the_optimiser_import_once(config, tmp_path, monkeypatch):
    monkeypatch.setattr(cost, "network_rate", lambda backbone, side, batch, mode, device: 1e9)
    monkeypatch.setattr(cost, "stage_overhead_s", lambda root: 0.0)
    monkeypatch.setattr(cost, "_load_seconds", lambda dataset, augment: 0.0)
    store = ArtifactStore(tmp_path)
    plan = small_plan(config)
    monkeypatch.setattr(cost, "first_optimiser_s", lambda: 0.0)
    without = {r.stage: r.estimated_s for r in estimate_plan(plan, store, torch.device("cpu"), [])}
    monkeypatch.setattr(cost, "first_optimiser_s", lambda: 7.0)
    with_startup = {r.stage: r.estimated_s for r in estimate_plan(plan, store, torch.device("cpu"), [])}
    first = next(k for k, kind in KINDS.items() if kind.trains and k in without)
    assert with_startup[first] == pytest.approx(without[first] + 7.0)
    assert all(with_startup[k] == pytest.approx(v) for k, v in without.items() if k != first)
