"""The report's figures as inline SVG: PR and P@N curves per dataset × bits, robustness vs clean.

Figures are drawn on a bare :class:`~matplotlib.figure.Figure` saved through matplotlib's
non-interactive SVG canvas, never through pyplot: nothing needs a display, nothing is
registered in pyplot's figure list (so nothing leaks), and the process-wide backend and
rcParams stay untouched, which matters when the report is built inside a notebook.
Text stays text in the SVG (``svg.fonttype: none``) and matplotlib escapes it.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from hashbench.report.leaderboard import Board
from hashbench.report.names import CLEAN, NO_DEFENSE, label, ordered

#: rcParams of every figure; a fixed hash salt and no date make the SVG byte-reproducible.
RC = {
    "svg.hashsalt": "hashbench",
    "svg.fonttype": "none",
    "text.usetex": False,
    "figure.dpi": 100,
    "font.family": "DejaVu Sans",
}
# Matplotlib writes a date, a creator URL and RDF namespaces unless each key is None.
SVG_METADATA = {"Date": None, "Creator": None, "Format": None, "Type": None}

PANEL = (3.3, 2.7)  # inches per subplot of the curve figures
SCATTER_PANEL = (3.6, 3.2)
#: Default attacks of the curve figures: the CgAT paper's Figures 2–5 show DHTA and SDHA.
DEFAULT_CURVE_ATTACKS = ("dhta", "sdha")
#: At most this many attacks when falling back to the attacks that ran.
MAX_FALLBACK_ATTACKS = 3
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
#: The undefended model is drawn in grey, defenses in the colour-blind palette.
UNDEFENDED_COLOR = "#555555"


def text(value: object) -> str:
    """Plugin-provided text made safe for matplotlib: no mathtext, no legend-hiding leading "_"."""
    out = str(value).replace("$", r"\$")
    return " " + out if out.startswith("_") else out


def defense_colors(defenses: Sequence[str]) -> dict[str, tuple | str]:
    """A colour per defense, stable across every figure of a report."""
    others = [d for d in defenses if d != NO_DEFENSE]
    palette = sns.color_palette("colorblind", max(len(others), 1))
    colors: dict[str, tuple | str] = {NO_DEFENSE: UNDEFENDED_COLOR}
    colors.update({d: palette[i % len(palette)] for i, d in enumerate(others)})
    return colors


def curve_attacks(available: Sequence[str], wanted: Sequence[str] | None = None) -> list[str]:
    """The attacks to plot: those of ``wanted`` (default DHTA, SDHA) that ran, else the first that ran."""
    attacked = [a for a in ordered("attack", available) if a != CLEAN]
    chosen = [a for a in (wanted or DEFAULT_CURVE_ATTACKS) if a in attacked]
    return chosen or attacked[:MAX_FALLBACK_ATTACKS]


def _mean_curve(xs: Sequence[Sequence[float]], ys: Sequence[Sequence[float]]) -> tuple[np.ndarray, np.ndarray]:
    """Mean of several seeds' curves; curves on different x grids are interpolated onto their union.

    ``None`` (a precision undefined at that recall level) is a gap.
    """
    pairs = []
    for x, y in zip(xs, ys):
        if isinstance(x, (Sequence, np.ndarray)) and isinstance(y, (Sequence, np.ndarray)) and len(x) == len(y) > 0:
            xa = np.asarray([np.nan if v is None else v for v in x], float)
            ya = np.asarray([np.nan if v is None else v for v in y], float)
            pairs.append((xa, ya))
    if not pairs:
        return np.empty(0), np.empty(0)
    first = pairs[0][0]
    if all(x.shape == first.shape and np.array_equal(x, first, equal_nan=True) for x, _ in pairs):
        return first, np.mean([y for _, y in pairs], axis=0)
    grid = np.unique(np.concatenate([x[np.isfinite(x)] for x, _ in pairs]))
    curves = []
    for x, y in pairs:
        ok = np.isfinite(x) & np.isfinite(y)
        order = np.argsort(x[ok], kind="stable")
        curves.append(np.interp(grid, x[ok][order], y[ok][order]) if ok.any() else np.full(grid.shape, np.nan))
    return grid, np.mean(curves, axis=0)


def _scope_ids(svg: str, prefix: str) -> str:
    """Prefix every id and id reference so several inline SVGs can share one HTML page."""

    def fix_tag(match: re.Match[str]) -> str:
        tag = match.group(0)
        tag = re.sub(r'(\sid=")([^"]*")', rf"\g<1>{prefix}-\g<2>", tag)
        tag = re.sub(r"url\(#", f"url(#{prefix}-", tag)
        return re.sub(r'(href=")#', rf"\g<1>#{prefix}-", tag)

    # Only inside tags: text content is escaped by matplotlib, so it holds no "<" to match.
    return re.sub(r"<[^<>]+>", fix_tag, svg)


def _to_svg(fig: Figure, fig_id: str, title: str) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata=SVG_METADATA, bbox_inches="tight")
    fig.clear()
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]  # drop the XML prolog and doctype
    # An accessible name for the figure (escaped: it can hold plugin names).
    safe = title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    svg = svg.replace("<svg ", f'<svg role="img" aria-label="{safe.replace(chr(34), "&quot;")}" ', 1)
    return _scope_ids(svg, fig_id).strip() + "\n"


#: The two rows of a curve figure: (x column, y column, x label, y label, x axis fixed to [0, 1]).
CURVES = (
    ("pr_recall", "pr_precision", "Recall", "Precision", True),
    ("pn_n", "pn_precision", "N (top returned)", "Precision@N", False),
)


def curves_figure(rows: pd.DataFrame, attacks: Sequence[str], *, colors: dict[str, tuple | str], fig_id: str,
                  title: str = "PR and P@N curves") -> str:
    """PR curves (top row) and P@N curves (bottom row) of one dataset × bits group as ``<svg>``.

    One column per attack, one line per defense (mean over seeds).
    """
    defenses = ordered("defense", rows["defense"])
    columns = max(len(attacks), 1)
    with sns.axes_style("whitegrid"), sns.plotting_context("paper"), mpl.rc_context(RC):
        fig = Figure(figsize=(PANEL[0] * columns, PANEL[1] * 2 + 0.4), layout="constrained")
        grid = fig.subplots(2, columns, sharey=True, squeeze=False)
        handles = {}
        for r, (x_column, y_column, xlabel, ylabel, unit_x) in enumerate(CURVES):
            for ax, attack in zip(grid[r], attacks):
                for d, defense in enumerate(defenses):
                    cell = rows[(rows["attack"] == attack) & (rows["defense"] == defense)]
                    x, y = _mean_curve(list(cell[x_column]), list(cell[y_column]))
                    if not len(x):
                        continue
                    methods = ordered("method", cell["method"])
                    name = (label("defense", defense) if defense != NO_DEFENSE
                            else f"{label('method', methods[0])} (undefended)")
                    (line,) = ax.plot(x, y, color=colors.get(defense, UNDEFENDED_COLOR), linewidth=1.5,
                                      marker=MARKERS[d % len(MARKERS)], markersize=3,
                                      markevery=max(1, len(x) // 10), label=text(name))
                    handles.setdefault(name, line)
                if r == 0:
                    ax.set_title(text(label("attack", attack)), fontsize="medium")
                ax.set_xlabel(xlabel)
                ax.set_ylim(0.0, 1.02)
                if unit_x:
                    ax.set_xlim(0.0, 1.0)
                if not ax.lines:
                    ax.text(0.5, 0.5, "no curve data", ha="center", va="center", transform=ax.transAxes)
            grid[r][0].set_ylabel(ylabel)
        if handles:
            fig.legend(list(handles.values()), [text(k) for k in handles], loc="outside lower center",
                       ncol=min(len(handles), 4), frameon=False)
        return _to_svg(fig, fig_id, title)


def scatter_figure(boards: Sequence[Board], *, colors: dict[str, tuple | str], fig_id: str) -> str:
    """Robust (worst-case) MAP against clean MAP, one panel per dataset, one point per model.

    Colour: defense; marker: hashing method; label: code length (where several ran).
    """
    boards = [b for b in boards if any(e.robust is not None and e.clean is not None for e in b.entries)]
    with sns.axes_style("whitegrid"), sns.plotting_context("paper"), mpl.rc_context(RC):
        fig = Figure(figsize=(SCATTER_PANEL[0] * max(len(boards), 1), SCATTER_PANEL[1]), layout="constrained")
        axes = fig.subplots(1, max(len(boards), 1), squeeze=False)[0]
        shown = [[e for e in b.entries if e.robust is not None and e.clean is not None] for b in boards]
        defenses = ordered("defense", [e.defense for entries in shown for e in entries])
        methods = ordered("method", [e.method for entries in shown for e in entries])
        for ax, board, entries in zip(axes, boards, shown):
            several_bits = len({e.bits for e in entries}) > 1
            for entry in entries:
                ax.errorbar(entry.clean, entry.robust, xerr=entry.clean_std, yerr=entry.robust_std,
                            fmt=MARKERS[methods.index(entry.method) % len(MARKERS)],
                            color=colors.get(entry.defense, UNDEFENDED_COLOR), markersize=7, elinewidth=0.8,
                            capsize=2, alpha=0.95 if entry.complete else 0.45)
                if several_bits:
                    ax.annotate(f"{entry.bits}", (entry.clean, entry.robust), textcoords="offset points",
                                xytext=(5, 4), fontsize="x-small", color="#333333")
            cleans = [e.clean for e in entries]
            pad = max(2.0, (max(cleans) - min(cleans)) * 0.15)
            ax.set_xlim(max(0.0, min(cleans) - pad), min(100.0, max(cleans) + pad))
            ax.set_ylim(0.0, min(100.0, max(e.robust for e in entries) * 1.15 + 2))
            ax.set_title(text(label("dataset", board.dataset)), fontsize="medium")
            ax.set_xlabel("Clean MAP (%)")
        axes[0].set_ylabel("Worst-case MAP over attacks (%)")
        if not boards:
            axes[0].text(0.5, 0.5, "no attacked results", ha="center", va="center", transform=axes[0].transAxes)
        handles = [Patch(color=colors.get(d, UNDEFENDED_COLOR),
                         label=text("undefended" if d == NO_DEFENSE else label("defense", d))) for d in defenses]
        if len(methods) > 1:
            handles += [Line2D([], [], linestyle="none", marker=MARKERS[i % len(MARKERS)], markersize=6,
                               color="#777777", label=text(label("method", m))) for i, m in enumerate(methods)]
        if handles:
            fig.legend(handles=handles, loc="outside right upper", frameon=False)
        return _to_svg(fig, fig_id, "Robustness against clean accuracy")
