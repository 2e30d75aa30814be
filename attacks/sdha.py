"""SDHA: untargeted attack on a weighted surrogate Hamming distance to the query's relevant codes, with Adam."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn

from attacks.hag import OutputImage, minimise_keeping
from hashbench.api.attack import Attack, AttackContext, AttackParams
from hashbench.api.params import MAX_ITERATIONS
from hashbench.retrieval.pgd import PGDConfig


def _bit_terms(adv: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-bit distance terms for a database bit r = +1, −1 and 0 (``B×K`` each).

    The term ``½|ĥ − r|·σ(s ĥ r) + 1 − σ(s ĥ r)`` depends on ``r`` only through three values;
    with ``|ĥ| ≤ 1``, ``|ĥ − r| = 1 − ĥ r`` for ``r = ±1``.
    """
    def term(p: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(sigma * p)
        return 0.5 * (1 - p) * gate + 1 - gate

    return term(adv), term(-adv), 0.25 * adv.abs() + 0.5


def surrogate_distance(adv: torch.Tensor, codes: torch.Tensor, sigma: float) -> torch.Tensor:
    """``d̃(ĥ_q, r_j) = ½ Σ_k |ĥ_qk − r_jk| σ(σ ĥ_qk r_jk) + Σ_k (1 − σ(σ ĥ_qk r_jk))``, ``B×N``.

    ``adv`` is ``B×K`` in [−1, 1], ``codes`` ``N×K`` in {−1, 0, +1} (or both batched over
    leading dimensions).  Computed as three ``B×K · K×N`` products, so memory is ``B×N``
    rather than ``B×N×K``.
    """
    pos, neg, zero = _bit_terms(adv, sigma)
    c = codes.to(adv.dtype).transpose(-1, -2)
    return pos @ (c > 0).to(adv.dtype) + neg @ (c < 0).to(adv.dtype) + zero @ (c == 0).to(adv.dtype)


def ap_weights(adv: torch.Tensor, codes: torch.Tensor, z: float) -> torch.Tensor:
    """AP-oriented weights ``w = (d_H(sign ĥ_q, r_j) + 1e-8)^(−z)``, ``B×N`` (shapes as
    :func:`surrogate_distance`), without gradient."""
    with torch.no_grad():
        hamming = 0.5 * (codes.shape[-1] - torch.sign(adv) @ codes.to(adv.dtype).transpose(-1, -2))
        return (hamming + 1e-8).pow(-z)


def weighted_distance(adv: torch.Tensor, codes: torch.Tensor, relevant: torch.Tensor,
                      own: torch.Tensor, sigma: float, z: float) -> torch.Tensor:
    """Per query ``mean_{r ∈ R_q} w(ĥ_q, r)·d̃(ĥ_q, r)``; a query whose ``R_q`` is empty uses its own code ``own``."""
    def weighted(a: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return ap_weights(a, c, z) * surrogate_distance(a, c, sigma)

    rel = relevant.to(adv.dtype)
    count = rel.sum(dim=1)
    bank = (weighted(adv, codes) * rel).sum(dim=1) / count.clamp(min=1)
    own_terms = weighted(adv.unsqueeze(1), own.unsqueeze(1)).flatten()  # B×1×1: each query with its own code
    return torch.where(count > 0, bank, own_terms)


class SDHA(Attack):
    """Smart Deep Hashing Attack (untargeted).

    Paper: J. Lu, M. Chen, Y. Sun, W. Wang, Y. Wang, X. Yang. *A Smart Adversarial Attack on
    Deep Hashing Based Image Retrieval*. ICMR 2021; operational definition of the SAAT
    re-implementation (cgat_spec §2.6).

    ``R_q`` is the set of training codes (attacked model) sharing a class with the query; if
    empty, the query's own clean code ``sign f(x)``.  With ``ĥ = f(x̂; α)``, the surrogate
    distance :func:`surrogate_distance` (sharpness σ) and the AP weights :func:`ap_weights`
    (exponent z), the loss minimised is
    ``MSE(x̂, x) − (λ/K)·mean_q mean_{r∈R_q} w(ĥ_q, r)·d̃(ĥ_q, r)``.
    The adversarial image ``x̂`` (start ``x``) is optimised by Adam and projected onto the
    ε-ball and [0, 1] after every step.

    Parameters (SAAT's settings): ``sigma`` 5, ``z`` 0.5, ``distance_weight`` λ = 25,
    ``lr`` 0.01, ``betas`` (0.9, 0.999), ``iterations`` 1500, ``alpha_schedule``
    "proportional", ``epsilon`` 8/255, ``batch_size`` 128, ``output_image`` "last_forward"
    (SAAT's code keeps the code of the last forward pass, before the final update; "last_step":
    the image after it).
    """

    name = "sdha"
    description = "untargeted: Adam on the image, weighted surrogate Hamming distance to relevant training codes"
    paper = "Lu, Chen, Sun, Wang, Wang, Yang. A Smart Adversarial Attack on Deep Hashing Based Image Retrieval. ICMR 2021"
    targeted = False

    class Params(AttackParams):
        sigma: float = Field(5.0, gt=0, description="sharpness of the sigmoid in the surrogate distance")
        z: float = Field(0.5, ge=0, description="exponent of the AP-oriented weights")
        distance_weight: float = Field(25.0, gt=0, description="λ: weight of the distance term (divided by K)")
        lr: float = Field(0.01, gt=0, description="Adam learning rate on the image")
        betas: tuple[float, float] = (0.9, 0.999)
        iterations: int = Field(1500, gt=0, le=MAX_ITERATIONS)
        alpha_schedule: Literal["none", "proportional", "bai"] = "proportional"
        output_image: OutputImage = Field("last_forward", description="the adversarial image returned: the one of "
                                          "the last forward pass (SAAT's code) or the one after the last update")

        @field_validator("betas")
        @classmethod
        def _betas_in_range(cls, v: tuple[float, float]) -> tuple[float, float]:
            if not all(0 <= b < 1 for b in v):
                raise ValueError("Adam betas must both be in [0, 1)")
            return v

    def perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None, ctx: AttackContext
    ) -> torch.Tensor:
        p = self.params
        codes = ctx.train_codes.to(x.device, x.dtype)
        relevant = (y.to(x.device, x.dtype) @ ctx.train_labels.to(x.device, x.dtype).T) > 0
        with torch.no_grad():
            own = torch.sign(model(x))
        scale = p.distance_weight / codes.shape[1]
        x_clean = x.detach()

        def objective(outputs: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
            distance = weighted_distance(outputs, codes, relevant, own, p.sigma, p.z)
            return F.mse_loss(x_adv, x_clean) - scale * distance.mean()

        config = PGDConfig(p.epsilon, p.lr, p.iterations, random_start=False, alpha_schedule=p.alpha_schedule,
                           optimizer="adam", betas=p.betas)
        return minimise_keeping(model, x, objective, config, ctx.generator, p.output_image)
