"""The report's exports: LaTeX (structure, escaping, compiles), Markdown, JSON, CSV and the CLI flags."""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner
from report_records import RUN, XSS, make_record, paper_like_records, write_run

from hashbench.cli.main import main
from hashbench.report import build_report
from hashbench.report.export import latex_escape, md_escape, to_csv, to_json, to_latex, to_markdown

SEEDS = (0, 1)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    root = tmp_path_factory.mktemp("results")
    records = paper_like_records(SEEDS)
    failed = make_record(dataset="mscoco", defense="cgat", attack="tha", cell_id="coco-failed")
    failed.update(status="failed", error="attack stage failed: out of memory")
    write_run(root, records + [failed], manifest={"run": RUN, "grid": "paper-like"})
    return root, records


@pytest.fixture(scope="module")
def report(run):
    return build_report(RUN, run[0])


def mean_percent(records: list[dict[str, Any]], **cell: Any) -> float:
    return 100 * statistics.mean(r["metrics"]["map"] for r in records
                                 if all(r["cell"][k] == v for k, v in cell.items()))


# --- LaTeX ------------------------------------------------------------------------------------------

def _split_cells(row: str) -> list[str]:
    """Cells of a tabular row: split on ``&`` that is neither escaped nor inside braces."""
    cells, depth, current, previous = [], 0, "", ""
    for ch in row:
        if ch == "{" and previous != "\\":
            depth += 1
        elif ch == "}" and previous != "\\":
            depth -= 1
        if ch == "&" and depth == 0 and previous != "\\":
            cells.append(current)
            current = ""
        else:
            current += ch
        previous = ch
    return cells + [current]


def check_tabulars(tex: str) -> int:
    """Assert balanced environments and that every tabular row fills exactly its columns; count tabulars."""
    stack = []
    for kind, name in re.findall(r"\\(begin|end)\{(\w+)\}", tex):
        if kind == "begin":
            stack.append(name)
        else:
            assert stack and stack.pop() == name, f"\\end{{{name}}} does not close the open environment"
    assert not stack, f"unclosed environments: {stack}"
    tabulars = re.findall(r"\\begin\{tabular\}\{([^}]*)\}(.*?)\\end\{tabular\}", tex, flags=re.S)
    for spec, body in tabulars:
        columns = len(re.findall(r"[lrc]", spec))
        body = re.sub(r"\\(toprule|midrule|bottomrule)|\\cmidrule\(lr\)\{\d+-\d+\}", "", body)
        rows = [r.strip() for r in body.split(r"\\") if r.strip()]
        assert rows
        for row in rows:
            width = 0
            for cell in _split_cells(row):
                span = re.match(r"\s*\\multicolumn\{(\d+)\}", cell)
                width += int(span.group(1)) if span else 1
            assert width == columns, f"{width} cells for {columns} columns: {row[:80]}"
    return len(tabulars)


def test_latex_tables_are_well_formed_and_laid_out_as_the_papers(report, run) -> None:
    tex = to_latex(report)
    assert tex.startswith("% hashbench report") and r"\usepackage{booktabs}" in tex
    assert check_tabulars(tex) == len(report.layouts) + len(report.boards)
    assert tex.count(r"\toprule") == tex.count(r"\bottomrule") == len(report.layouts) + len(report.boards)
    # Tables 1-3 layout: bit groups as italic group rows, the Δ row in italics, best per column in bold.
    flickr = tex[tex.index("FLICKR-25K: DPSH on AlexNet"):]
    flickr = flickr[:flickr.index(r"\end{tabular}")]
    assert r"\multicolumn{6}{l}{\textit{16 bits}} \\" in flickr
    assert r"\textit{$\Delta$ (CgAT $-$ ATRDH)}" in flickr
    records = run[1]
    ours = round(mean_percent(records, dataset="flickr25k", method="dpsh", bits=16, defense="cgat", attack="dhta"), 2)
    assert f"{ours:.2f}" in flickr
    # Table 4 layout: a header row spanning each dataset's defenses.
    assert r"& \multicolumn{3}{c}{FLICKR-25K} & \multicolumn{3}{c}{NUS-WIDE} \\" in tex
    assert r"\cmidrule(lr){2-4} \cmidrule(lr){5-7}" in tex


@pytest.mark.parametrize(("text", "escaped"), [
    ("a_b&c", r"a\_b\&c"),
    ("50% $x$ #1", r"50\% \$x\$ \#1"),
    ("{x}~^\\", r"\{x\}\textasciitilde{}\textasciicircum{}\textbackslash{}"),
    ("<script>|", r"\textless{}script\textgreater{}\textbar{}"),
    ("Δ − ±", r"$\Delta$ $-$ $\pm$"),
    ("café 漢", "cafe ?"),
])
def test_latex_escape(text: str, escaped: str) -> None:
    assert latex_escape(text) == escaped


def _compile(tex: str, folder: Path) -> subprocess.CompletedProcess:
    (folder / "t.tex").write_text(tex, encoding="utf-8")
    return subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "t.tex"], cwd=folder,
                          capture_output=True, text=True, timeout=180)


NO_PDFLATEX = "pdflatex is not installed: test_latex_tables_are_well_formed... checks the structure instead"


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason=NO_PDFLATEX)
def test_latex_compiles_with_pdflatex(report, tmp_path: Path) -> None:
    done = _compile(to_latex(report), tmp_path)
    assert done.returncode == 0, done.stdout[-2000:]
    assert (tmp_path / "t.pdf").stat().st_size > 1000


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason=NO_PDFLATEX)
def test_latex_with_hostile_plugin_names_compiles(tmp_path: Path) -> None:
    name = r"x_y&z%{$}#~^\<b>"
    records = [make_record(defense=d, attack=a, method=name, map_=0.5 - 0.1 * i)
               for i, (d, a) in enumerate([("none", "clean"), ("none", name), (name, "clean"), (name, name)])]
    write_run(tmp_path / "results", records)
    tex = to_latex(build_report(RUN, tmp_path / "results"))
    assert latex_escape(name) in tex and name not in tex
    check_tabulars(tex)
    done = _compile(tex, tmp_path)
    assert done.returncode == 0, done.stdout[-2000:]


# --- Markdown ---------------------------------------------------------------------------------------

def test_markdown_tables_have_consistent_columns(report) -> None:
    text = to_markdown(report)
    assert text.startswith(f"# hashbench report: {RUN}")
    blocks, current = [], []
    for line in text.splitlines():
        if line.startswith("|"):
            current.append(line)
        elif current:
            blocks.append(current)
            current = []
    assert len(blocks) == len(report.layouts) + len(report.boards)
    for block in blocks:
        widths = {len(re.findall(r"(?<!\\)\|", line)) for line in block}
        assert len(widths) == 1, block[:3]
        assert set(block[1].replace("|", "").split()) <= {"---", "---:"}
    assert "| *16 bits* |" in text
    assert "(paper 82.53)" in text  # undefended FLICKR-25K DPSH 16 bits, clean
    assert "## Failed cells" in text and "coco-failed" in text


def test_markdown_escapes_plugin_names(tmp_path: Path) -> None:
    records = [make_record(defense=XSS, attack=a, map_=m) for a, m in (("clean", 0.5), ("x|y", 0.2))]
    records.append(make_record(defense="none", attack="x|y", map_=0.1))
    write_run(tmp_path, records)
    text = to_markdown(build_report(RUN, tmp_path))
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert r"x\|y" in text
    assert md_escape("*a_b* [c](d) `e`") == r"\*a\_b\* \[c\](d) \`e\`"


# --- JSON and CSV -----------------------------------------------------------------------------------

def test_json_carries_every_number_with_the_papers(report, run) -> None:
    document = json.loads(to_json(report))
    assert document["schema"] == "hashbench.report" and document["schema_version"] == 1
    assert len(document["settings"]) == len(report.stats)
    setting = next(s for s in document["settings"] if (s["dataset"], s["method"], s["bits"], s["defense"], s["attack"])
                   == ("flickr25k", "dpsh", 16, "none", "clean"))
    assert setting["map"] == pytest.approx(mean_percent(run[1], dataset="flickr25k", method="dpsh", bits=16,
                                                        defense="none", attack="clean"))
    assert setting["paper"]["map"] == {"value": 82.53, "source": "CgAT Table 1", "backbone": "alexnet"}
    assert setting["n"] == 2 and setting["seeds"] == [0, 1]
    assert [t["id"] for t in document["layouts"]] == [t.id for t in report.layouts]
    cell = document["layouts"][0]["groups"][0]["rows"][0]["cells"][0]
    assert set(cell) == {"value", "std", "n", "metric", "best", "paper", "paper_source", "difference", "setting"}
    assert [b["dataset"] for b in document["leaderboards"]] == ["flickr25k", "nuswide21"]
    assert document["failures"] == [{"cell_id": "coco-failed", "cell": failed_cell(run), "error":
                                     "attack stage failed: out of memory"}]
    assert "NaN" not in to_json(report)


def failed_cell(run) -> dict[str, Any]:
    return json.loads((run[0] / RUN / "records" / "coco-failed.json").read_text())["cell"]


def test_csv_is_tidy_with_failed_cells_and_paper_numbers(report, run) -> None:
    root, records = run
    table = pd.read_csv(pd.io.common.StringIO(to_csv(report)))
    assert len(table) == len(records) + 1
    assert not {"pr_recall", "pr_precision", "pn_n", "pn_precision"} & set(table.columns)
    failed = table[table["status"] == "failed"].iloc[0]
    assert failed["cell_id"] == "coco-failed" and failed["error"] == "attack stage failed: out of memory"
    ok = table[table["status"] == "ok"]
    row = ok[(ok["dataset"] == "flickr25k") & (ok["bits"] == 16) & (ok["defense"] == "cgat")
             & (ok["attack"] == "dhta") & (ok["seed"] == 1)].iloc[0]
    record = next(r for r in records if r["cell_id"] == row["cell_id"])
    assert row["map"] == record["metrics"]["map"]  # exact: no rounding on the way out
    assert row["paper_map"] == 56.31 and row["paper_map_source"] == "CgAT Table 1"
    dph = ok[(ok["method"] == "dph") & (ok["attack"] == "p2p") & (ok["defense"] == "none")].iloc[0]
    assert pd.isna(dph["paper_map"]) and dph["paper_t_map"] == 81.83


# --- the command line -------------------------------------------------------------------------------

def test_report_command_writes_every_format(run, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["report", "--run", RUN, "--results-dir", str(run[0]), "--out", str(out),
                                       "--latex", "--csv", "--markdown", "--json"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["report.json", "report.md", "results.csv", "tables.tex"]
    assert result.output.split() == [str(out / n) for n in ("results.csv", "tables.tex", "report.md", "report.json")]


def test_report_command_unknown_run_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "results").mkdir()
    result = CliRunner().invoke(main, ["report", "--run", "nope", "--results-dir", str(tmp_path / "results"),
                                       "--markdown"])
    assert result.exit_code == 2 and "run 'nope' not found" in result.output
