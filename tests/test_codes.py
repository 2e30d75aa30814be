"""Tests for hashbench.retrieval.codes: centre codes (brute-force optimality, ties) and to_binary."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from hashbench.retrieval.codes import center_codes, to_binary


def weights(y, bank_labels, weighting):
    """Per-item weights of the objective: +w⁺ on positives, −w⁻ on negatives."""
    dots = bank_labels @ y
    pos = dots > 0
    w = np.zeros(len(bank_labels))
    if pos.any():
        if weighting == "cgat":
            w[pos] = 1.0 / pos.sum()
        else:
            cos = dots / (np.linalg.norm(y) * np.linalg.norm(bank_labels, axis=1) + 1e-8)
            w[pos] = cos[pos] / cos[pos].sum()
    if (~pos).any():
        w[~pos] = -1.0 / (~pos).sum()
    return w


def objective(codes, bank_codes, w):
    """Σ_P w⁺ d_H(b, b_j) − Σ_N w⁻ d_H(b, b_j) for each row b of ``codes``."""
    k = bank_codes.shape[1]
    return ((k - codes @ bank_codes.T) / 2) @ w


def random_bank(rng, n=40, classes=5, bits=6, zero_codes=False):
    labels = (rng.random((n, classes)) < 0.3).astype(np.int64)
    labels[:4] = 0  # items without any label
    values = [-1, 0, 1] if zero_codes else [-1, 1]
    codes = rng.choice(values, size=(n, bits))
    return codes, labels


@pytest.mark.parametrize("weighting", ["cgat", "saat"])
@pytest.mark.parametrize("zero_codes", [False, True])
def test_brute_force_optimality(weighting, zero_codes):
    bits = 6
    all_codes = np.array(list(itertools.product([-1, 1], repeat=bits)), dtype=np.float64)
    n_zero_bits = 0
    for seed in range(25):
        rng = np.random.default_rng(seed)
        bank_codes, bank_labels = random_bank(rng, bits=bits, zero_codes=zero_codes)
        queries = (rng.random((8, bank_labels.shape[1])) < 0.3).astype(np.int64)
        queries[0] = 0  # a query without labels
        got = center_codes(queries, bank_codes, bank_labels, weighting=weighting).numpy()
        assert np.isin(got, [-1, 0, 1]).all()
        for y, c in zip(queries, got):
            w = weights(y, bank_labels, weighting)
            best = objective(all_codes, bank_codes, w).min()
            zeros = np.flatnonzero(c == 0)
            n_zero_bits += len(zeros)
            # Every completion of the zero bits must attain the minimum.
            for fill in itertools.product([-1, 1], repeat=len(zeros)):
                b = c.astype(np.float64).copy()
                b[zeros] = fill
                assert objective(b[None], bank_codes, w)[0] == pytest.approx(best, abs=1e-9)
    assert n_zero_bits > 0  # exact ties do occur in these banks, so zero bits are covered


@pytest.mark.parametrize("weighting", ["cgat", "saat"])
def test_exact_tie_gives_zero(weighting):
    # Two positives with identical labels: bit 0 votes +1 and -1 (mean 0), bit 1 votes +1
    # twice, bit 2 votes +1 and -1. Negatives: bit 0 votes +1 and -1 (mean 0), bit 1 votes
    # +1 and -1 (mean 0), bit 2 votes +1 twice.
    # v = [0 - 0, 1 - 0, 0 - 1] = [0, 1, -1].
    bank_codes = np.array([[1, 1, 1], [-1, 1, -1], [1, 1, 1], [-1, -1, 1]])
    bank_labels = np.array([[1, 0], [1, 0], [0, 1], [0, 1]])
    got = center_codes(np.array([[1, 0]]), bank_codes, bank_labels, weighting=weighting)
    assert got.tolist() == [[0.0, 1.0, -1.0]]


def test_exact_tie_with_uneven_sides_cgat():
    # 3 positives with ΣP = 1 and 6 negatives with ΣN = 2: both means are 1/3, so v = 0;
    # in the scaled integer form |N|·ΣP − |P|·ΣN = 6·1 − 3·2 = 0 exactly.
    pos_codes = np.array([[1], [1], [-1]])
    neg_codes = np.array([[1], [1], [1], [1], [-1], [-1]])
    bank_codes = np.vstack([pos_codes, neg_codes])
    bank_labels = np.array([[1, 0]] * 3 + [[0, 1]] * 6)
    got = center_codes(np.array([[1, 0]]), bank_codes, bank_labels, weighting="cgat")
    assert got.tolist() == [[0.0]]


def test_zero_label_query_cgat_is_sign_of_minus_bank_mean():
    rng = np.random.default_rng(11)
    bank_codes = rng.choice([-1, 1], size=(41, 16))
    bank_labels = (rng.random((41, 4)) < 0.5).astype(np.int64)
    got = center_codes(np.zeros((2, 4)), bank_codes, bank_labels, weighting="cgat")
    expected = np.sign(-bank_codes.mean(axis=0))
    assert torch.isfinite(got).all()
    np.testing.assert_array_equal(got.numpy(), np.stack([expected, expected]))


@pytest.mark.parametrize("weighting", ["cgat", "saat"])
def test_never_nan(weighting):
    rng = np.random.default_rng(3)
    bank_codes = rng.choice([-1, 0, 1], size=(30, 8))
    bank_labels = np.zeros((30, 3), dtype=np.int64)
    bank_labels[:10, 0] = 1  # class 1 and 2 never occur; 20 items have no label
    queries = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 1], [0, 0, 1]])
    got = center_codes(queries, bank_codes, bank_labels, weighting=weighting)
    assert torch.isfinite(got).all()
    # All items positive (no negatives) and all items negative (no positives) both occur.
    all_pos = center_codes(
        np.array([[1, 0, 0]]), bank_codes[:10], bank_labels[:10], weighting=weighting
    )
    np.testing.assert_array_equal(all_pos.numpy()[0], np.sign(bank_codes[:10].sum(axis=0)))


# Hand example shared by both weightings (K = 2, C = 2):
#   item 1: code [ 1,  1], labels [1, 0]
#   item 2: code [-1,  1], labels [1, 1]
#   item 3: code [ 0, -1], labels [0, 1]
HAND_CODES = np.array([[1, 1], [-1, 1], [0, -1]])
HAND_LABELS = np.array([[1, 0], [1, 1], [0, 1]])
HAND_QUERIES = np.array([[1, 0], [0, 0], [0, 1]])


def test_hand_example_cgat():
    # q=[1,0]: P={1,2}, N={3}. mean_P = [0, 1], mean_N = [0, -1], v = [0, 2] -> [0, 1].
    # q=[0,0]: P={}, v = -mean(all) = -[0/3, 1/3] -> [0, -1].
    # q=[0,1]: P={2,3}, N={1}. mean_P = [-1/2, 0], mean_N = [1, 1], v = [-3/2, -1] -> [-1, -1].
    got = center_codes(HAND_QUERIES, HAND_CODES, HAND_LABELS, weighting="cgat")
    assert got.tolist() == [[0.0, 1.0], [0.0, -1.0], [-1.0, -1.0]]


def test_hand_example_saat():
    # q=[1,0]: s1 = 1/(1*1) = 1, s2 = 1/(1*sqrt 2) = 0.7071; w+ = [0.5858, 0.4142];
    #   N={3}, w- = 1. v0 = 0.5858 - 0.4142 - 0 = 0.1716 -> +1; v1 = 1 - (-1) = 2 -> +1.
    # q=[0,0]: no positives, v = -mean(all) = [0, -1/3] -> [0, -1].
    # q=[0,1]: s2 = 0.7071, s3 = 1; w+ = [0.4142, 0.5858]; N={1}, w- = 1.
    #   v0 = -0.4142 + 0 - 1 = -1.4142 -> -1; v1 = 0.4142 - 0.5858 - 1 = -1.1716 -> -1.
    got = center_codes(HAND_QUERIES, HAND_CODES, HAND_LABELS, weighting="saat")
    assert got.tolist() == [[1.0, 1.0], [0.0, -1.0], [-1.0, -1.0]]


@pytest.mark.parametrize("weighting", ["cgat", "saat"])
def test_chunking_and_input_types(weighting):
    rng = np.random.default_rng(8)
    bank_codes, bank_labels = random_bank(rng, n=50, bits=12)
    queries = (rng.random((9, 5)) < 0.4).astype(np.int64)
    base = center_codes(queries, bank_codes, bank_labels, weighting=weighting)
    assert base.dtype == torch.float32 and base.shape == (9, 12)
    small = center_codes(queries, bank_codes, bank_labels, weighting=weighting, max_elements=1)
    torch.testing.assert_close(small, base, rtol=0, atol=0)
    as_torch = center_codes(
        torch.from_numpy(queries).bool(),
        torch.from_numpy(bank_codes).to(torch.int8),
        torch.from_numpy(bank_labels).float(),
        weighting=weighting,
    )
    torch.testing.assert_close(as_torch, base, rtol=0, atol=0)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="'cgat', 'saat'"):
        center_codes(HAND_QUERIES, HAND_CODES, HAND_LABELS, weighting="mean")
    with pytest.raises(ValueError, match="bank_codes"):
        center_codes(HAND_QUERIES, HAND_CODES * 2, HAND_LABELS)
    with pytest.raises(ValueError, match="bank_labels"):
        center_codes(HAND_QUERIES, HAND_CODES, HAND_LABELS[:2])
    with pytest.raises(ValueError, match="query_labels"):
        center_codes(np.ones((1, 3)), HAND_CODES, HAND_LABELS)


def test_to_binary():
    u = torch.tensor([[-0.5, 0.0, 0.3], [-0.0, 2.0, -1e-12]])
    got = to_binary(u)
    assert got.dtype == torch.int8
    assert got.tolist() == [[-1, 1, 1], [1, 1, -1]]
    from_numpy = to_binary(np.array([0, -3, 4]))
    assert from_numpy.dtype == torch.int8 and from_numpy.tolist() == [1, -1, 1]
    with pytest.raises(ValueError, match="NaN"):
        to_binary(torch.tensor([float("nan")]))


def test_saat_tie_across_interleaved_weight_groups():
    # Query [1, 0]. Positives come in two weight groups, interleaved in the bank:
    # labels [1, 0] (cosine 1) and labels [1, 1] (cosine 1/sqrt 2). On bit 0 each group
    # sums to 0 and so do the negatives (labels [0, 1]): an exact tie. Bit 1 is +1 for
    # every positive and -1 for every negative: v1 > 0.
    a, b, n = [1, 0], [1, 1], [0, 1]
    labels = np.array([a, b, a, b, a, n, b, a, n, b, a, a, n, n])
    bit0 = np.array([1, 1, 1, -1, 1, 1, 1, -1, -1, -1, -1, -1, 1, -1])
    bit1 = np.where((labels @ np.array([1, 0])) > 0, 1, -1)
    codes = np.stack([bit0, bit1], axis=1)
    for weighting in ("cgat", "saat"):
        got = center_codes(np.array([[1, 0]]), codes, labels, weighting=weighting)
        assert got.tolist() == [[0.0, 1.0]], weighting
