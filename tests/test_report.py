"""The HTML/CSV report, on fake runs written straight to disk (no training, no torch)."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
from typing import Any

import matplotlib
import pandas as pd
import pytest

from hashbench.errors import UserError
from hashbench.report import render_html, write_report
from hashbench.report import html as report_html
from hashbench.report.figures import pn_figure, pr_figure
from hashbench.report.tables import map_table, map_values, perturbation_table
from hashbench.results import COLUMNS, load

RUN = "fake"
DEFENSES = ("cgat", "none")  # "cgat" sorts first on disk; the tables must still put "none" first
ATTACKS = ("clean", "center", "tgt")
SEEDS = (0, 1)
XSS = "<script>alert(1)</script>"


def make_record(
    *,
    run: str = RUN,
    dataset: str = "shapes",
    method: str = "dpsh",
    backbone: str = "smallcnn",
    bits: int = 32,
    defense: str = "none",
    attack: str = "clean",
    seed: int = 0,
    map_: float = 0.5,
    t_map: float | None = None,
    cell_id: str | None = None,
) -> dict[str, Any]:
    clean = attack == "clean"
    return {
        "schema_version": 1,
        "run": run,
        "cell_id": cell_id or f"{dataset}-{method}-{backbone}-{bits}-{defense}-{attack}-{seed}",
        "cell": {"dataset": dataset, "method": method, "backbone": backbone, "bits": bits,
                 "defense": defense, "attack": attack, "seed": seed},
        "targeted": t_map is not None,
        "params": {},
        "metrics": {
            "map": map_, "t_map": t_map, "map_topk": 1000, "num_queries": 20, "num_database": 180,
            "pr_curve": {"recall": [0.1, 0.5, 1.0], "precision": [map_ + 0.3, map_, map_ / 2]},
            "p_at_n": {"n": [10, 20, 50], "precision": [map_ + 0.2, map_ + 0.1, map_]},
        },
        "perturbation": {
            "linf_max": None if clean else 8 / 255 - 0.001 * seed,
            "l2_mean": None if clean else 1.0 + seed,
            "mse_mean": None if clean else 0.0004 * (seed + 1),
            "epsilon": None if clean else 8 / 255,
        },
        "timing": {"attack_wall_s": None if clean else 10.0 + seed, "train_wall_s": 1.0},
        "provenance": {
            "hashbench_version": "0.1.0", "git_commit": "deadbeef", "python": "3.11.7", "torch": "2.5.0",
            "device": "cpu", "seeds": {"split": seed, "train": seed}, "split_hash": f"splithash{seed:07d}",
            "artifact_keys": {"train": f"train-key-{seed}", "attack": f"attack-key-{attack}"},
            "plugins": {"defense": ["hashbench", "0.1.0"], "attack": ["hashbench-extra", "9.9"]},
        },
    }


def write_run(
    root: Path, records: list[dict[str, Any]], *, run: str = RUN, manifest: dict[str, Any] | None = None
) -> Path:
    folder = root / run
    (folder / "records").mkdir(parents=True)
    base = {"run": run, "grid": "demo-grid", "profile": "quick", "created": "2026-11-23T16:00:00Z",
            "finished": "2026-11-23T16:05:00Z", "hashbench_version": "0.1.0", "git_commit": "deadbeef",
            "device": "cpu", "python": "3.11.7", "torch": "2.5.0", "platform": "Linux-x86_64",
            "cells": len(records), "failed": [], "stages": {"executed": 7, "cached": 3}}
    (folder / "run.json").write_text(json.dumps(base if manifest is None else manifest))
    for record in records:
        (folder / "records" / f"{record['cell_id']}.json").write_text(json.dumps(record))
    return folder


def map_of(defense: str, attack: str, seed: int) -> float:
    base = {"none": 0.80, "cgat": 0.70}[defense]
    drop = {"clean": 0.0, "center": 0.55, "tgt": 0.45}[attack]
    if defense == "cgat":
        drop /= 3  # the defense makes both attacks much weaker
    return round(base - drop + 0.0123456789 * seed, 10)


def t_map_of(defense: str, seed: int) -> float:
    return {"none": 0.6, "cgat": 0.2}[defense] + 0.01 * seed


def grid_records(**overrides: Any) -> list[dict[str, Any]]:
    return [
        make_record(defense=d, attack=a, seed=s, map_=map_of(d, a, s),
                    t_map=t_map_of(d, s) if a == "tgt" else None, **overrides)
        for d in DEFENSES for a in ATTACKS for s in SEEDS
    ]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("results")
    write_run(root, grid_records())
    return root


@pytest.fixture(scope="module")
def page(results: Path) -> str:
    return render_html(RUN, results_dir=results)


def percent(values: list[float]) -> str:
    mean = 100 * statistics.mean(values)
    return f"{mean:.2f} ± {100 * statistics.stdev(values):.2f}" if len(values) > 1 else f"{mean:.2f}"


def test_load_reads_the_fake_run(results: Path) -> None:
    df = load(RUN, results_dir=results)
    assert list(df.columns) == COLUMNS
    assert len(df) == len(DEFENSES) * len(ATTACKS) * len(SEEDS)
    assert df["t_map"].notna().sum() == len(DEFENSES) * len(SEEDS)


def test_map_table_orders_rows_and_columns_and_averages_seeds(results: Path) -> None:
    tables = map_table(load(RUN, results_dir=results))
    assert list(tables) == [("shapes", "dpsh", "smallcnn", 32)]
    table = tables[("shapes", "dpsh", "smallcnn", 32)]
    means = map_values(table)
    assert list(means.index) == ["none", "cgat"]
    assert list(means.columns) == ["clean", "center", "tgt"]
    for d in DEFENSES:
        for a in ATTACKS:
            runs = [map_of(d, a, s) for s in SEEDS]
            assert means.loc[d, a] == pytest.approx(100 * statistics.mean(runs))
            assert table.loc[d, (a, "map_std")] == pytest.approx(100 * statistics.stdev(runs))
            assert table.loc[d, (a, "n")] == 2
        assert table.loc[d, ("tgt", "t_map")] == pytest.approx(100 * statistics.mean(t_map_of(d, s) for s in SEEDS))
    assert map_values(table, "t_map")["center"].isna().all()
    best = map_values(table, "best")
    assert best["clean"].tolist() == [True, False]
    assert best["center"].tolist() == [False, True]


def test_html_map_table_shows_percent_mean_and_std(page: str) -> None:
    for d in DEFENSES:
        for a in ATTACKS:
            assert percent([map_of(d, a, s) for s in SEEDS]) in page
        assert percent([t_map_of(d, s) for s in SEEDS]) in page
    assert "shapes · dpsh · smallcnn · 32 bits" in page
    assert "MAP / t-MAP" in page
    header = page[page.index('<table class="map">'):page.index("</thead>")]
    assert header.index("Clean") < header.index("center") < header.index("tgt")


def test_best_per_column_is_bold(tmp_path: Path) -> None:
    crafted = [("none", "clean", 0.8), ("cgat", "clean", 0.7), ("none", "center", 0.1), ("cgat", "center", 0.5),
               ("none", "solo", 0.3)]
    write_run(tmp_path, [make_record(defense=d, attack=a, map_=m) for d, a, m in crafted])
    page = render_html(RUN, results_dir=tmp_path)
    bold = set(re.findall(r"<strong>([^<]*)</strong>", page))
    assert bold == {"80.00", "50.00"}  # "solo" ran for one defense only: nothing to compare
    assert "70.00" in page and "10.00" in page and "30.00" in page


def test_each_group_has_two_inline_svg_figures_with_unique_ids(tmp_path: Path) -> None:
    records = grid_records(bits=128) + grid_records(bits=16) + grid_records()
    write_run(tmp_path, records)
    page = render_html(RUN, results_dir=tmp_path)
    headings = re.findall(r"<h2>(.*?)</h2>", page)
    assert headings[:3] == [f"shapes · dpsh · smallcnn · {bits} bits" for bits in (16, 32, 128)]
    assert page.count("<svg") == 6
    assert page.count("</svg>") == 6
    assert "<?xml" not in page and "<!DOCTYPE svg" not in page
    ids = re.findall(r'\sid="([^"]+)"', page)
    assert len(ids) == len(set(ids))
    for ref in re.findall(r'url\(#([^)]+)\)|href="#([^"]+)"', page):
        assert (ref[0] or ref[1]) in ids


def test_page_is_self_contained(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>")
    for needle in ("<script", "<link", "@import", "src="):
        assert needle not in page.lower()
    for url in re.findall(r"https?://[^\s\"'<>)]+", page):
        assert url.startswith("http://www.w3.org/"), url


def test_data_strings_are_escaped(tmp_path: Path) -> None:
    records = [make_record(defense=XSS, attack=a, map_=0.4, dataset="a&b", cell_id=f"cell-{a}")
               for a in ("clean", "center")]
    records.append(make_record(defense="none", attack="center", map_=0.3, dataset="a&b", cell_id="cell-none"))
    manifest = {"run": RUN, "grid": XSS, "failed": [{"cell_id": XSS, "error": "boom <img src=x onerror=alert(1)>"}]}
    write_run(tmp_path, records, manifest=manifest)
    page = render_html(RUN, results_dir=tmp_path)
    assert "<script" not in page
    assert "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "boom &lt;img src=x onerror=alert(1)&gt;" in page
    assert "a&amp;b · dpsh" in page
    svgs = re.findall(r"<svg.*?</svg>", page, flags=re.S)
    assert len(svgs) == 2 and all("&lt;script&gt;alert(1)&lt;/script&gt; · center" in svg for svg in svgs)


def test_figures_render_labelled_deterministic_svg_and_leak_no_figure(results: Path) -> None:
    import matplotlib.pyplot as plt

    before, salt = plt.get_fignums(), matplotlib.rcParams["svg.hashsalt"]
    df = load(RUN, results_dir=results)
    first, second = pr_figure(df), pr_figure(df)
    assert first == second
    assert first.startswith("<svg") and first.rstrip().endswith("</svg>")
    for d in DEFENSES:
        for a in ATTACKS:
            assert f"{d} · {a}" in first
    assert pn_figure(df) == pn_figure(df)
    assert plt.get_fignums() == before
    assert matplotlib.rcParams["svg.hashsalt"] == salt  # the figure's rc settings stay local


def test_rendering_twice_is_byte_identical(results: Path, page: str) -> None:
    assert render_html(RUN, results_dir=results) == page


def test_perturbation_table_and_provenance(results: Path, page: str) -> None:
    table = perturbation_table(load(RUN, results_dir=results))[("shapes", "dpsh", "smallcnn", 32)]
    assert list(table.index) == [(d, a) for d in ("none", "cgat") for a in ("center", "tgt")]
    assert table.loc[("none", "center"), "linf_max"] == pytest.approx(8 / 255)
    assert table.loc[("none", "center"), "l2_mean"] == pytest.approx(1.5)
    assert table.loc[("none", "center"), "attack_wall_s"] == pytest.approx(10.5)
    assert "0.0314 (8.00/255)" in page and "10.50" in page
    assert page.count("<details>") == len(DEFENSES) * len(ATTACKS) * len(SEEDS)
    for text in ("deadbeef", "Linux-x86_64", "splithash0000001", "train-key-1", "hashbench-extra 9.9",
                 "demo-grid", "quick", "7 executed, 3 cached"):
        assert text in page


def test_failed_cells_are_listed(tmp_path: Path) -> None:
    manifest = {"run": RUN, "failed": [{"cell_id": "shapes-dpsh-x", "error": "CUDA out of memory"}]}
    write_run(tmp_path, grid_records(), manifest=manifest)
    page = render_html(RUN, results_dir=tmp_path)
    assert "Failed cells (1)" in page
    assert "shapes-dpsh-x" in page and "CUDA out of memory" in page


def test_csv_has_one_row_per_record_at_full_precision(results: Path, tmp_path: Path) -> None:
    paths = write_report(RUN, results_dir=results, out_dir=tmp_path / "out", html=False, csv=True)
    assert paths == [tmp_path / "out" / "results.csv"]
    table = pd.read_csv(paths[0])
    assert list(table.columns) == report_html.CSV_COLUMNS
    assert not {"pr_recall", "pr_precision", "pn_n", "pn_precision"} & set(table.columns)
    assert len(table) == len(DEFENSES) * len(ATTACKS) * len(SEEDS)
    row = table[(table["defense"] == "none") & (table["attack"] == "center") & (table["seed"] == 1)].iloc[0]
    assert row["map"] == map_of("none", "center", 1)  # exact: no rounding on the way out


def test_write_report_defaults_to_reports_run_and_leaves_no_temp_files(
    results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    paths = write_report(RUN, results_dir=results, csv=True)
    out = Path("reports") / RUN
    assert paths == [out / "index.html", out / "results.csv"]
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "results.csv"]
    assert (out / "index.html").read_text(encoding="utf-8") == render_html(RUN, results_dir=results)
    write_report(RUN, results_dir=results, csv=True)  # overwriting works too
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "results.csv"]


def test_failed_write_keeps_the_old_file_and_no_temp_file(
    results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "index.html").write_text("old")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report_html.os, "replace", broken_replace)
    with pytest.raises(UserError, match=re.escape(str(out))):
        write_report(RUN, results_dir=results, out_dir=out)
    assert [p.name for p in out.iterdir()] == ["index.html"]
    assert (out / "index.html").read_text() == "old"


def test_unwritable_out_dir_raises_user_error_naming_it(results: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserError, match=re.escape(str(blocker / "report"))):
        write_report(RUN, results_dir=results, out_dir=blocker / "report")


def test_empty_run_says_no_results_yet(tmp_path: Path) -> None:
    write_run(tmp_path, [], manifest={"run": RUN})
    page = render_html(RUN, results_dir=tmp_path)
    assert "No results yet" in page
    assert "<svg" not in page and '<table class="map">' not in page
    paths = write_report(RUN, results_dir=tmp_path, out_dir=tmp_path / "out", csv=True)
    assert len(pd.read_csv(paths[1])) == 0


def test_minimal_manifest_and_run_folder_path(tmp_path: Path) -> None:
    folder = write_run(tmp_path, grid_records(), manifest={"run": RUN})
    page = render_html(folder)
    assert f"hashbench report: {RUN}" in page
    assert percent([map_of("none", "clean", s) for s in SEEDS]) in page


def test_unknown_run_raises_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        render_html("missing", results_dir=tmp_path)
    with pytest.raises(UserError, match="not found"):
        write_report("missing", results_dir=tmp_path, out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()
