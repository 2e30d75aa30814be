import json

import pytest
import yaml
from click.testing import CliRunner
from runner_helpers import SMALL_CELLS, SMALL_STAGES, small_cli_args

from hashbench.cli.main import main
from hashbench.results import load


@pytest.fixture
def cli():
    return CliRunner()


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """One run 'a' of the small grid, shared by the tests that read or compare runs."""
    root = tmp_path_factory.mktemp("results")
    result = CliRunner().invoke(main, ["run", *small_cli_args(), "--run", "a", "--quiet", "--results-dir", str(root)])
    assert result.exit_code == 0, result.output
    return root, result


def test_unknown_grid_is_one_line_exit_2(cli, tmp_path):
    result = cli.invoke(main, ["run", "--grid", "dmeo", "--results-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "unknown grid 'dmeo'. Did you mean 'demo'?" in result.output
    assert not any(tmp_path.iterdir())  # nothing written


def test_malformed_yaml_names_line_and_column(cli, tmp_path):
    bad = tmp_path / "registry.yaml"
    bad.write_text("datasets:\n  shapes: {type: shapes\ngrids: [\n")
    result = cli.invoke(main, ["plan", "--registry", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}:" in result.output and "invalid YAML" in result.output


def test_bad_plugin_value_names_file_and_key(cli, tmp_path, config):
    raw = yaml.safe_load(config.path.read_text())
    raw["grids"]["smoke"]["params"]["attacks"] = {"center": {"epsilon": -1}}
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = cli.invoke(main, ["plan", "--grid", "smoke", "--registry", str(path)])
    assert result.exit_code == 2
    assert "grids.smoke: attack 'center': 'epsilon'" in result.output


def test_unknown_attack_in_grid(cli, tmp_path, config):
    raw = yaml.safe_load(config.path.read_text())
    raw["grids"]["smoke"]["attacks"] = ["centr"]
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = cli.invoke(main, ["plan", "--grid", "smoke", "--registry", str(path)])
    assert result.exit_code == 2
    assert "grids.smoke.attacks[0]: unknown attack 'centr'. Did you mean 'center'?" in result.output


def test_list_shows_origin_and_paper(cli):
    result = cli.invoke(main, ["list", "attacks"])
    assert result.exit_code == 0
    assert "center" in result.output and "hashbench" in result.output


@pytest.mark.parametrize(("args", "message"), [
    (["--set", "atacks=[center]"], "--set atacks: unknown grid key 'atacks'. Did you mean 'attacks'?"),
    (["--set", "params.attacks.center.iteratons=5"], "unknown parameter 'iteratons' of attack 'center'. "
                                                     "Did you mean 'iterations'?"),
    (["--set", "attacks=[centr]"], "(with --set).attacks[0]: unknown attack 'centr'. Did you mean 'center'?"),
    (["--set", "bits"], "expected KEY=VALUE"),
])
def test_set_errors_exit_2(cli, tmp_path, args, message):
    result = cli.invoke(main, ["run", "--grid", "smoke", *args, "--results-dir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())  # click may wrap long lines
    assert not any(tmp_path.iterdir())


def test_run_report_and_plan(cli, ran):
    root, result = ran
    assert f"{sum(SMALL_STAGES.values())} stages executed" in result.output
    assert (root / "a" / "run.json").exists()
    again = cli.invoke(main, ["run", *small_cli_args(), "--run", "a", "--quiet", "--no-report", "--results-dir", str(root)])
    assert "0 stages executed" in again.output
    plan = cli.invoke(main, ["plan", *small_cli_args(), "--json", "--results-dir", str(root)])
    assert plan.exit_code == 0, plan.output
    info = json.loads(plan.output)
    assert info["total"]["to_run"] == 0 and info["total"]["total"] == sum(SMALL_STAGES.values())
    assert {r["stage"]: r["total"] for r in info["stages"]} == SMALL_STAGES and info["cells"] == SMALL_CELLS
    out = root / "report"
    report = cli.invoke(main, ["report", "--run", "a", "--csv", "--html", "--out", str(out), "--results-dir", str(root)])
    assert report.exit_code == 0, report.output
    assert (out / "index.html").exists() and (out / "results.csv").exists()


def test_plan_table_estimates_what_is_left(cli, ran):
    root, _ = ran
    args = [*small_cli_args(), "--set", "params.attacks.center.iterations=9", "--results-dir", str(root)]
    info = json.loads(cli.invoke(main, ["plan", *args, "--json"]).output)
    rows = {r["stage"]: r for r in info["stages"]}
    assert rows["attack"]["to_run"] == 2 and rows["attack"]["cached"] == 0 and rows["train"]["to_run"] == 0
    assert rows["attack"]["basis"] == "timings" and rows["attack"]["estimated_s"] > 0  # from run 'a'
    table = cli.invoke(main, ["plan", *args])
    assert table.exit_code == 0 and "estimated time" in table.output and "attack" in table.output


def test_plan_of_a_paper_grid_without_its_data(cli, tmp_path):
    result = cli.invoke(main, ["plan", "--grid", "table1", "--json", "--results-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["cells"] == 3 * 3 * 7 and "flickr25k" in info["unavailable"]
    assert {r["stage"]: r["total"] for r in info["stages"]}["train"] == 3
    assert all(r["flops"] > 0 for r in info["stages"] if r["stage"] not in ("split",))


def test_grid_from_a_yaml_file(cli, tmp_path, config):
    grid = dict(yaml.safe_load(config.path.read_text())["grids"]["smoke"])
    grid.update(methods=["dpsh"], defenses=["none"], attacks=[])
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(grid))
    result = cli.invoke(main, ["plan", "--grid", str(path), "--json", "--results-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["grid"] == "tiny" and json.loads(result.output)["cells"] == 1
    missing = cli.invoke(main, ["plan", "--grid", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "cannot read grid file" in missing.output


def test_report_of_unknown_run(cli, tmp_path):
    result = cli.invoke(main, ["report", "--run", "nope", "--results-dir", str(tmp_path)])
    assert result.exit_code == 2 and "run 'nope' not found" in result.output


def test_compare_and_threshold(cli, ran):
    root, _ = ran
    args = ["--quiet", "--no-report", "--results-dir", str(root)]
    assert cli.invoke(main, ["run", *small_cli_args(), "--run", "b", *args]).exit_code == 0  # all cached
    result = cli.invoke(main, ["compare", "a", "b", "--results-dir", str(root)])
    assert result.exit_code == 0, result.output
    assert result.output.count("+0.00") == SMALL_CELLS  # same config and seed: identical MAP in every cell
    same = cli.invoke(main, ["compare", "a", "b", "--threshold", "0", "--results-dir", str(root)])
    assert same.exit_code == 0 and f"all {SMALL_CELLS} cells within 0 MAP points" in same.output
    # a weaker attack: only the attacked cells change
    run_c = cli.invoke(main, ["run", *small_cli_args(), "--set", "params.attacks.center.iterations=1", "--run", "c", *args])
    assert run_c.exit_code == 0, run_c.output
    a, c = load("a", root).set_index("cell_id"), load("c", root).set_index("cell_id")
    worst = float((100 * (c["map"] - a["map"])).abs().max())
    below = cli.invoke(main, ["compare", "a", "c", "--threshold", f"{worst + 0.01}", "--results-dir", str(root)])
    assert below.exit_code == 0, below.output
    if worst > 0:
        above = cli.invoke(main, ["compare", "a", "c", "--threshold", f"{worst / 2}", "--results-dir", str(root)])
        assert above.exit_code == 1 and "MAP points" in above.output
    # a cell missing from one run fails the gate whatever the threshold
    assert cli.invoke(main, ["run", *small_cli_args(), "--set", "defenses=[none]", "--run", "d", *args]).exit_code == 0
    gap = cli.invoke(main, ["compare", "a", "d", "--threshold", "100", "--results-dir", str(root)])
    assert gap.exit_code == 1 and "in one run only" in gap.output


def test_failed_cells_exit_1(cli, ran):
    root, _ = ran
    result = cli.invoke(main, ["run", *small_cli_args(), "--set", "params.defenses.cgat.lr=1e30", "--run", "bad",
                               "--quiet", "--no-report", "--results-dir", str(root)])
    assert result.exit_code == 1, result.output
    assert "2 of 4 cells failed" in result.output and "(defend stage)" in result.output
    assert len(load("bad", root)) == 2  # the undefended cells have results
