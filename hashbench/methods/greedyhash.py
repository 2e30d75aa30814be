"""GreedyHash (Su, Zhang, Han, Tian, NeurIPS 2018), in the form of CgAT's and DeepHash-pytorch's code."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from hashbench.api.method import TrainParams
from hashbench.methods.loss_tensors import LossTensors


class _SignStraightThrough(torch.autograd.Function):
    """``sign`` forward, the incoming gradient passed on unchanged backward (GreedyHash's hash layer)."""

    @staticmethod
    def forward(ctx, u: torch.Tensor) -> torch.Tensor:
        return torch.sign(u)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad


def sign_straight_through(u: torch.Tensor) -> torch.Tensor:
    """``sign(u)`` whose gradient is taken to be the identity."""
    return _SignStraightThrough.apply(u)


class GreedyHash(LossTensors):
    """Cross-entropy of a linear classifier on the *binary* codes, with a straight-through sign.

    Paper: S. Su, C. Zhang, K. Han, Y. Tian. *Greedy Hash: Towards Fast Optimization for
    Accurate Hash Coding in CNN*. NeurIPS 2018.

    Loss (cgat_spec §4): ``CE(W·sign(u), c(y)) + α·mean(| |u| − 1 |³)`` where the sign is
    computed exactly in the forward pass and its gradient is the identity (the paper's greedy
    hash layer), ``W`` is a C×K classifier without bias, and the mean runs over all batch
    entries.  The paper is single-label; for multi-label data ``multilabel`` chooses the target:
    ``argmax`` takes the first of the item's labels as its class (CgAT's and DeepHash-pytorch's
    code; an unlabelled item counts as class 0), ``spread`` is the cross-entropy against the
    label vector divided by its sum (Ortho's multi-label form; unlabelled items contribute 0).
    On single-label data the two are the same.

    ``W`` starts as ``nn.Linear`` does, U(±1/√K), drawn from a generator seeded from torch's
    global generator (which the harness seeds with the cell's seed), and is stored with the
    model.  With ``learn_classifier`` (the paper) it is learned with the network in clean
    training; the released codes of CgAT and DeepHash-pytorch build their optimiser over the
    network only, so there it stays at its random start (``learn_classifier: false``).  Defenses
    keep the clean model's ``W`` fixed.

    Parameters: ``alpha`` (α, weight of the cubic quantisation penalty) 0.1, ``learn_classifier``
    true, ``multilabel`` ``argmax``, and the clean-training settings of :class:`TrainParams`.
    """

    name = "greedyhash"
    description = "cross-entropy of a linear classifier on straight-through sign codes + cubic quantisation"
    paper = ("Su, Zhang, Han, Tian. Greedy Hash: Towards Fast Optimization for Accurate Hash Coding in CNN. "
             "NeurIPS 2018")

    class Params(TrainParams):
        alpha: float = Field(0.1, ge=0, description="weight α of the cubic quantisation penalty")
        learn_classifier: bool = Field(True, description="learn the classifier W with the network (the paper); "
                                       "false keeps its random start (CgAT's code)")
        multilabel: Literal["argmax", "spread"] = Field(
            "argmax", description="multi-label target: the first label (CgAT's code) or the label vector / its sum")

    def tensor_shapes(self, num_classes: int, bits: int) -> dict[str, tuple[int, ...]]:
        return {"classifier": (num_classes, bits)}

    def draw_tensors(self, num_classes: int, bits: int) -> dict[str, torch.Tensor]:
        generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,))))
        bound = 1 / math.sqrt(bits)
        return {"classifier": (torch.rand(num_classes, bits, generator=generator) * 2 - 1) * bound}

    def learned_tensors(self) -> tuple[str, ...]:
        return ("classifier",) if self.params.learn_classifier else ()

    def loss(self, u: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        u = u.float()
        logits = sign_straight_through(u) @ self.tensors["classifier"].T
        y = y.float()
        if self.params.multilabel == "argmax":
            classification = F.cross_entropy(logits, y.argmax(dim=1))
        else:
            target = y / y.sum(dim=1, keepdim=True).clamp(min=1)
            classification = -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
        quantisation = (u.abs() - 1).abs().pow(3).mean()
        return classification + self.params.alpha * quantisation
