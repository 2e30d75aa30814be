"""Drawing the papers' split: queries, the rest as database, a train set drawn from the database."""

from __future__ import annotations

import numpy as np

from hashbench.errors import UserError


def draw_split(num_items: int, num_query: int, num_train: int, seed: int) -> dict[str, list[int]]:
    """Query / database / train (⊂ database) item indices, each sorted, from ``seed``.

    One permutation of the items: its first ``num_query`` are the queries, the rest the
    database, and the next ``num_train`` after the queries the train set (CgAT §4.1).
    """
    if num_query < 1 or num_train < 1:
        raise UserError(f"--num-query and --num-train must be at least 1 (got {num_query} and {num_train})")
    if num_query + num_train > num_items:
        raise UserError(
            f"only {num_items} images to split: --num-query {num_query} plus --num-train {num_train} "
            f"must be at most {num_items} (the train set is drawn from the database, the non-query images)"
        )
    perm = np.random.default_rng(seed).permutation(num_items)
    return {
        "query": sorted(perm[:num_query].tolist()),
        "database": sorted(perm[num_query:].tolist()),
        "train": sorted(perm[num_query:num_query + num_train].tolist()),
    }
