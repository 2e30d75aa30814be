"""RobustBench-style leaderboard: models ranked by their worst-case MAP over the attacks that ran.

One board per dataset.  An entry is a (method, backbone, bits, defense) model; its robust MAP is,
per seed, the minimum MAP over every ε-bounded attack evaluated on it, then the mean ± std over
seeds.  An entry evaluated with fewer attacks than the board's union is flagged: its worst case
is an upper bound.

Attacks without an ε-ball (ProS-GAN's generator) are outside the threat model the defenses are
trained for, and one that rewrites images would set every model's worst case alike; their
lowest mean MAP is shown beside the robust MAP (``unbounded``), not folded into it.  Records
that do not say whether their attack was bounded count as bounded.

A model that did not learn must not top the board because attacks cannot move codes that carry
no information: an entry whose clean MAP is within :data:`~hashbench.retrieval.chance.NEAR_CHANCE_POINTS`
of the random-codes MAP of its split, or whose database codes are degenerate
(:func:`hashbench.retrieval.chance.degenerate`), is marked with the reason and ranked after every healthy
entry (RobustBench shows clean accuracy beside robust accuracy for the same reason).

An inference-time defense (a purifier in front of the unchanged model, e.g. ComDefend) is
marked ``inference_time`` so that the boards tell it from the training-time defenses.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from hashbench import plugins
from hashbench.errors import PluginError
from hashbench.report.names import CLEAN, label, model_label, ordered, sort_key
from hashbench.report.tables import mean_std, white_box
from hashbench.retrieval.chance import NEAR_CHANCE_POINTS, degenerate

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
    unbounded: float | None = None  # lowest mean MAP under an attack without an ε-ball, percent
    unbounded_attacks: tuple[str, ...] = ()
    chance: float | None = None  # MAP of random balanced codes on the same splits, percent
    distinct_codes: int | None = None  # distinct database codes (clean evaluation, first seed)
    bit_balance: float | None = None  # 1 − mean |bit mean|: 1 balanced, 0 constant bits
    unhealthy: str | None = None  # why this entry is ranked after the healthy ones
    inference_time: bool = False  # the defense purifies inputs in front of the unchanged model

    @property
    def healthy(self) -> bool:
        return self.unhealthy is None

    @property
    def complete(self) -> bool:
        return not self.missing

    @property
    def model(self) -> str:
        """The board's row label: ``DPSH (undefended)``, ``DPSH + CgAT``, ``DPSH + ComDefend (inference-time)``."""
        return model_label(self.method, self.defense, with_method=True) + (" (inference-time)" if self.inference_time else "")

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
    unbounded = maps[(maps["attack"] != CLEAN) & _unbounded(maps)]
    attacked = maps[(maps["attack"] != CLEAN) & ~_unbounded(maps)]
    worst = attacked.groupby("seed")["map"].min().tolist() if not attacked.empty else []
    means = attacked.groupby("attack")["map"].mean()
    attacks = tuple(ordered("attack", attacked["attack"]))
    unbounded_means = unbounded.groupby("attack")["map"].mean()
    clean_mean, clean_std = mean_std(clean["map"])
    robust, robust_std = mean_std(worst)
    chance = mean_std(pd.to_numeric(clean.get("chance_map", pd.Series(dtype=float)), errors="coerce") * 100.0)[0]
    health = _health(clean)
    return Entry(
        rank=0, method=str(method), backbone=str(backbone), bits=int(bits), defense=str(defense),
        clean=clean_mean, clean_std=clean_std, robust=robust, robust_std=robust_std,
        strongest=str(means.idxmin()) if not means.empty else None, attacks=attacks,
        missing=tuple(a for a in board_attacks if a not in attacks), seeds=int(maps["seed"].nunique()),
        chance=chance, distinct_codes=health.get("distinct_codes"), bit_balance=health.get("bit_balance"),
        unhealthy=_unhealthy(clean_mean, chance, health),
        unbounded=float(unbounded_means.min()) if not unbounded_means.empty else None,
        unbounded_attacks=tuple(ordered("attack", unbounded["attack"])),
        inference_time=inference_time(str(defense)),
    )


def inference_time(defense: str) -> bool:
    """Whether the defense plugin ``defense`` is an inference-time one; ``False`` when it is not
    installed here (a run read on another machine)."""
    if defense not in plugins.defenses:
        return False
    try:
        return bool(plugins.defenses.get(defense).inference_time)
    except PluginError:  # installed but fails to import
        return False


def _unbounded(rows: pd.DataFrame) -> pd.Series:
    """Rows whose attack declared no ε-ball (``bounded`` False); unknown counts as bounded."""
    if "bounded" not in rows:
        return pd.Series(False, index=rows.index)
    return rows["bounded"].map(lambda b: b is not None and not pd.isna(b) and not bool(b)).astype(bool)


def _health(clean: pd.DataFrame) -> dict:
    """The code health of the first clean row that has it (:func:`hashbench.retrieval.chance.code_health` keys)."""
    for _, row in clean.iterrows():
        if pd.notna(row.get("distinct_codes")):
            return {"items": int(row["num_database"]), "bits": int(row["bits"]),
                    "distinct_codes": int(row["distinct_codes"]),
                    "bit_balance": float(row["bit_balance"]) if pd.notna(row.get("bit_balance")) else None,
                    "dead_bits": int(row["dead_bits"]) if pd.notna(row.get("dead_bits")) else None}
    return {}


def _unhealthy(clean: float | None, chance: float | None, health: dict) -> str | None:
    """Why a model's numbers cannot be read as robustness, or ``None``."""
    collapsed = degenerate(health)
    if collapsed is not None:
        return f"degenerate codes: {collapsed}"
    if clean is not None and chance is not None and clean - chance < NEAR_CHANCE_POINTS:
        return (f"clean MAP {clean:.2f} is within {NEAR_CHANCE_POINTS:g} points of random codes ({chance:.2f}): "
                "the model barely learned, so attacks have little to destroy")
    return None


def leaderboards(frame: pd.DataFrame) -> list[Board]:
    """One :class:`Board` per dataset, entries ranked by robust MAP (then clean MAP), best first;
    unhealthy entries (near chance, degenerate codes) after every healthy one.  Only white-box rows
    count: a transfer row measures the surrogate's attack, not this model's worst case."""
    boards = []
    frame = white_box(frame)
    if frame.empty:
        return boards
    for dataset in ordered("dataset", frame["dataset"]):
        rows = frame[frame["dataset"] == dataset]
        board_attacks = [a for a in ordered("attack", rows[~_unbounded(rows)]["attack"]) if a != CLEAN]
        entries = [_entry(part, key, board_attacks) for key, part in rows.groupby(list(ENTRY_COLUMNS), sort=False)]
        entries.sort(key=lambda e: (not e.healthy, e.robust is None, -(e.robust or 0.0), -(e.clean or 0.0),
                                    sort_key("method", e.method), e.bits, sort_key("defense", e.defense)))
        for rank, entry in enumerate(entries, start=1):
            entry.rank = rank
        boards.append(Board(str(dataset), tuple(board_attacks), entries))
    return boards
