"""Figures of one group as inline SVG: precision-recall and precision@N, one line per (defense, attack).

Figures are drawn on a bare :class:`~matplotlib.figure.Figure` saved through matplotlib's
non-interactive SVG canvas, never through pyplot: nothing needs a display, nothing is
registered in pyplot's figure list (so nothing leaks), and the process-wide backend and
rcParams stay untouched, which matters when the report is built inside a notebook.
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

from .tables import attack_order, defense_order

#: rcParams of every figure; a fixed hash salt and no date make the SVG byte-reproducible.
RC = {
    "svg.hashsalt": "hashbench",
    "svg.fonttype": "none",  # text stays text (escaped by matplotlib), no embedded glyphs
    "text.usetex": False,
    "figure.dpi": 100,
}
# Matplotlib writes a date, a creator URL and RDF namespaces unless each key is None.
SVG_METADATA = {"Date": None, "Creator": None, "Format": None, "Type": None}

FIGSIZE = (5.0, 3.4)
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = (None, "o", "s", "^", "v", "D")


def _mean_curve(xs: Sequence[Sequence[float]], ys: Sequence[Sequence[float]]) -> tuple[np.ndarray, np.ndarray]:
    """Mean of several seeds' curves; curves on different x grids are interpolated onto their union."""
    pairs = [
        (np.asarray(x, float), np.asarray(y, float))
        for x, y in zip(xs, ys)
        if isinstance(x, (Sequence, np.ndarray)) and isinstance(y, (Sequence, np.ndarray)) and len(x) == len(y) > 0
    ]
    if not pairs:
        return np.empty(0), np.empty(0)
    first = pairs[0][0]
    if all(x.shape == first.shape and np.array_equal(x, first) for x, _ in pairs):
        return first, np.mean([y for _, y in pairs], axis=0)
    grid = np.unique(np.concatenate([x for x, _ in pairs]))
    curves = []
    for x, y in pairs:
        order = np.argsort(x, kind="stable")
        curves.append(np.interp(grid, x[order], y[order]))
    return grid, np.mean(curves, axis=0)


def _label(defense: str, attack: str) -> str:
    # "$" would switch on mathtext, and legend entries starting with "_" are silently dropped.
    text = f"{defense} · {attack}".replace("$", r"\$")
    return " " + text if text.startswith("_") else text


def _scope_ids(svg: str, prefix: str) -> str:
    """Prefix every id and id reference so several inline SVGs can share one HTML page."""

    def fix_tag(match: re.Match[str]) -> str:
        tag = match.group(0)
        tag = re.sub(r'(\sid=")([^"]*")', rf"\g<1>{prefix}-\g<2>", tag)
        tag = re.sub(r"url\(#", f"url(#{prefix}-", tag)
        return re.sub(r'(href=")#', rf"\g<1>#{prefix}-", tag)

    # Only inside tags: text content is escaped by matplotlib, so it holds no "<" to match.
    return re.sub(r"<[^<>]+>", fix_tag, svg)


def _to_svg(fig: Figure, fig_id: str) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata=SVG_METADATA, bbox_inches="tight")
    fig.clear()
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]  # drop the XML prolog and doctype
    return _scope_ids(svg, fig_id).strip() + "\n"


def _curve_figure(
    rows: pd.DataFrame, x_column: str, y_column: str, *, xlabel: str, ylabel: str, unit_x: bool, fig_id: str
) -> str:
    defenses = defense_order(rows["defense"])
    attacks = attack_order(rows["attack"])
    with sns.axes_style("whitegrid"), sns.plotting_context("paper"), mpl.rc_context(RC):
        colors = sns.color_palette("colorblind", max(len(attacks), 1))
        fig = Figure(figsize=FIGSIZE)
        ax = fig.add_subplot()
        drawn = 0
        for d, defense in enumerate(defenses):
            for a, attack in enumerate(attacks):
                cell = rows[(rows["defense"] == defense) & (rows["attack"] == attack)]
                if cell.empty:
                    continue
                x, y = _mean_curve(list(cell[x_column]), list(cell[y_column]))
                if not len(x):
                    continue
                marker = MARKERS[(d // len(LINESTYLES)) % len(MARKERS)]
                ax.plot(
                    x, y, color=colors[a % len(colors)], linestyle=LINESTYLES[d % len(LINESTYLES)],
                    marker=marker, markersize=3, linewidth=1.4, label=_label(str(defense), str(attack)),
                )
                drawn += 1
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_ylim(0.0, 1.02)
        if unit_x:
            ax.set_xlim(0.0, 1.0)
        if drawn:
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize="small")
        else:
            ax.text(0.5, 0.5, "no curve data", ha="center", va="center", transform=ax.transAxes)
        return _to_svg(fig, fig_id)


def pr_figure(df_subset: pd.DataFrame, *, fig_id: str = "pr") -> str:
    """Precision-recall curves of one group as ``<svg>`` markup, seeds averaged.

    ``fig_id`` prefixes the SVG's element ids; give each figure of a page its own.
    """
    return _curve_figure(
        df_subset, "pr_recall", "pr_precision", xlabel="Recall", ylabel="Precision", unit_x=True, fig_id=fig_id
    )


def pn_figure(df_subset: pd.DataFrame, *, fig_id: str = "pn") -> str:
    """Precision@N curves of one group as ``<svg>`` markup, seeds averaged.

    ``fig_id`` prefixes the SVG's element ids; give each figure of a page its own.
    """
    return _curve_figure(
        df_subset, "pn_n", "pn_precision", xlabel="N (top returned)", ylabel="Precision@N", unit_x=False,
        fig_id=fig_id,
    )
