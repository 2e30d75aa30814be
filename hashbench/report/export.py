"""The report's exports: LaTeX (booktabs, laid out as the papers' tables), Markdown, JSON and CSV.

Every string that comes from records or plugins is escaped for its format: LaTeX special
characters, Markdown/HTML metacharacters; JSON and CSV quoting is left to their writers, and
CSV text cells that a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``) start with ``'``.
LaTeX and Markdown show our numbers (mean ± std over seeds, best in bold); the JSON export also
carries the papers' numbers and the differences; the CSV is tidy, one row per cell and seed.
"""

from __future__ import annotations

import json
import math
import unicodedata
from collections.abc import Iterable
from typing import Any

import pandas as pd

from hashbench.report.layouts import MISSING, Layout, TableCell, fmt
from hashbench.report.leaderboard import Board
from hashbench.report.model import Report
from hashbench.report.names import label, model_label

REPORT_SCHEMA_VERSION = 1
CURVE_COLUMNS = ("pr_recall", "pr_precision", "pn_n", "pn_precision", "rn_n", "rn_recall")
#: Layouts with more numeric columns than this are scaled to the text width in LaTeX.
LATEX_WIDE = 8


# --- CSV ------------------------------------------------------------------------------------------

def to_csv(report: Report) -> str:
    """Tidy CSV, one row per cell and seed: the record's numbers at full precision (MAP as a
    fraction), ``status`` (``ok``/``failed``), ``error``, and the paper's MAP / t-MAP (percent)
    where the paper reports the setting.  Transfer cells follow the white-box ones, with their
    ``surrogate`` (the papers report none of them)."""
    frame = report.run.frame
    if not report.run.transfer.empty:
        frame = pd.concat([frame, report.run.transfer], ignore_index=True)
    columns = [c for c in frame.columns if c not in CURVE_COLUMNS]
    out = frame[columns].copy()
    out["status"] = "ok"
    out["error"] = ""
    for metric in ("map", "t_map"):
        refs = [report.papers.lookup(r.dataset, r.method, r.bits, r.defense, r.attack, metric)
                if pd.isna(r.surrogate) else None
                for r in out.itertuples(index=False)]
        out[f"paper_{metric}"] = [ref.value if ref else None for ref in refs]
        out[f"paper_{metric}_source"] = [ref.source if ref else "" for ref in refs]
    failed = [{**{k: f.cell.get(k) for k in ("dataset", "method", "backbone", "bits", "defense", "attack", "surrogate",
                                             "seed")},
               "run": report.run.name, "cell_id": f.cell_id, "status": "failed", "error": f.error}
              for f in report.run.failures]
    if failed:
        out = pd.concat([out, pd.DataFrame(failed)], ignore_index=True)[out.columns]
    for column in out.columns:
        if not pd.api.types.is_numeric_dtype(out[column]):
            out[column] = out[column].map(csv_text)
    return out.to_csv(index=False, lineterminator="\n")


#: first characters that make a spreadsheet read a cell as a formula (or, for tab and CR, hide it)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_text(value: Any) -> Any:
    """A CSV cell that no spreadsheet runs as a formula: a string starting with one of
    :data:`FORMULA_STARTS` gets a leading ``'`` (shown as text).  Numbers, negative ones
    included, are left as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


# --- LaTeX ----------------------------------------------------------------------------------------

_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
    "|": r"\textbar{}", "\n": " ", "\r": " ", "\t": " ",
}
_LATEX_UNICODE = {
    "Δ": r"$\Delta$", "−": r"$-$", "±": r"$\pm$", "–": "--", "—": "---", "·": r"$\cdot$", "†": r"\dag{}",
    "‡": r"\ddag{}",
    "×": r"$\times$", "∞": r"$\infty$", "ε": r"$\varepsilon$", "≥": r"$\geq$", "≤": r"$\leq$",
    "✓": r"$\surd$",
    "→": r"$\rightarrow$", "“": "``", "”": "''", "‘": "`", "’": "'",
}


def latex_escape(value: object) -> str:
    """``value`` as LaTeX text: special characters escaped; non-ASCII transliterated (pdflatex-safe)."""
    out = []
    for ch in str(value):
        if ch in _LATEX_SPECIAL:
            out.append(_LATEX_SPECIAL[ch])
        elif ch in _LATEX_UNICODE:
            out.append(_LATEX_UNICODE[ch])
        elif ord(ch) < 128:
            out.append(ch if ch.isprintable() else " ")
        else:
            ascii_form = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode("ascii")
            out.append(latex_escape(ascii_form) if ascii_form else "?")
    return "".join(out)


def _latex_number(cell: TableCell, signed: bool = False) -> str:
    if cell.value is None:
        return "--"
    text = fmt(cell.value, signed=signed).replace("-", "$-$")
    if cell.best:
        text = rf"\textbf{{{text}}}"
    if cell.std is not None:
        text += rf"{{\scriptsize$\pm${fmt(cell.std)}}}"
    return text


def _latex_tabular(layout: Layout) -> list[str]:
    width = len(layout.columns) + 1
    lines = [rf"\begin{{tabular}}{{l{'r' * len(layout.columns)}}}", r"\toprule"]
    spans = layout.header_spans
    if spans:
        heads, rules, col = [""], [], 2
        for name, span in spans:
            heads.append(rf"\multicolumn{{{span}}}{{c}}{{{latex_escape(name or '')}}}")
            if name:
                rules.append(rf"\cmidrule(lr){{{col}-{col + span - 1}}}")
            col += span
        lines.append(" & ".join(heads) + r" \\")
        lines.append(" ".join(rules))
    header = [latex_escape(layout.row_header)] + [latex_escape(c.label) for c in layout.columns]
    lines.append(" & ".join(header) + r" \\")
    for g, group in enumerate(layout.groups):
        lines.append(r"\midrule")
        if group.label:
            lines.append(rf"\multicolumn{{{width}}}{{l}}{{\textit{{{latex_escape(group.label)}}}}} \\")
        for row in group.rows:
            delta = row.kind == "delta"
            name = latex_escape(row.label)
            cells = [_latex_number(c, signed=delta) for c in row.cells]
            if delta:
                name, cells = rf"\textit{{{name}}}", [rf"\textit{{{c}}}" for c in cells]
            lines.append(" & ".join([name] + cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return lines


def _latex_table(title: str, caption: str, tabular: list[str], wide: bool) -> list[str]:
    body = [r"\resizebox{\textwidth}{!}{%", *tabular, "}"] if wide else tabular
    return [r"\begin{table}[htbp]", r"\centering", r"\small",
            rf"\caption{{{latex_escape(title)}. {latex_escape(caption)}}}", *body, r"\end{table}", ""]


def _latex_board(board: Board) -> list[str]:
    unbounded = any(e.unbounded_attacks for e in board.entries)
    lines = [r"\begin{tabular}{rllrrrl" + ("r" if unbounded else "") + "rr}", r"\toprule",
             r"Rank & Model & Backbone & Bits & Clean MAP & Worst-case MAP & Strongest attack & "
             + (r"Unbounded & " if unbounded else "") + r"Attacks & Random codes \\",
             r"\midrule"]
    for e in board.entries:
        clean = fmt(e.clean) + (rf"{{\scriptsize$\pm${fmt(e.clean_std)}}}" if e.clean_std is not None else "")
        robust = fmt(e.robust) + (rf"{{\scriptsize$\pm${fmt(e.robust_std)}}}" if e.robust_std is not None else "")
        cells = [str(e.rank), latex_escape(e.model)
                 + (r"\ddag{}" if e.unhealthy else ""),
                 latex_escape(label("backbone", e.backbone)), str(e.bits), clean.replace(MISSING, "--"),
                 robust.replace(MISSING, "--"), latex_escape(label("attack", e.strongest) if e.strongest else "--"),
                 *([fmt(e.unbounded).replace(MISSING, "--")] if unbounded else []),
                 f"{len(e.attacks)}" + (r"\dag{}" if e.missing else ""), fmt(e.chance).replace(MISSING, "--")]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return lines


def to_latex(report: Report) -> str:
    """A standalone LaTeX document (``pdflatex``; packages booktabs, graphicx, geometry) with every
    paper-layout table and the leaderboards.  Copy a ``tabular`` into a paper as it is."""
    lines = [
        f"% hashbench report of run {latex_escape(report.run.name)}: tables laid out as the CgAT/SAAT papers'.",
        "% MAP in percent, mean with std over seeds in small print; best per the table's rule in bold.",
        r"\documentclass[10pt]{article}",
        r"\usepackage{booktabs}",
        r"\usepackage{graphicx}",
        r"\usepackage[margin=2cm]{geometry}",
        r"\begin{document}",
        rf"\section*{{hashbench report: {latex_escape(report.run.name)}}}",
        "",
    ]
    for layout in report.layouts:
        title = layout.title + (f" (settings of {', '.join(layout.paper_tables)})" if layout.paper_tables else "")
        lines += _latex_table(title, layout.caption, _latex_tabular(layout), len(layout.columns) > LATEX_WIDE)
    for layout in report.transfer:
        lines += _latex_table(layout.title, layout.caption, _latex_tabular(layout), len(layout.columns) > LATEX_WIDE)
    for board in report.boards:
        caption = ("Models ranked by worst-case MAP (%) over the ε-bounded attacks evaluated on them, mean with "
                   "std over seeds (unbounded: the lowest MAP under an attack without an ε-ball); † evaluated "
                   "on fewer attacks than the others; random codes: the MAP of random "
                   "balanced codes on the same split" + "".join(f"; ‡ rank {e.rank}: {e.unhealthy}"
                                                                 for e in board.entries if e.unhealthy) + ".")
        lines += _latex_table(f"Leaderboard: {label('dataset', board.dataset)}", caption, _latex_board(board), True)
    if not report.layouts:
        lines.append("No evaluated cells.")
    lines += [r"\end{document}", ""]
    return "\n".join(lines)


# --- Markdown -------------------------------------------------------------------------------------

_MD_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "|": r"\|", "\\": "\\\\", "*": r"\*", "_": r"\_",
               "`": r"\`", "[": r"\[", "]": r"\]", "#": r"\#", "\n": " ", "\r": " "}


def md_escape(value: object) -> str:
    """``value`` as inert Markdown table text (no markup, no HTML, no column break)."""
    return "".join(_MD_ESCAPES.get(ch, ch) for ch in str(value))


def _md_number(cell: TableCell, signed: bool = False) -> str:
    if cell.value is None:
        return MISSING
    text = fmt(cell.value, signed=signed)
    if cell.best:
        text = f"**{text}**"
    if cell.std is not None:
        text += f" ± {fmt(cell.std)}"
    if cell.paper_value is not None:
        text += f" (paper {fmt(cell.paper_value, signed=signed)})"
    return text


def _md_row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _md_layout(layout: Layout) -> list[str]:
    headers = [md_escape(layout.row_header)] + [
        md_escape(f"{c.group} {c.label}" if c.group else c.label) for c in layout.columns]
    sources = f" (settings of {md_escape(', '.join(layout.paper_tables))})" if layout.paper_tables else ""
    lines = [f"### {md_escape(layout.title)}{sources}",
             "", _md_row(headers), _md_row(["---"] + ["---:"] * len(layout.columns))]
    for group in layout.groups:
        if group.label:
            lines.append(_md_row([f"*{md_escape(group.label)}*"] + [""] * len(layout.columns)))
        for row in group.rows:
            delta = row.kind == "delta"
            lines.append(_md_row([md_escape(row.label)] + [_md_number(c, signed=delta) for c in row.cells]))
    return lines + ["", md_escape(layout.caption), ""]


def to_markdown(report: Report) -> str:
    """GitHub-flavoured Markdown: leaderboards, then every paper-layout table (paper numbers in brackets)."""
    lines = [f"# hashbench report: {md_escape(report.run.name)}", ""]
    for board in report.boards:
        unbounded = any(e.unbounded_attacks for e in board.entries)
        lines += [f"## Leaderboard: {md_escape(label('dataset', board.dataset))}", "",
                  _md_row(["Rank", "Model", "Backbone", "Bits", "Clean MAP", "Worst-case MAP", "Strongest attack",
                           *(["Unbounded"] if unbounded else []), "Attacks", "Seeds", "Random codes"]),
                  _md_row(["---:", "---", "---", "---:", "---:", "---:", "---", *(["---:"] if unbounded else []),
                           "---:", "---:", "---:"])]
        for e in board.entries:
            clean = fmt(e.clean) + (f" ± {fmt(e.clean_std)}" if e.clean_std is not None else "")
            robust = fmt(e.robust) + (f" ± {fmt(e.robust_std)}" if e.robust_std is not None else "")
            lines.append(_md_row([str(e.rank), md_escape(e.model)
                                  + (" ‡" if e.unhealthy else ""),
                                  md_escape(label("backbone", e.backbone)), str(e.bits), clean, robust,
                                  md_escape(label("attack", e.strongest)) if e.strongest else MISSING,
                                  *([fmt(e.unbounded)] if unbounded else []),
                                  f"{len(e.attacks)}" + (" †" if e.missing else ""), str(e.seeds), fmt(e.chance)]))
        lines += ["", "Worst-case MAP (%): per seed the lowest MAP under any ε-bounded attack, mean ± std over seeds; "
                      + ("unbounded: the lowest MAP under an attack without an ε-ball (not in the worst case); "
                         if unbounded else "") +
                      "† evaluated on fewer attacks than the other models; random codes: the MAP of random "
                      "balanced codes on the same split.", ""]
        lines += [f"‡ {md_escape(model_label(e.method, e.defense, with_method=True))} (rank {e.rank}): "
                  f"{md_escape(e.unhealthy)}." for e in board.entries if e.unhealthy]
        lines += [""] if any(e.unhealthy for e in board.entries) else []
    if report.layouts:
        lines += ["## Tables in the papers' layouts", ""]
    for layout in report.layouts:
        lines += _md_layout(layout)
    if report.transfer:
        lines += ["## Transfer (black-box): surrogate × victim", ""]
    for layout in report.transfer:
        lines += _md_layout(layout)
    if report.run.failures:
        lines += ["## Failed cells", ""]
        lines += [f"- `{md_escape(f.cell_id)}`: {md_escape(f.error)}" for f in report.run.failures]
        lines.append("")
    return "\n".join(lines)


# --- JSON -----------------------------------------------------------------------------------------

def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf become null, tuples lists, numpy scalars Python numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _json_cell(cell: TableCell, report: Report) -> dict[str, Any]:
    return {"value": cell.value, "std": cell.std, "n": cell.n, "metric": cell.metric, "best": cell.best,
            "paper": cell.paper_value, "paper_source": cell.paper.source if cell.paper else None,
            "difference": cell.difference, "setting": cell.setting}


def _json_layout(layout: Layout, report: Report) -> dict[str, Any]:
    return {
        "id": layout.id, "kind": layout.kind, "title": layout.title, "caption": layout.caption,
        "paper_tables": layout.paper_tables, "row_header": layout.row_header,
        "columns": [{"label": c.label, "group": c.group} for c in layout.columns],
        "groups": [{"label": g.label, "rows": [{"label": r.label, "kind": r.kind,
                                                "cells": [_json_cell(c, report) for c in r.cells]} for r in g.rows]}
                   for g in layout.groups],
    }


def to_json(report: Report) -> str:
    """Every number of the report as JSON: per-setting statistics with the papers' numbers,
    the layouts, the leaderboards, failures and the run's manifest (MAP values in percent)."""
    settings = []
    for (dataset, method, backbone, bits, defense, attack), stat in report.stats:
        refs = {m: report.papers.lookup(dataset, method, bits, defense, attack, m) for m in ("map", "t_map")}
        settings.append({
            "dataset": dataset, "method": method, "backbone": backbone, "bits": bits, "defense": defense,
            "attack": attack, "targeted": stat.targeted, "map": stat.map, "map_std": stat.map_std,
            "t_map": stat.t_map, "t_map_std": stat.t_map_std, "n": stat.n, "seeds": stat.seeds,
            "perturbation": stat.perturbation,
            "paper": {m: {"value": ref.value, "source": ref.source, "backbone": ref.backbone}
                      for m, ref in refs.items() if ref is not None},
        })
    boards = [{"dataset": b.dataset, "attacks": b.attacks, "entries": [
        {"rank": e.rank, "method": e.method, "backbone": e.backbone, "bits": e.bits, "defense": e.defense,
         "clean": e.clean, "clean_std": e.clean_std, "robust": e.robust, "robust_std": e.robust_std,
         "strongest_attack": e.strongest, "attacks": e.attacks, "missing_attacks": e.missing, "seeds": e.seeds,
         "chance": e.chance, "distinct_codes": e.distinct_codes, "bit_balance": e.bit_balance,
         "unhealthy": e.unhealthy, "unbounded": e.unbounded, "unbounded_attacks": e.unbounded_attacks,
         "inference_time": e.inference_time}
        for e in b.entries]} for b in report.boards]
    document = {
        "schema": "hashbench.report", "schema_version": REPORT_SCHEMA_VERSION, "run": report.run.name,
        "units": {"map": "percent", "perturbation": "pixel units of [0, 1] images", "time": "seconds"},
        "settings": settings, "leaderboards": boards,
        "layouts": [_json_layout(t, report) for t in report.layouts],
        "transfer": [_json_layout(t, report) for t in report.transfer],
        "failures": [{"cell_id": f.cell_id, "cell": f.cell, "error": f.error} for f in report.run.failures],
        "manifest": report.run.manifest,
    }
    return json.dumps(_clean(document), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
