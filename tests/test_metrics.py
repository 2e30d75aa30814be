"""Tests for hashbench.retrieval.metrics: hand-computed cases and a naive per-query reference."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from hashbench.retrieval import metrics
from hashbench.retrieval.metrics import map_at_k, pr_curve, precision_at_n, t_map

# Hand example: one query with code [+1, +1] against six items (K = 2).
# Distances: item0 2, item1 0, item2 1, item3 0, item4 1, item5 2.
# Ranking by (distance, index): item1, item3, item2, item4, item0, item5.
# Relevant (share class 0): items 2, 3, 5, so the relevance along the ranking is
#   rank: 1 2 3 4 5 6
#   rel:  0 1 1 0 0 1
# Breaking ties by descending index instead would give item3, item1, item4, item2,
# item5, item0 -> rel 1 0 0 1 1 0 and AP (1/1 + 2/4 + 3/5)/3 = 0.7, not 5/9.
HAND_DB_CODES = np.array([[-1, -1], [1, 1], [1, -1], [1, 1], [-1, 1], [-1, -1]])
HAND_DB_LABELS = np.array([[0, 1, 0], [0, 1, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [1, 0, 0]])
HAND_Q_CODES = np.array([[1, 1]])
HAND_Q_LABELS = np.array([[1, 0, 0]])
# A second query whose class (2) no database item has: it has no relevant item.
HAND_Q2_CODES = np.array([[1, 1], [-1, 1]])
HAND_Q2_LABELS = np.array([[1, 0, 0], [0, 0, 1]])


@pytest.fixture(autouse=True, params=["compiled", "numpy"])
def ranking(request, monkeypatch):
    """Every test runs on both implementations of the ranking: they must agree exactly."""
    if request.param == "numpy":
        monkeypatch.setattr(metrics, "_kernel", None)
    elif metrics._kernel is None:
        message = "hashbench.retrieval._ranking is not built (no C compiler when hashbench was installed)"
        if os.environ.get("HASHBENCH_REQUIRE_KERNEL"):
            pytest.fail(message)
        pytest.skip(message)
    assert metrics.ranking_backend() == request.param
    return request.param


def hand(q_codes=HAND_Q_CODES, q_labels=HAND_Q_LABELS):
    return q_codes, HAND_DB_CODES, q_labels, HAND_DB_LABELS


def test_map_hand_whole_database_index_tie_break():
    # Relevant at ranks 2, 3, 6: AP = (1/2 + 2/3 + 3/6) / 3 = (5/3) / 3 = 5/9.
    assert map_at_k(*hand()) == pytest.approx(5 / 9, abs=1e-12)
    assert map_at_k(*hand(), topk=6) == pytest.approx(5 / 9, abs=1e-12)
    assert map_at_k(*hand(), topk=1000) == pytest.approx(5 / 9, abs=1e-12)


def test_map_hand_topk():
    # topk=3: ranks 2, 3 are relevant, R_3 = 2: (1/2 + 2/3) / 2 = 7/12.
    assert map_at_k(*hand(), topk=3) == pytest.approx(7 / 12, abs=1e-12)
    # topk=2 (< 3 relevant in total): only rank 2, R_2 = 1: (1/2) / 1 = 1/2.
    assert map_at_k(*hand(), topk=2) == pytest.approx(0.5, abs=1e-12)
    # topk=1: the first item is irrelevant, R_1 = 0 -> AP = 0.
    assert map_at_k(*hand(), topk=1) == 0.0


def test_map_zero_relevant_query_counts_as_zero():
    # Query 1 has AP 5/9, query 2 has no relevant item and scores 0: (5/9 + 0) / 2 = 5/18.
    assert map_at_k(*hand(HAND_Q2_CODES, HAND_Q2_LABELS)) == pytest.approx(5 / 18, abs=1e-12)


def test_t_map_is_map_with_target_labels():
    target = np.array([[0, 1, 0]])
    assert t_map(HAND_Q_CODES, HAND_DB_CODES, target, HAND_DB_LABELS) == map_at_k(
        HAND_Q_CODES, HAND_DB_CODES, target, HAND_DB_LABELS
    )


def test_precision_at_n_hand():
    # rel along the ranking 0 1 1 0 0 1: P@1 = 0/1, P@2 = 1/2, P@3 = 2/3, P@6 = 3/6;
    # N = 10 exceeds the database and is clamped to 6: 3/6.
    got = precision_at_n(*hand(), ns=[1, 2, 3, 6, 10])
    np.testing.assert_allclose(got, [0.0, 1 / 2, 2 / 3, 1 / 2, 1 / 2], atol=1e-12)
    # The zero-relevant second query contributes 0 to every mean: halve each value.
    got2 = precision_at_n(*hand(HAND_Q2_CODES, HAND_Q2_LABELS), ns=[1, 2, 3, 6, 10])
    np.testing.assert_allclose(got2, [0.0, 1 / 4, 1 / 3, 1 / 4, 1 / 4], atol=1e-12)


def test_pr_curve_hand():
    # T = 3 relevant at ranks 2, 3, 6.
    # r = 0.2: floor(0.6) = 0 -> undefined for the only query with T > 0 -> NaN.
    # r = 1/3: n = 1, first relevant at rank 2 -> 1/2.
    # r = 0.5: n = floor(1.5) = 1 -> 1/2.
    # r = 2/3: n = 2, second relevant at rank 3 -> 2/3.
    # r = 1.0: n = 3, third relevant at rank 6 -> 3/6.
    levels_in = [0.2, 1 / 3, 0.5, 2 / 3, 1.0]
    expected = [np.nan, 1 / 2, 1 / 2, 2 / 3, 1 / 2]
    levels, prec = pr_curve(*hand(), recall_levels=levels_in)
    np.testing.assert_allclose(levels, levels_in)
    np.testing.assert_allclose(prec, expected, atol=1e-12)
    # The T = 0 query contributes nothing.
    _, prec2 = pr_curve(*hand(HAND_Q2_CODES, HAND_Q2_LABELS), recall_levels=levels_in)
    np.testing.assert_allclose(prec2, expected, atol=1e-12)


def test_pr_curve_default_levels_and_floor_tolerance():
    # 200 identical codes, so the ranking is the index order; even indices are relevant:
    # T = 100 and the n-th relevant item is at rank 2n - 1.
    n_db = 200
    db_codes = np.ones((n_db, 3))
    db_labels = np.zeros((n_db, 2))
    db_labels[::2, 0] = 1
    db_labels[1::2, 1] = 1
    levels, prec = pr_curve(np.ones((1, 3)), db_codes, np.array([[1, 0]]), db_labels)
    np.testing.assert_allclose(levels, np.arange(1, 101) / 100)
    # 0.29 * 100 == 28.999999999999996 in floating point; floor must still give 29:
    # precision 29 / (2*29 - 1) = 29/57 (28/55 would mean the tolerance is missing).
    assert prec[28] == pytest.approx(29 / 57, abs=1e-12)
    n = np.arange(1, 101)
    np.testing.assert_allclose(prec, n / (2 * n - 1), atol=1e-12)


def test_pr_curve_all_queries_without_relevant_gives_nan():
    _, prec = pr_curve(np.ones((1, 2)), HAND_DB_CODES, np.array([[0, 0, 1]]), HAND_DB_LABELS)
    assert np.isnan(prec).all()


# ---------------------------------------------------------------------------
# Independent naive reference: plain NumPy, one query at a time.


def ref_ranked_relevance(qb, db, ql, dl):
    k = qb.shape[1]
    for q in range(qb.shape[0]):
        dist = 0.5 * (k - db @ qb[q])
        order = np.argsort(dist, kind="stable")
        yield (dl[order] @ ql[q]) > 0


def ref_map(qb, db, ql, dl, topk):
    aps = []
    for rel in ref_ranked_relevance(qb, db, ql, dl):
        k = len(rel) if topk is None else min(topk, len(rel))
        top = rel[:k]
        r_k = int(top.sum())
        if r_k == 0:
            aps.append(0.0)
            continue
        pos = np.flatnonzero(top) + 1
        aps.append(sum((r + 1) / pos[r] for r in range(r_k)) / r_k)
    return float(np.mean(aps))


def ref_precision_at_n(qb, db, ql, dl, ns):
    out = []
    rels = list(ref_ranked_relevance(qb, db, ql, dl))
    for n in ns:
        m = min(n, db.shape[0])
        out.append(np.mean([rel[:m].sum() / m for rel in rels]))
    return np.array(out)


def ref_pr(qb, db, ql, dl, levels):
    per_level = [[] for _ in levels]
    for rel in ref_ranked_relevance(qb, db, ql, dl):
        total = int(rel.sum())
        pos = np.flatnonzero(rel) + 1
        for i, r in enumerate(levels):
            n = int(np.floor(r * total + 1e-9))
            if n > 0:
                per_level[i].append(n / pos[n - 1])
    return np.array([np.mean(v) if v else np.nan for v in per_level])


def random_problem(seed, n_query=50, n_db=300, bits=4, classes=5, density=0.25):
    rng = np.random.default_rng(seed)
    qb = rng.choice([-1, 1], size=(n_query, bits))
    db = rng.choice([-1, 1], size=(n_db, bits))
    ql = (rng.random((n_query, classes)) < density).astype(np.int64)
    dl = (rng.random((n_db, classes)) < density).astype(np.int64)
    ql[:3] = 0  # some queries with no relevant item at all
    dl[:10] = 0
    return qb, db, ql, dl


@pytest.mark.parametrize("seed,bits", [(0, 4), (1, 4), (2, 8), (3, 3)])
@pytest.mark.parametrize("topk", [None, 1, 5, 37, 100, 299, 300, 5000])
def test_map_matches_reference(seed, bits, topk):
    problem = random_problem(seed, bits=bits)
    assert map_at_k(*problem, topk=topk) == pytest.approx(ref_map(*problem, topk), abs=1e-6)


@pytest.mark.parametrize("seed,bits", [(0, 4), (2, 8)])
def test_precision_at_n_matches_reference(seed, bits):
    problem = random_problem(seed, bits=bits)
    ns = [1, 2, 10, 100, 299, 300, 1000]
    np.testing.assert_allclose(
        precision_at_n(*problem, ns=ns), ref_precision_at_n(*problem, ns), atol=1e-6
    )
    default = precision_at_n(*problem)
    np.testing.assert_allclose(
        default, ref_precision_at_n(*problem, range(100, 1001, 100)), atol=1e-6
    )


@pytest.mark.parametrize("seed,bits", [(0, 4), (2, 8), (4, 6)])
def test_pr_curve_matches_reference(seed, bits):
    problem = random_problem(seed, bits=bits)
    levels, prec = pr_curve(*problem)
    np.testing.assert_allclose(prec, ref_pr(*problem, levels), atol=1e-6)


def test_chunking_does_not_change_results():
    problem = random_problem(5, n_query=23, n_db=57, bits=4)
    for topk in (None, 10):
        base = map_at_k(*problem, topk=topk)
        for max_elements in (1, 57, 58, 500):
            assert map_at_k(*problem, topk=topk, max_elements=max_elements) == base
    base_p = precision_at_n(*problem, ns=[1, 5, 57])
    base_pr = pr_curve(*problem)[1]
    for max_elements in (1, 130):
        np.testing.assert_array_equal(
            precision_at_n(*problem, ns=[1, 5, 57], max_elements=max_elements), base_p
        )
        np.testing.assert_array_equal(pr_curve(*problem, max_elements=max_elements)[1], base_pr)


def test_codes_longer_than_255_bits_rank_on_uint16_distances():
    # distances above 255 do not fit the uint8 radix sort; ties still break by database index
    problem = random_problem(6, n_query=15, n_db=80, bits=300, classes=4)
    db = problem[1]
    db[40:60] = db[20:40]  # twenty exact duplicates: distance ties at every query
    assert metrics._Ranker(*problem, depth=80).dist_dtype == np.uint16
    for topk in (None, 25):
        assert map_at_k(*problem, topk=topk) == pytest.approx(ref_map(*problem, topk), abs=1e-12)
    levels, prec = pr_curve(*problem)
    np.testing.assert_allclose(prec, ref_pr(*problem, levels), atol=1e-12)


def test_multi_word_codes_and_labels_match_reference():
    # K = 130 bits and C = 70 classes span several 64-bit words (with padding).
    problem = random_problem(9, n_query=20, n_db=120, bits=130, classes=70, density=0.03)
    for topk in (None, 10):
        assert map_at_k(*problem, topk=topk) == pytest.approx(ref_map(*problem, topk), abs=1e-6)
    levels, prec = pr_curve(*problem)
    np.testing.assert_allclose(prec, ref_pr(*problem, levels), atol=1e-6)


def test_popcount_fallback_without_bitwise_count(monkeypatch):
    problem = random_problem(10, bits=70)
    expected = map_at_k(*problem)
    monkeypatch.delattr(np, "bitwise_count", raising=False)
    assert map_at_k(*problem) == expected


def test_single_thread_matches(monkeypatch):
    problem = random_problem(12, bits=6)
    expected = (map_at_k(*problem, max_elements=600), pr_curve(*problem, max_elements=600)[1])
    monkeypatch.setattr(metrics.torch, "get_num_threads", lambda: 1)
    assert map_at_k(*problem, max_elements=600) == expected[0]
    np.testing.assert_array_equal(pr_curve(*problem, max_elements=600)[1], expected[1])


def test_numpy_and_torch_inputs_agree():
    qb, db, ql, dl = random_problem(7, bits=8)
    as_torch = (
        torch.from_numpy(qb).to(torch.float32),
        torch.from_numpy(db).to(torch.int8),
        torch.from_numpy(ql).bool(),
        torch.from_numpy(dl).to(torch.float64),
    )
    assert map_at_k(*as_torch) == map_at_k(qb, db, ql, dl)
    assert map_at_k(*as_torch, topk=10) == map_at_k(qb, db, ql, dl, topk=10)
    np.testing.assert_array_equal(precision_at_n(*as_torch), precision_at_n(qb, db, ql, dl))
    np.testing.assert_array_equal(pr_curve(*as_torch)[1], pr_curve(qb, db, ql, dl)[1])


def test_return_types():
    assert isinstance(map_at_k(*hand()), float)
    p = precision_at_n(*hand(), ns=[1, 2])
    assert isinstance(p, np.ndarray) and p.shape == (2,)
    levels, prec = pr_curve(*hand())
    assert levels.shape == prec.shape == (100,)


@pytest.mark.parametrize(
    "position,bad,words",
    [
        (0, np.ones((1, 3)), ["query_codes", "db_codes"]),  # K = 3 vs 2
        (2, np.ones((2, 3)), ["query_codes", "query_labels"]),  # Q = 1 vs 2
        (1, HAND_DB_CODES[:5], ["db_codes", "db_labels"]),  # N = 5 vs 6
        (2, np.ones((1, 4)), ["query_labels", "db_labels"]),  # C = 4 vs 3
    ],
)
def test_shape_mismatch_raises(position, bad, words):
    args = list(hand())
    args[position] = bad
    with pytest.raises(ValueError) as info:
        map_at_k(*args)
    for word in words:
        assert word in str(info.value)


def test_non_binary_codes_raise():
    db = HAND_DB_CODES.copy()
    db[2, 1] = 0
    with pytest.raises(ValueError, match="db_codes"):
        map_at_k(HAND_Q_CODES, db, HAND_Q_LABELS, HAND_DB_LABELS)
    with pytest.raises(ValueError, match="query_codes"):
        pr_curve(np.array([[1, 0.5]]), HAND_DB_CODES, HAND_Q_LABELS, HAND_DB_LABELS)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="topk"):
        map_at_k(*hand(), topk=0)
    with pytest.raises(ValueError, match="ns"):
        precision_at_n(*hand(), ns=[0])
    with pytest.raises(ValueError, match="recall_levels"):
        pr_curve(*hand(), recall_levels=[0.0, 0.5])
    with pytest.raises(ValueError, match="labels"):
        map_at_k(HAND_Q_CODES, HAND_DB_CODES, np.array([[2, 0, 0]]), HAND_DB_LABELS)
    with pytest.raises(ValueError, match="2-D"):
        map_at_k(np.ones(2), HAND_DB_CODES, HAND_Q_LABELS, HAND_DB_LABELS)


# ---------------------------------------------------------------------------
# The compiled kernel against the NumPy ranking, rank for rank


def both_rankings(problem, depth, monkeypatch):
    prepared = metrics._prepare(*problem)
    compiled = metrics._Ranker(*prepared, depth=depth)
    assert compiled.kernel is not None
    ranks = compiled.relevant_ranks(0, problem[0].shape[0])
    with monkeypatch.context() as patch:
        patch.setattr(metrics, "_kernel", None)
        reference = metrics._Ranker(*prepared, depth=depth).relevant_ranks(0, problem[0].shape[0])
    return ranks, reference


#: for the tests of the compiled kernel itself: the ``ranking`` fixture's compiled case only
COMPILED_ONLY = pytest.mark.parametrize("ranking", ["compiled"], indirect=True)


@COMPILED_ONLY
@pytest.mark.parametrize("n_db", [1, 2, 3, 4, 5, 7, 8, 9, 63, 301])
@pytest.mark.parametrize("bits,classes", [(3, 2), (64, 64), (65, 3), (130, 70)])
def test_the_kernel_ranks_exactly_like_the_stable_sort(ranking, monkeypatch, n_db, bits, classes):
    # every database size around the kernel's four lanes, codes and labels of one word and of
    # several, and heavy ties (duplicated rows)
    problem = random_problem(n_db + bits, n_query=9, n_db=n_db, bits=bits, classes=classes, density=0.4)
    problem[1][n_db // 2 :] = problem[1][: n_db - n_db // 2]
    for depth in sorted({1, max(1, n_db // 3), n_db}):
        ranks, reference = both_rankings(problem, depth, monkeypatch)
        assert len(ranks) == len(reference) == 9
        for got, want in zip(ranks, reference):
            np.testing.assert_array_equal(got, want)
            assert got.dtype == np.int64


@COMPILED_ONLY
def test_codes_beyond_the_kernel_limit_fall_back_to_numpy(ranking):
    assert metrics._kernel.MAX_BITS == 32767  # a uint16 holds the distance and a relevance bit
    problem = random_problem(13, n_query=2, n_db=5, bits=metrics._kernel.MAX_BITS + 1, classes=2)
    assert metrics._Ranker(*metrics._prepare(*problem), depth=5).kernel is None
    assert map_at_k(*problem) == pytest.approx(ref_map(*problem, None), abs=1e-12)


@COMPILED_ONLY
def test_the_kernel_rejects_inconsistent_buffers(ranking):
    words = np.zeros((2, 1), dtype=np.uint64)
    db = np.zeros((5, 1), dtype=np.uint64)
    ranks, counts = np.empty((2, 5), dtype=np.int64), np.empty(2, dtype=np.int64)
    kernel = metrics._kernel
    with pytest.raises(ValueError, match="depth must be in 1..5, got 6"):
        kernel.relevant_ranks(words, db, words, db, 1, 1, 6, ranks, counts)
    with pytest.raises(ValueError, match="db_labels: expected 40 bytes, got 16"):
        kernel.relevant_ranks(words, db, words, words, 1, 1, 5, ranks, counts)
    with pytest.raises(ValueError, match="ranks: expected 80 bytes"):
        kernel.relevant_ranks(words, db, words, db, 1, 1, 5, ranks[:, :4].copy(), counts)
    with pytest.raises(ValueError, match="whole number of rows"):
        kernel.relevant_ranks(words, db, words, db, 2, 1, 5, ranks, counts)
    with pytest.raises(TypeError):
        kernel.relevant_ranks(words, db, words, db, 1, 1, 5, ranks.view(np.uint8)[:0].tobytes(), counts)


def test_retrieval_metrics_gathers_each_metric_and_keeps_the_depths_the_database_holds():
    rng = np.random.default_rng(3)
    q = np.where(rng.random((6, 12)) < 0.5, 1, -1)
    db = np.where(rng.random((30, 12)) < 0.5, 1, -1)
    ql, dl = (rng.random((6, 4)) < 0.4).astype(float), (rng.random((30, 4)) < 0.4).astype(float)
    targets = (rng.random((6, 4)) < 0.4).astype(float)
    out = metrics.retrieval_metrics(q, db, ql, dl, topk=10, pn=(5, 20, 50), radius=3, target_labels=targets)
    assert out["map"] == map_at_k(q, db, ql, dl, topk=10)
    assert out["t_map"] == map_at_k(q, db, targets, dl, topk=10)
    assert out["p_at_n"]["n"] == [5, 20] == out["r_at_n"]["n"]  # 50 is deeper than the database
    assert out["p_at_n"]["precision"] == pytest.approx(list(precision_at_n(q, db, ql, dl, [5, 20])))
    assert out["precision_radius"] == {"radius": 3, "precision": metrics.precision_at_radius(q, db, ql, dl, 3)}
    recall, precision = pr_curve(q, db, ql, dl)
    assert out["pr_curve"]["recall"] == pytest.approx(list(recall))
    assert all(v is None for v, p in zip(out["pr_curve"]["precision"], precision) if np.isnan(p))
    assert metrics.retrieval_metrics(q, db, ql, dl, topk=None, pn=(100,))["t_map"] is None
    assert metrics.retrieval_metrics(q, db, ql, dl, topk=None, pn=(100,))["p_at_n"]["n"] == [30]
