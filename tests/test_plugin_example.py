"""The third-party plugin path, end to end, with the example distribution in
``examples/hashbench-plugin-example`` (``.ci/run`` installs it)."""

from __future__ import annotations

import importlib.metadata as md
import json

import pytest
from click.testing import CliRunner

from hashbench import plugins
from hashbench.cli.main import main
from hashbench.results import load, read_records

DIST = "hashbench-plugin-example"
try:
    VERSION = md.version(DIST)
except md.PackageNotFoundError:
    VERSION = None

pytestmark = pytest.mark.skipif(
    VERSION is None, reason=f"{DIST} is not installed: pip install -e examples/hashbench-plugin-example"
)


@pytest.mark.parametrize(("kind", "name"), [("attacks", "fgsm"), ("defenses", "noise-aug")])
def test_list_shows_the_plugin_with_its_distribution_and_version(kind: str, name: str) -> None:
    result = CliRunner().invoke(main, ["list", kind], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if f" {name} " in line)
    assert f"{DIST} {VERSION}" in row
    assert plugins.BY_KIND[kind].origin(name) == (DIST, VERSION)


def test_smoke_grid_runs_the_plugins(tmp_path) -> None:
    args = ["run", "--grid", "smoke", "--set", "attacks=[fgsm]", "--set", "defenses=[none,noise-aug]",
            "--set", "methods=[dpsh]", "--results-dir", str(tmp_path), "--quiet", "--no-report"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    df = load("smoke", tmp_path)
    assert sorted(zip(df["defense"], df["attack"])) == [
        ("noise-aug", "clean"), ("noise-aug", "fgsm"), ("none", "clean"), ("none", "fgsm")]
    assert (df.loc[df["attack"] == "fgsm", "linf_max"] <= 8 / 255 + 1e-5).all()
    for record in read_records("smoke", tmp_path):
        plugins = record["provenance"]["plugins"]
        if record["cell"]["attack"] == "fgsm":
            assert plugins["attack"] == [DIST, VERSION]
        if record["cell"]["defense"] == "noise-aug":
            assert plugins["defense"] == [DIST, VERSION]
            assert record["params"]["defense"]["epochs"] == 1  # the smoke profile's scale (10 × 0.02)
    manifest = json.loads((tmp_path / "smoke" / "run.json").read_text())
    assert manifest["status"] == "complete"
