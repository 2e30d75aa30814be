"""``plan --device NAME`` / ``--tflops X``: a grid priced for a device that is not here, the totals
of each member of a union grid, and the bytes its artifacts will take.  No data is needed."""

import json

import pytest
from click.testing import CliRunner

from hashbench.cli.main import main
from hashbench.harness.cost import stage_bytes
from hashbench.harness.devices import ACHIEVED_FRACTION, DEVICES
from hashbench.harness.plan import build_plan
from hashbench.harness.pricing import member_plan
from hashbench.harness.stages.spec import split_stage

H200 = DEVICES["h200"]


def _plan_json(tmp_path, *args: str) -> dict:
    result = CliRunner().invoke(main, ["plan", *args, "--json", "--results-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _assert_rated(info: dict, flops_per_s: dict[str, float]) -> None:
    """Every stage kind's time is its FLOPs over the rate of its kind (``flops_per_s``, else fp32's)."""
    for row in info["stages"]:
        rate = flops_per_s.get(row["stage"], flops_per_s["fp32"])
        assert row["estimated_s"] == pytest.approx(row["flops"] / rate), row
        assert row["basis"] == "rated"
    total = info["total"]
    assert total["estimated_s"] == pytest.approx(sum(r["estimated_s"] for r in info["stages"]))
    assert total["estimated_hours"] == pytest.approx(total["estimated_s"] / 3600)


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    return _plan_json(tmp_path_factory.mktemp("results"), "--grid", "full", "--device", "h200")


def test_table1_priced_for_an_h200(tmp_path):
    info = _plan_json(tmp_path, "--grid", "table1", "--device", "h200")
    assert info["pricing"]["name"] == "h200" and info["pricing"]["achieved_fraction"] == ACHIEVED_FRACTION == 0.4
    assert info["pricing"]["peak_tflops"]["fp32"] == H200.fp32 == 67.0 and "datasheet" in info["pricing"]["source"]
    _assert_rated(info, {"fp32": 67.0e12 * 0.4})
    assert info["total"]["flops"] > 1e18 and info["total"]["estimated_hours"] > 1  # the paper's table: GPU-hours
    table = CliRunner().invoke(main, ["plan", "--grid", "table1", "--device", "h200", "--results-dir", str(tmp_path)])
    assert table.exit_code == 0, table.output
    hours = f"{info['total']['estimated_s'] / 3600:.1f}"
    assert f"≈ {hours} GPU-hours" in table.output and "H200" in table.output and "(h200)" in table.output
    assert "achieved fraction 0.4" in table.output  # the utilisation factor is in the footer


def test_tflops_and_achieved_fraction(tmp_path):
    info = _plan_json(tmp_path, "--grid", "table1", "--tflops", "100")
    _assert_rated(info, {"fp32": 100e12 * 0.4})
    assert info["pricing"]["peak_tflops"] == {"fp32": 100.0, "bf16": 100.0, "fp16": 100.0}
    half = _plan_json(tmp_path, "--grid", "table1", "--tflops", "100", "--achieved-fraction", "0.2")
    assert half["total"]["estimated_s"] == pytest.approx(2 * info["total"]["estimated_s"])
    assert half["total"]["flops"] == info["total"]["flops"]


def test_bf16_prices_the_autocast_stages_at_the_bf16_rate(tmp_path):
    info = _plan_json(tmp_path, "--grid", "table1", "--device", "h200", "--amp", "bf16")
    bf16 = H200.bf16 * 1e12 * 0.4
    assert H200.bf16 == 989.5
    # --amp autocasts train and defend; prepare and attack stay fp32 without --amp-attacks
    _assert_rated(info, {"fp32": 67.0e12 * 0.4, "train": bf16, "defend": bf16})
    both = _plan_json(tmp_path, "--grid", "table1", "--device", "h200", "--amp", "bf16", "--amp-attacks")
    _assert_rated(both, {"fp32": 67.0e12 * 0.4, "train": bf16, "defend": bf16, "prepare": bf16, "attack": bf16})
    assert both["total"]["estimated_s"] < info["total"]["estimated_s"]
    v100 = CliRunner().invoke(main, ["plan", "--grid", "table1", "--device", "v100", "--amp", "bf16",
                                     "--results-dir", str(tmp_path)])
    assert v100.exit_code == 2 and "no bf16 rate" in v100.output  # Volta has no bf16 tensor cores


@pytest.mark.parametrize("args, expected", [
    (["--device", "nonsense"], "unknown device 'nonsense'. Choices: h200, h100, a100, v100, rtx4090, l40s, cpu"),
    (["--device", "h20"], "unknown device 'h20'. Did you mean 'h200'"),
    (["--device", "h200", "--tflops", "100"], "not both"),
    (["--tflops", "-3"], "not a positive number"),
    (["--device", "h200", "--achieved-fraction", "1.5"], "not in (0, 1]"),
    (["--device", "cpu", "--achieved-fraction", "0.5"], "this machine's own timings"),
])
def test_bad_device_options_exit_2(tmp_path, args, expected):
    result = CliRunner().invoke(main, ["plan", "--grid", "table1", *args, "--results-dir", str(tmp_path)])
    assert result.exit_code == 2 and expected in result.output, result.output


def test_union_lists_each_member_and_counts_shared_stages_once(full):
    members = {m["grid"]: m for m in full["member_totals"]}
    assert list(members) == full["grids"] and {"table1", "table5"} <= set(members) and len(members) >= 6
    total = full["total"]
    for key in ("stages", "to_run", "flops", "estimated_s", "bytes"):
        assert all(m[key] > 0 for m in members.values()), key
    assert total["total"] < sum(m["stages"] for m in members.values())  # table1–3 share their models
    assert total["flops"] < sum(m["flops"] for m in members.values())
    assert total["estimated_s"] <= sum(m["estimated_s"] for m in members.values())
    assert total["bytes"] <= sum(m["bytes"] for m in members.values())
    assert max(m["estimated_s"] for m in members.values()) <= total["estimated_s"]
    assert members["table1"]["estimated_s"] == pytest.approx(members["table1"]["flops"] / (67.0e12 * 0.4))


def test_union_table_shows_each_grid_and_the_total(tmp_path):
    result = CliRunner().invoke(main, ["plan", "--grid", "full", "--device", "h200", "--results-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "per grid of full" in result.output and "union full" in result.output and "GPU-hours" in result.output
    for member in ("table1", "table2", "table3", "table5", "saat"):
        assert f"\n  {member}" in result.output
    words = " ".join(result.output.split())  # the caption wraps at the terminal's width
    assert "the union counts a stage that several grids share once" in words


def test_bytes_are_the_sum_of_stage_bytes(full, config):
    plan = build_plan(config, "full", config.grid("full"), require_data=False)
    sizes = [stage_bytes(s, plan.sizes.get(split_stage(s).key)) for s in plan.stages()]  # nothing cached
    assert full["total"]["bytes"] == sum(s for s in sizes if s is not None) > 2**30
    assert full["total"]["bytes_unknown"] == sizes.count(None) == full["total"]["bytes_unknown"]
    by_kind = {r["stage"]: r["bytes"] for r in full["stages"]}
    assert sum(by_kind.values()) == full["total"]["bytes"]
    table1 = member_plan(plan, "table1")
    expected = sum(stage_bytes(s, plan.sizes.get(split_stage(s).key)) or 0 for s in table1.stages())
    assert {m["grid"]: m["bytes"] for m in full["member_totals"]}["table1"] == expected


def test_this_machine_keeps_its_keys_and_adds_bytes(tmp_path):
    info = _plan_json(tmp_path, "--grid", "table1")
    assert {"grid", "grids", "profile", "cells", "device", "amp", "stages", "total", "unavailable"} <= set(info)
    assert info["pricing"]["name"] == "auto" and info["member_totals"] == []  # one grid: no member table
    assert info["total"]["bytes"] > 0 and info["total"]["estimated_hours"] > 0


def test_every_row_names_its_source_and_the_cpu_row_is_measured():
    from hashbench.harness.cost import matmul_flops_per_s
    from hashbench.harness.devices import device_rate

    for spec in DEVICES.values():
        assert spec.source and (spec.measured or (spec.fp32 and spec.fp16))
        assert spec.achieved_fraction == (1.0 if spec.measured else ACHIEVED_FRACTION)
    cpu = device_rate("CPU")  # names are case-insensitive
    assert not cpu.gpu and cpu.achieved_fraction == 1.0  # a measured rate is already an achieved one
    assert cpu.flops_per_s() == pytest.approx(matmul_flops_per_s("cpu"))
