"""Assemble a run's report (format-neutral) and write it in the requested formats."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from ..results import check_run_name
from . import paper
from .data import RunData, load_run
from .figures import curve_attacks
from .layouts import Layout, all_layouts
from .leaderboard import Board, leaderboards
from .tables import GroupKey, Stats
from .transfer import transfer_tables

#: File written for each format.
OUTPUTS = {"html": "index.html", "csv": "results.csv", "latex": "tables.tex", "markdown": "report.md",
           "json": "report.json"}


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


def _write_atomic(path: Path, text: str) -> None:
    # A temp file in the same folder, then os.replace: readers see the old file or the new one.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a report is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_report(
    run: str | Path,
    *,
    results_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    html: bool = True,
    csv: bool = False,
    latex: bool = False,
    markdown: bool = False,
    json: bool = False,
    figure_attacks: Sequence[str] | None = None,
    warn: Callable[[str], None] | None = None,
) -> list[Path]:
    """Write the requested formats of ``run``'s report (see :data:`OUTPUTS`); return the paths.

    ``out_dir`` defaults to ``reports/<run>/``, where ``<run>`` is the name of the run's folder
    checked by the run-name rule (never a field of ``run.json``).  Raises :class:`UserError`
    for an unknown run or an output folder that cannot be written.  ``warn``: see
    :func:`build_report`.
    """
    from . import export
    from .html import render

    if out_dir is not None and Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise UserError(f"--out {out_dir}: a file is in the way; the report is a folder")
    report = build_report(run, results_dir, figure_attacks, warn)
    if out_dir is None:
        name = check_run_name(report.run.name, f"run folder {report.run.folder}",
                             "pass --out to say where its report goes")
        out = Path("reports") / name
    else:
        out = Path(out_dir)
    renderers = {"html": render, "csv": export.to_csv, "latex": export.to_latex, "markdown": export.to_markdown,
                 "json": export.to_json}
    wanted = {"html": html, "csv": csv, "latex": latex, "markdown": markdown, "json": json}
    outputs = [(out / OUTPUTS[kind], renderers[kind](report)) for kind, on in wanted.items() if on]
    try:
        out.mkdir(parents=True, exist_ok=True)
        for path, text in outputs:
            _write_atomic(path, text)
    except OSError as exc:
        raise UserError(f"cannot write the report to {out}: {exc.strerror or exc}") from exc
    return [path for path, _ in outputs]
