"""Tables of a run: one per (dataset, method, backbone, bits) group, built from ``results.load``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pandas as pd

#: Columns that identify a group; every table and figure covers one group.
GROUP_COLUMNS = ("dataset", "method", "backbone", "bits")

GroupKey = tuple[str, str, str, int]

#: The ``attack`` value of the clean (no attack) evaluation.
CLEAN = "clean"
#: The ``defense`` value of the undefended model.
NO_DEFENSE = "none"

#: Second column level of :func:`map_table`: MAP and t-MAP in percent, seeds counted, best flag.
MAP_STATS = ("map", "map_std", "n", "t_map", "t_map_std", "best")

#: Columns of :func:`perturbation_table` and how each is aggregated over seeds.
PERTURBATION_STATS = {
    "epsilon": "max",
    "linf_max": "max",
    "l2_mean": "mean",
    "mse_mean": "mean",
    "attack_wall_s": "mean",
}


def _appearance(values: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


def defense_order(values: Iterable[str]) -> list[str]:
    """Distinct defenses: ``none`` first, then the others in order of appearance."""
    found = _appearance(values)
    return [d for d in found if d == NO_DEFENSE] + [d for d in found if d != NO_DEFENSE]


def attack_order(values: Iterable[str]) -> list[str]:
    """Distinct attacks: ``clean`` first, then the others in order of appearance."""
    found = _appearance(values)
    return [a for a in found if a == CLEAN] + [a for a in found if a != CLEAN]


def group_key(values: Iterable[Any]) -> GroupKey:
    """A normalised ``(dataset, method, backbone, bits)`` key (numpy scalars become str/int)."""
    dataset, method, backbone, bits = values
    return (str(dataset), str(method), str(backbone), int(bits))


def iter_groups(df: pd.DataFrame) -> Iterator[tuple[GroupKey, pd.DataFrame]]:
    """``(key, rows)`` per group, sorted by key (so 16 bits comes before 128)."""
    if df.empty:
        return
    for key, rows in df.groupby(list(GROUP_COLUMNS), sort=True):
        yield group_key(key), rows


def _numeric(rows: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    # A column that is null in every record loads as object dtype, which pandas will not average.
    return rows.assign(**{c: pd.to_numeric(rows[c], errors="coerce") for c in columns})


def _best_mask(means: pd.Series) -> pd.Series:
    # Compare at display precision so two values that print the same are both bold; a
    # column with a single value has nothing to be best against.
    shown = means.round(2)
    if shown.notna().sum() < 2:
        return pd.Series(False, index=means.index)
    return shown == shown.max()


def _one_map_table(rows: pd.DataFrame) -> pd.DataFrame:
    defenses = defense_order(rows["defense"])
    attacks = attack_order(rows["attack"])
    stats = _numeric(rows, ("map", "t_map")).groupby(["defense", "attack"], sort=False).agg(
        map=("map", "mean"),
        map_std=("map", "std"),
        n=("map", "count"),
        t_map=("t_map", "mean"),
        t_map_std=("t_map", "std"),
    )
    columns: dict[tuple[str, str], pd.Series] = {}
    for attack in attacks:
        part = stats.xs(attack, level="attack").reindex(defenses)
        for stat in ("map", "map_std", "t_map", "t_map_std"):
            columns[(attack, stat)] = part[stat].astype(float) * 100.0
        columns[(attack, "n")] = part["n"].fillna(0).astype(int)
        columns[(attack, "best")] = _best_mask(columns[(attack, "map")])
    table = pd.DataFrame(columns)
    table = table[[(attack, stat) for attack in attacks for stat in MAP_STATS]]
    table.columns = table.columns.set_names(["attack", "stat"])
    table.index.name = "defense"
    return table


def map_table(df: pd.DataFrame) -> dict[GroupKey, pd.DataFrame]:
    """MAP tables, one per group, in percent and averaged over seeds.

    Rows are defenses (``none`` first); columns are a two-level index ``(attack, stat)`` with
    attacks ordered ``clean`` first and ``stat`` one of :data:`MAP_STATS`: ``map`` (mean),
    ``map_std`` (sample std over seeds, NaN for one seed), ``n`` (seeds), ``t_map`` and
    ``t_map_std`` (NaN for untargeted attacks) and ``best`` (highest MAP of the column, i.e.
    the most robust defense; never set when the column has a single value).
    ``table.xs("map", axis=1, level="stat")`` is the plain defense × attack MAP table.
    """
    return {key: _one_map_table(rows) for key, rows in iter_groups(df)}


def map_values(table: pd.DataFrame, stat: str = "map") -> pd.DataFrame:
    """One statistic of a :func:`map_table` table as a defense × attack frame."""
    return table.xs(stat, axis=1, level="stat")


def targeted_attacks(rows: pd.DataFrame) -> list[str]:
    """Attacks of ``rows`` that report a t-MAP, in :func:`attack_order`."""
    with_t_map = rows.loc[rows["t_map"].notna(), "attack"]
    return [a for a in attack_order(rows["attack"]) if a in set(with_t_map)]


def _one_perturbation_table(rows: pd.DataFrame) -> pd.DataFrame:
    attacked = _numeric(rows[rows["attack"] != CLEAN], PERTURBATION_STATS)
    index = pd.MultiIndex.from_tuples(
        [(d, a) for d in defense_order(attacked["defense"]) for a in attack_order(attacked["attack"])],
        names=["defense", "attack"],
    )
    stats = attacked.groupby(["defense", "attack"], sort=False).agg(
        **{column: (column, how) for column, how in PERTURBATION_STATS.items()},
        n=("map", "count"),
    )
    # Only pairs that ran: a defense × attack product may have holes.
    return stats.reindex(index).dropna(subset=["n"]).astype({"n": int})


def perturbation_table(df: pd.DataFrame) -> dict[GroupKey, pd.DataFrame]:
    """Perturbation statistics per group: rows ``(defense, attack)`` (clean excluded).

    Columns are :data:`PERTURBATION_STATS` (ε and L∞ as the maximum over seeds, the rest as
    the mean; pixel units of [0, 1] images, wall time in seconds) and ``n`` (seeds).
    """
    tables = {}
    for key, rows in iter_groups(df):
        table = _one_perturbation_table(rows)
        if not table.empty:
            tables[key] = table
    return tables
