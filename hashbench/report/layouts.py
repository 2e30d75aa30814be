"""The papers' table layouts, filled with a run's numbers: format-neutral :class:`Layout` objects.

- :func:`tables_1_3`: CgAT Tables 1–3, one per dataset (and method, backbone): rows grouped by bit
  length (the undefended victim, then each defense, then the Δ row CgAT − ATRDH); columns Clean
  and every attack; best per column in each bit group in bold.
- :func:`table_4`: CgAT Table 4, attack strength at 32 bits: attacks × (dataset, defense); bold
  marks the strongest attack (lowest MAP) of each column.
- :func:`table_5`: CgAT Table 5, hashing methods × defenses × attacks, where several methods ran.
- :func:`saat_table_1` / :func:`saat_table_2`: SAAT Tables I–II, attacks on the undefended model
  (MAP for non-targeted, t-MAP for targeted attacks) and after adversarial training, with
  (dataset, bits) columns; bold marks the strongest attack, as in the paper.

Every cell carries our mean over seeds (percent), its std, the seed count and, where the paper
reports the same setting, the paper's number. HTML, LaTeX, Markdown and JSON render these objects.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hashbench.report.names import CLEAN, NO_DEFENSE, label, model_label, note
from hashbench.report.paper import PaperNumber, PaperNumbers
from hashbench.report.tables import SETTING_COLUMNS, Stats

#: CgAT's table of each dataset (Tables 1–3).
CGAT_TABLE_OF_DATASET = {"flickr25k": 1, "nuswide21": 2, "mscoco": 3}
#: Bit length of CgAT's Table 4 and Table 5.
TABLE_4_BITS = 32
#: Defenses whose difference is CgAT's Δ row.
DELTA = ("cgat", "atrdh")
DIGITS = 2
#: Row label of clean queries in the SAAT layouts.
ORIGINAL = "Original (clean)"
#: Row label of the random-codes reference (``Row.kind == "chance"``).
CHANCE = "Random codes (chance)"


#: How a missing number prints.
MISSING = "–"


def rounded(value: float | None) -> float | None:
    return None if value is None else round(value, DIGITS)


def fmt(value: float | None, *, signed: bool = False) -> str:
    """A percentage at display precision (ASCII minus; renderers may substitute)."""
    if value is None:
        return MISSING
    return f"{value:+.{DIGITS}f}" if signed else f"{value:.{DIGITS}f}"


@dataclass
class TableCell:
    """One number of a layout, in percent."""

    value: float | None
    std: float | None = None
    n: int = 0
    metric: str = "map"
    best: bool = False
    paper: PaperNumber | None = None
    paper_value: float | None = None  # the paper's number (for a Δ cell: the paper's difference)
    setting: dict[str, Any] = field(default_factory=dict)

    @property
    def difference(self) -> float | None:
        """Ours − paper, at display precision."""
        if self.value is None or self.paper_value is None:
            return None
        return round(rounded(self.value) - self.paper_value, DIGITS)

    @property
    def backbone_differs(self) -> bool:
        return self.paper is not None and self.setting.get("backbone") not in (None, self.paper.backbone)


@dataclass
class Row:
    label: str
    cells: list[TableCell]
    kind: str = "value"  # "value", "delta" for the Δ row, "chance" for the random-codes reference
    note: str | None = None


@dataclass
class RowGroup:
    label: str | None
    rows: list[Row]


@dataclass
class Column:
    label: str
    group: str | None = None  # header above a run of columns (dataset in Table 4 / SAAT tables)
    note: str | None = None


@dataclass
class Layout:
    id: str
    kind: str  # "cgat-1-3", "cgat-4", "cgat-5", "saat-1", "saat-2"
    title: str
    caption: str
    row_header: str
    columns: list[Column]
    groups: list[RowGroup]

    @property
    def paper_tables(self) -> list[str]:
        """The papers' tables that report settings of this layout, e.g. ``["CgAT Table 1"]``."""
        return list(dict.fromkeys(c.paper.source for c in self.cells() if c.paper is not None))

    @property
    def header_spans(self) -> list[tuple[str | None, int]]:
        """Runs of equal ``Column.group``: the top header row (empty when no column has a group)."""
        if not any(c.group for c in self.columns):
            return []
        spans: list[tuple[str | None, int]] = []
        for column in self.columns:
            if spans and spans[-1][0] == column.group:
                spans[-1] = (column.group, spans[-1][1] + 1)
            else:
                spans.append((column.group, 1))
        return spans

    def cells(self) -> Iterable[TableCell]:
        for group in self.groups:
            for row in group.rows:
                yield from row.cells


def _mark_best(rows: list[Row], rule: str, skip: Iterable[str] = ()) -> None:
    """Bold the best value of each column among ``rows`` (not those labelled in ``skip``).

    Values are compared at display precision, so two that print the same are both bold; a column
    with fewer than two values has nothing to be best against.
    """
    candidates = [r for r in rows if r.kind == "value" and r.label not in set(skip)]
    if not candidates:
        return
    for j in range(len(candidates[0].cells)):
        shown = [(rounded(r.cells[j].value), r.cells[j]) for r in candidates if r.cells[j].value is not None]
        if len(shown) < 2:
            continue
        target = max(v for v, _ in shown) if rule == "max" else min(v for v, _ in shown)
        for v, cell in shown:
            cell.best = v == target


def make_cell(stats: Stats, papers: PaperNumbers, dataset: str, method: str, backbone: str, bits: int, defense: str,
              attack: str, metric: str = "map", prefer: str | None = None) -> TableCell:
    """A setting's cell: our mean ± std over seeds and the paper's number (table ``prefer`` first)."""
    setting = {"dataset": dataset, "method": method, "backbone": backbone, "bits": int(bits),
               "defense": defense, "attack": attack, "metric": metric}
    stat = stats.get(dataset, method, backbone, bits, defense, attack)
    ref = papers.lookup(dataset, method, bits, defense, attack, metric, prefer=prefer)
    return TableCell(
        value=stat.value(metric) if stat else None, std=stat.std(metric) if stat else None,
        n=stat.n if stat else 0, metric=metric, paper=ref, paper_value=ref.value if ref else None,
        setting=setting,
    )


def delta_row(rows: Mapping[str, Row]) -> Row | None:
    """CgAT − ATRDH, column by column (the paper's Δ row), with the paper's own difference."""
    if not all(d in rows for d in DELTA):
        return None
    cells = []
    for plus, minus in zip(rows[DELTA[0]].cells, rows[DELTA[1]].cells):
        value = None if plus.value is None or minus.value is None else rounded(plus.value) - rounded(minus.value)
        paper = None
        if plus.paper_value is not None and minus.paper_value is not None:
            paper = round(plus.paper_value - minus.paper_value, DIGITS)
        cells.append(TableCell(value=value, n=min(plus.n, minus.n), metric=plus.metric, paper_value=paper,
                          setting={**plus.setting, "defense": f"{DELTA[0]}-{DELTA[1]}"}))
    return Row(f"Δ ({label('defense', DELTA[0])} − {label('defense', DELTA[1])})", cells, kind="delta")


def chance_row(stats: Stats, rows: list[Row]) -> Row | None:
    """The random-codes reference under ``rows``: for each column, the MAP (t-MAP for a t-MAP column)
    of random balanced codes on the split and cut-off of that column's settings.

    ``None`` when no record of these settings carries the reference (records older than it).
    """
    cells = []
    for column in zip(*(r.cells for r in rows if r.kind == "value")):
        values = [stat.chance(c.metric) for c in column if c.setting
                  and (stat := stats.get(*(c.setting[k] for k in SETTING_COLUMNS))) is not None]
        value = next((v for v in values if v is not None), None)
        setting = {**column[0].setting, "defense": None, "attack": None}
        cells.append(TableCell(value=value, n=1 if value is not None else 0, metric=column[0].metric, setting=setting))
    if not any(c.value is not None for c in cells):
        return None
    return Row(CHANCE, cells, kind="chance",
               note="MAP of random balanced codes on the same split and cut-off (mean over draws)")


def _with_chance(stats: Stats, rows: list[Row]) -> list[Row]:
    """``rows`` and their random-codes reference row, where the records carry it."""
    chance = chance_row(stats, rows)
    return rows + [chance] if chance else rows


def _attack_columns(attacks: Iterable[str]) -> list[Column]:
    return [Column(label("attack", a), note=note("attack", a)) for a in attacks]


def tables_1_3(stats: Stats, papers: PaperNumbers) -> list[Layout]:
    """CgAT Tables 1–3 layout: one table per (dataset, method, backbone)."""
    cell = functools.partial(make_cell, stats, papers)
    layouts = []
    for dataset in stats.values("dataset"):
        for method in stats.values("method", dataset=dataset):
            for backbone in stats.values("backbone", dataset=dataset, method=method):
                where = {"dataset": dataset, "method": method, "backbone": backbone}
                attacks = stats.values("attack", **where)
                number = CGAT_TABLE_OF_DATASET.get(dataset)
                prefer = f"cgat-table{number}" if number else None
                groups = []
                for bits in stats.values("bits", **where):
                    rows: dict[str, Row] = {}
                    for defense in stats.values("defense", **where, bits=bits):
                        cells = [cell(dataset, method, backbone, bits, defense, a, prefer=prefer) for a in attacks]
                        rows[defense] = Row(model_label(method, defense), cells)
                    _mark_best(list(rows.values()), "max")
                    extra = [delta_row(rows), chance_row(stats, list(rows.values()))]
                    groups.append(RowGroup(f"{bits} bits", list(rows.values()) + [r for r in extra if r]))
                layouts.append(Layout(
                    id=f"cgat13-{len(layouts) + 1}", kind="cgat-1-3",
                    title=f"{label('dataset', dataset)}: {label('method', method)} on {label('backbone', backbone)}",
                    caption=("MAP (%) on clean queries and under each attack, mean ± std over seeds; rows grouped by "
                             "code length; bold: best per column within a code length"
                             + (f"; Δ: {label('defense', DELTA[0])} − {label('defense', DELTA[1])}."
                                if any(r.kind == "delta" for g in groups for r in g.rows) else ".")),
                    row_header="Model", columns=_attack_columns(attacks), groups=groups))
    return layouts


def table_4(stats: Stats, papers: PaperNumbers) -> list[Layout]:
    """CgAT Table 4 layout: attacks (rows) × (dataset, defense) at 32 bits, one table per method."""
    cell = functools.partial(make_cell, stats, papers)
    layouts = []
    for method in stats.values("method"):
        bits_run = stats.values("bits", method=method)
        bits = TABLE_4_BITS if TABLE_4_BITS in bits_run else bits_run[0]
        columns: list[Column] = []
        coords: list[tuple[str, str, str]] = []
        for dataset in stats.values("dataset", method=method, bits=bits):
            backbones = stats.values("backbone", method=method, bits=bits, dataset=dataset)
            for backbone in backbones:
                group = label("dataset", dataset) + (f" ({label('backbone', backbone)})" if len(backbones) > 1 else "")
                for defense in stats.values("defense", method=method, bits=bits, dataset=dataset, backbone=backbone):
                    short = label("method", method) if defense == NO_DEFENSE else label("defense", defense)
                    columns.append(Column(short, group=group))
                    coords.append((dataset, backbone, defense))
        attacks = stats.values("attack", method=method, bits=bits)
        rows = [Row(label("attack", a),
                    [cell(d, method, bb, bits, df, a, prefer="cgat-table4") for d, bb, df in coords],
                    note=note("attack", a)) for a in attacks]
        _mark_best(rows, "min", skip=[label("attack", CLEAN)])
        fallback = "" if bits == TABLE_4_BITS else f" (no {TABLE_4_BITS}-bit results in this run)"
        layouts.append(Layout(
            id=f"cgat4-{len(layouts) + 1}", kind="cgat-4",
            title=f"Attack strength: {label('method', method)}, {bits} bits{fallback}",
            caption=("MAP (%) under each attack (lower = stronger attack), mean ± std over seeds; "
                     "bold: the strongest attack of each column."),
            row_header="Attack", columns=columns, groups=[RowGroup(None, _with_chance(stats, rows))],
        ))
    return layouts


def table_5(stats: Stats, papers: PaperNumbers) -> list[Layout]:
    """CgAT Table 5 layout: methods × defenses × attacks, for each (dataset, backbone, bits) with ≥ 2 methods."""
    cell = functools.partial(make_cell, stats, papers)
    layouts = []
    for dataset in stats.values("dataset"):
        for backbone in stats.values("backbone", dataset=dataset):
            for bits in stats.values("bits", dataset=dataset, backbone=backbone):
                where = {"dataset": dataset, "backbone": backbone, "bits": bits}
                methods = stats.values("method", **where)
                if len(methods) < 2:
                    continue
                attacks = stats.values("attack", **where)
                groups = []
                for method in methods:
                    rows = [Row(model_label(method, d, with_method=True),
                                [cell(dataset, method, backbone, bits, d, a, prefer="cgat-table5") for a in attacks])
                            for d in stats.values("defense", **where, method=method)]
                    _mark_best(rows, "max")
                    groups.append(RowGroup(label("method", method), rows))
                chance = chance_row(stats, [r for g in groups for r in g.rows])
                if chance:
                    groups.append(RowGroup("Reference", [chance]))
                layouts.append(Layout(
                    id=f"cgat5-{len(layouts) + 1}", kind="cgat-5",
                    title=f"Hashing methods: {label('dataset', dataset)}, {label('backbone', backbone)}, {bits} bits",
                    caption="MAP (%), mean ± std over seeds; bold: best per column for each hashing method.",
                    row_header="Model", columns=_attack_columns(attacks), groups=groups,
                ))
    return layouts


def saat_blocks(stats: Stats, grid: str | None = None) -> list[tuple[str, str]]:
    """The (method, backbone) pairs of the SAAT layouts: all of them in a ``saat*`` grid, else those
    where the SAAT defense or the mainstay attack ran."""
    pairs = [(m, b) for m in stats.values("method") for b in stats.values("backbone", method=m)]
    if grid and str(grid).startswith("saat"):
        return pairs
    return [(m, b) for m, b in pairs if "saat" in stats.values("defense", method=m, backbone=b)
            or {"mainstay", "mainstay-t"} & set(stats.values("attack", method=m, backbone=b))]


def _dataset_bits_columns(stats: Stats, **where: Any) -> tuple[list[Column], list[tuple[str, int]]]:
    columns, coords = [], []
    for dataset in stats.values("dataset", **where):
        for bits in stats.values("bits", dataset=dataset, **where):
            columns.append(Column(f"{bits}", group=label("dataset", dataset)))
            coords.append((dataset, bits))
    return columns, coords


def saat_table_1(stats: Stats, papers: PaperNumbers, blocks: Iterable[tuple[str, str]]) -> list[Layout]:
    """SAAT Table I layout per (method, backbone) of ``blocks``: attacks on the undefended model;
    MAP for non-targeted attacks, t-MAP for targeted ones."""
    cell = functools.partial(make_cell, stats, papers)
    targeted = stats.targeted_attacks()
    layouts = []
    for method, backbone in blocks:
        where = {"method": method, "backbone": backbone, "defense": NO_DEFENSE}
        columns, coords = _dataset_bits_columns(stats, **where)
        if not coords:
            continue

        def row(attack: str, metric: str) -> Row:
            name = ORIGINAL if attack == CLEAN else label("attack", attack)
            return Row(name, [cell(d, method, backbone, bits, NO_DEFENSE, attack, metric, prefer="saat-table1")
                              for d, bits in coords], note=note("attack", attack))

        attacks = stats.values("attack", **where)
        untargeted = [row(a, "map") for a in attacks if a not in targeted]
        _mark_best(untargeted, "min", skip=[ORIGINAL])
        groups = [RowGroup("MAP (non-targeted attacks)", _with_chance(stats, untargeted))]
        with_target = [row(a, "t_map") for a in attacks if a in targeted]
        if with_target:
            _mark_best(with_target, "max")
            groups.append(RowGroup("t-MAP (targeted attacks)", _with_chance(stats, with_target)))
        layouts.append(Layout(
            id=f"saat1-{len(layouts) + 1}", kind="saat-1",
            title=f"Attacks on the undefended model: {label('method', method)} on {label('backbone', backbone)}",
            caption=("MAP (%) for clean queries and non-targeted attacks (lower = stronger attack), t-MAP (%) "
                     "for targeted attacks (higher = stronger attack), mean ± std over seeds; columns: code "
                     "length per dataset; bold: the strongest attack of each column."),
            row_header="Attack", columns=columns, groups=groups,
        ))
    return layouts


def saat_table_2(stats: Stats, papers: PaperNumbers, blocks: Iterable[tuple[str, str]]) -> list[Layout]:
    """SAAT Table II layout per (method, backbone) of ``blocks``: clean MAP and non-targeted attacks
    on each defended model."""
    cell = functools.partial(make_cell, stats, papers)
    targeted = stats.targeted_attacks()
    layouts = []
    for method, backbone in blocks:
        where = {"method": method, "backbone": backbone}
        defenses = [d for d in stats.values("defense", **where) if d != NO_DEFENSE]
        if not defenses:
            continue
        columns, coords = _dataset_bits_columns(stats, **where)
        groups = []
        for defense in defenses:
            attacks = [a for a in stats.values("attack", **where, defense=defense) if a not in targeted]
            rows = [Row(ORIGINAL if a == CLEAN else label("attack", a),
                        [cell(d, method, backbone, bits, defense, a, prefer="saat-table2") for d, bits in coords],
                        note=note("attack", a)) for a in attacks]
            _mark_best(rows, "min", skip=[ORIGINAL])
            groups.append(RowGroup(label("defense", defense), rows))
        chance = chance_row(stats, [r for g in groups for r in g.rows])
        if chance:
            groups.append(RowGroup("Reference", [chance]))
        layouts.append(Layout(
            id=f"saat2-{len(layouts) + 1}", kind="saat-2",
            title=f"After adversarial training: {label('method', method)} on {label('backbone', backbone)}",
            caption=("MAP (%) of each defended model on clean queries and under non-targeted attacks, mean ± std "
                     "over seeds; bold: the strongest attack of each column within a defense (as in the paper)."),
            row_header="Defense / attack", columns=columns, groups=groups,
        ))
    return layouts


def all_layouts(stats: Stats, papers: PaperNumbers, grid: str | None = None) -> list[Layout]:
    """Every layout that applies to the run, in page order."""
    blocks = saat_blocks(stats, grid)
    return (tables_1_3(stats, papers) + table_4(stats, papers) + table_5(stats, papers)
            + saat_table_1(stats, papers, blocks) + saat_table_2(stats, papers, blocks))

