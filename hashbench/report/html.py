"""The report as one self-contained HTML page: inline CSS, inline SVG figures, ``data:`` images and
one small inline script (table sorting, toggles); a Content-Security-Policy forbids everything else.

The page is built from a plain view model, one ``_*_view`` function per part of the page.
Every string that comes from records, the manifest or plugins reaches the page through Jinja2
autoescaping; the only markup passed through unescaped is the SVG that :mod:`.figures`
generates (matplotlib escapes its text) and the script shipped with this package.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import math
import numbers
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from hashbench.harness.stages.kinds import STAGE_KINDS
from hashbench.report.data import Failure, RunData
from hashbench.report.examples import Example, ExampleQuery, ImagePool, examples
from hashbench.report.figures import curves_figure, defense_colors, scatter_figure
from hashbench.report.layouts import MISSING, Layout, TableCell, fmt, make_cell
from hashbench.report.leaderboard import Board
from hashbench.report.model import Report, build_report
from hashbench.report.names import CLEAN, label, model_label, ordered
from hashbench.report.paper import PaperNumbers
from hashbench.report.tables import group_rows

TEMPLATE_DIR = Path(__file__).parent / "templates"
TEMPLATE = "report.html.j2"
SCRIPT = "report.js"

# Manifest keys shown first in the provenance panel, with their labels; other keys follow.
MANIFEST_FIELDS = {
    "git_commit": "git commit",
    "hashbench_version": "hashbench",
    "python": "python",
    "torch": "torch",
    "device": "device",
    "device_name": "device name",
    "platform": "platform",
    "command": "command",
    "created": "created",
    "finished": "finished",
    "wall_s": "wall time (s)",
}
# Manifest keys shown elsewhere on the page.
MANIFEST_ELSEWHERE = {"failed", "stages", "run", "grid", "profile", "status", "cells"}


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


@functools.lru_cache(maxsize=1)
def _script() -> tuple[str, str]:
    """The inline script and its CSP hash (``sha256-…``)."""
    code = (TEMPLATE_DIR / SCRIPT).read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(code.encode("utf-8")).digest()).decode("ascii")
    return code, f"sha256-{digest}"


# --- formatting -----------------------------------------------------------------------------------

def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _num(value: float | None, *, signed: bool = False) -> str:
    """A percentage for the page, with a typographic minus."""
    return fmt(value, signed=signed).replace("-", "\u2212")


def _flat(value: Any) -> str:
    if _missing(value):
        return MISSING
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {_flat(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return " ".join(_flat(v) for v in value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _pixels(value: float | None) -> str:
    # Budgets are quoted as k/255 (the exact value is in the cell's tooltip).
    return MISSING if _missing(value) else f"{value * 255:.2f}/255"


def _sort_value(value: Any) -> str:
    return "" if _missing(value) else repr(float(value))


# --- views ----------------------------------------------------------------------------------------

def _cell_view(cell: TableCell, papers: PaperNumbers, delta: bool = False) -> dict[str, Any]:
    title = [f"{cell.n} seed{'s' if cell.n != 1 else ''}"] if cell.n else ["not run"]
    ref = None
    if cell.paper_value is not None:
        diff = cell.difference
        source = cell.paper.source if cell.paper else "paper difference"
        dagger = cell.backbone_differs
        if cell.paper is not None:
            title.append(f"{source}: {cell.paper_value:.2f}" + (
                f" (paper backbone: {label('backbone', cell.paper.backbone)})" if dagger else ""))
        ref = {"value": _num(cell.paper_value, signed=delta),
               "diff": _num(diff, signed=True) if diff is not None else None,
               "sign": "" if diff is None else ("pos" if diff > 0 else "neg" if diff < 0 else "zero"),
               "dagger": dagger, "source": source}
    return {
        "text": _num(cell.value, signed=delta),
        "std": _num(cell.std) if cell.std is not None else None,
        "best": cell.best,
        "v": _sort_value(cell.value),
        "title": "; ".join(title),
        "ref": ref,
    }


def _layout_view(layout: Layout, papers: PaperNumbers) -> dict[str, Any]:
    return {
        "id": layout.id,
        "title": layout.title,
        "caption": layout.caption,
        "paper_tables": layout.paper_tables,
        "row_header": layout.row_header,
        "spans": layout.header_spans,
        "columns": layout.columns,
        "groups": [{"label": g.label, "rows": [
            {"label": r.label, "kind": r.kind, "note": r.note,
             "cells": [_cell_view(c, papers, delta=r.kind == "delta") for c in r.cells]} for r in g.rows]}
            for g in layout.groups],
        "has_paper": any(c.paper_value is not None for c in layout.cells()),
    }


def _layout_sections(report: Report) -> list[dict[str, Any]]:
    kinds = [
        ("cgat-1-3", "Tables 1–3 layout: MAP per dataset and code length",
         "Rows: the undefended victim, then each defense, grouped by code length, with CgAT's Δ row "
         "(CgAT − ATRDH); columns: clean queries and every attack."),
        ("cgat-4", "Table 4 layout: attack strength",
         "MAP under every attack, including CgAT's center-guided attack, per dataset and defense."),
        ("cgat-5", "Table 5 layout: other hashing methods",
         "Each hashing method undefended and with each defense."),
        ("saat-1", "SAAT Table I layout: attacks on the undefended model",
         "MAP for non-targeted attacks, t-MAP for targeted attacks, per dataset and code length."),
        ("saat-2", "SAAT Table II layout: after adversarial training",
         "Clean MAP and non-targeted attacks against each defended model."),
    ]
    sections = []
    for kind, title, intro in kinds:
        layouts = [_layout_view(t, report.papers) for t in report.layouts if t.kind == kind]
        if kind == "cgat-5" and not layouts:
            intro = "Appears when a run trains more than one hashing method on the same dataset, backbone and bits."
        if layouts or kind == "cgat-5":
            sections.append({"id": f"layout-{kind}", "title": title, "intro": intro, "tables": layouts})
    return sections


def _leaderboard_view(boards: list[Board]) -> list[dict[str, Any]]:
    views = []
    for board in boards:
        entries = []
        for e in board.entries:
            entries.append({
                "rank": e.rank, "model": e.model,
                "backbone": label("backbone", e.backbone), "bits": e.bits,
                "clean": _num(e.clean), "clean_std": _num(e.clean_std) if e.clean_std is not None else None,
                "clean_v": _sort_value(e.clean),
                "robust": _num(e.robust), "robust_std": _num(e.robust_std) if e.robust_std is not None else None,
                "robust_v": _sort_value(e.robust),
                "strongest": label("attack", e.strongest) if e.strongest else MISSING,
                "attacks": len(e.attacks), "missing": ", ".join(label("attack", a) for a in e.missing),
                "seeds": e.seeds, "chance": _num(e.chance), "chance_v": _sort_value(e.chance),
                "distinct": MISSING if e.distinct_codes is None else e.distinct_codes,
                "distinct_v": _sort_value(e.distinct_codes),
                "balance": MISSING if e.bit_balance is None else f"{e.bit_balance:.2f}",
                "unhealthy": e.unhealthy,
                "unbounded": _num(e.unbounded), "unbounded_v": _sort_value(e.unbounded),
                "unbounded_attacks": ", ".join(label("attack", a) for a in e.unbounded_attacks),
            })
        flagged = [(e["rank"], e["model"], e["unhealthy"]) for e in entries if e["unhealthy"]]
        unbounded = sorted({a for e in board.entries for a in e.unbounded_attacks})
        views.append({"dataset": label("dataset", board.dataset), "attacks": len(board.attacks),
                      "attack_names": ", ".join(label("attack", a) for a in board.attacks), "entries": entries,
                      "flagged": flagged,
                      "unbounded": ", ".join(label("attack", a) for a in ordered("attack", unbounded))})
    return views


def _figures_view(report: Report) -> dict[str, Any]:
    frame = report.run.frame
    colors = defense_colors(ordered("defense", frame["defense"]) if not frame.empty else [])
    groups = []
    for i, group in enumerate(report.stats.groups(), start=1):
        dataset, method, backbone, bits = group
        attacks = report.figure_attacks.get(group, [])
        if not attacks:
            continue
        rows = group_rows(frame, group)
        title = (f"{label('dataset', dataset)} · {label('method', method)} · {label('backbone', backbone)} · "
                 f"{bits} bits")
        groups.append({
            "title": title,
            "attacks": ", ".join(label("attack", a) for a in attacks),
            # Trusted: generated by .figures, with matplotlib escaping every text element.
            "svg": Markup(curves_figure(rows, attacks, colors=colors, fig_id=f"f{i}",
                                        title=f"Precision-recall and precision@N curves, {title}")),
        })
    scatter = Markup(scatter_figure(report.boards, colors=colors, fig_id="scatter")) if report.boards else None
    return {"scatter": scatter, "groups": groups}


def _retrieved_view(items: list) -> list[dict[str, Any]]:
    return [{"index": r.index, "relevant": r.relevant, "image": r.image} for r in items]


def _query_view(q: ExampleQuery) -> dict[str, Any]:
    precision = ExampleQuery.precision
    return {
        "adversarial": q.adversarial, "perturbation": q.perturbation,
        "amplification": f"×{q.amplification:.0f}" if q.amplification else None,
        "linf": f"{q.linf:.0f}/255" if q.linf is not None else None,
        "before": _retrieved_view(q.before), "after": _retrieved_view(q.after),
        "p_before": f"{precision(q.before):.0%}" if q.before else MISSING,
        "p_after": f"{precision(q.after):.0%}" if q.after else MISSING,
    }


_DATA_URI = re.compile(r"data:image/(png|jpeg);base64,[A-Za-z0-9+/=]*")


def _image_css(pool: ImagePool) -> Markup:
    """One CSS rule per pooled image: ``.imN{background-image:url(data:…)}``."""
    rules = []
    for key, uri in pool.uris.items():
        if not _DATA_URI.fullmatch(uri):  # only base64 data URIs, which need no escaping inside url()
            raise ValueError(f"not a base64 image data URI: {uri[:40]}")
        rules.append(f".{key}{{background-image:url({uri})}}")
    return Markup("\n".join(rules))


def _examples_view(found: list[Example]) -> list[dict[str, Any]]:
    views = []
    for i, example in enumerate(found, start=1):
        queries = []
        for q in range(example.num_queries):
            index, clean = example.clean(q)
            queries.append({"index": index, "clean": clean, "rows": [
                {"label": row.label, **_query_view(row.queries[q])} for row in example.rows if q < len(row.queries)]})
        notes = list(dict.fromkeys(note for row in example.rows for note in row.missing))
        views.append({"id": f"example-{i}", "title": example.title, "missing": notes, "queries": queries})
    return views


def _details_view(report: Report) -> list[dict[str, Any]]:
    views = []
    for group in report.stats.groups():
        dataset, method, backbone, bits = group
        rows = []
        chance = None  # the random-codes reference of the group's split (the same for every row)
        radius = recall_n = None  # the same for every row of a group (one dataset)
        for defense in report.stats.values("defense", dataset=dataset, method=method, backbone=backbone, bits=bits):
            for attack in report.stats.values("attack", dataset=dataset, method=method, backbone=backbone, bits=bits,
                                              defense=defense):
                stat = report.stats.get(dataset, method, backbone, bits, defense, attack)
                if stat is None:
                    continue
                if chance is None and stat.chance_map is not None:
                    chance = {"map": _num(stat.chance_map), "t_map": _num(stat.chance_t_map)}
                radius = radius if radius is not None else stat.radius
                recall_n = recall_n if recall_n is not None else stat.recall_n
                p = stat.perturbation
                cell = make_cell(report.stats, report.papers, dataset, method, backbone, bits, defense, attack)
                ref, diff = cell.paper, cell.difference
                rows.append({
                    "defense": model_label(method, defense), "attack": label("attack", attack),
                    "map": _num(stat.map), "map_std": _num(stat.map_std) if stat.map_std is not None else None,
                    "map_v": _sort_value(stat.map),
                    "t_map": _num(stat.t_map), "t_map_v": _sort_value(stat.t_map),
                    "t_map_std": _num(stat.t_map_std) if stat.t_map_std is not None else None,
                    "p_radius": _num(stat.precision_radius), "p_radius_v": _sort_value(stat.precision_radius),
                    "recall": _num(stat.recall_at_n), "recall_v": _sort_value(stat.recall_at_n),
                    "epsilon": _pixels(p["epsilon"]), "linf": _pixels(p["linf_max"]),
                    "epsilon_exact": _flat(p["epsilon"]), "linf_exact": _flat(p["linf_max"]),
                    "l2": _flat(p["l2_mean"]), "mse": _flat(p["mse_mean"]),
                    "time": MISSING if p["attack_wall_s"] is None else f"{p['attack_wall_s']:.2f}",
                    "time_v": _sort_value(p["attack_wall_s"]), "n": stat.n,
                    "paper": _num(ref.value) if ref else MISSING, "paper_source": ref.source if ref else "",
                    "diff": _num(diff, signed=True) if diff is not None else MISSING,
                    "diff_v": _sort_value(diff),
                })
        views.append({"title": f"{label('dataset', dataset)} · {label('method', method)} · "
                               f"{label('backbone', backbone)} · {bits} bits", "rows": rows, "chance": chance,
                      "radius": "r" if radius is None else radius, "recall_n": "N" if recall_n is None else recall_n})
    return views


def _summary_view(run: RunData) -> list[tuple[str, str]]:
    manifest = run.manifest
    stages = manifest.get("stages") or {}
    items = [
        ("grid", manifest.get("grid")),
        ("profile", manifest.get("profile")),
        ("status", manifest.get("status")),
        ("device", manifest.get("device_name") or manifest.get("device")),
        ("finished", manifest.get("finished")),
        ("cells", manifest.get("cells", len(run.records) + len(run.failures))),
        ("evaluated", len(run.records)),
        ("failed", len(run.failures)),
    ]
    if isinstance(manifest.get("wall_s"), numbers.Real):
        items.append(("wall time", f"{manifest['wall_s']:.1f} s"))
    if stages:
        counts = [(k, stages[k]) for k in ("executed", "cached") if isinstance(stages.get(k), int)]
        items.append(("stages", ", ".join(f"{v} {k}" for k, v in counts)))
    items.extend(_splits_view(run.records))
    return [(name, _flat(value)) for name, value in items if value is not None]


def _splits_view(records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """One summary line per dataset: each split its cells used, as counts, source and hash."""
    found: dict[str, dict[str, None]] = {}
    for record in records:
        provenance = record.get("provenance") or {}
        split_hash = provenance.get("split_hash")
        if not isinstance(split_hash, str):
            continue
        sizes = provenance.get("split_sizes")
        sizes = sizes if isinstance(sizes, Mapping) else {}
        counts = " / ".join(f"{sizes[k]:,} {k}" for k in ("query", "train", "database") if isinstance(sizes.get(k), int))
        source = {"drawn": "drawn", "files": "the dataset's split files"}.get(provenance.get("split_source"), "")
        text = ", ".join(part for part in (counts, source, f"hash {split_hash}") if part)
        found.setdefault(str((record.get("cell") or {}).get("dataset", MISSING)), {})[text] = None
    return [(f"split {dataset}", "; ".join(texts)) for dataset, texts in found.items()]


def _value_view(value: Any) -> str | list[tuple[str, str]]:
    """A provenance value as text, or a mapping as ``(key, text)`` pairs."""
    if isinstance(value, Mapping):
        return [(str(k), _flat(v)) for k, v in value.items()]
    return _flat(value)


def _manifest_view(manifest: Mapping[str, Any]) -> list[tuple[str, Any]]:
    keys = [k for k in MANIFEST_FIELDS if k in manifest]
    keys += sorted(k for k in manifest if k not in MANIFEST_FIELDS and k not in MANIFEST_ELSEWHERE)
    return [(MANIFEST_FIELDS.get(k, k.replace("_", " ")), _value_view(manifest[k])) for k in keys]


def _per_stage(record: Mapping[str, Any], suffix: str, stage_field: str) -> dict[str, float]:
    """Per-stage numbers of a record, from whichever of these it has: ``provenance.stages.<kind>.<stage_field>``,
    a ``<stage_field>`` mapping (stage → number; a single number is labelled ``run``) in ``provenance`` or
    ``timing``, and ``<kind><suffix>`` keys of ``timing``."""
    found: dict[str, float] = {}
    provenance = record.get("provenance") or {}
    for kind, numbers_of in (provenance.get("stages") or {}).items():
        value = (numbers_of or {}).get(stage_field) if isinstance(numbers_of, Mapping) else None
        if isinstance(value, numbers.Real):
            found[str(kind)] = float(value)
    for section in (provenance, record.get("timing") or {}):
        value = section.get(stage_field)
        if isinstance(value, Mapping):
            for kind, number in value.items():
                if isinstance(number, numbers.Real):
                    found.setdefault(str(kind), float(number))
        elif isinstance(value, numbers.Real):
            found.setdefault("run", float(value))
        for key, number in section.items():
            if key.endswith(suffix) and key != suffix.lstrip("_") and isinstance(number, numbers.Real):
                found.setdefault(key[: -len(suffix)], float(number))
    return found


def _stage_text(values: Mapping[str, float], unit: str, spec: str) -> str:
    """``stage value unit`` pairs in pipeline order (stages the planner does not know last)."""
    order = sorted(values, key=lambda k: (STAGE_KINDS.index(k) if k in STAGE_KINDS else len(STAGE_KINDS), k))
    return " · ".join(f"{stage} {values[stage]:{spec}}{unit}" for stage in order) or MISSING


def _cells_view(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    views = []
    for record in records:
        provenance = record.get("provenance") or {}
        keys = provenance.get("artifact_keys") or {}
        walls = _per_stage(record, "_wall_s", "wall_s")
        memory = _per_stage(record, "_peak_memory_mb", "peak_memory_mb")
        views.append({
            "id": str(record.get("cell_id", MISSING)),
            "seeds": _flat(provenance.get("seeds")),
            "split_hash": _flat(provenance.get("split_hash")),
            "artifacts": [(str(stage), str(key)[:12], str(key)) for stage, key in keys.items()],
            "wall": _stage_text(walls, " s", ".2f"),
            "wall_v": _sort_value(sum(walls.values())) if walls else "",
            "memory": _stage_text(memory, " MB", ".0f"),
            "memory_v": _sort_value(max(memory.values())) if memory else "",
            "device": _flat(provenance.get("device")),
            "plugins": _flat(provenance.get("plugins")),
            "commit": _flat(provenance.get("git_commit")),
        })
    return views


def _failures_view(failures: list[Failure]) -> list[dict[str, Any]]:
    return [{"id": f.cell_id, "error": f.error, "stage": f.stage, "traceback": f.traceback,
             "cell": " · ".join(f"{k} {v}" for k, v in f.cell.items()) if f.cell else ""} for f in failures]


def _references_view(report: Report) -> list[dict[str, str]]:
    used = {c.paper.table_id for t in report.layouts for c in t.cells() if c.paper is not None}
    views = []
    for key, meta in report.papers.papers.items():
        tables = [(t["table"], t["note"]) for tid, t in report.papers.tables.items()
                  if t["paper"] == key and tid in used]
        views.append({"short": meta.get("short", key), "citation": meta.get("citation", ""),
                      "tables": [{"name": n, "note": note} for n, note in tables]})
    return views


def render(report: Report) -> str:
    """The HTML page of a built report."""
    script, script_hash = _script()
    run = report.run
    sections = _layout_sections(report)
    pool = ImagePool()
    found = examples(run, report.figure_attacks, pool)
    context = {
        "run": run.name,
        "summary": _summary_view(run),
        "has_results": not run.frame.empty,
        "leaderboards": _leaderboard_view(report.boards),
        "layout_sections": sections,
        "transfer": [_layout_view(t, report.papers) for t in report.transfer],
        "figures": _figures_view(report) if not run.frame.empty else {"scatter": None, "groups": []},
        "examples": _examples_view(found),
        "image_css": _image_css(pool),  # trusted: validated base64 data URIs
        "details": _details_view(report),
        "failures": _failures_view(run.failures),
        "manifest": _manifest_view(run.manifest),
        "cells": _cells_view(run.records),
        "references": _references_view(report),
        "script": Markup(script),  # trusted: shipped with hashbench
        "csp": f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src '{script_hash}'",
        "clean": label("attack", CLEAN),
    }
    return _environment().get_template(TEMPLATE).render(context)


def render_html(run: str | Path, results_dir: str | Path | None = None) -> str:
    """The report page of ``run`` (a run name under ``results_dir`` or a run folder) as HTML."""
    return render(build_report(run, results_dir))
