"""The counts table a build prints: what was built against what the papers used."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from hashbench.data.builders.source import Source


def _num(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def counts_table(title: str, counts: dict[str, int], paper: dict[str, int], source: Source) -> Table:
    """Rows query / database / train / items: built, the papers' number, and whether they agree."""
    table = Table(title=title, title_justify="left")
    for column, justify in (("", "left"), ("built", "right"), ("paper (CgAT §4.1)", "right"), ("", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for key, label in (("query", "query"), ("database", "database"), ("train", "train"), ("items", "images")):
        built, want = counts[key], paper.get(key)
        table.add_row(label, _num(built), _num(want), "" if want is None or want == built else "differs")
    for note, n in source.notes.items():
        if n:
            table.add_row(note, _num(n), "", "")
    return table


def print_table(table: Table) -> None:
    Console(highlight=False).print(table)
