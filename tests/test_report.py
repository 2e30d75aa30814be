"""The HTML report and its building blocks, on runs fabricated on disk (no training) and one real smoke run."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import statistics
from pathlib import Path
from typing import Any

import matplotlib
import pandas as pd
import pytest
import torch
from report_records import RUN, XSS, add_examples, first_number, html_tables, make_record, paper_like_records, write_run

from hashbench.errors import UserError
from hashbench.harness import store
from hashbench.report import build_report
from hashbench.report import paper as paper_module
from hashbench.report import render_html, write_report
from hashbench.report.data import load_run
from hashbench.report.figures import curve_attacks, curves_figure, defense_colors
from hashbench.report.leaderboard import leaderboards
from hashbench.report.tables import Stats
from hashbench.results import read_records
from hashbench.results.schema import COLUMNS

SEEDS = (0, 1)


# --- fixtures -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def paper_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    """A run shaped like the papers' grids, with example artifacts and one failed cell."""
    root = tmp_path_factory.mktemp("results")
    records = paper_like_records(SEEDS)
    add_examples(root, records)
    failed = make_record(dataset="mscoco", method="dpsh", backbone="vgg11", defense="cgat", attack="tha",
                         cell_id="mscoco-dpsh-vgg11-32-cgat-tha-s0")
    failed.update(status="failed", error="attack stage 1234abcd failed: CUDA out of memory", failed_stage="attack",
                  traceback="Traceback (most recent call last):\n  File <attack>\nRuntimeError: CUDA out of memory")
    del failed["metrics"]
    manifest = {"run": RUN, "grid": "paper-like", "profile": "paper", "device": "cuda", "device_name": "NVIDIA H100",
                "git_commit": "cafebabe", "cells": len(records) + 2, "wall_s": 321.5, "status": "failed",
                "failed": [{"cell_id": "nuswide21-dpsh-vgg11-32-none-tha-s0", "error": "prepare stage failed: boom"}],
                "stages": {"executed": 40, "cached": 12}, "peak_memory_mb": {"train": 2048.0, "attack": 4096.0}}
    write_run(root, records + [failed], manifest=manifest)
    return root, records


@pytest.fixture(scope="module")
def page(paper_run: tuple[Path, list[dict[str, Any]]]) -> str:
    return render_html(RUN, results_dir=paper_run[0])


@pytest.fixture(scope="module")
def report(paper_run: tuple[Path, list[dict[str, Any]]]):
    return build_report(RUN, paper_run[0])


@pytest.fixture(scope="module")
def tables(page: str) -> dict[str, dict[str, Any]]:
    return {t["id"]: t for t in html_tables(page) if t["id"]}


def mean_percent(records: list[dict[str, Any]], metric: str = "map", **cell: Any) -> float:
    values = [r["metrics"][metric] for r in records if all(r["cell"][k] == v for k, v in cell.items())]
    assert values, cell
    return 100 * statistics.mean(values)


def std_percent(records: list[dict[str, Any]], **cell: Any) -> float:
    values = [r["metrics"]["map"] for r in records if all(r["cell"][k] == v for k, v in cell.items())]
    return 100 * statistics.stdev(values)


def rows_of(table: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Body rows keyed by their first cell's text (group rows and the header skipped)."""
    body = [r for r in table["rows"] if r and r[0]["tag"] == "th" and len(r) > 1 and r[1]["tag"] == "td"]
    return {r[0]["text"]: r[1:] for r in body}


def layout_id(report, kind: str, title_part: str) -> str:
    return next(t.id for t in report.layouts if t.kind == kind and title_part in t.title)


# --- reading a run ----------------------------------------------------------------------------------

def test_load_run_keeps_failures_apart_from_results(paper_run: tuple[Path, list[dict[str, Any]]]) -> None:
    root, records = paper_run
    run = load_run(RUN, root)
    assert list(run.frame.columns) == COLUMNS
    assert len(run.frame) == len(records) == len(run.records)
    assert {f.cell_id: f.error for f in run.failures} == {
        "mscoco-dpsh-vgg11-32-cgat-tha-s0": "attack stage 1234abcd failed: CUDA out of memory",
        "nuswide21-dpsh-vgg11-32-none-tha-s0": "prepare stage failed: boom",
    }
    assert run.failures[0].cell["dataset"] == "mscoco"
    assert run.store is not None


def test_stats_average_seeds_in_percent(paper_run: tuple[Path, list[dict[str, Any]]]) -> None:
    root, records = paper_run
    stats = Stats(load_run(RUN, root).frame)
    where = dict(dataset="flickr25k", method="dpsh", backbone="alexnet", bits=16, defense="cgat")
    stat = stats.get(**where, attack="dhta")
    assert stat.map == pytest.approx(mean_percent(records, **where, attack="dhta"))
    assert stat.map_std == pytest.approx(std_percent(records, **where, attack="dhta"))
    assert stat.t_map == pytest.approx(mean_percent(records, "t_map", **where, attack="dhta"))
    assert stat.n == 2 and stat.seeds == (0, 1) and stat.targeted
    assert not stats.get(**where, attack="sdha").targeted
    assert stats.get(**where, attack="nope") is None
    assert stats.values("defense", dataset="flickr25k", method="dpsh") == ["none", "atrdh", "cgat"]
    assert stats.values("attack", method="dph") == ["clean", "p2p", "hag", "sdha", "mainstay"]


# --- the papers' numbers ----------------------------------------------------------------------------

def test_paper_numbers_are_complete_and_consistent() -> None:
    numbers = paper_module.load()
    by_table: dict[str, int] = {}
    for n in numbers.numbers:
        by_table[n.table_id] = by_table.get(n.table_id, 0) + 1
    # Tables 1-3: 3 bit lengths x 3 models x 7 columns; Table 4: 8 x 9; Table 5: 15 x 7; SAAT: 9 x 12 and 8 x 12.
    assert by_table == {"cgat-table1": 63, "cgat-table2": 63, "cgat-table3": 63, "cgat-table4": 72,
                        "cgat-table5": 105, "saat-table1": 108, "saat-table2": 96}
    assert numbers.lookup("flickr25k", "dpsh", 16, "none", "clean").value == 82.53
    assert numbers.lookup("mscoco", "dpsh", 64, "cgat", "sdha").value == 45.00
    assert numbers.lookup("nuswide21", "dpsh", 32, "cgat", "center").value == 54.36
    assert numbers.lookup("nuswide21", "dsdh-c", 32, "cgat", "hag").value == 68.29
    assert numbers.lookup("mscoco", "dph", 64, "none", "mainstay-t", "t_map").value == 56.58
    assert numbers.lookup("flickr25k", "dph", 16, "saat", "mainstay").value == 30.55
    assert numbers.lookup("flickr25k", "dpsh", 48, "none", "clean") is None
    # Table 4 repeats the 32-bit rows of Tables 1-3; the only disagreement is the one the paper has.
    disagree = []
    for n in numbers.numbers:
        if n.table_id == "cgat-table4" and n.attack != "center":
            others = [o.value for o in numbers.all_for(*n.setting) if o.table_id != "cgat-table4"]
            assert len(others) == 1, n
            if others[0] != n.value:
                disagree.append((n.dataset, n.defense, n.attack, others[0], n.value))
    assert disagree == [("mscoco", "none", "tha", 27.41, 43.88)]
    assert numbers.lookup("mscoco", "dpsh", 32, "none", "tha", prefer="cgat-table4").value == 43.88
    allowed = {"dataset": {"flickr25k", "nuswide21", "mscoco"},
               "method": {"dph", "dpsh", "hashnet", "dsdh", "dch", "csq", "dsdh-c"},
               "defense": {"none", "atrdh", "cgat", "saat"},
               "attack": {"clean", "p2p", "dhta", "prosgan", "tha", "hag", "sdha", "center", "mainstay", "mainstay-t"}}
    for key, names in allowed.items():
        assert {getattr(n, key) for n in numbers.numbers} <= names


@pytest.mark.parametrize(("table", "message"), [
    ({"columns": {"attack": ["clean", "p2p"]}, "rows": [{"bits": 16, "defense": "none", "values": [1.0]}]},
     "2 values expected"),
    ({"columns": {"attack": ["clean"]}, "rows": [{"bits": 16, "defense": "none", "colour": 1, "values": [1.0]}]},
     "unknown keys \\['colour'\\]"),
    ({"columns": {"attack": ["clean"]}, "rows": [{"bits": 16, "defense": "none", "values": [101.0]}]},
     "not a percentage"),
    ({"columns": {"attack": ["clean", "clean"]}, "rows": [{"bits": 16, "defense": "none", "values": [1.0, 2.0]}]},
     "appears twice"),
])
def test_malformed_paper_numbers_are_rejected(table: dict[str, Any], message: str) -> None:
    data = {"papers": {"p": {"short": "P"}},
            "tables": [{"id": "t", "paper": "p", "table": "Table 1", **table,
                        "fixed": {"dataset": "d", "backbone": "b", "method": "m", "metric": "map"}}]}
    with pytest.raises(UserError, match=message):
        paper_module.parse(data)


# --- layouts ----------------------------------------------------------------------------------------

def test_tables_1_3_layout_in_html(paper_run, report, tables) -> None:
    root, records = paper_run
    table = tables[layout_id(report, "cgat-1-3", "FLICKR-25K: DPSH on AlexNet")]
    header = [c["text"].replace(" ↕", "") for c in table["rows"][0]]
    assert header == ["Model", "Clean", "P2P", "DHTA", "SDHA", "Center"]
    groups = [r[0]["text"] for r in table["rows"] if len(r) == 1]
    assert groups == ["16 bits", "32 bits"]
    labels = [r[0]["text"] for r in table["rows"][1:] if len(r) > 1]
    assert labels == ["DPSH (undefended)", "ATRDH", "CgAT", "Δ (CgAT − ATRDH)"] * 2
    first_group = table["rows"][2:6]
    attacks = ["clean", "p2p", "dhta", "sdha", "center"]
    for row, defense in zip(first_group, ["none", "atrdh", "cgat"]):
        for cell, attack in zip(row[1:], attacks):
            where = dict(dataset="flickr25k", method="dpsh", bits=16, defense=defense, attack=attack)
            assert first_number(cell["text"]) == round(mean_percent(records, **where), 2)
            assert f"± {std_percent(records, **where):.2f}" in cell["text"]
    # Bold: the best of each column within the bit group.
    for j, attack in enumerate(attacks, start=1):
        values = [round(mean_percent(records, dataset="flickr25k", method="dpsh", bits=16, defense=d, attack=attack), 2)
                  for d in ("none", "atrdh", "cgat")]
        bold = [row[j]["bold"] for row in first_group[:3]]
        assert bold == [v == max(values) for v in values]
    # The Δ row is CgAT − ATRDH, with the paper's own difference beneath.
    delta = first_group[3]
    cgat, atrdh = (round(mean_percent(records, dataset="flickr25k", method="dpsh", bits=16, defense=d,
                                      attack="dhta"), 2) for d in ("cgat", "atrdh"))
    assert first_number(delta[3]["text"]) == pytest.approx(cgat - atrdh, abs=1e-9)
    assert "+6.79" in delta[3]["text"]  # paper: 56.31 − 49.52
    # The paper's number and the difference beside ours.
    clean = first_group[0][1]["text"]
    ours = round(mean_percent(records, dataset="flickr25k", method="dpsh", bits=16, defense="none", attack="clean"), 2)
    assert "82.53" in clean and f"({ours - 82.53:+.2f})".replace("-", "−") in clean


def test_table_4_layout_columns_are_dataset_by_defense(paper_run, report, tables) -> None:
    root, records = paper_run
    table = tables[layout_id(report, "cgat-4", "DPSH, 32 bits")]
    spans = [(c["text"], c["colspan"]) for c in table["rows"][0][1:]]
    assert spans == [("FLICKR-25K", 3), ("NUS-WIDE", 3)]
    assert [c["text"] for c in table["rows"][1]] == ["Attack", "DPSH", "ATRDH", "CgAT", "DPSH", "ATRDH", "CgAT"]
    rows = rows_of(table)
    assert list(rows) == ["Clean", "P2P", "DHTA", "SDHA", "Center"]
    coords = [(d, df) for d in ("flickr25k", "nuswide21") for df in ("none", "atrdh", "cgat")]
    for j, (dataset, defense) in enumerate(coords):
        values = {a: round(mean_percent(records, dataset=dataset, method="dpsh", bits=32, defense=defense, attack=a), 2)
                  for a in ("p2p", "dhta", "sdha", "center")}
        strongest = min(values.values())
        for label, attack in (("P2P", "p2p"), ("DHTA", "dhta"), ("SDHA", "sdha"), ("Center", "center")):
            assert first_number(rows[label][j]["text"]) == values[attack]
            assert rows[label][j]["bold"] == (values[attack] == strongest)
        assert not rows["Clean"][j]["bold"]
    assert "17.04" in rows["Center"][0]["text"]  # CgAT Table 4, "Ours" on undefended FLICKR-25K


def test_table_5_layout_groups_hashing_methods(paper_run, report, tables) -> None:
    root, records = paper_run
    table = tables[layout_id(report, "cgat-5", "NUS-WIDE, VGG11, 32 bits")]
    assert [r[0]["text"] for r in table["rows"] if len(r) == 1] == ["DPSH", "HashNet"]
    rows = rows_of(table)
    assert list(rows) == ["DPSH (undefended)", "DPSH + ATRDH", "DPSH + CgAT",
                          "HashNet (undefended)", "HashNet + ATRDH", "HashNet + CgAT"]
    expected = round(mean_percent(records, dataset="nuswide21", method="hashnet", defense="cgat", attack="sdha"), 2)
    assert first_number(rows["HashNet + CgAT"][3]["text"]) == expected
    assert "60.24" in rows["HashNet + CgAT"][3]["text"]  # CgAT Table 5
    assert "CgAT Table 5" in report.layouts[[t.id for t in report.layouts].index(table["id"])].paper_tables


def test_saat_layouts_show_t_map_for_targeted_attacks(paper_run, report, tables) -> None:
    root, records = paper_run
    saat = [t for t in report.layouts if t.kind.startswith("saat")]
    assert [(t.kind, t.title) for t in saat] == [
        ("saat-1", "Attacks on the undefended model: DPH on AlexNet"),
        ("saat-2", "After adversarial training: DPH on AlexNet"),
    ]  # only the DPH block ran SAAT or the mainstay attack
    one = tables[saat[0].id]
    groups = [r[0]["text"] for r in one["rows"] if len(r) == 1]
    assert groups == ["MAP (non-targeted attacks)", "t-MAP (targeted attacks)"]
    rows = rows_of(one)
    assert list(rows) == ["Original (clean)", "HAG", "SDHA", "Mainstay", "P2P"]
    where = dict(dataset="flickr25k", method="dph", bits=32, defense="none")
    assert first_number(rows["P2P"][0]["text"]) == round(mean_percent(records, "t_map", **where, attack="p2p"), 2)
    assert "81.83" in rows["P2P"][0]["text"]  # SAAT Table I, P2P t-MAP, FLICKR 32 bits
    assert "14.53" in rows["Mainstay"][0]["text"]
    two = tables[saat[1].id]
    assert [r[0]["text"] for r in two["rows"] if len(r) == 1] == ["ATRDH", "SAAT"]
    mainstay = [r[1]["text"] for r in two["rows"] if r[0]["text"] == "Mainstay"]
    assert len(mainstay) == 2 and "32.40" in mainstay[0] and "34.77" in mainstay[1]  # ATRDH, then SAAT


def test_no_saat_layouts_without_saat_or_mainstay(tmp_path: Path) -> None:
    write_run(tmp_path, [make_record(defense=d, attack=a, map_=0.5)
                         for d in ("none", "cgat") for a in ("clean", "center")])
    report = build_report(RUN, tmp_path)
    assert [t.kind for t in report.layouts] == ["cgat-1-3", "cgat-4"]


# --- leaderboard ------------------------------------------------------------------------------------

def test_leaderboard_ranks_by_worst_case_over_attacks() -> None:
    rows = []
    crafted = {  # defense -> seed -> attack -> MAP
        "none": {0: {"clean": 0.80, "a": 0.10, "b": 0.30}, 1: {"clean": 0.82, "a": 0.20, "b": 0.12}},
        "cgat": {0: {"clean": 0.70, "a": 0.50, "b": 0.40}, 1: {"clean": 0.72, "a": 0.44, "b": 0.46}},
        "atrdh": {0: {"clean": 0.75, "a": 0.60}},  # never attacked with "b"
    }
    for defense, seeds in crafted.items():
        for seed, maps in seeds.items():
            for attack, value in maps.items():
                rows.append({"dataset": "shapes", "method": "dpsh", "backbone": "smallcnn", "bits": 32,
                             "defense": defense, "attack": attack, "seed": seed, "map": value})
    (board,) = leaderboards(pd.DataFrame(rows))
    assert [(e.rank, e.defense) for e in board.entries] == [(1, "atrdh"), (2, "cgat"), (3, "none")]
    atrdh, cgat, none = board.entries
    assert cgat.robust == pytest.approx(statistics.mean([40.0, 44.0]))  # per seed the minimum, then the mean
    assert cgat.robust_std == pytest.approx(statistics.stdev([40.0, 44.0]))
    assert none.robust == pytest.approx(statistics.mean([10.0, 12.0])) and none.strongest == "a"
    assert cgat.clean == pytest.approx(71.0) and cgat.seeds == 2
    assert atrdh.missing == ("b",) and not atrdh.complete and atrdh.robust_std is None
    assert cgat.complete and board.attacks == ("a", "b")


def test_leaderboard_in_html(paper_run, page: str) -> None:
    root, records = paper_run
    boards = [t for t in html_tables(page) if t["id"] == "leaderboard"]
    assert len(boards) == 2  # FLICKR-25K and NUS-WIDE
    nus = boards[1]
    assert [c["text"].replace(" ↕", "") for c in nus["rows"][0]][:6] == [
        "Rank", "Model", "Backbone", "Bits", "Clean MAP (%)", "Worst-case MAP (%)"]
    expected = []
    for method in ("dpsh", "hashnet"):
        for defense in ("none", "atrdh", "cgat"):
            worst = [min(r["metrics"]["map"] for r in records
                         if r["cell"]["dataset"] == "nuswide21" and r["cell"]["method"] == method
                         and r["cell"]["defense"] == defense and r["cell"]["seed"] == s
                         and r["cell"]["attack"] != "clean")
                     for s in SEEDS]
            expected.append(round(100 * statistics.mean(worst), 2))
    shown = [first_number(r[5]["text"]) for r in nus["rows"][1:]]
    assert shown == sorted(expected, reverse=True)
    assert [int(r[0]["text"]) for r in nus["rows"][1:]] == list(range(1, 7))


# --- the page ---------------------------------------------------------------------------------------

def test_page_has_every_section_and_layout(report, page: str, tables) -> None:
    for section in ("leaderboard", "layout-cgat-1-3", "layout-cgat-4", "layout-cgat-5", "layout-saat-1",
                    "layout-saat-2", "figures", "examples", "details", "failures", "provenance", "references"):
        assert f'id="{section}"' in page, section
    assert page.count('<table class="paper-table">') == len(report.layouts) == 11
    assert all(t.id in tables for t in report.layouts)


def test_page_is_self_contained_and_scripts_are_pinned(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>")
    for needle in ("<link", "@import", "<iframe", "<object"):
        assert needle not in page.lower()
    assert not re.findall(r'\ssrc="', page)  # images are pooled into CSS rules
    urls = re.findall(r"url\(([^)#]*)\)", page)
    assert len(urls) > 20 and all(u.startswith("data:image/") for u in urls)
    for url in re.findall(r"https?://[^\s\"'<>)]+", page):
        assert url.startswith("http://www.w3.org/"), url
    scripts = re.findall(r"<script>(.*?)</script>", page, flags=re.S)
    assert len(scripts) == 1 and page.lower().count("<script") == 1
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page).group(1)
    assert "default-src &#39;none&#39;" in csp or "default-src 'none'" in csp
    assert f"sha256-{digest}" in csp


def test_plugin_strings_are_escaped(tmp_path: Path) -> None:
    records = [make_record(defense=XSS, attack=a, map_=0.4, dataset="a&b", method=XSS, cell_id=f"cell-{i}")
               for i, a in enumerate(("clean", XSS))]
    records.append(make_record(defense="none", attack=XSS, map_=0.3, dataset="a&b", method=XSS, cell_id="cell-none"))
    manifest = {"run": RUN, "grid": XSS, "failed": [{"cell_id": XSS, "error": "boom <img src=x onerror=alert(1)>"}]}
    write_run(tmp_path, records, manifest=manifest)
    page = render_html(RUN, results_dir=tmp_path)
    assert page.lower().count("<script") == 1  # ours only
    assert "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "boom &lt;img src=x onerror=alert(1)&gt;" in page
    assert "a&amp;b" in page
    svgs = re.findall(r"<svg.*?</svg>", page, flags=re.S)
    assert svgs and all("<script" not in svg for svg in svgs)
    assert any("&lt;script&gt;" in svg for svg in svgs)


def test_rendering_twice_is_byte_identical(tmp_path: Path) -> None:
    records = paper_like_records((0, 1))[:20]
    add_examples(tmp_path, records)
    write_run(tmp_path, records)
    assert render_html(RUN, results_dir=tmp_path) == render_html(RUN, results_dir=tmp_path)


def test_failed_cells_are_listed_with_their_error(page: str) -> None:
    section = page[page.index('id="failures"'):page.index('id="provenance"')]
    assert "Failed cells (2)" in section
    for text in ("mscoco-dpsh-vgg11-32-cgat-tha-s0", "CUDA out of memory", "nuswide21-dpsh-vgg11-32-none-tha-s0",
                 "prepare stage failed: boom", "dataset mscoco", "attack stage</span>",
                 "<summary>traceback</summary><pre>Traceback (most recent call last):\n  File &lt;attack&gt;"):
        assert text in section


def test_provenance_panel(paper_run, page: str, tables) -> None:
    root, records = paper_run
    section = page[page.index('id="provenance"'):]
    for text in ("cafebabe", "NVIDIA H100", "321.5", "splithash0000001", "hashbench-extra 9.9",
                 '<th scope="row">train</th><td>2048</td>', '<th scope="row">attack</th><td>4096</td>'):
        assert text in section, text  # the manifest's peak memory per stage is a nested table
    cells = next(t for t in html_tables(page) if "cells" in t["class"])
    assert len(cells["rows"]) == 1 + len(records)
    record = next(r for r in records
                  if "evaluate" in r["provenance"]["artifact_keys"] and r["cell"]["attack"] != "clean")
    row = next(r for r in cells["rows"] if r[0]["text"] == record["cell_id"])
    key = record["provenance"]["artifact_keys"]["evaluate"]
    assert f"evaluate:{key[:12]}" in row[3]["text"] and f"attack:{key[:12]}" in row[3]["text"]
    seed = record["cell"]["seed"]
    assert f"attack {10 + seed:.2f} s" in row[4]["text"] and "evaluate 0.25 s" in row[4]["text"]
    assert row[5]["text"] == f"run {512 + seed} MB"


def test_per_stage_wall_time_and_peak_memory_are_shown(tmp_path: Path) -> None:
    record = make_record()
    record["provenance"]["peak_memory_mb"] = {"train": 100.0, "evaluate": 20.5}
    record["provenance"]["stages"] = {"split": {"wall_s": 0.5, "peak_rss_mb": 90.0}, "train": {"wall_s": 1.5}}
    record["timing"]["attack_peak_memory_mb"] = 64.0
    write_run(tmp_path, [record])
    cells = next(t for t in html_tables(render_html(RUN, results_dir=tmp_path)) if "cells" in t["class"])
    # provenance.stages, and the timing keys of stages it does not list, in pipeline order
    assert cells["rows"][1][4]["text"] == "split 0.50 s · train 1.50 s · evaluate 0.25 s"
    assert cells["rows"][1][5]["text"] == "train 100 MB · attack 64 MB · evaluate 20 MB"


def test_examples_show_images_and_rankings(page: str) -> None:
    section = page[page.index('id="examples"'):page.index('id="details"')]
    # default figure attacks: DHTA and SDHA (the DPH block ran only SDHA of the two)
    titles = re.findall(r"<h3>(.*?)</h3>", section)
    assert "FLICKR-25K · DPSH · AlexNet · 16 bits, under DHTA" in titles
    assert "FLICKR-25K · DPH · AlexNet · 32 bits, under SDHA" in titles
    assert not any("Center" in t or "Mainstay" in t for t in titles)
    first = section[:section.index('<div class="example"', section.index('<div class="example"') + 1)]
    assert first.count('class="query"') == 2  # two queries, the second hidden
    assert first.count(" hidden>") == 1
    # 3 defenses x 2 queries x (10 before + 10 after)
    assert first.count("<li class=") == 3 * 2 * 20
    assert "P@10 50%" in first and "P@10 30%" in first  # relevance pattern of add_examples
    # every item, adversarial image and perturbation of both queries, and each query's clean image
    images = re.findall(r'class="im (?:query-img )?(im\d+)"', first)
    assert len(images) == 3 * 2 * 20 + 3 * 2 * 2 + 2
    rules = dict(re.findall(r"\.(im\d+)\{background-image:url\((data:[^)]*)\)\}", page))
    assert set(images) <= set(rules) and len(rules) < len(images)  # each distinct image once


def test_examples_without_store_show_indices(tmp_path: Path) -> None:
    records = paper_like_records((0,))[:10]
    add_examples(tmp_path, records)
    write_run(tmp_path, records)
    (tmp_path / "store").rename(tmp_path / "moved")
    page = render_html(RUN, results_dir=tmp_path)
    section = page[page.index('id="examples"'):page.index('id="details"')]
    assert "artifact store is not available" in section
    assert 'class="im ' not in section and "#37" in section
    assert "background-image" not in page


def test_figure_attacks_default_fallback_and_choice(paper_run) -> None:
    assert curve_attacks(["clean", "p2p", "dhta", "sdha", "center"]) == ["dhta", "sdha"]
    assert curve_attacks(["clean", "center", "hag"]) == ["hag", "center"]
    assert curve_attacks(["clean", "p2p", "center"], ["center"]) == ["center"]
    report = build_report(RUN, paper_run[0], figure_attacks=["center", "mainstay"])
    assert report.figure_attacks[("flickr25k", "dpsh", "alexnet", 16)] == ["center"]
    assert report.figure_attacks[("flickr25k", "dph", "alexnet", 32)] == ["mainstay"]


def test_curve_figure_is_labelled_deterministic_and_leaks_nothing(paper_run) -> None:
    import matplotlib.pyplot as plt

    before, salt = plt.get_fignums(), matplotlib.rcParams["svg.hashsalt"]
    frame = load_run(RUN, paper_run[0]).frame
    rows = frame[(frame["dataset"] == "flickr25k") & (frame["bits"] == 16)]
    colors = defense_colors(["none", "atrdh", "cgat"])
    svg = curves_figure(rows, ["dhta", "sdha"], colors=colors, fig_id="t")
    assert svg == curves_figure(rows, ["dhta", "sdha"], colors=colors, fig_id="t")
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    for text in ("DHTA", "SDHA", "DPSH (undefended)", "ATRDH", "CgAT", "Recall", "Precision@N"):
        assert text in svg
    ids = re.findall(r'\sid="([^"]+)"', svg)
    assert ids and all(i.startswith("t-") for i in ids)
    assert plt.get_fignums() == before
    assert matplotlib.rcParams["svg.hashsalt"] == salt


def test_svg_ids_are_unique_on_the_page(page: str) -> None:
    ids = re.findall(r'\sid="([^"]+)"', page)
    assert len(ids) == len(set(ids))
    for ref in re.findall(r'url\(#([^)]+)\)|href="#([^"]+)"', page):
        assert (ref[0] or ref[1]) in ids


# --- writing ----------------------------------------------------------------------------------------

def test_write_report_defaults_to_reports_run_and_leaves_no_temp_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_run(tmp_path / "results", [make_record(attack=a) for a in ("clean", "center")])
    monkeypatch.chdir(tmp_path)
    paths = write_report(RUN, results_dir=tmp_path / "results", csv=True)
    out = Path("reports") / RUN
    assert paths == [out / "index.html", out / "results.csv"]
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "results.csv"]
    assert (out / "index.html").read_text(encoding="utf-8") == render_html(RUN, results_dir=tmp_path / "results")


def test_failed_write_keeps_the_old_file_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_run(tmp_path, [make_record()])
    out = tmp_path / "out"
    out.mkdir()
    (out / "index.html").write_text("old")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store.os, "replace", broken_replace)
    with pytest.raises(UserError, match=re.escape(str(out))):
        write_report(RUN, results_dir=tmp_path, out_dir=out)
    assert [p.name for p in out.iterdir()] == ["index.html"]
    assert (out / "index.html").read_text() == "old"


def test_empty_run_says_no_results_yet(tmp_path: Path) -> None:
    write_run(tmp_path, [], manifest={"run": RUN})
    page = render_html(RUN, results_dir=tmp_path)
    assert "No results yet" in page
    assert "<svg" not in page and 'class="paper-table"' not in page
    paths = write_report(RUN, results_dir=tmp_path, out_dir=tmp_path / "out", csv=True, json=True, latex=True,
                         markdown=True)
    assert len(pd.read_csv(paths[1])) == 0
    assert json.loads(paths[4].read_text())["settings"] == []


def test_unknown_run_raises_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        render_html("missing", results_dir=tmp_path)
    with pytest.raises(UserError, match="not found"):
        write_report("missing", results_dir=tmp_path, out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --- a real run -------------------------------------------------------------------------------------

def test_smoke_run_report_has_real_examples(tmp_path: Path, config) -> None:
    from hashbench.harness.plan import build_plan
    from hashbench.harness.runner import Runner

    grid = config.grid("smoke").model_copy(
        update={"methods": ["dpsh"], "attacks": ["center"], "defenses": ["none", "cgat"]})
    plan = build_plan(config, "smoke", grid)
    Runner(tmp_path, torch.device("cpu")).run(plan, "smoke")
    record = next(r for r in read_records("smoke", tmp_path) if r["cell"]["attack"] == "center")
    examples = record["metrics"]["examples"]
    assert len(examples["queries"]) == 4 and all(len(t) == 10 for t in examples["top"])
    from hashbench import plugins

    dataset = plugins.datasets.create("shapes", config.data.datasets["shapes-tiny"].params)
    labels = dataset.labels
    for q, top, relevant in zip(examples["queries"], examples["top"], examples["relevant"]):
        assert relevant == [bool((labels[q] * labels[t]).sum() > 0) for t in top]
    page = render_html("smoke", results_dir=tmp_path)
    section = page[page.index('id="examples"'):page.index('id="details"')]
    assert "under Center" in section
    assert section.count("<li class=") == 2 * 2 * 20  # 2 defenses x 2 queries x 20 items
    assert len(re.findall(r'class="im ', section)) == 2 * 2 * (2 + 20) + 2  # adv, δ, items; clean per query
