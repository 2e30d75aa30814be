"""Retrieval metrics for binary hash codes: MAP@k, precision@N, recall@N, precision within a
Hamming radius and precision-recall curves.

Conventions shared by every function:

* Codes are ``±1`` matrices (queries ``Q×K``, database ``N×K``); labels are multi-hot
  ``0/1`` matrices (``Q×C`` and ``N×C``). NumPy arrays and torch tensors of any integer,
  float or bool dtype are accepted; computation happens on the CPU.
* Database item ``j`` is relevant to query ``q`` iff the two share at least one label,
  i.e. ``y_q · l_j > 0``.
* The ranking orders the database by ascending Hamming distance
  ``d = (K − b_q·b_j) / 2`` and breaks ties by ascending database index, so results are
  exact and deterministic (no dependence on an unstable sort).

t-MAP (the targeted-attack metric) is :func:`map_at_k` called with the *target* label
vectors in place of the query labels; :data:`t_map` is provided as an alias.

Algorithm. Codes and labels are bit-packed into uint64 words, so a distance is
``popcount(q XOR b)`` and relevance is ``(y AND l) != 0``. Distances are small integers, so
the (distance, index) ranking is a counting sort: no comparison sort and no (distance,
index) keys. Two implementations give identical results:

* the compiled kernel ``hashbench.retrieval._ranking`` (``hashbench/retrieval/_ranking.c``, built at install
  time where a C compiler exists): per query, a histogram of the distances, then one pass in
  database order that hands out positions within each distance (so ties keep index order),
  writing only the relevance byte at each position (codes up to 32,767 bits); see
  :func:`ranking_backend`;
* NumPy, the fallback and for longer codes: uint8 distances (uint16 beyond 255 bits) and
  relevance bytes per block, then per row NumPy's stable sort, which on small integers is a
  radix sort.

Either way only the first ``depth`` ranks are kept (``topk`` for MAP@k, ``max(ns)`` for
P@N and R@N), as the ascending ranks of the relevant items (plus, for recall, each query's
count of relevant items in the whole database).  Precision within a Hamming radius needs no
ranking: the same distance and relevance pass counts, per query, the items within the
radius and the relevant ones among them (``radius_counts`` in the kernel). Queries are processed in blocks by
``torch.get_num_threads()`` threads (both implementations release the GIL); a block holds
at most ``max_elements`` (query, item) pairs and is reduced to per-query numbers inside its
thread, so results do not depend on the block size.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence, TypeVar

import numpy as np
import torch

from hashbench.retrieval.shapes import check_agree

try:
    from hashbench.retrieval import _ranking as _kernel  # compiled by setup.py where a C compiler exists
except ImportError:  # pragma: no cover - depends on the installation
    _kernel = None

__all__ = ["map_at_k", "t_map", "precision_at_n", "recall_at_n", "precision_at_radius", "pr_curve", "retrieval_metrics",
           "ranking_backend", "DEFAULT_MAX_ELEMENTS", "DEFAULT_RADIUS"]

#: Default bound on the (query, database item) pairs held in memory at once.
DEFAULT_MAX_ELEMENTS = 2**22

#: The Hamming radius of :func:`precision_at_radius` by default (DHTA, DeepHash-pytorch: r = 2).
DEFAULT_RADIUS = 2

# Pairs per step when computing distances: the temporaries stay in cache and are reused,
# instead of page-faulting fresh allocations as large as the whole block.
_STEP_ELEMENTS = 2**17

# Relative slack when computing floor(r·T): e.g. 0.29 * 100 == 28.999999999999996.
_FLOOR_RTOL = 1e-9

_BYTE_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)

_T = TypeVar("_T")


# ---------------------------------------------------------------------------
# Input handling


def _as_float_array(x: Any, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
        if t.is_floating_point() and t.dtype not in (torch.float32, torch.float64):
            t = t.float()  # e.g. bfloat16, which NumPy cannot hold
        x = t.numpy()
    a = np.asarray(x)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D matrix, got shape {a.shape}")
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_) or np.iscomplexobj(a):
        raise ValueError(f"{name} must be real-valued, got dtype {a.dtype}")
    return np.ascontiguousarray(a, dtype=np.float32)


def _prepare(
    query_codes: Any, db_codes: Any, query_labels: Any, db_labels: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Convert to float32 arrays and validate shapes and values."""
    qb = _as_float_array(query_codes, "query_codes")
    db = _as_float_array(db_codes, "db_codes")
    ql = _as_float_array(query_labels, "query_labels")
    dl = _as_float_array(db_labels, "db_labels")
    check_agree("code length mismatch", "query_codes", qb.shape, 1, "db_codes", db.shape, 1, "K")
    check_agree("row mismatch", "query_codes", qb.shape, 0, "query_labels", ql.shape, 0, "Q")
    check_agree("row mismatch", "db_codes", db.shape, 0, "db_labels", dl.shape, 0, "N")
    check_agree("class count mismatch", "query_labels", ql.shape, 1, "db_labels", dl.shape, 1, "C")
    if qb.shape[0] == 0 or db.shape[0] == 0 or qb.shape[1] == 0:
        raise ValueError(f"empty input: query_codes {qb.shape}, db_codes {db.shape}")
    for name, a in (("query_codes", qb), ("db_codes", db)):
        bad = np.abs(a) != 1
        if bad.any():
            raise ValueError(f"{name} must contain only -1 and +1, found {a[bad][0]!r}")
    for name, a in (("query_labels", ql), ("db_labels", dl)):
        if ((a != 0) & (a != 1)).any():
            raise ValueError(f"{name} must be multi-hot with values 0/1")
    return qb, db, ql, dl


def ranking_backend() -> str:
    """``"compiled"`` when the C ranking kernel is installed, else ``"numpy"``."""
    return "numpy" if _kernel is None else "compiled"


def _check_positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


# ---------------------------------------------------------------------------
# Ranking


def _pack_bits(mask: np.ndarray) -> np.ndarray:
    """Pack a (rows × bits) boolean matrix into (rows × words) uint64, zero-padded."""
    packed = np.packbits(mask, axis=1, bitorder="little")
    pad = -packed.shape[1] % 8
    if pad:
        packed = np.pad(packed, ((0, 0), (0, pad)))
    return np.ascontiguousarray(packed).view(np.uint64)


def _popcount(words: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Per-element bit count of a uint64 array, written to the uint8 array ``out``."""
    if hasattr(np, "bitwise_count"):  # NumPy >= 2.0
        return np.bitwise_count(words, out=out)
    as_bytes = _BYTE_POPCOUNT[np.ascontiguousarray(words).view(np.uint8)]
    return as_bytes.reshape(*words.shape, 8).sum(axis=-1, dtype=np.uint8, out=out)


class _Ranker:
    """Packed database plus the machinery to rank blocks of queries against it."""

    def __init__(
        self, qb: np.ndarray, db: np.ndarray, ql: np.ndarray, dl: np.ndarray, depth: int | None = None
    ) -> None:
        n_db, k_bits = db.shape
        # uint8 distances up to 255 bits, uint16 beyond: NumPy's stable sort is a radix sort for both
        self.dist_dtype = np.min_scalar_type(k_bits)
        self.n_db, self.depth = n_db, n_db if depth is None else depth
        self.q_words, self.q_labels = _pack_bits(qb > 0), _pack_bits(ql != 0)
        db_words, dl_words = _pack_bits(db > 0), _pack_bits(dl != 0)
        # the kernel's distances share a uint16 with a relevance bit: codes of up to MAX_BITS bits
        self.kernel = _kernel if _kernel is not None and k_bits <= _kernel.MAX_BITS else None
        if self.kernel is not None:  # it reads whole database rows
            self.db_rows, self.dl_rows = db_words, dl_words
        else:  # one contiguous array per word, so each XOR/AND streams a single column
            self.db_words = [np.ascontiguousarray(db_words[:, w]) for w in range(db_words.shape[1])]
            self.db_labels = [np.ascontiguousarray(dl_words[:, w]) for w in range(dl_words.shape[1])]

    def relevant_ranks(self, start: int, stop: int, totals: np.ndarray | None = None) -> list[np.ndarray]:
        """For each query of ``start:stop``, the ascending 1-based ranks of its relevant items
        within the first ``depth`` ranks.  ``totals`` (int64, ``stop − start``), if given,
        receives each query's number of relevant items in the whole database."""
        if self.kernel is not None:
            return self._kernel_ranks(start, stop, totals)
        dist, rel = self._distances(start, stop)
        if totals is not None:
            rel.sum(axis=1, out=totals)
        # A stable sort keeps equal distances in database order: exactly the (distance, index)
        # ranking.  On small integers it is a linear-time radix sort, several times faster than
        # sorting (distance, index) keys.  One row at a time, the order, the gathered relevance
        # and its nonzero positions stay in cache.
        out = []
        for i in range(stop - start):
            order = np.argsort(dist[i], kind="stable")[: self.depth]
            ranks = np.flatnonzero(np.take(rel[i], order))
            ranks += 1
            out.append(ranks)
        return out

    def radius_counts(self, start: int, stop: int, radius: int) -> tuple[np.ndarray, np.ndarray]:
        """For each query of ``start:stop``: (items within Hamming distance ``radius``, relevant
        items among them), two int64 arrays."""
        within = np.empty(stop - start, dtype=np.int64)
        hits = np.empty(stop - start, dtype=np.int64)
        if self.kernel is not None:
            q_words, q_labels = self.q_words[start:stop], self.q_labels[start:stop]
            self.kernel.radius_counts(q_words, self.db_rows, q_labels, self.dl_rows,
                                      q_words.shape[1], q_labels.shape[1], radius, within, hits)
            return within, hits
        dist, rel = self._distances(start, stop)
        inside = dist <= radius
        inside.sum(axis=1, out=within)
        np.logical_and(inside, rel, out=inside).sum(axis=1, out=hits)
        return within, hits

    def _distances(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """NumPy path: the (queries × database) Hamming distances and relevance of ``start:stop``."""
        n_db, n_rows = self.n_db, stop - start
        dist = np.empty((n_rows, n_db), dtype=self.dist_dtype)
        rel = np.empty((n_rows, n_db), dtype=bool)
        step = max(1, _STEP_ELEMENTS // n_db)
        scratch = np.empty((min(step, n_rows), n_db), dtype=np.uint64)
        counts = np.empty(scratch.shape, dtype=np.uint8)
        for a in range(0, n_rows, step):
            b = min(a + step, n_rows)
            d, x, pc, r = dist[a:b], scratch[: b - a], counts[: b - a], rel[a:b]
            q_words = self.q_words[start + a : start + b]
            q_labels = self.q_labels[start + a : start + b]
            # Hamming distance d = popcount(q XOR b), summed over the 64-bit words
            for w, column in enumerate(self.db_words):
                _popcount(np.bitwise_xor(q_words[:, w, None], column[None, :], out=x), out=pc)
                if w == 0:
                    d[...] = pc
                else:
                    d += pc
            for w, column in enumerate(self.db_labels):
                np.bitwise_and(q_labels[:, w, None], column[None, :], out=x)
                if w == 0:
                    np.not_equal(x, 0, out=r)
                else:
                    r |= x != 0
        return dist, rel

    def _kernel_ranks(self, start: int, stop: int, totals: np.ndarray | None) -> list[np.ndarray]:
        """:meth:`relevant_ranks` by the compiled counting sort (``hashbench/retrieval/_ranking.c``)."""
        ranks = np.empty((stop - start, self.depth), dtype=np.int64)
        counts = np.empty(stop - start, dtype=np.int64)
        q_words, q_labels = self.q_words[start:stop], self.q_labels[start:stop]
        extra = () if totals is None else (totals,)
        self.kernel.relevant_ranks(q_words, self.db_rows, q_labels, self.dl_rows,
                                   q_words.shape[1], q_labels.shape[1], self.depth, ranks, counts, *extra)
        return [ranks[i, :c] for i, c in enumerate(counts.tolist())]


def _in_blocks(n_query: int, n_db: int, max_elements: int, work: Callable[[int, int], _T]) -> list[_T]:
    """``work(start, stop)`` over blocks of queries, in query order, on ``torch.get_num_threads()``
    threads; a block holds at most ``max_elements`` (query, item) pairs per worker."""
    max_elements = _check_positive_int(max_elements, "max_elements")
    workers = max(1, min(torch.get_num_threads(), n_query))
    rows = max(1, min(max_elements // (n_db * workers), -(-n_query // workers)))
    spans = [(a, min(a + rows, n_query)) for a in range(0, n_query, rows)]
    if workers == 1 or len(spans) == 1:
        return [work(a, b) for a, b in spans]
    # Only `workers` blocks run at a time and each is reduced to small per-query
    # results before its memory is released, so submitting them all is safe.
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda span: work(*span), spans))


def _per_query(
    qb: np.ndarray,
    db: np.ndarray,
    ql: np.ndarray,
    dl: np.ndarray,
    depth: int,
    max_elements: int,
    reduce: Callable[[list[np.ndarray]], _T],
) -> list[_T]:
    """Rank every query and apply ``reduce`` to each block's relevant ranks
    (:meth:`_Ranker.relevant_ranks`).

    Returns the per-block results in query order. At most ``max_elements`` pairs are
    ranked at once, split over the worker threads.
    """
    ranker = _Ranker(qb, db, ql, dl, depth)
    return _in_blocks(qb.shape[0], db.shape[0], max_elements, lambda a, b: reduce(ranker.relevant_ranks(a, b)))


# ---------------------------------------------------------------------------
# Metrics


def _average_precision(ranks: list[np.ndarray]) -> np.ndarray:
    """Per query: the mean over its relevant items of (r-th relevant) r / (its rank); 0 without any."""
    nth = np.arange(1, max(r.size for r in ranks) + 1, dtype=np.float64)  # shared by every row
    return np.array([(nth[: r.size] / r).mean() if r.size else 0.0 for r in ranks])


def map_at_k(
    query_codes: Any,
    db_codes: Any,
    query_labels: Any,
    db_labels: Any,
    topk: int | None = None,
    *,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> float:
    """Mean average precision over the top ``topk`` ranks (HashNet definition).

    Per query, with ``R_k`` relevant items among the first ``k`` ranks and ``pos_r`` the
    rank of the r-th of them, ``AP = (1/R_k) Σ_r r / pos_r``; a query with ``R_k = 0``
    scores 0 and still counts in the mean. ``topk=None`` or ``topk ≥ N`` uses the whole
    database. ``max_elements`` caps the (query, item) pairs held in memory at once.
    """
    qb, db, ql, dl = _prepare(query_codes, db_codes, query_labels, db_labels)
    if topk is not None:
        topk = _check_positive_int(topk, "topk")
    depth = db.shape[0] if topk is None else min(topk, db.shape[0])
    parts = _per_query(qb, db, ql, dl, depth, max_elements, _average_precision)
    return float(np.concatenate(parts).mean())


#: t-MAP: :func:`map_at_k` with the attack's target labels passed as ``query_labels``.
t_map = map_at_k


def _depths(ns: Sequence[int], n_db: int) -> np.ndarray:
    """The validated cut-offs ``ns`` of P@N and R@N, each clamped to the database size."""
    n_list = [_check_positive_int(n, "every value of ns") for n in ns]
    if not n_list:
        raise ValueError("ns must contain at least one value")
    return np.minimum(np.asarray(n_list, dtype=np.int64), n_db)


def precision_at_n(
    query_codes: Any,
    db_codes: Any,
    query_labels: Any,
    db_labels: Any,
    ns: Sequence[int] = range(100, 1001, 100),
    *,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> np.ndarray:
    """Mean over queries of (#relevant in the top N) / N, for every N in ``ns``.

    An N larger than the database size is clamped to it, so it reports the precision
    of the whole ranked database. Returns a float64 array aligned with ``ns``.
    """
    qb, db, ql, dl = _prepare(query_codes, db_codes, query_labels, db_labels)
    eff = _depths(ns, db.shape[0])

    def hits(ranks: list[np.ndarray]) -> np.ndarray:
        """Per query and N: the relevant items within the first N ranks."""
        return np.stack([np.searchsorted(r, eff, side="right") for r in ranks])

    parts = _per_query(qb, db, ql, dl, int(eff.max()), max_elements, hits)
    return np.concatenate(parts).sum(axis=0) / (eff * qb.shape[0])


def recall_at_n(
    query_codes: Any,
    db_codes: Any,
    query_labels: Any,
    db_labels: Any,
    ns: Sequence[int] = range(100, 1001, 100),
    *,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> np.ndarray:
    """Mean over queries of (#relevant in the top N) / (#relevant in the whole database), for
    every N in ``ns``.

    The ranking is MAP's (ascending Hamming distance, ties by database index).  A query with
    no relevant item in the database scores 0 and still counts, as in MAP (and in DHTA's
    ``evaluation.pr_curve``), so the value is always defined.  An N larger than the database
    is clamped to it.  Returns a float64 array aligned with ``ns``.
    """
    qb, db, ql, dl = _prepare(query_codes, db_codes, query_labels, db_labels)
    eff = _depths(ns, db.shape[0])
    ranker = _Ranker(qb, db, ql, dl, int(eff.max()))

    def recalls(start: int, stop: int) -> np.ndarray:
        """Per query and N: its recall (0 for a query without relevant items)."""
        totals = np.empty(stop - start, dtype=np.int64)
        ranks = ranker.relevant_ranks(start, stop, totals)
        hits = np.stack([np.searchsorted(r, eff, side="right") for r in ranks])
        return hits / np.maximum(totals, 1)[:, None]  # hits are 0 where the total is

    parts = _in_blocks(qb.shape[0], db.shape[0], max_elements, recalls)
    return np.concatenate(parts).mean(axis=0)


def precision_at_radius(
    query_codes: Any,
    db_codes: Any,
    query_labels: Any,
    db_labels: Any,
    r: int = DEFAULT_RADIUS,
    *,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> float:
    """Precision within Hamming radius ``r`` (hash lookup), averaged over queries.

    Per query, among the database items at Hamming distance ``≤ r`` the fraction that is
    relevant; a query with no item within ``r`` scores 0 and still counts in the mean, as in
    DHTA's ``evaluation.hamming_precision`` (the usual "precision within Hamming radius 2"
    of the hashing literature, r = 2 by default).  No ranking is involved, so ties do not
    matter.  ``r`` may exceed ``K`` (every item is then within the radius).
    """
    qb, db, ql, dl = _prepare(query_codes, db_codes, query_labels, db_labels)
    if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or r < 0:
        raise ValueError(f"r must be a non-negative integer Hamming radius, got {r!r}")
    radius = int(min(r, qb.shape[1]))
    ranker = _Ranker(qb, db, ql, dl)

    def precisions(start: int, stop: int) -> np.ndarray:
        within, hits = ranker.radius_counts(start, stop, radius)
        return hits / np.maximum(within, 1)  # hits are 0 where nothing is within

    parts = _in_blocks(qb.shape[0], db.shape[0], max_elements, precisions)
    return float(np.concatenate(parts).mean())


def pr_curve(
    query_codes: Any,
    db_codes: Any,
    query_labels: Any,
    db_labels: Any,
    recall_levels: Sequence[float] | np.ndarray | None = None,
    *,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> tuple[np.ndarray, np.ndarray]:
    """Precision at fixed recall levels, averaged over queries.

    For a query with ``T`` relevant database items and a level ``r``, let
    ``n = floor(r·T)``; its precision is ``n / (rank where the n-th relevant item
    appears)``. Levels with ``n = 0`` are skipped for that query (so queries with
    ``T = 0`` contribute nothing); each level is averaged over the queries where it is
    defined and is NaN where none is. Default levels: 0.01, 0.02, …, 1.00.
    Returns ``(recall_levels, precision)`` as float64 arrays.
    """
    qb, db, ql, dl = _prepare(query_codes, db_codes, query_labels, db_labels)
    if recall_levels is None:
        levels = np.arange(1, 101, dtype=np.float64) / 100.0
    else:
        levels = np.asarray(recall_levels, dtype=np.float64).reshape(-1)
        if levels.size == 0 or not np.all((levels > 0) & (levels <= 1)):
            raise ValueError("recall_levels must be a non-empty sequence of values in (0, 1]")

    def precision_at_levels(ranks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Per query and level: precision (0 where undefined) and whether it is defined."""
        prec = np.zeros((len(ranks), levels.size))
        defined = np.zeros((len(ranks), levels.size), dtype=bool)
        for i, r in enumerate(ranks):
            target = levels * float(r.size)
            n = np.floor(target + _FLOOR_RTOL * np.maximum(target, 1.0)).astype(np.int64)
            defined[i] = n > 0
            # the rank where the n-th relevant item appears; undefined levels read rank 1
            prec[i] = np.where(defined[i], n / r[np.maximum(n - 1, 0)] if r.size else 0.0, 0.0)
        return prec, defined

    parts = _per_query(qb, db, ql, dl, db.shape[0], max_elements, precision_at_levels)
    prec = np.concatenate([p for p, _ in parts])
    n_defined = np.concatenate([d for _, d in parts]).sum(axis=0)
    precision = np.full(levels.size, np.nan)
    has = n_defined > 0
    precision[has] = prec.sum(axis=0)[has] / n_defined[has]
    return levels, precision


def _finite_or_none(values: Any) -> list[float | None]:
    return [float(v) if math.isfinite(float(v)) else None for v in values]


def retrieval_metrics(query_codes: Any, db_codes: Any, query_labels: Any, db_labels: Any, *, topk: int | None,
                      pn: Sequence[int], radius: int = DEFAULT_RADIUS, target_labels: Any = None) -> dict[str, Any]:
    """Every ranking metric an evaluation records, JSON-ready (undefined values as ``None``).

    ``map`` (MAP@``topk``), ``t_map`` (the same against ``target_labels``; ``None`` without them),
    ``pr_curve``, ``p_at_n`` and ``r_at_n`` at the depths ``pn`` that the database holds (its size
    when none does), and ``precision_radius`` within Hamming ``radius``.
    """
    n_db = len(db_codes)
    ns = [n for n in pn if n <= n_db] or [n_db]
    recall, precision = pr_curve(query_codes, db_codes, query_labels, db_labels)
    return {
        "map": map_at_k(query_codes, db_codes, query_labels, db_labels, topk=topk),
        "t_map": None if target_labels is None else map_at_k(query_codes, db_codes, target_labels, db_labels, topk=topk),
        "pr_curve": {"recall": _finite_or_none(recall), "precision": _finite_or_none(precision)},
        "p_at_n": {"n": ns, "precision": _finite_or_none(precision_at_n(query_codes, db_codes, query_labels, db_labels, ns))},
        # hash lookup (items within a Hamming radius) and recall at the P@N depths; a query with no
        # item within the radius, or no relevant item at all, scores 0
        "precision_radius": {"radius": radius,
                             "precision": precision_at_radius(query_codes, db_codes, query_labels, db_labels, radius)},
        "r_at_n": {"n": ns, "recall": _finite_or_none(recall_at_n(query_codes, db_codes, query_labels, db_labels, ns))},
    }
