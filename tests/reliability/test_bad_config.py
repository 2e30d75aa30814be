"""Bad configuration: one clear line on stderr, exit code 2, and nothing written, before any work
(an existing results folder stays byte for byte as it was).

Cases already covered elsewhere and not repeated here: an unknown grid name
(tests/test_cli.py::test_unknown_grid_is_one_line_exit_2), an unknown attack in a grid
(test_unknown_attack_in_grid), ε < 0 (test_bad_plugin_value_names_file_and_key).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from .conftest import FAST, assert_clear_error, invoke


def smoke(raw: dict) -> dict:
    return raw["grids"]["smoke"]


def tiny(raw: dict) -> dict:
    return raw["datasets"]["shapes-tiny"]


def set_param(kind: str, name: str, **values: Any) -> Callable[[dict], None]:
    def change(raw: dict) -> None:
        smoke(raw).setdefault("params", {}).setdefault(kind, {})[name] = values
        if kind != "backbones":
            smoke(raw)[kind] = [name] if kind != "defenses" else ["none", name]

    return change


# (case id, change to the project's registry.yaml, substrings of the one-line message)
CASES: list[tuple[str, Callable[[dict], Any], tuple[str, ...]]] = [
    # unknown names, each with a did-you-mean
    ("unknown-method", lambda r: smoke(r).update(methods=["dpsj"]),
     ("grids.smoke.methods[0]: unknown method 'dpsj'. Did you mean 'dpsh'", "Choices: ")),
    ("unknown-defense", lambda r: smoke(r).update(defenses=["none", "cgta"]),
     ("grids.smoke.defenses[1]: unknown defense 'cgta'. Did you mean 'cgat'?",)),
    ("unknown-dataset", lambda r: smoke(r).update(datasets=["shapes-tiyn"]),
     ("grids.smoke.datasets[0]: unknown dataset 'shapes-tiyn'. Did you mean 'shapes-tiny'",)),
    ("unknown-backbone", lambda r: smoke(r).update(backbones=["smalcnn"]),
     ("grids.smoke.backbones[0]: unknown backbone 'smalcnn'. Did you mean 'smallcnn'?",)),
    ("unknown-profile", lambda r: smoke(r).update(profile="smok"),
     ("grids.smoke.profile: unknown profile 'smok'. Did you mean 'smoke'?",)),
    ("unknown-dataset-type", lambda r: tiny(r).update(type="shapez"),
     ("datasets.shapes-tiny.type: unknown dataset 'shapez'. Did you mean 'shapes'?",)),
    # wrong types
    ("bits-not-a-number", lambda r: smoke(r).update(bits=["sixteen"]),
     ("grids.smoke.bits.0: Input should be a valid integer", "'sixteen'")),
    ("seed-not-a-number", lambda r: smoke(r).update(seeds=["x"]), ("grids.smoke.seeds.0: Input should be a valid integer",)),
    ("epsilon-not-a-number", set_param("attacks", "center", epsilon="big"),
     ("grids.smoke: attack 'center': 'epsilon': Input should be a valid number", "'big'")),
    ("epochs-not-a-number", set_param("methods", "dpsh", epochs="many"),
     ("grids.smoke: method 'dpsh': 'epochs': Input should be a valid integer", "'many'")),
    ("dataset-param-type", lambda r: tiny(r)["params"].update(num_items="many"),
     ("datasets.shapes-tiny.params: 'num_items': Input should be a valid integer",)),
    ("axis-not-a-list", lambda r: smoke(r).update(methods="dpsh"), ("grids.smoke.methods: Input should be a valid list",)),
    # out-of-range values
    ("bits-zero", lambda r: smoke(r).update(bits=[0]), ("grids.smoke.bits: bit lengths must be positive (got [0])",)),
    ("bits-negative", lambda r: smoke(r).update(bits=[16, -8]), ("grids.smoke.bits: bit lengths must be positive", "-8")),
    ("epochs-zero", set_param("methods", "dpsh", epochs=0),
     ("grids.smoke: method 'dpsh': 'epochs': Input should be greater than 0 (got 0)",)),
    ("defense-epochs-zero", set_param("defenses", "cgat", epochs=0),
     ("grids.smoke: defense 'cgat': 'epochs': Input should be greater than 0 (got 0)",)),
    ("iterations-zero", set_param("attacks", "center", iterations=0),
     ("attack 'center': 'iterations': Input should be greater than 0 (got 0)",)),
    ("backbone-width-zero", set_param("backbones", "smallcnn", width=0, features=64),
     ("backbone 'smallcnn'", "'width'", "must be positive")),
    ("num-query-zero", lambda r: tiny(r)["split"].update(num_query=0),
     ("datasets.shapes-tiny.split.num_query: Input should be greater than 0 (got 0)",)),
    ("split-larger-than-dataset", lambda r: tiny(r)["split"].update(num_query=1000),
     ("datasets.shapes-tiny.split: num_query (1000) must be smaller than the dataset (240 items)",)),
    ("train-larger-than-database", lambda r: tiny(r)["split"].update(num_train=500),
     ("datasets.shapes-tiny.split: num_train (500) exceeds the database",)),
    ("scale-negative", lambda r: r["profiles"]["smoke"].update(scale={"epochs": -1}),
     ("profiles.smoke.scale: scale for 'epochs' must be positive",)),
    # unknown keys
    ("unknown-grid-key", lambda r: smoke(r).update(atacks=["center"]), ("grids.smoke.atacks: unknown key",)),
    ("unknown-plugin-param", set_param("attacks", "center", itrations=3),
     ("attack 'center': unknown key 'itrations' (allowed: ", "iterations")),
    ("unknown-top-level-key", lambda r: r.update(grid={}), ("grid: unknown key",)),
    ("unknown-dataset-key", lambda r: tiny(r).update(paramz={}), ("datasets.shapes-tiny.paramz: unknown key",)),
    ("unknown-plugin-kind", lambda r: smoke(r)["params"].update(atacks={}), ("unknown plugin kind 'atacks'",)),
    ("missing-key", lambda r: tiny(r).pop("split"), ("datasets.shapes-tiny.split: required key is missing",)),
    ("params-not-on-axis", lambda r: (smoke(r).update(attacks=["center"]),
                                      smoke(r)["params"].update(attacks={"hag": {"iterations": 3}})),
     ("grids.smoke.params.attacks.hag: 'hag' is not on the grid's attacks axis (center)",)),
    # empty axes and duplicates
    ("empty-methods", lambda r: smoke(r).update(methods=[]), ("grids.smoke.methods: is empty; list at least one entry",)),
    ("empty-datasets", lambda r: smoke(r).update(datasets=[]), ("grids.smoke.datasets: is empty",)),
    ("empty-defenses", lambda r: smoke(r).update(defenses=[]), ("grids.smoke.defenses: is empty",)),
    ("empty-seeds", lambda r: smoke(r).update(seeds=[]), ("grids.smoke.seeds: is empty",)),
    ("empty-pn", lambda r: tiny(r).update(pn=[]), ("datasets.shapes-tiny.pn: must be a non-empty list",)),
    ("duplicate-axis-entries", lambda r: smoke(r).update(methods=["dpsh", "dpsh"]),
     ("grids.smoke.methods: duplicate entries ['dpsh', 'dpsh']",)),
    # names that would become paths
    ("dataset-name-escapes", lambda r: (r["datasets"].__setitem__("../evil", tiny(r)), smoke(r).update(datasets=["../evil"])),
     ("datasets: the name '../evil' is not allowed", "letters, digits")),
    ("grid-name-escapes", lambda r: r["grids"].__setitem__("a/b", dict(smoke(r))), ("grids: the name 'a/b' is not allowed",)),
]


@pytest.mark.parametrize(("change", "needles"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_registry_fails_before_any_work(write_registry, tmp_path: Path, change, needles) -> None:
    registry = write_registry(change)
    results = tmp_path / "results"
    result = invoke("run", "--grid", "smoke", "--registry", str(registry), "--results-dir", str(results), "--quiet")
    line = assert_clear_error(result, str(registry), *needles)
    assert not results.exists(), line  # nothing was written: no store, no run folder


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        ("datasets:\n  shapes: {type: shapes\ngrids: [\n", ":3:6: invalid YAML", "expected ',' or '}'"),
        ("grids:\n  a: [1, 2\n  b: 3\n", ":3:4: invalid YAML", "expected ',' or ']'"),
        ("datasets: {}\nprofiles: {}\ngrids:\n  a: b: c\n", ":4:7: invalid YAML", "mapping values are not allowed"),
        ("datasets:\n\tshapes: {}\n", ":2:1: invalid YAML", "found character '\\t'"),
    ],
    ids=["unclosed-brace", "unclosed-bracket", "nested-mapping", "tab-indent"],
)
def test_malformed_yaml_names_line_and_column(tmp_path: Path, text: str, where: str, problem: str) -> None:
    path = tmp_path / "registry.yaml"
    path.write_text(text)
    assert_clear_error(invoke("plan", "--registry", str(path)), f"{path}{where}", problem)


@pytest.mark.parametrize("text", ["", "- a list\n- not a mapping\n", "just text\n"], ids=["empty", "list", "scalar"])
def test_registry_that_is_not_a_mapping(tmp_path: Path, text: str) -> None:
    path = tmp_path / "registry.yaml"
    path.write_text(text)
    assert_clear_error(invoke("plan", "--registry", str(path)), str(path),
                       "expected a mapping with 'datasets', 'profiles' and 'grids'")


def test_missing_registry_file(tmp_path: Path) -> None:
    assert_clear_error(invoke("plan", "--registry", str(tmp_path / "nope.yaml")),
                       "cannot read registry file", "No such file or directory")


def test_an_empty_attack_axis_is_allowed(write_registry, tmp_path: Path) -> None:
    # `attacks: []` is not an error: the clean evaluation always runs
    registry = write_registry(lambda r: smoke(r).update(attacks=[], methods=["dpsh"], defenses=["none"]))
    result = invoke("plan", "--grid", "smoke", "--registry", str(registry), "--results-dir", str(tmp_path), "--json")
    assert result.exit_code == 0, result.output
    assert '"cells": 1' in result.output


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    "bad",
    [["--set", "attacks=[centre]"], ["--set", "bits=[0]"], ["--set", "params.methods.dpsh.epochs=0"],
     ["--grid", "smoek"]],
    ids=["unknown-attack", "bits-zero", "epochs-zero", "unknown-grid"],
)
def test_a_bad_invocation_leaves_finished_results_untouched(tmp_path: Path, bad: list[str]) -> None:
    results = tmp_path / "results"
    assert invoke("run", *FAST, "--results-dir", str(results), "--quiet", "--no-report").exit_code == 0
    before = _snapshot(results)
    result = invoke("run", *FAST, *bad, "--results-dir", str(results), "--quiet", "--no-report")
    assert_clear_error(result)
    assert _snapshot(results) == before


@pytest.mark.parametrize("option", ["--threads", "--workers"])
def test_a_process_count_below_one_is_refused_by_the_option_parser(tmp_path: Path, option: str) -> None:
    results = tmp_path / "results"
    result = invoke("run", *FAST, option, "0", "--results-dir", str(results), "--quiet", "--no-report")
    assert result.exit_code == 2
    assert f"Invalid value for '{option}': 0 is not in the range x>=1" in result.output
    assert not results.exists()
