"""HSWD: HashNet with Doan et al.'s sliced-Wasserstein quantisation (CVPR 2022), in the form of SAAT's code."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from hashbench.api.method import TrainParams
from hashbench.methods.dsdh_c import SlicedWassersteinQuantisation
from hashbench.methods.hashnet import HashNet


class HSWD(SlicedWassersteinQuantisation, HashNet):
    """HashNet's class-balanced pairwise likelihood on the bank plus the sliced-Wasserstein quantisation.

    Paper: K. D. Doan, P. Yang, P. Li. *One Loss for Quantization: Deep Hashing with Discrete
    Wasserstein Distributional Matching*. CVPR 2022 (its HSWD quantisation on HashNet, as SAAT's
    ``hswd.py`` trains it).

    Loss (saat_spec §5.2, cgat_spec §4): :class:`HashNet`'s loss at the scale ``α = alpha_bits / K``
    (SAAT: 10/K, where CgAT's HashNet uses 0.1), ``Σ_{s=1} ℓ_ij / S₁ + Σ_{s=0} ℓ_ij / S₀`` with
    ``ℓ_ij = log(1 + e^θ_ij) − s_ij θ_ij`` and ``θ_ij = α u_i·U_j`` against every training item j
    of the bank, plus ``β·L_swdc(u)`` against a fresh sample of balanced ±1 bits per batch
    (:class:`SlicedWassersteinQuantisation`).  The bank rows of the batch are overwritten with the
    current (detached) outputs first, and its label rows fill as batches visit the items
    (``label_bank``, as SAAT's HSWD does; see :class:`HashNet`).  SAAT also raises the tanh scale
    of the network during training (HashNet's continuation); the harness's models keep a fixed
    tanh, as for ``hashnet``.

    Parameters: ``alpha_bits`` (α·K) 10, ``quantization_alpha`` (β) 0.1, ``label_bank``
    "visited", and the clean-training settings of :class:`TrainParams`.
    """

    name = "hswd"
    description = "HashNet's balanced pairwise likelihood (α = 10/K) + sliced-Wasserstein coordinate quantisation"
    paper = ("Doan, Yang, Li. One Loss for Quantization: Deep Hashing with Discrete Wasserstein Distributional "
             "Matching. CVPR 2022 (on HashNet, as in SAAT's code)")

    class Params(TrainParams):
        alpha_bits: float = Field(10.0, gt=0, description="α·K: the inner-product scale is α = alpha_bits / K")
        quantization_alpha: float = Field(0.1, ge=0, description="weight β of the sliced-Wasserstein quantisation")
        label_bank: Literal["visited", "all"] = Field(
            "visited", description="label rows known from their first batch (the released codes) or from the start")

    def scale(self, bits: int) -> float:
        return self.params.alpha_bits / bits

    def loss(self, u: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return super().loss(u, y, idx) + self.params.quantization_alpha * self.swd_quantisation(u)
