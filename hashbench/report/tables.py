"""Seed aggregation of a run's tidy frame: one row per setting, MAP and t-MAP in percent.

A setting is ``(dataset, method, backbone, bits, defense, attack)``, i.e. a cell without its
seed.  Every table, leaderboard and export of the report reads these statistics, so the
averaging rule lives here only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd

from hashbench.report.names import ordered, sort_key

#: Coordinates of a setting (a cell without its seed).
SETTING_COLUMNS = ("dataset", "method", "backbone", "bits", "defense", "attack")

SettingKey = tuple[str, str, str, int, str, str]
#: A (dataset, method, backbone, bits) group: one trained model and its defenses.
GroupKey = tuple[str, str, str, int]

#: Perturbation columns and how each is aggregated over seeds.
PERTURBATION_STATS = {"epsilon": "max", "linf_max": "max", "l2_mean": "mean", "mse_mean": "mean",
                      "attack_wall_s": "mean"}


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


@dataclass(frozen=True)
class Stat:
    """A setting's numbers over its seeds; MAP and t-MAP in percent (std ``None`` for one seed)."""

    map: float | None
    map_std: float | None
    n: int
    t_map: float | None
    t_map_std: float | None
    targeted: bool
    seeds: tuple[int, ...]
    perturbation: dict[str, float | None]
    #: MAP and t-MAP (percent) of random balanced codes on the same splits and cut-off
    chance_map: float | None = None
    chance_t_map: float | None = None
    #: precision within Hamming radius ``radius`` and recall at the deepest N of the P@N list
    #: (``recall_n``), percent, mean over seeds; ``None`` for records written before they existed
    precision_radius: float | None = None
    radius: int | None = None
    recall_at_n: float | None = None
    recall_n: int | None = None

    def value(self, metric: str = "map") -> float | None:
        return self.map if metric == "map" else self.t_map

    def chance(self, metric: str = "map") -> float | None:
        """The random-codes reference of ``metric``."""
        return self.chance_map if metric == "map" else self.chance_t_map

    def std(self, metric: str = "map") -> float | None:
        return self.map_std if metric == "map" else self.t_map_std


def _last(values: Any) -> Any:
    """The last element of a curve column's list (``None`` for a missing curve)."""
    return values[-1] if isinstance(values, (list, tuple)) and values else None


def _lookup_stats(rows: pd.DataFrame) -> dict[str, Any]:
    """A setting's precision within the Hamming radius and recall at the deepest N (percent)."""
    out: dict[str, Any] = {}
    if "precision_radius" in rows:
        out["precision_radius"] = mean_std(pd.to_numeric(rows["precision_radius"], errors="coerce") * 100.0)[0]
        radii = pd.to_numeric(rows["radius"], errors="coerce").dropna()
        out["radius"] = int(radii.iloc[0]) if not radii.empty else None
    if "rn_recall" in rows:
        out["recall_at_n"] = mean_std(pd.to_numeric(rows["rn_recall"].map(_last), errors="coerce") * 100.0)[0]
        depths = pd.to_numeric(rows["rn_n"].map(_last), errors="coerce").dropna()
        out["recall_n"] = int(depths.iloc[0]) if not depths.empty else None
    return out


def white_box(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``frame`` whose attack was crafted on the model it attacks (``surrogate`` empty):
    a model's own robustness.  Transfer rows (:mod:`.transfer`) are left out; a frame without the
    column (written before transfer cells existed) is white-box throughout."""
    if "surrogate" not in frame:
        return frame
    return frame[frame["surrogate"].isna()]


def mean_std(values: Iterable[Any]) -> tuple[float | None, float | None]:
    """Mean and sample std of the finite numbers among ``values`` (std ``None`` below two)."""
    numbers = pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce").dropna()
    if numbers.empty:
        return None, None
    return float(numbers.mean()), (float(numbers.std()) if len(numbers) > 1 else None)


class Stats:
    """Per-setting statistics of a tidy frame (``results.load`` columns)."""

    def __init__(self, frame: pd.DataFrame) -> None:
        frame = white_box(frame)
        self.frame = frame
        self._stats: dict[SettingKey, Stat] = {}
        if frame.empty:
            return
        for key, rows in frame.groupby(list(SETTING_COLUMNS), sort=False):
            dataset, method, backbone, bits, defense, attack = key
            m, m_std = mean_std(pd.to_numeric(rows["map"], errors="coerce") * 100.0)
            t, t_std = mean_std(pd.to_numeric(rows["t_map"], errors="coerce") * 100.0)
            perturbation = {}
            for column, how in PERTURBATION_STATS.items():
                values = pd.to_numeric(rows[column], errors="coerce").dropna()
                perturbation[column] = _finite(getattr(values, how)()) if not values.empty else None
            chance = {c: mean_std(pd.to_numeric(rows[c], errors="coerce") * 100.0)[0] if c in rows else None
                      for c in ("chance_map", "chance_t_map")}
            self._stats[(str(dataset), str(method), str(backbone), int(bits), str(defense), str(attack))] = Stat(
                map=m, map_std=m_std, n=int(rows["map"].notna().sum()), t_map=t, t_map_std=t_std,
                targeted=bool(rows["targeted"].fillna(False).astype(bool).any()),
                seeds=tuple(sorted(int(s) for s in rows["seed"])), perturbation=perturbation, **chance,
                **_lookup_stats(rows),
            )

    def get(self, dataset: str, method: str, backbone: str, bits: int, defense: str, attack: str) -> Stat | None:
        return self._stats.get((dataset, method, backbone, int(bits), defense, attack))

    def __iter__(self) -> Iterator[tuple[SettingKey, Stat]]:
        return iter(self._stats.items())

    def __len__(self) -> int:
        return len(self._stats)

    def values(self, column: str, **where: Any) -> list:
        """Distinct values of a coordinate among settings matching ``where``, in canonical order."""
        index = SETTING_COLUMNS.index(column)
        found = (key[index] for key in self._stats
                 if all(key[SETTING_COLUMNS.index(k)] == v for k, v in where.items()))
        return ordered(column, found)

    def groups(self) -> list[GroupKey]:
        """Every (dataset, method, backbone, bits) with results, in canonical order."""
        keys = {key[:4] for key in self._stats}
        return sorted(keys, key=lambda k: (sort_key("dataset", k[0]), sort_key("method", k[1]),
                                           sort_key("backbone", k[2]), k[3]))

    def targeted_attacks(self) -> set[str]:
        return {key[5] for key, stat in self._stats.items() if stat.targeted}


def group_rows(frame: pd.DataFrame, group: GroupKey) -> pd.DataFrame:
    """The rows of one (dataset, method, backbone, bits) group of a tidy frame."""
    dataset, method, backbone, bits = group
    return frame[(frame["dataset"] == dataset) & (frame["method"] == method) & (frame["backbone"] == backbone)
                 & (frame["bits"] == bits)]
