"""DCH: Deep Cauchy Hashing (Cao, Long, Liu, Wang, CVPR 2018), in CgAT's form (spec §4)."""

from __future__ import annotations

import torch
from pydantic import Field

from hashbench.api.method import HashMethod, TrainParams

#: cosine ceiling (keeps the distance of identical codes away from 0) and norm floor of the original
COS_MAX = 0.99
NORM_MIN = 1e-4


def cauchy_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``d_ij = K/2 · (1 − min(cos(a_i, b_j), 0.99))``, the normalised Hamming-distance surrogate."""
    norms = a.norm(dim=1, keepdim=True) * b.norm(dim=1, keepdim=True).T
    cos = (a @ b.T) / norms.clamp(min=NORM_MIN)
    return (1 - cos.clamp(max=COS_MAX)) * a.shape[1] / 2


class DCH(HashMethod):
    """Cauchy cross-entropy between batch pairs plus a Cauchy quantisation term.

    Paper: Y. Cao, M. Long, B. Liu, J. Wang. *Deep Cauchy Hashing for Hamming Space
    Retrieval*. CVPR 2018.

    Loss (cgat_spec §4, within the batch, no bank): with ``d_ij = K/2 (1 − min(cos(u_i, u_j),
    0.99))`` and ``s_ij = 1[y_i·y_j > 0]`` over all b×b ordered pairs (the diagonal included),
    ``L = mean_ij w_ij [s_ij log(d_ij/γ) + log(1 + γ/d_ij)] + λ mean_i log(1 + d(|u_i|, 1)/γ)``
    where ``w_ij = b²/#similar`` for similar and ``b²/#dissimilar`` for dissimilar pairs (all 1
    when either count is 0) and ``d(|u_i|, 1)`` is the same distance to the all-ones code.

    Parameters: ``gamma`` (γ, Cauchy scale) 20, ``lam`` (λ, quantisation weight) 0.1, and the
    clean-training settings of :class:`TrainParams`.
    """

    name = "dch"
    description = "Cauchy cross-entropy on batch pairs + Cauchy quantisation"
    paper = "Cao, Long, Liu, Wang. Deep Cauchy Hashing for Hamming Space Retrieval. CVPR 2018"

    class Params(TrainParams):
        gamma: float = Field(20.0, gt=0, description="scale γ of the Cauchy distribution")
        lam: float = Field(0.1, ge=0, description="quantisation weight λ")

    def loss(self, u: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        gamma = self.params.gamma
        s = (y.float() @ y.float().T > 0).float()
        similar, dissimilar = s.sum(), (1 - s).sum()
        if similar > 0 and dissimilar > 0:
            w = s * (s.numel() / similar) + (1 - s) * (s.numel() / dissimilar)
        else:
            w = torch.ones_like(s)
        d = cauchy_distance(u, u)
        cauchy = (w * (s * torch.log(d / gamma) + torch.log1p(gamma / d))).mean()
        quantisation = torch.log1p(cauchy_distance(u.abs(), torch.ones_like(u[:1])) / gamma).mean()
        return cauchy + self.params.lam * quantisation
