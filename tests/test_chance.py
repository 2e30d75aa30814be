"""The random-codes reference and code health (hashbench.retrieval.chance)."""

import numpy as np
import pytest

from hashbench.retrieval.chance import chance_map, code_health, degenerate, random_balanced_codes


def _labels(n: int, classes: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, classes)) < 0.3).astype(np.uint8)
    labels[labels.sum(1) == 0, 0] = 1
    return labels


@pytest.mark.parametrize("n", [7, 10, 101])
def test_random_codes_are_balanced_per_bit(n):
    codes = random_balanced_codes(n, 16, np.random.default_rng(0))
    assert codes.dtype == np.int8 and codes.shape == (n, 16)
    assert set(np.unique(codes)) == {-1, 1}
    assert ((codes == 1).sum(axis=0) == n // 2).all()


def test_random_codes_differ_between_bits_and_draws():
    rng = np.random.default_rng(1)
    a, b = random_balanced_codes(200, 8, rng), random_balanced_codes(200, 8, rng)
    assert not np.array_equal(a, b)
    assert len({a[:, k].tobytes() for k in range(8)}) == 8


def _ap_at_k(q: np.ndarray, d: np.ndarray, yq: np.ndarray, yd: np.ndarray, k: int) -> float:
    """HashNet's AP@k of one query, written out (stable ranking by index)."""
    distance = (len(q) - d.astype(int) @ q.astype(int)) / 2
    order = np.argsort(distance, kind="stable")[:k]
    relevant = (yd[order] @ yq) > 0
    if not relevant.any():
        return 0.0
    ranks = np.flatnonzero(relevant) + 1
    return float(np.mean(np.arange(1, len(ranks) + 1) / ranks))


def test_chance_map_is_the_mean_over_draws_of_random_codes():
    yq, yd, targets = _labels(30, 5, 0), _labels(120, 5, 1), _labels(30, 5, 2)
    got = chance_map(yq, yd, 12, topk=50, draws=3, seed=7, target_labels=targets)
    rng = np.random.default_rng(7)
    maps, t_maps = [], []
    for _ in range(3):
        q, d = random_balanced_codes(30, 12, rng), random_balanced_codes(120, 12, rng)
        maps.append(np.mean([_ap_at_k(q[i], d, yq[i], yd, 50) for i in range(30)]))
        t_maps.append(np.mean([_ap_at_k(q[i], d, targets[i], yd, 50) for i in range(30)]))
    assert got["map"] == pytest.approx(np.mean(maps), abs=1e-12)
    assert got["map_std"] == pytest.approx(np.std(maps), abs=1e-12)
    assert got["t_map"] == pytest.approx(np.mean(t_maps), abs=1e-12)
    assert got["draws"] == 3
    assert chance_map(yq, yd, 12, topk=50, draws=3, seed=7) == {**got, "t_map": None}


def test_chance_map_tracks_the_share_of_relevant_pairs():
    # with one class everything is relevant: any ranking scores 1; with many rare classes, little
    one = np.ones((20, 1), dtype=np.uint8)
    assert chance_map(one, np.ones((80, 1), dtype=np.uint8), 16, topk=None, draws=2, seed=0)["map"] == 1.0
    rare_q = np.eye(20, dtype=np.uint8)
    rare_d = np.tile(np.eye(20, dtype=np.uint8), (5, 1))
    assert chance_map(rare_q, rare_d, 16, topk=None, draws=2, seed=0)["map"] < 0.2


def test_code_health_counts_distinct_codes_balance_and_dead_bits():
    codes = np.array([[1, 1, -1, 1], [1, -1, -1, 1], [1, 1, -1, -1], [1, -1, -1, -1]], dtype=np.int8)
    health = code_health(codes)
    assert health == {"items": 4, "bits": 4, "distinct_codes": 4, "bit_balance": 0.5, "dead_bits": 2}
    assert degenerate(health) is None  # two of four bits dead: not more than half


def test_degenerate_codes_are_named():
    one_code = code_health(np.ones((50, 8), dtype=np.int8))
    assert one_code["distinct_codes"] == 1 and one_code["bit_balance"] == 0.0
    assert degenerate(one_code) == "one code for all 50 database items"
    mostly_dead = np.ones((100, 8), dtype=np.int8)
    mostly_dead[:50, :3] = -1
    health = code_health(mostly_dead)
    assert health["dead_bits"] == 5 and health["distinct_codes"] == 2
    assert degenerate(health) == "5 of 8 bits constant on ≥ 99% of the database"
    assert degenerate(None) is None and degenerate(code_health(np.zeros((0, 4), dtype=np.int8))) is None
