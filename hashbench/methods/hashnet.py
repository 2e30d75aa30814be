"""HashNet (Cao, Long, Wang, Yu, ICCV 2017), in CgAT's form: weighted pairwise logistic loss on a bank."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from hashbench.api.method import HashMethod, TrainParams, pairwise_logistic


class HashNet(HashMethod):
    """Class-balanced pairwise logistic likelihood against the training bank.

    Paper: Z. Cao, M. Long, J. Wang, P. S. Yu. *HashNet: Deep Learning to Hash by
    Continuation*. ICCV 2017.

    Loss (cgat_spec §4): with ``θ_ij = α u_i·U_j`` and ``ℓ_ij = log(1+e^{-|θ_ij|}) +
    max(θ_ij, 0) − s_ij θ_ij`` over the batch i and every training item j of the bank U,
    ``L = Σ_{s_ij=1} ℓ_ij / S₁ + Σ_{s_ij=0} ℓ_ij / S₀`` where S₁ and S₀ count the similar and
    dissimilar pairs (CgAT's ``Σ w ℓ / S`` with weights S/S₁ and S/S₀; an empty group
    contributes nothing).  The bank rows of the batch are overwritten with the current
    (detached) outputs first.  The model's tanh has a fixed scale (CgAT's backbones), so
    HashNet's scale continuation is not used.

    Label bank (``label_bank``): CgAT's and SAAT's HashNet start their label bank ``Y`` at zero
    and write a batch's labels as its rows are visited, so in the first epoch every item not yet
    seen is a dissimilar pair (``y·0 = 0``) of every query.  Its output row is 0 too, so such a
    pair adds nothing to the gradient directly, but it counts in S₀ and so shrinks the weight of
    every dissimilar pair ("visited", the default).  "all" fills every label from the start.
    Adversarial training installs every label first (CgAT's ``preinstall(U, L)``).

    Parameters: ``alpha`` (α, inner-product scale) 0.1, ``label_bank`` "visited", and the
    clean-training settings of :class:`TrainParams`.
    """

    name = "hashnet"
    description = "class-balanced pairwise logistic likelihood on a training-set bank"
    paper = "Cao, Long, Wang, Yu. HashNet: Deep Learning to Hash by Continuation. ICCV 2017"
    uses_bank = True

    class Params(TrainParams):
        alpha: float = Field(0.1, gt=0, description="scale α of the inner product")
        label_bank: Literal["visited", "all"] = Field(
            "visited", description="label rows known from their first batch (the released codes) or from the start")

    def setup(self, num_train: int, bits: int, train_labels: torch.Tensor, device: torch.device | str) -> None:
        super().setup(num_train, bits, train_labels, device)
        if self.params.label_bank == "visited":
            self.bank.labels.zero_()

    def loss(self, u: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        bank = self.bank
        bank.update(idx, u)
        if self.params.label_bank == "visited":
            bank.update_labels(idx, y)
        s = bank.similarity(y)
        nll = pairwise_logistic(self.scale(u.shape[1]) * u @ bank.u.T, s)
        similar = (nll * s).sum() / s.sum().clamp(min=1)
        dissimilar = (nll * (1 - s)).sum() / (1 - s).sum().clamp(min=1)
        return similar + dissimilar

    def scale(self, bits: int) -> float:
        """The inner-product scale α for K = ``bits`` (HashNet: the parameter; HSWD: 10/K)."""
        return self.params.alpha
