"""Reports of a run: a self-contained HTML page (paper-layout tables, leaderboard, figures, examples,
provenance) and LaTeX, Markdown, JSON and CSV exports.

Modules, one job each: :mod:`.data` reads a run, :mod:`.tables` aggregates seeds,
:mod:`.paper` holds the papers' numbers, :mod:`.layouts` lays out the papers' tables,
:mod:`.leaderboard` ranks models, :mod:`.figures` draws SVG figures, :mod:`.examples` collects
example queries, :mod:`.model` assembles the format-neutral :class:`Report`, :mod:`.html` and
:mod:`.export` render it, :mod:`.write` writes the rendered formats to files.
"""

from __future__ import annotations

from hashbench.report.html import render_html
from hashbench.report.model import Report, build_report
from hashbench.report.write import OUTPUTS, write_report

__all__ = ["OUTPUTS", "Report", "build_report", "render_html", "write_report"]
