"""The report model: everything a run's report shows, format-neutral, and how it is built.

The writers (:mod:`.html`, :mod:`.export`) read a :class:`Report`; :mod:`.write` writes them to files.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hashbench.report import paper
from hashbench.report.data import RunData, load_run
from hashbench.report.figures import curve_attacks
from hashbench.report.layouts import Layout, all_layouts
from hashbench.report.leaderboard import Board, leaderboards
from hashbench.report.tables import GroupKey, Stats
from hashbench.report.transfer import transfer_tables


@dataclass
class Report:
    """Everything every format shows: the run, its statistics, the paper layouts and leaderboards."""

    run: RunData
    stats: Stats
    papers: paper.PaperNumbers
    layouts: list[Layout]
    boards: list[Board]
    #: Attacks of the curve figures and examples, per (dataset, method, backbone, bits) group.
    figure_attacks: dict[GroupKey, list[str]]
    #: Black-box transfer tables (surrogate × victim), one per dataset and attack; empty without transfer cells.
    transfer: list[Layout] = field(default_factory=list)


def build_report(run: str | Path, results_dir: str | Path | None = None,
                 figure_attacks: Sequence[str] | None = None, warn: Callable[[str], None] | None = None) -> Report:
    """The report of ``run``; ``figure_attacks`` picks the attacks of the PR/P@N figures and examples
    (default DHTA and SDHA, as in the CgAT paper; the attacks that ran where those did not).
    ``warn`` gets one line per record file left out because it cannot be used."""
    data = load_run(run, results_dir, warn)
    stats = Stats(data.frame)
    papers = paper.load()
    chosen = {group: curve_attacks(stats.values("attack", dataset=group[0], method=group[1], backbone=group[2],
                                                bits=group[3]), figure_attacks)
              for group in stats.groups()}
    return Report(data, stats, papers, all_layouts(stats, papers, data.manifest.get("grid")),
                  leaderboards(data.frame), chosen, transfer_tables(data.transfer, stats, data.frame))
