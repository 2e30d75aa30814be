"""precision_at_radius and recall_at_n against hand-computed cases and a plain per-query reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_metrics import random_problem, ranking  # noqa: F401 - ranking: both implementations, autouse

from hashbench.retrieval import metrics
from hashbench.retrieval.metrics import precision_at_radius, recall_at_n

# One query [+1, +1] against six items (K = 2): distances 2, 0, 1, 0, 1, 2; relevant (class 0):
# items 2, 3, 5.  Ranking by (distance, index): 1, 3, 2, 4, 0, 5 -> relevance 0 1 1 0 0 1.
DB_CODES = np.array([[-1, -1], [1, 1], [1, -1], [1, 1], [-1, 1], [-1, -1]])
DB_LABELS = np.array([[0, 1, 0], [0, 1, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [1, 0, 0]])
# A second query, [-1, +1] of class 2, which no database item has: distances 1, 1, 2, 1, 0, 1.
Q_CODES = np.array([[1, 1], [-1, 1]])
Q_LABELS = np.array([[1, 0, 0], [0, 0, 1]])


# -- the independent reference: plain Python, one query and one item at a time ----------------

def _hamming(a, b) -> int:
    return sum(1 for x, y in zip(a, b) if x != y)


def _relevant(a, b) -> bool:
    return any(x and y for x, y in zip(a, b))


def ref_precision_at_radius(qb, db, ql, dl, r):
    scores = []
    for q in range(len(qb)):
        within = hits = 0
        for j in range(len(db)):
            if _hamming(qb[q], db[j]) <= r:
                within += 1
                hits += _relevant(ql[q], dl[j])
        scores.append(hits / within if within else 0.0)
    return sum(scores) / len(scores)


def ref_recall_at_n(qb, db, ql, dl, ns):
    sums = [0.0] * len(ns)
    for q in range(len(qb)):
        distance = [_hamming(qb[q], db[j]) for j in range(len(db))]
        order = sorted(range(len(db)), key=lambda j: (distance[j], j))
        rel = [_relevant(ql[q], dl[j]) for j in order]
        total = sum(rel)
        for i, n in enumerate(ns):
            sums[i] += sum(rel[:n]) / total if total else 0.0
    return [s / len(qb) for s in sums]


# -- hand-computed -----------------------------------------------------------------------------

def test_precision_at_radius_by_hand():
    one = (Q_CODES[:1], DB_CODES, Q_LABELS[:1], DB_LABELS)
    assert precision_at_radius(*one, r=0) == 0.5  # items 1, 3: item 3 relevant
    assert precision_at_radius(*one, r=1) == 0.5  # items 1, 2, 3, 4: 2 and 3
    # the second query has no relevant item: 0 at every radius, and it still counts
    both = (Q_CODES, DB_CODES, Q_LABELS, DB_LABELS)
    assert precision_at_radius(*both, r=0) == 0.25
    assert precision_at_radius(*both, r=2) == 0.25  # whole database: 3/6 and 0/6
    assert precision_at_radius(*both) == 0.25  # r = 2 by default


def test_a_query_with_nothing_within_the_radius_counts_zero():
    db = np.array([[-1, -1, -1, -1], [-1, -1, -1, 1], [1, 1, 1, 1]])
    labels = np.array([[1], [1], [1]])
    queries = np.array([[1, 1, -1, -1], [1, 1, 1, 1]])
    # query 0 is at distance 2, 3, 2 from the items: items 0 and 2 within r = 2, both relevant
    # query 1 is at distance 4, 3, 0: only item 2 within r = 2 -> 1/1; within r = 1 the same
    assert precision_at_radius(queries, db, np.array([[1], [1]]), labels, r=2) == 1.0
    # within r = 1 query 0 finds nothing: it scores 0 and the mean halves
    assert precision_at_radius(queries, db, np.array([[1], [1]]), labels, r=1) == 0.5
    assert precision_at_radius(queries[:1], db, np.array([[1]]), labels, r=1) == 0.0


def test_recall_at_n_by_hand():
    one = (Q_CODES[:1], DB_CODES, Q_LABELS[:1], DB_LABELS)
    # relevance along the ranking 0 1 1 0 0 1, three relevant items
    np.testing.assert_allclose(recall_at_n(*one, ns=[1, 2, 3, 5, 6, 100]), [0, 1 / 3, 2 / 3, 2 / 3, 1, 1])
    # ties by database index: item 1 (irrelevant) ranks before item 3 at distance 0, so R@1 is 0,
    # not the 1/3 that a descending tie-break would give
    assert recall_at_n(*one, ns=[1])[0] == 0.0
    # the query without relevant items scores 0 and still counts
    both = (Q_CODES, DB_CODES, Q_LABELS, DB_LABELS)
    np.testing.assert_allclose(recall_at_n(*both, ns=[3, 6]), [1 / 3, 1 / 2])


# -- against the reference -----------------------------------------------------------------------

@pytest.mark.parametrize("seed,bits", [(0, 3), (1, 4), (2, 8), (3, 16)])
@pytest.mark.parametrize("r", [0, 1, 2, 3, 5, 16, 40])
def test_precision_at_radius_matches_reference(seed, bits, r):
    problem = random_problem(seed, bits=bits)
    assert precision_at_radius(*problem, r=r) == pytest.approx(ref_precision_at_radius(*problem, r), abs=1e-12)


@pytest.mark.parametrize("seed,bits", [(0, 3), (1, 4), (2, 8), (3, 16)])
def test_recall_at_n_matches_reference(seed, bits):
    problem = random_problem(seed, bits=bits)
    ns = [1, 2, 7, 50, 299, 300, 1000]  # random_problem: 300 items, few bits (many ties), label-less rows
    np.testing.assert_allclose(recall_at_n(*problem, ns=ns), ref_recall_at_n(*problem, ns), rtol=0, atol=1e-12)
    default = list(range(100, 1001, 100))
    np.testing.assert_allclose(recall_at_n(*problem), ref_recall_at_n(*problem, default), rtol=0, atol=1e-12)


@pytest.mark.parametrize("bits,classes", [(65, 3), (130, 70)])
def test_multi_word_codes_and_labels_match_reference(bits, classes):
    problem = random_problem(7, n_query=12, n_db=60, bits=bits, classes=classes, density=0.05)
    problem[1][30:] = problem[1][:30]  # duplicated rows: exact distance ties
    problem[1][5] = problem[0][0]  # an item at distance 0 from query 0
    for r in (0, 1, 2, bits // 2):
        assert precision_at_radius(*problem, r=r) == pytest.approx(ref_precision_at_radius(*problem, r), abs=1e-12)
    ns = [1, 5, 31, 60]
    np.testing.assert_allclose(recall_at_n(*problem, ns=ns), ref_recall_at_n(*problem, ns), rtol=0, atol=1e-12)


def test_blocks_and_threads_do_not_change_results(monkeypatch):
    problem = random_problem(11, n_query=37, n_db=91, bits=6)
    whole_p = precision_at_radius(*problem, r=1)
    whole_r = recall_at_n(*problem, ns=[5, 40, 91])
    for max_elements in (1, 91, 500, 3000):
        assert precision_at_radius(*problem, r=1, max_elements=max_elements) == whole_p
        np.testing.assert_array_equal(recall_at_n(*problem, ns=[5, 40, 91], max_elements=max_elements), whole_r)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    assert precision_at_radius(*problem, r=1, max_elements=200) == whole_p
    np.testing.assert_array_equal(recall_at_n(*problem, ns=[5, 40, 91], max_elements=200), whole_r)


def test_torch_inputs_agree_with_numpy():
    qb, db, ql, dl = random_problem(5, bits=8)
    tensors = (torch.tensor(qb, dtype=torch.int8), torch.tensor(db, dtype=torch.float32),
               torch.tensor(ql, dtype=torch.bool), torch.tensor(dl))
    assert precision_at_radius(*tensors) == precision_at_radius(qb, db, ql, dl)
    np.testing.assert_array_equal(recall_at_n(*tensors, ns=[10, 20]), recall_at_n(qb, db, ql, dl, ns=[10, 20]))


def test_recall_at_the_whole_database_is_the_share_of_queries_with_a_relevant_item():
    qb, db, ql, dl = random_problem(9, bits=8)
    has_relevant = ((ql @ dl.T) > 0).any(axis=1)
    assert recall_at_n(qb, db, ql, dl, ns=[db.shape[0]])[0] == pytest.approx(has_relevant.mean(), abs=1e-15)


def test_return_types():
    problem = random_problem(1)
    assert type(precision_at_radius(*problem)) is float
    out = recall_at_n(*problem, ns=[3, 4])
    assert out.dtype == np.float64 and out.shape == (2,)


@pytest.mark.parametrize("r", [-1, 1.5, True, "2", None])
def test_bad_radius_raises(r):
    with pytest.raises(ValueError, match="r must be a non-negative integer Hamming radius"):
        precision_at_radius(*random_problem(0), r=r)


def test_bad_ns_raise():
    with pytest.raises(ValueError, match="ns must contain at least one value"):
        recall_at_n(*random_problem(0), ns=[])
    with pytest.raises(ValueError, match="every value of ns must be a positive integer, got 0"):
        recall_at_n(*random_problem(0), ns=[5, 0])


def test_inputs_are_validated_like_the_other_metrics():
    qb, db, ql, dl = random_problem(0)
    with pytest.raises(ValueError, match="code length mismatch"):
        precision_at_radius(qb[:, :3], db, ql, dl)
    with pytest.raises(ValueError, match="query_codes must contain only -1 and \\+1"):
        recall_at_n(qb * 0, db, ql, dl)


# -- the kernel's new entry point and output ------------------------------------------------------

COMPILED_ONLY = pytest.mark.parametrize("ranking", ["compiled"], indirect=True)


@COMPILED_ONLY
def test_the_kernel_counts_like_the_numpy_pass(ranking, monkeypatch):
    problem = random_problem(3, n_query=9, n_db=77, bits=70, classes=66, density=0.05)
    prepared = metrics._prepare(*problem)
    compiled = metrics._Ranker(*prepared, depth=20)
    assert compiled.kernel is not None
    totals = np.empty(9, dtype=np.int64)
    compiled.relevant_ranks(0, 9, totals)
    counts = [compiled.radius_counts(0, 9, r) for r in (0, 30, 35, 70)]
    with monkeypatch.context() as patch:
        patch.setattr(metrics, "_kernel", None)
        reference = metrics._Ranker(*prepared, depth=20)
        want_totals = np.empty(9, dtype=np.int64)
        reference.relevant_ranks(0, 9, want_totals)
        want_counts = [reference.radius_counts(0, 9, r) for r in (0, 30, 35, 70)]
    np.testing.assert_array_equal(totals, want_totals)
    assert totals.sum() > 0
    for (within, hits), (w_within, w_hits) in zip(counts, want_counts):
        np.testing.assert_array_equal(within, w_within)
        np.testing.assert_array_equal(hits, w_hits)
    assert counts[-1][0].tolist() == [77] * 9  # radius K: everything is within


@COMPILED_ONLY
def test_the_kernel_rejects_bad_radius_buffers(ranking):
    words = np.zeros((2, 1), dtype=np.uint64)
    db = np.zeros((5, 1), dtype=np.uint64)
    within, hits = np.empty(2, dtype=np.int64), np.empty(2, dtype=np.int64)
    kernel = metrics._kernel
    with pytest.raises(ValueError, match="radius must be >= 0, got -1"):
        kernel.radius_counts(words, db, words, db, 1, 1, -1, within, hits)
    with pytest.raises(ValueError, match="within: expected 16 bytes, got 8"):
        kernel.radius_counts(words, db, words, db, 1, 1, 2, within[:1].copy(), hits)
    with pytest.raises(ValueError, match="db_labels: expected 40 bytes, got 16"):
        kernel.radius_counts(words, db, words, words, 1, 1, 2, within, hits)
    ranks, counts = np.empty((2, 5), dtype=np.int64), np.empty(2, dtype=np.int64)
    with pytest.raises(ValueError, match="totals: expected 16 bytes, got 8"):
        kernel.relevant_ranks(words, db, words, db, 1, 1, 5, ranks, counts, within[:1].copy())


# -- in records, the tidy frame and the report ---------------------------------------------------

def _records_with_lookup(values: dict[str, tuple[float, float]], seeds=(0, 1)) -> list[dict]:
    """attack -> (precision within radius 2, recall at N = 50) records, offset by 0.1 per seed."""
    from report_records import make_record

    records = []
    for attack, (precision, recall) in values.items():
        for seed in seeds:
            record = make_record(attack=attack, seed=seed, map_=0.5)
            record["metrics"]["precision_radius"] = {"radius": 2, "precision": precision + 0.1 * seed}
            record["metrics"]["r_at_n"] = {"n": [10, 20, 50], "recall": [0.01, 0.02, recall + 0.1 * seed]}
            records.append(record)
    return records


def test_the_report_shows_precision_within_the_radius_and_recall(tmp_path):
    from report_records import RUN, first_number, html_tables, make_record, write_run

    from hashbench.report import build_report, render_html
    from hashbench.report.export import to_csv
    from hashbench.report.layouts import MISSING
    from hashbench.results import load

    records = _records_with_lookup({"clean": (0.6, 0.3), "center": (0.1, 0.05)})
    old = make_record(attack="hag", map_=0.4)  # a record written before the two metrics existed
    write_run(tmp_path, records + [old])
    frame = load(RUN, tmp_path)
    clean = frame[(frame["attack"] == "clean") & (frame["seed"] == 1)].iloc[0]
    assert clean["precision_radius"] == pytest.approx(0.7) and clean["radius"] == 2
    assert clean["rn_n"] == [10, 20, 50] and clean["rn_recall"][-1] == pytest.approx(0.4)
    assert frame[frame["attack"] == "hag"].iloc[0][["precision_radius", "rn_recall"]].isna().all()

    stat = build_report(RUN, tmp_path).stats.get("shapes", "dpsh", "smallcnn", 32, "none", "center")
    assert stat.precision_radius == pytest.approx(15.0) and stat.recall_at_n == pytest.approx(10.0)
    assert (stat.radius, stat.recall_n) == (2, 50)

    page = render_html(RUN, tmp_path)
    (details,) = [t for t in html_tables(page) if "details" in (t["class"] or "")]
    header = [c["text"] for c in details["rows"][0]]
    p_col, r_col = header.index("P@r≤2"), header.index("R@50")
    by_attack = {row[1]["text"]: row for row in details["rows"][1:] if len(row) > r_col}
    assert first_number(by_attack["Clean"][p_col]["text"]) == pytest.approx(65.0)  # mean over the two seeds
    assert first_number(by_attack["Clean"][r_col]["text"]) == pytest.approx(35.0)
    assert first_number(by_attack["Center"][p_col]["text"]) == pytest.approx(15.0)
    assert by_attack["HAG"][p_col]["text"] == by_attack["HAG"][r_col]["text"] == MISSING
    csv = to_csv(build_report(RUN, tmp_path))
    assert "precision_radius" in csv.splitlines()[0] and "rn_recall" not in csv.splitlines()[0]


def test_the_evaluate_stage_records_both_metrics(tmp_path):
    from hashbench.testing import tiny_victim

    victim = tiny_victim()
    codes = victim.codes
    labels = victim.dataset.labels
    query, database = labels[victim.split.query], labels[victim.split.database]
    p2 = precision_at_radius(codes["query"], codes["database"], query, database, r=2)
    assert p2 == pytest.approx(ref_precision_at_radius(codes["query"].tolist(), codes["database"].tolist(),
                                                       query.tolist(), database.tolist(), 2), abs=1e-12)
    from hashbench.harness.stages.evaluate import EvaluateSpec, run_evaluate
    from hashbench.harness.stages.spec import Stage

    stages = victim._stages
    evaluate = Stage(EvaluateSpec(None, map_topk=victim.map_topk, pn=[5, 40], radius=2),
                     {"split": stages["split"], "encode": stages["encode"]})
    metrics_ = run_evaluate(victim._ctx, evaluate).meta["metrics"]
    assert metrics_["precision_radius"] == {"radius": 2, "precision": p2}
    assert metrics_["r_at_n"]["n"] == [5, 40]
    np.testing.assert_allclose(metrics_["r_at_n"]["recall"],
                               recall_at_n(codes["query"], codes["database"], query, database, ns=[5, 40]))
