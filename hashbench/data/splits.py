"""Train / query / database splits and the target labels of targeted attacks, drawn from one seed.

The seed is split into two independent streams (``np.random.SeedSequence(seed).spawn(2)``):
one draws the split, the other the target labels, so a dataset with a predefined split still
gets seeded target labels, and the targets do not depend on how the split stream was consumed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from hashbench.api.dataset import HashDataset, PredefinedSplit
from hashbench.errors import ArtifactError, ConfigError, DataError

_INDEX_KEYS = ("train", "query", "database")
_ROW_CHUNK = 1024  # queries per block in select_target_labels, to bound memory


@dataclass(frozen=True, eq=False)
class Split:
    """Item indices of one split and one target label per query (for targeted attacks).

    ``train``, ``query`` and ``database`` are sorted int64 item indices; ``query`` is disjoint from
    ``database`` and from ``train``.  A drawn split has ``train`` ⊂ ``database``; a dataset's predefined split keeps
    its own train list, which some protocols keep disjoint from the database.
    ``target_labels`` is (len(query), C) uint8, row ``i`` the target of ``query[i]``.
    """

    train: np.ndarray
    query: np.ndarray
    database: np.ndarray
    target_labels: np.ndarray
    seed: int

    def __post_init__(self) -> None:
        for key in _INDEX_KEYS:
            arr = np.array(getattr(self, key), dtype=np.int64).reshape(-1)
            object.__setattr__(self, key, arr)
        targets = np.array(self.target_labels, dtype=np.uint8)
        if targets.ndim != 2 or targets.shape[0] != len(self.query):
            raise ValueError(f"target_labels must have shape (len(query)={len(self.query)}, C), got {targets.shape}")
        object.__setattr__(self, "target_labels", targets)
        object.__setattr__(self, "seed", int(self.seed))

    def hash(self) -> str:
        """sha256 (first 16 hex digits) of the index arrays and target labels; recorded in results."""
        h = hashlib.sha256()
        for key in _INDEX_KEYS:
            arr = getattr(self, key)
            h.update(f"{key}:{arr.shape}".encode())
            h.update(arr.astype("<i8").tobytes())
        h.update(f"target_labels:{self.target_labels.shape}".encode())
        h.update(self.target_labels.tobytes())
        return h.hexdigest()[:16]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Split):
            return NotImplemented
        keys = (*_INDEX_KEYS, "target_labels")
        return self.seed == other.seed and all(np.array_equal(getattr(self, k), getattr(other, k)) for k in keys)

    def __hash__(self) -> int:
        return hash((self.hash(), self.seed))

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """The arrays as int64 / uint8 tensors, e.g. for safetensors storage (the seed goes in metadata)."""
        tensors = {key: torch.from_numpy(getattr(self, key).copy()) for key in _INDEX_KEYS}
        tensors["target_labels"] = torch.from_numpy(self.target_labels.copy())
        return tensors

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, torch.Tensor], seed: int) -> Split:
        """Inverse of :meth:`to_tensors`; ArtifactError if a tensor is missing or has the wrong dtype."""
        expected = {**{k: torch.int64 for k in _INDEX_KEYS}, "target_labels": torch.uint8}
        for key, dtype in expected.items():
            if key not in tensors:
                raise ArtifactError(f"split artifact lacks the tensor '{key}'")
            if tensors[key].dtype != dtype:
                raise ArtifactError(f"split artifact tensor '{key}' has dtype {tensors[key].dtype}, expected {dtype}")
        try:
            return cls(**{k: tensors[k].cpu().numpy() for k in expected}, seed=seed)
        except ValueError as exc:
            raise ArtifactError(f"split artifact is inconsistent: {exc}") from None


def own_split(dataset: HashDataset, draw: bool = False) -> PredefinedSplit | None:
    """The dataset's own split that :func:`make_split` keeps; ``None`` when it draws one (``draw``: always)."""
    return None if draw else dataset.predefined_split()


def size_differences(own: PredefinedSplit, declared: Mapping[str, int | None]) -> list[str]:
    """``"query 1,700 (declared 1,000)"`` for each list of ``own`` whose size differs from ``declared``."""
    return [f"{key} {len(getattr(own, key)):,} (declared {declared[key]:,})" for key in ("query", "train", "database")
            if declared.get(key) is not None and declared[key] != len(getattr(own, key))]


def make_split(
    dataset: HashDataset, *, num_query: int, num_train: int, seed: int, num_database: int | None = None,
    draw: bool = False, target_min_count: int = 1, target_zero_label: bool = False,
) -> Split:
    """The split of ``dataset`` for ``seed`` (deterministic), with one target label per query.

    A dataset with a predefined split keeps it (the sizes are ignored) unless ``draw``.  Otherwise
    a seeded permutation of all items gives ``num_query`` queries, then the database (the rest, or
    its first ``num_database``), and ``num_train`` training items drawn from the database.  The
    targets follow :func:`select_target_labels` with ``min_count`` and ``zero_label`` given by
    ``target_min_count`` and ``target_zero_label``.
    """
    split_rng, target_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    labels = dataset.labels
    n = len(dataset)
    predefined = own_split(dataset, draw)
    if predefined is not None:
        train, query, database = (
            np.sort(np.asarray(a, dtype=np.int64).reshape(-1))
            for a in (predefined.train, predefined.query, predefined.database)
        )
        name = getattr(dataset, "name", "") or type(dataset).__name__
        for key, arr in (("train", train), ("query", query), ("database", database)):
            if len(arr) == 0:
                raise DataError(f"dataset '{name}': its predefined {key} split is empty")
            if arr[0] < 0 or arr[-1] >= n:
                raise DataError(f"dataset '{name}': its predefined {key} split has indices outside [0, {n})")
        for other, arr in (("database", database), ("train", train)):
            shared = np.intersect1d(query, arr)
            if shared.size:
                raise DataError(
                    f"dataset '{name}': its predefined query and {other} splits share {shared.size} items (item "
                    f"{int(shared[0])} first); queries must be unseen, so the two must be disjoint"
                )
    else:
        train, query, database = _draw_split(n, num_query, num_train, num_database, split_rng)
    targets, _ = select_target_labels(labels[query], labels[database], target_rng,
                                      min_count=target_min_count, zero_label=target_zero_label)
    return Split(train=train, query=query, database=database, target_labels=targets, seed=seed)


def check_split_sizes(n: int, num_query: int, num_train: int, num_database: int | None = None) -> int:
    """The database size of a drawn split of ``n`` items; ConfigError if the sizes cannot fit.

    The planner calls it as soon as a dataset is opened, so impossible sizes fail before any work.
    """
    for key, value in (("num_query", num_query), ("num_train", num_train), ("num_database", num_database)):
        if value is not None and value < 1:
            raise ConfigError(f"split: '{key}' must be >= 1 (got {value})")
    if num_query >= n:
        raise ConfigError(
            f"split: num_query ({num_query}) must be smaller than the dataset ({n} items) to leave a database"
        )
    available = n - num_query
    db_size = available if num_database is None else num_database
    if db_size > available:
        raise ConfigError(
            f"split: num_query ({num_query}) + num_database ({num_database}) exceed the dataset's {n} items"
        )
    if num_train > db_size:
        raise ConfigError(
            f"split: num_train ({num_train}) exceeds the database ({db_size} items = "
            + ("num_database" if num_database is not None else f"{n} items - num_query {num_query}")
            + "); training items are drawn from the database"
        )
    return db_size


def _draw_split(
    n: int, num_query: int, num_train: int, num_database: int | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    db_size = check_split_sizes(n, num_query, num_train, num_database)
    perm = rng.permutation(n).astype(np.int64)
    query = perm[:num_query]
    database = perm[num_query : num_query + db_size]
    train = rng.choice(database, size=num_train, replace=False)
    return np.sort(train), np.sort(query), np.sort(database)


def select_target_labels(
    query_labels: np.ndarray, database_labels: np.ndarray, rng: np.random.Generator, *,
    min_count: int = 1, zero_label: bool = False,
) -> tuple[np.ndarray, int]:
    """One target label per query, and the number of queries that needed the fallback.

    Candidates are the distinct label vectors that label at least ``min_count`` database items,
    the all-zero vector only when ``zero_label``.  Each query gets one drawn uniformly from the
    candidates that share no class with it; a query with none (e.g. one that has every class)
    gets one of the candidates sharing the fewest classes, and is counted.

    The defaults are SAAT's ``select_target_label``.  The CgAT group's DHTA (TAD ``dhta.py``)
    keeps only the vectors that occur more than its n_t = 9 anchors times (``min_count`` 10, so
    that an anchor set of distinct items exists) and counts the all-zero vector like any other.
    """
    if isinstance(min_count, bool) or int(min_count) != min_count or min_count < 1:
        raise ValueError(f"min_count must be a positive integer, got {min_count!r}")
    q = np.asarray(query_labels)
    db = np.asarray(database_labels)
    if q.ndim != 2 or db.ndim != 2 or q.shape[1] != db.shape[1]:
        raise ValueError(f"label matrices must be 2-D with the same width, got {q.shape} and {db.shape}")
    candidates, counts = np.unique((db != 0).astype(np.uint8), axis=0, return_counts=True)
    candidates = candidates[(counts >= min_count) & (candidates.any(axis=1) | zero_label)]
    if len(candidates) == 0:
        if not zero_label and not db.any():
            raise DataError("no database item has a label, so there is no target label for targeted attacks")
        raise DataError(f"no database label vector labels {min_count} or more items, so there is no target "
                        "label for targeted attacks; lower the grid's targets.min_count (e.g. --set "
                        "'targets={min_count: 1}') or use a larger dataset")
    # One uniform draw per query up front: the choices do not depend on the chunking below.
    draws = rng.random(len(q))
    cand_f = candidates.T.astype(np.float32)
    chosen = np.empty(len(q), dtype=np.int64)
    fallbacks = 0
    for start in range(0, len(q), _ROW_CHUNK):
        stop = min(start + _ROW_CHUNK, len(q))
        shared = (q[start:stop] != 0).astype(np.float32) @ cand_f  # exact: counts are small integers
        fewest = shared.min(axis=1, keepdims=True)
        fallbacks += int(np.count_nonzero(fewest[:, 0] > 0))
        eligible = shared == fewest
        count = eligible.sum(axis=1)
        pick = np.minimum((draws[start:stop] * count).astype(np.int64), count - 1)  # rank among eligible
        chosen[start:stop] = np.argmax(np.cumsum(eligible, axis=1, dtype=np.int32) > pick[:, None], axis=1)
    return candidates[chosen].astype(np.uint8), fallbacks
