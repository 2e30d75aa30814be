"""DPSH: Deep Pairwise-Supervised Hashing (Li, Wang, Kang, IJCAI 2016), in CgAT's form (spec §4)."""

from __future__ import annotations

import torch
from pydantic import Field

from hashbench.api.method import HashMethod, TrainParams, pairwise_logistic


class DPSH(HashMethod):
    """Pairwise logistic likelihood against the training bank plus a quantisation term.

    Paper: W.-J. Li, S. Wang, W.-C. Kang. *Feature Learning based Deep Supervised Hashing with
    Pairwise Labels*. IJCAI 2016.

    Loss: ``mean_ij[log(1+e^{-|θ_ij|}) + max(θ_ij, 0) − s_ij θ_ij] + η·mean((u − sign u)²)``
    with ``θ_ij = ½ u_i·U_j`` over the batch i and every training item j of the bank U, and
    ``s_ij = 1[y_i·l_j > 0]``.  The bank rows of the batch are overwritten with the current
    (detached) outputs before the loss is computed.

    Parameters: ``eta`` (η, quantisation weight) 1e-3, and the clean-training settings of
    :class:`TrainParams`.
    """

    name = "dpsh"
    description = "pairwise logistic likelihood on a training-set bank + quantisation"
    paper = "Li, Wang, Kang. Feature Learning based Deep Supervised Hashing with Pairwise Labels. IJCAI 2016"
    uses_bank = True

    class Params(TrainParams):
        eta: float = Field(1e-3, ge=0, description="quantisation weight η")

    def loss(self, u: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        bank = self.bank
        bank.update(idx, u)
        likelihood = pairwise_logistic(0.5 * u @ bank.u.T, bank.similarity(y)).mean()
        quantisation = (u - torch.sign(u)).pow(2).mean()
        return likelihood + self.params.eta * quantisation
