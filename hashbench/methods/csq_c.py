"""CSQ-C: CSQ with Doan et al.'s sliced-Wasserstein coordinate quantisation (CVPR 2022), as in CgAT's code."""

from __future__ import annotations

import torch
from pydantic import Field

from hashbench.api.method import TrainParams
from hashbench.methods.csq import CSQ
from hashbench.methods.dsdh_c import SlicedWassersteinQuantisation


class CSQC(SlicedWassersteinQuantisation, CSQ):
    """CSQ's centre cross-entropy with the sliced-Wasserstein quantisation in place of CSQ's own.

    Papers: L. Yuan et al. *Central Similarity Quantization for Efficient Image and Video
    Retrieval*. CVPR 2020; K. D. Doan, P. Yang, P. Li. *One Loss for Quantization: Deep Hashing
    with Discrete Wasserstein Distributional Matching*. CVPR 2022 (the "-C" variant of CgAT's code).

    Loss (cgat_spec §4): ``BCE((u + 1)/2, (c(y) + 1)/2) + α·L_swdc(u)``: CSQ's centre term with
    the same hash centres, multi-label centres and tie vector (:class:`CSQ`, stored with the
    model), and ``L_swdc(u) = (1/(bK))·Σ_k Σ_i (sort(u[:, k])_i − sort(b̃[:, k])_i)²`` against a
    fresh sample ``b̃`` of balanced ±1 bits per batch (:class:`SlicedWassersteinQuantisation`).
    CSQ's ``λ·mean((|u| − 1)²)`` is dropped.

    Parameters: ``quantization_alpha`` (α) 0.1, ``center_seed`` (seed of CSQ's random centres
    and tie vector) 0, and the clean-training settings of :class:`TrainParams`.
    """

    name = "csq-c"
    description = "CSQ's BCE to Hadamard hash centres + sliced-Wasserstein coordinate quantisation"
    paper = (
        "Yuan et al. Central Similarity Quantization for Efficient Image and Video Retrieval. CVPR 2020, with "
        "Doan, Yang, Li. One Loss for Quantization: Deep Hashing with Discrete Wasserstein Distributional "
        "Matching. CVPR 2022 (as in CgAT, WWW 2023)"
    )

    class Params(TrainParams):
        quantization_alpha: float = Field(0.1, ge=0, description="weight α of the sliced-Wasserstein quantisation")
        center_seed: int = Field(0, ge=0, description="seed of the random centres and tie vector")

    def loss(self, u: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return self.center_loss(u, y) + self.params.quantization_alpha * self.swd_quantisation(u.float())
