"""The report of a run: one self-contained HTML page (inline CSS and SVG) and an optional CSV.

The page is built from a plain view model, one ``_*_view`` function per part of the page, so
a new view is one function plus one template block.  Every string that comes from records,
the manifest or plugins reaches the page through Jinja2 autoescaping; the only markup
passed through unescaped is the SVG that :mod:`.figures` generates, whose text matplotlib
escapes itself.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from ..errors import UserError
from ..results import COLUMNS, flatten, read_manifest, read_records, run_dir
from .figures import pn_figure, pr_figure
from .tables import CLEAN, iter_groups, map_table, perturbation_table, targeted_attacks

TEMPLATE_DIR = Path(__file__).parent / "templates"
TEMPLATE = "report.html.j2"

CURVE_COLUMNS = ("pr_recall", "pr_precision", "pn_n", "pn_precision")
#: Columns of ``results.csv``: the tidy frame without its list-valued curve columns.
CSV_COLUMNS = [c for c in COLUMNS if c not in CURVE_COLUMNS]

MISSING = "–"

# Manifest keys shown in the provenance panel, in this order, with their labels.
MANIFEST_FIELDS = {
    "git_commit": "git commit",
    "hashbench_version": "hashbench",
    "python": "python",
    "torch": "torch",
    "device": "device",
    "platform": "platform",
    "created": "created",
    "finished": "finished",
}
# Per-cell provenance keys shown first; any other key a record carries follows them.
CELL_FIELDS = {
    "seeds": "seeds",
    "split_hash": "split hash",
    "artifact_keys": "artifact keys",
    "plugins": "plugins",
}


@functools.lru_cache(maxsize=1)
def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATE_DIR),
        autoescape=select_autoescape(("html", "htm", "xml", "j2"), default_for_string=True, default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _fmt(value: Any, spec: str = "") -> str:
    return MISSING if _missing(value) else format(value, spec)


def _fmt_pct(mean: float, std: float, n: int) -> str:
    if _missing(mean):
        return MISSING
    if n > 1 and not _missing(std):
        return f"{mean:.2f} ± {std:.2f}"
    return f"{mean:.2f}"


def _fmt_pixels(value: Any) -> str:
    # Budgets are usually quoted as k/255; show both.
    return MISSING if _missing(value) else f"{value:.4f} ({value * 255:.2f}/255)"


def _fmt_value(value: Any) -> str | list[tuple[str, str]]:
    """A provenance value as text, or a dict as ``(key, text)`` pairs."""
    if isinstance(value, Mapping):
        return [(str(k), _flat(v)) for k, v in value.items()]
    return _flat(value)


def _flat(value: Any) -> str:
    if _missing(value):
        return MISSING
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {_flat(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return " ".join(_flat(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _summary_view(manifest: Mapping[str, Any], records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    failed = manifest.get("failed") or []
    stages = manifest.get("stages") or {}
    items = [
        ("grid", manifest.get("grid")),
        ("profile", manifest.get("profile")),
        ("device", manifest.get("device")),
        ("created", manifest.get("created")),
        ("finished", manifest.get("finished")),
        ("cells", manifest.get("cells", len(records))),
        ("records", len(records)),
        ("failed", len(failed)),
    ]
    if stages:
        counts = [(k, stages[k]) for k in ("executed", "cached") if isinstance(stages.get(k), int)]
        items.append(("stages", ", ".join(f"{v} {k}" for k, v in counts)))
    return [(label, _flat(value)) for label, value in items if value is not None]


def _map_view(table: pd.DataFrame, targeted: list[str]) -> dict[str, Any]:
    attacks = list(dict.fromkeys(table.columns.get_level_values("attack")))
    columns = [{"name": "Clean" if a == CLEAN else a, "targeted": a in targeted} for a in attacks]
    rows = []
    for defense, values in table.iterrows():
        cells = []
        for attack in attacks:
            v = values[attack]
            n = int(v["n"])
            cells.append({
                "text": _fmt_pct(v["map"], v["map_std"], n),
                "best": bool(v["best"]),
                "t_map": _fmt_pct(v["t_map"], v["t_map_std"], n) if attack in targeted else None,
                "n": n,
            })
        rows.append({"defense": str(defense), "cells": cells})
    return {"columns": columns, "rows": rows}


def _perturbation_view(table: pd.DataFrame | None) -> list[dict[str, Any]]:
    if table is None:
        return []
    return [
        {
            "defense": str(defense),
            "attack": str(attack),
            "epsilon": _fmt_pixels(v["epsilon"]),
            "linf_max": _fmt_pixels(v["linf_max"]),
            "l2_mean": _fmt(v["l2_mean"], ".4g"),
            "mse_mean": _fmt(v["mse_mean"], ".4g"),
            "attack_wall_s": _fmt(v["attack_wall_s"], ".2f"),
            "n": int(v["n"]),
        }
        for (defense, attack), v in table.iterrows()
    ]


def _group_views(df: pd.DataFrame) -> list[dict[str, Any]]:
    map_tables = map_table(df)
    perturbation_tables = perturbation_table(df)
    views = []
    for i, (key, rows) in enumerate(iter_groups(df), start=1):
        dataset, method, backbone, bits = key
        views.append({
            "anchor": f"group-{i}",
            "title": f"{dataset} · {method} · {backbone} · {bits} bits",
            "map": _map_view(map_tables[key], targeted_attacks(rows)),
            # Trusted: generated by .figures, with matplotlib escaping every text element.
            "pr_svg": Markup(pr_figure(rows, fig_id=f"g{i}-pr")),
            "pn_svg": Markup(pn_figure(rows, fig_id=f"g{i}-pn")),
            "perturbation": _perturbation_view(perturbation_tables.get(key)),
        })
    return views


def _provenance_view(manifest: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [(label, _flat(manifest[key])) for key, label in MANIFEST_FIELDS.items() if key in manifest]


def _cell_views(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    views = []
    for record in records:
        cell = record.get("cell") or {}
        provenance = record.get("provenance") or {}
        fields = [(str(k), _fmt_value(v)) for k, v in cell.items()]
        fields.append(("targeted", _flat(record.get("targeted"))))
        keys = [k for k in CELL_FIELDS if k in provenance] + [k for k in provenance if k not in CELL_FIELDS]
        fields += [(CELL_FIELDS.get(k, k.replace("_", " ")), _fmt_value(provenance[k])) for k in keys]
        views.append({"id": str(record.get("cell_id", MISSING)), "fields": fields})
    return views


def _failure_views(manifest: Mapping[str, Any]) -> list[dict[str, str]]:
    views = []
    for failure in manifest.get("failed") or []:
        if isinstance(failure, Mapping):
            views.append({"id": _flat(failure.get("cell_id")), "error": _flat(failure.get("error"))})
        else:
            views.append({"id": MISSING, "error": _flat(failure)})
    return views


def _collect(
    run: str | Path, results_dir: str | Path | None
) -> tuple[dict[str, Any], list[dict[str, Any]], pd.DataFrame]:
    records = read_records(run, results_dir)  # raises UserError for an unknown run
    manifest = read_manifest(run, results_dir)
    frame = pd.DataFrame([flatten(r) for r in records], columns=COLUMNS)
    return manifest, records, frame


def _run_name(manifest: Mapping[str, Any], run: str | Path, results_dir: str | Path | None) -> str:
    return str(manifest.get("run") or run_dir(run, results_dir).name)


def _render(manifest: dict[str, Any], records: list[dict[str, Any]], frame: pd.DataFrame, name: str) -> str:
    context = {
        "run": name,
        "summary": _summary_view(manifest, records),
        "groups": _group_views(frame),
        "failures": _failure_views(manifest),
        "provenance": _provenance_view(manifest),
        "cells": _cell_views(records),
    }
    return _environment().get_template(TEMPLATE).render(context)


def render_html(run: str | Path, results_dir: str | Path | None = None) -> str:
    """The report page of ``run`` (a run name under ``results_dir`` or a run folder) as HTML."""
    manifest, records, frame = _collect(run, results_dir)
    return _render(manifest, records, frame, _run_name(manifest, run, results_dir))


def results_csv(frame: pd.DataFrame) -> str:
    """``frame`` as CSV: one row per cell, :data:`CSV_COLUMNS`, floats at full precision."""
    return frame[CSV_COLUMNS].to_csv(index=False, lineterminator="\n")


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
) -> list[Path]:
    """Write ``index.html`` (and ``results.csv`` with ``csv=True``) for ``run``; return the paths.

    ``out_dir`` defaults to ``reports/<run>/``.  Raises :class:`UserError` for an unknown run
    or an output folder that cannot be written.
    """
    manifest, records, frame = _collect(run, results_dir)
    name = _run_name(manifest, run, results_dir)
    out = Path(out_dir) if out_dir is not None else Path("reports") / name
    outputs: list[tuple[Path, str]] = []
    if html:
        outputs.append((out / "index.html", _render(manifest, records, frame, name)))
    if csv:
        outputs.append((out / "results.csv", results_csv(frame)))
    try:
        out.mkdir(parents=True, exist_ok=True)
        for path, text in outputs:
            _write_atomic(path, text)
    except OSError as exc:
        raise UserError(f"cannot write the report to {out}: {exc.strerror or exc}") from exc
    return [path for path, _ in outputs]
