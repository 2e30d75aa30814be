"""The random-codes reference in every table, and the leaderboard rule for models that did not learn."""

from __future__ import annotations

import pandas as pd
import pytest
from report_records import RUN, html_tables, make_record, paper_like_records, write_run

from hashbench.report import build_report, render_html
from hashbench.report.layouts import CHANCE
from hashbench.report.leaderboard import leaderboards
from hashbench.results import load

HEALTHY = {"distinct_codes": 150, "bit_balance": 0.9, "dead_bits": 0}


def _records(crafted: dict, chance: float, health: dict | None = None) -> list[dict]:
    """defense -> (clean MAP, attacked MAP) records of one model each, with the random-codes MAP ``chance``."""
    records = []
    for defense, (clean, attacked) in crafted.items():
        for attack, value in (("clean", clean), ("center", attacked)):
            records.append(make_record(defense=defense, attack=attack, map_=value, chance=chance,
                                       health=(health or {}).get(defense, HEALTHY)))
    return records


def test_a_model_near_chance_ranks_after_every_healthy_one(tmp_path):
    crafted = {"none": (0.95, 0.20), "cgat": (0.90, 0.55), "saat": (0.64, 0.62)}  # SAAT: 7 points above chance
    write_run(tmp_path, _records(crafted, chance=0.57))
    (board,) = leaderboards(load(RUN, tmp_path))
    assert [e.defense for e in board.entries] == ["cgat", "none", "saat"]
    cgat, none, saat = board.entries
    assert cgat.healthy and none.healthy and not saat.healthy
    assert saat.robust == pytest.approx(62.0) and saat.robust > cgat.robust  # the best worst case, ranked last
    assert saat.chance == pytest.approx(57.0)
    assert saat.unhealthy.startswith("clean MAP 64.00 is within 10 points of random codes (57.00)")


def test_degenerate_codes_rank_last_whatever_their_map(tmp_path):
    crafted = {"none": (0.95, 0.20), "cgat": (0.90, 0.80)}
    health = {"cgat": {"distinct_codes": 1, "bit_balance": 0.0, "dead_bits": 32}}
    write_run(tmp_path, _records(crafted, chance=0.30, health=health))
    (board,) = leaderboards(load(RUN, tmp_path))
    assert [e.defense for e in board.entries] == ["none", "cgat"]
    assert board.entries[1].unhealthy == "degenerate codes: one code for all 180 database items"
    assert board.entries[1].distinct_codes == 1 and board.entries[0].bit_balance == pytest.approx(0.9)


def test_records_without_the_reference_are_not_flagged():
    rows = [{"dataset": "shapes", "method": "dpsh", "backbone": "smallcnn", "bits": 32, "defense": "none",
             "attack": a, "seed": 0, "map": m} for a, m in (("clean", 0.6), ("center", 0.1))]
    (board,) = leaderboards(pd.DataFrame(rows))
    assert board.entries[0].healthy and board.entries[0].chance is None


def test_the_leaderboard_page_says_why_a_model_is_ranked_last(tmp_path):
    crafted = {"none": (0.95, 0.20), "saat": (0.60, 0.59)}
    write_run(tmp_path, _records(crafted, chance=0.57))
    page = render_html(RUN, tmp_path)
    (board,) = [t for t in html_tables(page) if t["id"] == "leaderboard"]
    header = [c["text"].replace(" ↕", "") for c in board["rows"][0]]
    assert header[-3:] == ["Random codes (%)", "Distinct codes", "Bit balance"]
    last = board["rows"][-1]
    assert last[1]["text"].startswith("DPSH + SAAT") and "‡" in last[1]["text"]
    assert last[header.index("Random codes (%)")]["text"] == "57.00"
    assert "(rank 2): clean MAP 60.00 is within 10 points of random codes (57.00)" in page


def test_every_layout_has_a_random_codes_row(tmp_path):
    records = paper_like_records((0, 1))
    for r in records:  # the chance of a split: per dataset, as a run would record it
        r["metrics"]["chance"] = {"map": {"flickr25k": 0.6, "nuswide21": 0.4}[r["cell"]["dataset"]],
                                  "map_std": 0.0, "t_map": 0.1, "draws": 5}
    write_run(tmp_path, records)
    report = build_report(RUN, tmp_path)
    assert report.layouts
    for layout in report.layouts:
        rows = [r for g in layout.groups for r in g.rows if r.kind == "chance"]
        assert rows, layout.id
        for row in rows:
            assert row.label == CHANCE and not any(c.best for c in row.cells)
            for cell, column in zip(row.cells, layout.columns):
                expected = 10.0 if cell.metric == "t_map" else {"flickr25k": 60.0, "nuswide21": 40.0}[
                    cell.setting["dataset"]]
                assert cell.value == pytest.approx(expected), (layout.id, column.label)
    saat1 = next(t for t in report.layouts if t.kind == "saat-1")
    assert [r.cells[0].metric for g in saat1.groups for r in g.rows if r.kind == "chance"] == ["map", "t_map"]
    page = render_html(RUN, tmp_path)
    layouts_part = page[:page.index('<section id="details">')]
    assert layouts_part.count('<tr class="chance">') == sum(
        1 for t in report.layouts for g in t.groups for r in g.rows if r.kind == "chance")
    assert page.count('<tr class="chance">') - layouts_part.count('<tr class="chance">') == len(report.stats.groups())


def test_the_exports_carry_the_reference_and_the_mark(tmp_path):
    import json

    from hashbench.report.export import to_json, to_latex, to_markdown

    crafted = {"none": (0.95, 0.20), "saat": (0.60, 0.59)}
    write_run(tmp_path, _records(crafted, chance=0.57))
    report = build_report(RUN, tmp_path)
    markdown = to_markdown(report)
    assert "| Random codes |" in markdown and "DPSH + SAAT ‡" in markdown
    assert "‡ DPSH + SAAT (rank 2): clean MAP 60.00 is within 10 points of random codes (57.00)" in markdown
    latex = to_latex(report)
    assert r"\ddag{}" in latex and "Random codes" in latex
    (board,) = json.loads(to_json(report))["leaderboards"]
    assert [e["unhealthy"] is not None for e in board["entries"]] == [False, True]
    assert board["entries"][1]["chance"] == pytest.approx(57.0)


def test_the_all_results_tables_end_with_the_reference(tmp_path):
    write_run(tmp_path, _records({"none": (0.95, 0.20), "cgat": (0.90, 0.55)}, chance=0.57))
    page = render_html(RUN, tmp_path)
    details = page[page.index('<section id="details">'):page.index("</section>", page.index('<section id="details">'))]
    footer = details[details.index("<tfoot>"):details.index("</tfoot>")]
    assert "Random codes (chance)" in footer and ">57.00<" in footer and ">28.50<" in footer


def test_an_unbounded_attack_is_shown_beside_the_worst_case_not_in_it(tmp_path):
    records = []
    for defense, clean, center, prosgan in (("none", 0.95, 0.30, 0.45), ("cgat", 0.93, 0.80, 0.46)):
        for attack, value in (("clean", clean), ("center", center), ("prosgan", prosgan)):
            record = make_record(defense=defense, attack=attack, map_=value, chance=0.57, health=HEALTHY)
            if attack == "prosgan":
                record["perturbation"]["bounded"] = False
            elif attack == "center":
                record["perturbation"]["bounded"] = True
            records.append(record)
    write_run(tmp_path, records)
    (board,) = leaderboards(load(RUN, tmp_path))
    assert board.attacks == ("center",)
    cgat, none = board.entries
    assert (cgat.defense, cgat.robust, cgat.strongest) == ("cgat", pytest.approx(80.0), "center")
    assert none.robust == pytest.approx(30.0) and none.missing == ()
    assert cgat.unbounded == pytest.approx(46.0) and cgat.unbounded_attacks == ("prosgan",)
    page = render_html(RUN, tmp_path)
    (table,) = [t for t in html_tables(page) if t["id"] == "leaderboard"]
    header = [c["text"].replace(" ↕", "") for c in table["rows"][0]]
    column = header.index("Unbounded attacks, worst (%)")
    assert [r[column]["text"] for r in table["rows"][1:]] == ["46.00", "45.00"]
    assert "unbounded: ProS-GAN" in page
