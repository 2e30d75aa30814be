"""DPH: the deep pairwise hashing model of the HAG paper (Yang et al., TCYB 2020); SAAT's default victim."""

from __future__ import annotations

import torch

from hashbench.api.method import HashMethod, TrainParams


class DPH(HashMethod):
    """Squared error between scaled code inner products and ±1 pairwise similarity, over the bank.

    Paper: E. Yang, T. Liu, C. Deng, D. Tao. *Adversarial Examples for Hamming Space Search*.
    IEEE Transactions on Cybernetics 2020 (the victim model of its HAG attack).

    Loss (cgat_spec §4, saat_spec §4.1): ``mean_ij (u_i·U_j / K − (2 s_ij − 1))²`` over the
    batch i and every training item j of the bank U, with ``s_ij = 1[y_i·l_j > 0]`` and K the
    code length.  The bank rows of the batch are overwritten with the current (detached)
    outputs before the loss is computed.

    Parameters: none of its own; the clean-training settings of :class:`TrainParams` (CgAT's
    recipe).  The ``saat`` grids train it with SAAT's ``hashing.py`` recipe instead: ``batch_size``
    32, ``augment`` false, ``hash_init`` ``pytorch_default``.
    """

    name = "dph"
    description = "squared error of scaled inner products to ±1 similarity, on a training-set bank"
    paper = "Yang, Liu, Deng, Tao. Adversarial Examples for Hamming Space Search. IEEE TCYB 2020"
    uses_bank = True
    Params = TrainParams

    def loss(self, u: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        bank = self.bank
        bank.update(idx, u)
        target = 2 * bank.similarity(y) - 1
        return (u @ bank.u.T / u.shape[1] - target).pow(2).mean()
