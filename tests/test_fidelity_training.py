"""Issue 18, items 5a and 5c: clean training as CgAT's and SAAT's ``hashing.py`` run it.

5a: both call ``adjust_learning_rate(epoch)`` *after* epoch ``epoch``, setting
lr₀·0.1^⌊epoch/⌊E/3⌋⌋, so the first decay applies one epoch later than at the start of that epoch.
5c: their HashNet loss starts its label bank at zero and writes a batch's labels with its
outputs, so in the first epoch every unseen item is a dissimilar pair that counts in S₀.
"""

import math

import numpy as np
import pytest
import torch

from hashbench import plugins
from hashbench.api.defense import DefenseContext
from hashbench.models.hash_model import HashModel
from hashbench.progress import Reporter
from hashbench.retrieval.adversarial_training import preinstall_bank
from hashbench.retrieval.training import TrainData


def released_lr(epoch: int, lr: float = 0.01, epochs: int = 100) -> float:
    """The lr during 0-based epoch ``epoch`` of ``hashing.py``: set after the epoch before it."""
    return lr if epoch == 0 else lr * 0.1 ** ((epoch - 1) // (epochs // 3))


def test_clean_training_decays_after_the_epoch():
    method = plugins.methods.create("dpsh", {})
    lrs = [method.lr_at_epoch(e) for e in range(100)]
    assert lrs == pytest.approx([released_lr(e) for e in range(100)])
    assert lrs.count(0.01) == 34 and lrs[34] == pytest.approx(0.001) and lrs[67] == pytest.approx(1e-4)
    short = plugins.methods.create("dpsh", {"epochs": 6})  # a decay every 2 epochs
    assert [short.lr_at_epoch(e) for e in range(6)] == pytest.approx([0.01, 0.01, 0.01, 0.001, 0.001, 1e-4])
    early = plugins.methods.create("dpsh", {"epochs": 6, "lr_decay_at": "epoch_start"})
    assert [early.lr_at_epoch(e) for e in range(6)] == pytest.approx([0.01, 0.01, 0.001, 0.001, 1e-4, 1e-4])


LABELS = torch.tensor([[1.0, 0, 0], [0, 1, 0], [1, 0, 1], [0, 0, 1]])
U = torch.tensor([[0.5, -0.5, 0.25, 0.75], [-0.25, 0.5, 0.5, -0.5], [0.75, 0.25, -0.5, 0.5],
                  [-0.5, -0.75, 0.25, 0.5]])


def nll(theta: float, s: int) -> float:
    return math.log1p(math.exp(theta)) - s * theta


def test_hashnet_label_bank_fills_as_items_are_visited():
    method = plugins.methods.create("hashnet", {})
    method.setup(4, 4, LABELS, "cpu")
    assert not method.bank.labels.any()
    loss = method.loss(U[:2], LABELS[:2], torch.tensor([0, 1]))
    # batch items 0, 1 against the bank: rows 2, 3 are unseen (u = 0 and labels 0: a dissimilar pair, θ = 0)
    pairs = []
    for i in range(2):
        for j in range(4):
            seen = j < 2
            s = int(float(LABELS[i] @ LABELS[j]) > 0) if seen else 0
            pairs.append((nll(0.1 * float(U[i] @ U[j]) if seen else 0.0, s), s))
    s1 = sum(s for _, s in pairs)
    assert s1 == 2  # only (0, 0) and (1, 1); with every label known (0, 2) would be similar too
    expected = sum(l for l, s in pairs if s) / s1 + sum(l for l, s in pairs if not s) / (len(pairs) - s1)
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    assert torch.equal(method.bank.labels[:2], LABELS[:2]) and not method.bank.labels[2:].any()
    method.loss(U[2:], LABELS[2:], torch.tensor([2, 3]))  # the rest of the first epoch
    assert torch.equal(method.bank.labels, LABELS)

    known = plugins.methods.create("hashnet", {"label_bank": "all"})
    known.setup(4, 4, LABELS, "cpu")
    assert torch.equal(known.bank.labels, LABELS)
    assert float(known.loss(U[:2], LABELS[:2], torch.tensor([0, 1]))) != pytest.approx(expected, rel=1e-3)


def test_adversarial_training_installs_every_label():
    """CgAT's ``preinstall(U_ben, train_L)`` and SAAT's ``model.Y.data = train_label``."""
    dataset = plugins.datasets.create("shapes", {"num_items": 30, "num_classes": 6, "image_size": 32})
    indices = np.arange(12)
    labels = torch.as_tensor(dataset.labels[indices], dtype=torch.float32)
    data = TrainData(dataset, indices, labels)
    torch.manual_seed(0)
    model = HashModel(plugins.backbones.create("smallcnn", {"width": 8, "features": 32}).build(32), 8)
    method = plugins.methods.create("hashnet", {})
    params = plugins.defenses.create("cgat", {}).params
    bank = preinstall_bank(model, method, data, DefenseContext(torch.device("cpu"), torch.Generator(), Reporter()),
                           params)
    assert bank is method.bank and torch.equal(bank.labels, labels)
    assert bank.labels.data_ptr() != labels.data_ptr()  # the bank's own copy: filling it never writes the split's
