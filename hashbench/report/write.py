"""Write a run's report in the requested formats, each file atomically."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from hashbench.errors import UserError
from hashbench.harness.store import write_text_atomic
from hashbench.report import export
from hashbench.report.html import render
from hashbench.report.model import build_report
from hashbench.results import check_run_name

#: File written for each format.
OUTPUTS = {"html": "index.html", "csv": "results.csv", "latex": "tables.tex", "markdown": "report.md",
           "json": "report.json"}


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
            write_text_atomic(path, text, mode=0o644)  # mkstemp creates 0600; a report is meant to be shared
    except OSError as exc:
        raise UserError(f"cannot write the report to {out}: {exc.strerror or exc}") from exc
    return [path for path, _ in outputs]
