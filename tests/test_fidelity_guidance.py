"""Issue 18, items 2 and 5b: the guide codes (CHCM, DMFL) of CgAT's and SAAT's adversarial
training, as their released loops compute them.

Item 2: CgAT's ``central_adv_train.py`` gives its sign bank and its continuous bank one storage
(``.data =``) and writes the continuous outputs last, so CHCM runs on tanh outputs; SAAT's
``adv_training.py`` writes ``sign(h)`` into a bank that the DPH loss then overwrites with ``h``.
Item 5b: CgAT's CHCM scales each side's sum by the other side's size, so a query without
positives (an unlabelled one) or without negatives gets the zero code.
"""

import numpy as np
import pytest
import torch

import defenses.cgat as cgat_module
from defenses.cgat import guide_codes
from hashbench import plugins
from hashbench.api.defense import DefenseContext
from hashbench.models.hash_model import HashModel
from hashbench.progress import Reporter
from hashbench.retrieval.banks import CodeBank
from hashbench.retrieval.codes import center_codes
from hashbench.retrieval.training import TrainData, TrainingDiverged

#: one short epoch: 24 images in batches of 8, one PGD step
FAST = {"epochs": 1, "batch_size": 8, "iterations": 1}


def defaults(name: str) -> dict:
    """The guide-code arguments of a defense's paper defaults."""
    p = plugins.defenses.create(name, {}).params
    return {"weighting": p.weighting, "zero_labels": p.zero_labels, "binary": p.guide_bank == "binary",
            "one_sided": p.one_sided}


def released_chcm(y: torch.Tensor, codes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """CHCM as CgAT's ``hash_center_code`` states it, one query at a time: the Jaccard weight
    ``|y∧l| / |y∨l|`` (0/0 = NaN for two unlabelled vectors) only through its sign, positives
    summed ×(number of negatives), negatives ×(number of positives)."""
    rows = []
    for yi in y:
        jaccard = (yi * labels).sum(dim=1) / torch.sign(yi + labels).sum(dim=1)
        negative = 1 - torch.sign(jaccard)  # torch.sign(NaN) is 0: a NaN weight makes a negative
        n_neg = negative.sum()
        positive = 1 - negative
        rows.append(torch.sign((n_neg * positive[:, None] * codes
                                - (len(codes) - n_neg) * negative[:, None] * codes).sum(dim=0)))
    return torch.stack(rows)


def test_chcm_runs_on_the_continuous_bank():
    """One bit, query [1, 0]: positives 0.9 and −0.1, negative 0.2.  On the outputs the positive
    mean (0.4) beats the negative (0.2): +1; on their signs the positives cancel: −1."""
    bank = CodeBank(3, 1, torch.tensor([[1.0, 0], [1, 0], [0, 1]]))
    bank.preinstall(torch.tensor([[0.9], [-0.1], [0.2]]))
    y = torch.tensor([[1.0, 0]])
    cgat = defaults("cgat")
    assert cgat["binary"] is False
    assert guide_codes(y, bank, **cgat).tolist() == [[1.0]]
    assert guide_codes(y, bank, **{**cgat, "binary": True}).tolist() == [[-1.0]]
    assert guide_codes(y, bank, **cgat).tolist() == released_chcm(y, bank.u, bank.labels).tolist()


def test_cgat_gives_one_sided_queries_the_zero_code():
    """An unlabelled query (no positives) and a query every item is relevant to (no negatives)."""
    codes = torch.tensor([[0.5, -0.2, 0.9], [-0.7, 0.4, 0.1], [0.3, 0.3, -0.6], [0.8, -0.9, 0.2]])
    with_unlabelled = CodeBank(4, 3, torch.tensor([[1.0, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]]))
    with_unlabelled.preinstall(codes)
    all_labelled = CodeBank(3, 3, torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1]]))
    all_labelled.preinstall(codes[:3])
    cgat = defaults("cgat")

    y = torch.tensor([[1.0, 0, 0], [0, 0, 0]])
    got = guide_codes(y, with_unlabelled, **cgat)
    torch.testing.assert_close(got, released_chcm(y, codes, with_unlabelled.labels), rtol=0, atol=0)
    assert got[1].tolist() == [0.0, 0.0, 0.0] and bool(got[0].abs().sum() > 0)
    every = torch.tensor([[1.0, 1, 1]])
    assert guide_codes(every, all_labelled, **cgat).tolist() == [[0.0, 0.0, 0.0]]
    assert released_chcm(every, codes[:3], all_labelled.labels).tolist() == [[0.0, 0.0, 0.0]]

    # SAAT's DMFL (and CgAT with one_sided "other"): the non-empty side alone decides
    saat = defaults("saat")
    assert saat["one_sided"] == "other"
    other = guide_codes(y, with_unlabelled, **saat)
    assert other[1].tolist() == torch.sign(-codes.mean(dim=0)).tolist()
    assert guide_codes(every, all_labelled, **saat).tolist() == [torch.sign(codes[:3].mean(dim=0)).tolist()]


def test_center_codes_take_continuous_codes_and_one_sided_zero():
    rng = np.random.default_rng(5)
    codes = rng.uniform(-1, 1, size=(12, 6))
    labels = (rng.random((12, 3)) < 0.5).astype(np.int64)
    labels[0] = 0  # one unlabelled item
    queries = np.array([[1, 0, 0], [0, 0, 0], [0, 1, 1]])
    got = center_codes(queries, codes, labels, weighting="cgat", one_sided="zero")
    torch.testing.assert_close(got, released_chcm(torch.tensor(queries, dtype=torch.float64),
                                                  torch.from_numpy(codes), torch.tensor(labels, dtype=torch.float64)
                                                  ).float(), rtol=0, atol=0)
    with pytest.raises(ValueError, match="one_sided"):
        center_codes(queries, codes, labels, one_sided="none")
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        center_codes(queries, codes * 2, labels)


@pytest.fixture(scope="module")
def tiny() -> TrainData:
    dataset = plugins.datasets.create("shapes", {"num_items": 40, "num_classes": 6, "image_size": 32})
    indices = np.arange(24)
    return TrainData(dataset, indices, torch.as_tensor(dataset.labels[indices], dtype=torch.float32))


def model() -> HashModel:
    torch.manual_seed(0)
    return HashModel(plugins.backbones.create("smallcnn", {"width": 8, "features": 32}).build(32), 16)


def guide_calls(monkeypatch, name: str, method: str, data: TrainData) -> list[torch.Tensor]:
    """The bank rows every guide-code computation of one short epoch of ``name`` saw."""
    seen = []
    real = cgat_module.center_codes

    def spy(y, codes, labels, weighting="cgat", **kwargs):
        seen.append(codes.clone())
        return real(y, codes, labels, weighting=weighting, **kwargs)

    monkeypatch.setattr(cgat_module, "center_codes", spy)
    defense = plugins.defenses.create(name, FAST)
    defense.fit(model(), plugins.methods.create(method, {}), data,
                DefenseContext(torch.device("cpu"), torch.Generator().manual_seed(0), Reporter()))
    return seen


def binary(t: torch.Tensor) -> bool:
    return bool(((t == 1) | (t == -1) | (t == 0)).all())


def test_cgat_training_guides_with_continuous_rows(tiny, monkeypatch):
    """Every call after the first batch's bank write sees continuous rows, whatever the method."""
    for method in ("dpsh", "csq"):
        calls = guide_calls(monkeypatch, "cgat", method, tiny)
        assert len(calls) == 6  # before and after the bank write, three batches
        assert binary(calls[0])  # the preinstalled clean codes
        assert all(not binary(c) for c in calls[1:]), method


def test_saat_training_guides_with_its_aliased_bank(tiny, monkeypatch):
    """SAAT writes sign(h) before m'; DPH-like losses that keep the bank then write h (later
    batches see continuous rows); a method without a bank leaves it binary."""
    calls = guide_calls(monkeypatch, "saat", "dpsh", tiny)
    assert [binary(c) for c in calls] == [True, True, False, False, False, False]
    assert all(binary(c) for c in guide_calls(monkeypatch, "saat", "csq", tiny))


@pytest.mark.parametrize("name", ["cgat", "saat"])
def test_divergence_is_reported_before_a_guide_code_reads_non_finite_rows(name, tiny):
    """The continuous bank would hold the NaN outputs of a diverged model; the step stops first."""
    defense = plugins.defenses.create(name, {**FAST, "lr": 1e30})
    with pytest.raises(TrainingDiverged, match=rf"defend {name}: loss 'loss' is (nan|inf) at epoch 1, step \d"):
        defense.fit(model(), plugins.methods.create("dpsh", {}), tiny,
                    DefenseContext(torch.device("cpu"), torch.Generator().manual_seed(0), Reporter()))
