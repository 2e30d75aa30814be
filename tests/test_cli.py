import pytest
from click.testing import CliRunner

from hashbench.cli import main


@pytest.fixture
def cli():
    return CliRunner()


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
    import yaml

    raw = yaml.safe_load(config.path.read_text())
    raw["grids"]["smoke"]["params"]["attacks"] = {"center": {"epsilon": -1}}
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = cli.invoke(main, ["plan", "--grid", "smoke", "--registry", str(path)])
    assert result.exit_code == 2
    assert "grids.smoke: attack 'center': 'epsilon'" in result.output


def test_unknown_attack_in_grid(cli, tmp_path, config):
    import yaml

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


def test_run_report_and_plan(cli, tmp_path):
    args = ["--results-dir", str(tmp_path)]
    result = cli.invoke(main, ["run", "--grid", "smoke", "--quiet", *args])
    assert result.exit_code == 0, result.output
    assert "11 stages executed" in result.output
    assert (tmp_path.parent / tmp_path.name / "smoke" / "run.json").exists()
    again = cli.invoke(main, ["run", "--grid", "smoke", "--quiet", "--no-report", *args])
    assert "0 stages executed" in again.output
    plan = cli.invoke(main, ["plan", "--grid", "smoke", "--json", *args])
    assert plan.exit_code == 0 and '"to_run": 0' in plan.output
    out = tmp_path / "report"
    report = cli.invoke(main, ["report", "--run", "smoke", "--csv", "--html", "--out", str(out), *args])
    assert report.exit_code == 0, report.output
    assert (out / "index.html").exists() and (out / "results.csv").exists()


def test_report_of_unknown_run(cli, tmp_path):
    result = cli.invoke(main, ["report", "--run", "nope", "--results-dir", str(tmp_path)])
    assert result.exit_code == 2 and "run 'nope' not found" in result.output


def test_compare_two_runs(cli, tmp_path):
    args = ["--results-dir", str(tmp_path)]
    for name in ("a", "b"):
        assert cli.invoke(main, ["run", "--grid", "smoke", "--run", name, "--quiet", "--no-report", *args]).exit_code == 0
    result = cli.invoke(main, ["compare", "a", "b", *args])
    assert result.exit_code == 0, result.output
    assert result.output.count("+0.00") == 4  # same config and seed: identical MAP in every cell
