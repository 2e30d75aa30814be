"""The papers' reference numbers (``paper_numbers.yaml``) and their lookup by setting.

A setting is ``(dataset, method, bits, defense, attack, metric)``.  The backbone is kept with
each number but is not part of the key: the report shows the paper's number for a run on
another backbone too, marked as such, since that is still the closest published figure.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from hashbench.errors import UserError
from hashbench.harness.safe_yaml import load_yaml_text

#: Keys of a reference number's setting, in order.
SETTING_KEYS = ("dataset", "method", "bits", "defense", "attack", "metric")
#: Every key an entry carries (the setting plus the backbone).
ENTRY_KEYS = (*SETTING_KEYS, "backbone")
METRICS = ("map", "t_map")

Setting = tuple[str, str, int, str, str, str]


@dataclass(frozen=True)
class PaperNumber:
    """One number of a paper's table, in percent."""

    value: float
    paper: str  # key of ``papers`` in the YAML, e.g. "cgat"
    table: str  # e.g. "Table 1"
    table_id: str  # e.g. "cgat-table1"
    source: str  # e.g. "CgAT Table 1"
    dataset: str
    method: str
    backbone: str
    bits: int
    defense: str
    attack: str
    metric: str

    @property
    def setting(self) -> Setting:
        return (self.dataset, self.method, self.bits, self.defense, self.attack, self.metric)


@dataclass(frozen=True)
class PaperNumbers:
    """Every transcribed number, indexed by setting."""

    papers: dict[str, dict[str, str]]
    tables: dict[str, dict[str, str]]  # table id -> {"paper", "table", "note"}
    numbers: tuple[PaperNumber, ...]

    @functools.cached_property
    def _index(self) -> dict[Setting, list[PaperNumber]]:
        index: dict[Setting, list[PaperNumber]] = {}
        for number in self.numbers:
            index.setdefault(number.setting, []).append(number)
        return index

    def lookup(
        self, dataset: str, method: str, bits: int, defense: str, attack: str, metric: str = "map",
        *, prefer: str | None = None,
    ) -> PaperNumber | None:
        """The paper's number of a setting, or ``None``.

        Where several tables report the setting (CgAT's Table 4 repeats the 32-bit rows of
        Tables 1–3), the table ``prefer`` (a table id) wins, else the first in the file.
        """
        found = self._index.get((str(dataset), str(method), int(bits), str(defense), str(attack), str(metric)), [])
        for number in found:
            if number.table_id == prefer:
                return number
        return found[0] if found else None

    def all_for(self, dataset: str, method: str, bits: int, defense: str, attack: str, metric: str = "map"
                ) -> list[PaperNumber]:
        """Every table's number of a setting (they can disagree; see CgAT Table 3 vs 4)."""
        return list(self._index.get((str(dataset), str(method), int(bits), str(defense), str(attack), str(metric)), []))


def _columns(spec: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(spec, Mapping):  # key -> values: their product, first key outermost
        keys = list(spec)
        if not all(isinstance(spec[k], Sequence) and not isinstance(spec[k], str) for k in keys):
            raise UserError(f"{where}: columns mapping must give a list per key")
        return [dict(zip(keys, combo)) for combo in itertools.product(*(spec[k] for k in keys))]
    if isinstance(spec, Sequence) and all(isinstance(c, Mapping) for c in spec):
        return [dict(c) for c in spec]
    raise UserError(f"{where}: columns must be a list of mappings or a mapping of lists")


def _entry(fields: dict[str, Any], where: str) -> dict[str, Any]:
    missing = [k for k in ENTRY_KEYS if k not in fields]
    unknown = [k for k in fields if k not in ENTRY_KEYS]
    if missing or unknown:
        raise UserError(f"{where}: missing keys {missing}, unknown keys {unknown}")
    if fields["metric"] not in METRICS:
        raise UserError(f"{where}: metric '{fields['metric']}' is not one of {', '.join(METRICS)}")
    if isinstance(fields["bits"], bool) or not isinstance(fields["bits"], int):
        raise UserError(f"{where}: bits must be an integer, got {fields['bits']!r}")
    return fields


def parse(data: Mapping[str, Any], origin: str = "paper numbers") -> PaperNumbers:
    """Validate and flatten the YAML structure (see the comment at the top of the file)."""
    papers = {str(k): dict(v) for k, v in (data.get("papers") or {}).items()}
    numbers: list[PaperNumber] = []
    tables: dict[str, dict[str, str]] = {}
    for t, table in enumerate(data.get("tables") or []):
        table_id = str(table.get("id", f"#{t}"))
        where = f"{origin}: table {table_id}"
        if table_id in tables:
            raise UserError(f"{where}: duplicate table id")
        if table.get("paper") not in papers:
            raise UserError(f"{where}: paper '{table.get('paper')}' is not declared under papers")
        tables[table_id] = {"paper": table["paper"], "table": str(table["table"]), "note": str(table.get("note", ""))}
        columns = _columns(table.get("columns"), where)
        seen: set[Setting] = set()
        for r, row in enumerate(table.get("rows") or []):
            values = row.get("values")
            if not isinstance(values, Sequence) or len(values) != len(columns):
                raise UserError(f"{where}, row {r + 1}: {len(columns)} values expected, got {values!r}")
            keys = {k: v for k, v in row.items() if k != "values"}
            for column, value in zip(columns, values):
                fields = _entry({**(table.get("fixed") or {}), **column, **keys}, f"{where}, row {r + 1}")
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100:
                    raise UserError(f"{where}, row {r + 1}: {value!r} is not a percentage")
                source = f"{papers[table['paper']].get('short', table['paper'])} {table['table']}"
                number = PaperNumber(value=float(value), paper=table["paper"], table=str(table["table"]),
                                     table_id=table_id, source=source, **{k: fields[k] for k in ENTRY_KEYS})
                if number.setting in seen:
                    raise UserError(f"{where}: setting {number.setting} appears twice")
                seen.add(number.setting)
                numbers.append(number)
    return PaperNumbers(papers, tables, tuple(numbers))


@functools.lru_cache(maxsize=1)
def load() -> PaperNumbers:
    """The numbers shipped with hashbench (``hashbench/report/paper_numbers.yaml``)."""
    text = resources.files(__package__).joinpath("paper_numbers.yaml").read_text(encoding="utf-8")
    return parse(load_yaml_text(text, "paper_numbers.yaml"), "paper_numbers.yaml")
