"""RobustBench-style leaderboard: models ranked by their worst-case MAP over the attacks that ran.

One board per dataset.  An entry is a (method, backbone, bits, defense) model; its robust MAP is,
per seed, the minimum MAP over every attack evaluated on it, then the mean ± std over seeds.  An
entry evaluated with fewer attacks than the board's union is flagged: its worst case is an upper
bound.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .names import CLEAN, label, ordered, sort_key
from .tables import mean_std

ENTRY_COLUMNS = ("method", "backbone", "bits", "defense")


@dataclass
class Entry:
    rank: int
    method: str
    backbone: str
    bits: int
    defense: str
    clean: float | None  # percent, mean over seeds
    clean_std: float | None
    robust: float | None  # worst-case MAP over attacks, percent, mean over seeds
    robust_std: float | None
    strongest: str | None  # the attack with the lowest mean MAP
    attacks: tuple[str, ...]
    missing: tuple[str, ...]  # attacks of the board not evaluated on this entry
    seeds: int

    @property
    def complete(self) -> bool:
        return not self.missing

    @property
    def name(self) -> str:
        defense = "undefended" if self.defense == "none" else label("defense", self.defense)
        return f"{label('method', self.method)} + {defense}"


@dataclass
class Board:
    dataset: str
    attacks: tuple[str, ...]
    entries: list[Entry]


def _entry(rows: pd.DataFrame, key: tuple, board_attacks: list[str]) -> Entry:
    method, backbone, bits, defense = key
    maps = rows.assign(map=pd.to_numeric(rows["map"], errors="coerce") * 100.0).dropna(subset=["map"])
    clean = maps[maps["attack"] == CLEAN]
    attacked = maps[maps["attack"] != CLEAN]
    worst = attacked.groupby("seed")["map"].min().tolist() if not attacked.empty else []
    means = attacked.groupby("attack")["map"].mean()
    attacks = tuple(ordered("attack", attacked["attack"]))
    clean_mean, clean_std = mean_std(clean["map"])
    robust, robust_std = mean_std(worst)
    return Entry(
        rank=0, method=str(method), backbone=str(backbone), bits=int(bits), defense=str(defense),
        clean=clean_mean, clean_std=clean_std, robust=robust, robust_std=robust_std,
        strongest=str(means.idxmin()) if not means.empty else None, attacks=attacks,
        missing=tuple(a for a in board_attacks if a not in attacks), seeds=int(maps["seed"].nunique()),
    )


def leaderboards(frame: pd.DataFrame) -> list[Board]:
    """One :class:`Board` per dataset, entries ranked by robust MAP (then clean MAP), best first."""
    boards = []
    if frame.empty:
        return boards
    for dataset in ordered("dataset", frame["dataset"]):
        rows = frame[frame["dataset"] == dataset]
        board_attacks = [a for a in ordered("attack", rows["attack"]) if a != CLEAN]
        entries = [_entry(part, key, board_attacks) for key, part in rows.groupby(list(ENTRY_COLUMNS), sort=False)]
        entries.sort(key=lambda e: (e.robust is None, -(e.robust or 0.0), -(e.clean or 0.0),
                                    sort_key("method", e.method), e.bits, sort_key("defense", e.defense)))
        for rank, entry in enumerate(entries, start=1):
            entry.rank = rank
        boards.append(Board(str(dataset), tuple(board_attacks), entries))
    return boards
