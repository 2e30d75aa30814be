"""What a model's numbers are compared with: the MAP of random codes, and the health of its codes.

A MAP means little without the MAP that codes carrying no information score on the same split
and cut-off: on a dataset where most pairs share a label it is high (57 % at MAP@1000 on
``shapes``).  :func:`chance_map` measures it with random *balanced* codes (every bit +1 on
exactly half of the items, drawn independently for queries and database), averaged over a few
draws.  :func:`code_health` summarises a model's database codes; :func:`degenerate` says when
they are too collapsed for its MAP to be read as retrieval quality.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hashbench.retrieval.metrics import map_at_k

#: a model whose clean MAP is within this many points of the random-codes MAP is near chance
NEAR_CHANCE_POINTS = 10.0
#: a bit that takes the same value on at least this fraction of the database is dead
DEAD_BIT_FRACTION = 0.99


def random_balanced_codes(n: int, bits: int, rng: np.random.Generator) -> np.ndarray:
    """``n × bits`` int8 ±1 codes, each bit +1 on ⌊n/2⌋ items chosen at random (−1 on the rest)."""
    ranks = np.argsort(rng.random((n, bits)), axis=0, kind="stable")
    codes = np.full((n, bits), -1, dtype=np.int8)
    np.put_along_axis(codes, ranks[: n // 2], 1, axis=0)
    return codes


def chance_map(query_labels: np.ndarray, db_labels: np.ndarray, bits: int, *, topk: int | None, draws: int,
               seed: int, target_labels: np.ndarray | None = None) -> dict[str, Any]:
    """Mean (and std) over ``draws`` draws of the MAP@``topk`` of random balanced codes.

    With ``target_labels`` (one row per query) it also gives the random-codes t-MAP: the MAP
    against the targets of the targeted attacks.  Values are fractions, like ``map_at_k``.
    """
    rng = np.random.default_rng(seed)
    maps, t_maps = [], []
    for _ in range(draws):
        q = random_balanced_codes(len(query_labels), bits, rng)
        d = random_balanced_codes(len(db_labels), bits, rng)
        maps.append(map_at_k(q, d, query_labels, db_labels, topk=topk))
        if target_labels is not None:
            t_maps.append(map_at_k(q, d, target_labels, db_labels, topk=topk))
    return {"map": float(np.mean(maps)), "map_std": float(np.std(maps)),
            "t_map": float(np.mean(t_maps)) if t_maps else None, "draws": draws}


def code_health(codes: Any) -> dict[str, Any]:
    """Distinct codes, bit balance and dead bits of a set of ±1 codes (one row per item).

    ``bit_balance`` is ``1 − mean_k |mean_i b_ik|``: 1 when every bit is +1 on half of the
    items, 0 when every bit is constant.  A bit is dead when one value covers at least
    :data:`DEAD_BIT_FRACTION` of the items.
    """
    b = np.asarray(codes.numpy() if hasattr(codes, "numpy") else codes, dtype=np.int8)
    n, bits = b.shape
    if n == 0:
        return {"items": 0, "bits": bits, "distinct_codes": 0, "bit_balance": None, "dead_bits": None}
    mean = b.astype(np.float64).mean(axis=0)
    dead = int((np.abs(mean) >= 2 * DEAD_BIT_FRACTION - 1).sum())
    distinct = len(np.unique(np.packbits(b > 0, axis=1), axis=0))
    return {"items": n, "bits": bits, "distinct_codes": distinct,
            "bit_balance": float(1.0 - np.abs(mean).mean()), "dead_bits": dead}


def degenerate(health: dict[str, Any] | None) -> str | None:
    """Why codes described by :func:`code_health` are degenerate, or ``None`` when they are not.

    Degenerate: a single code for the whole database, or more than half of the bits dead.
    """
    if not health or not health.get("items"):
        return None
    if health["distinct_codes"] <= 1:
        return f"one code for all {health['items']} database items"
    if health["dead_bits"] is not None and health["dead_bits"] > health["bits"] / 2:
        return f"{health['dead_bits']} of {health['bits']} bits constant on ≥ {DEAD_BIT_FRACTION:.0%} of the database"
    return None
