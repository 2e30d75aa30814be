"""SDHA-t: SAAT's targeted variant of SDHA, Adam on the image towards the codes relevant to the target label."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from attacks.hag import minimise_keeping
from attacks.sdha import SDHA, ap_weights
from hashbench.api.attack import AttackContext
from hashbench.retrieval.pgd import PGDConfig


def targeted_distance(adv: torch.Tensor, codes: torch.Tensor, sigma: float) -> torch.Tensor:
    """``d̃_t(ĥ_q, r_j) = ½ Σ_k |ĥ_qk − r_jk| · σ(−σ ĥ_qk r_jk)``, ``B×N``: only the bits that
    disagree with ``r_j`` weigh (the untargeted surrogate's ``1 − σ`` term is absent).

    ``adv`` is ``B×K`` in [−1, 1], ``codes`` ``N×K`` in {−1, 0, +1}.  The term depends on a code bit
    only through its value, so it is three ``B×K · K×N`` products (``B×N`` memory, not ``B×N×K``);
    with ``|ĥ| ≤ 1``, ``|ĥ − r| = 1 − ĥ r`` for ``r = ±1``.
    """
    pos = (1 - adv) * torch.sigmoid(-sigma * adv)  # r = +1
    neg = (1 + adv) * torch.sigmoid(sigma * adv)  # r = −1
    zero = 0.5 * adv.abs()  # r = 0: |ĥ|·σ(0)
    c = codes.to(adv.dtype).T
    return 0.5 * (pos @ (c > 0).to(adv.dtype) + neg @ (c < 0).to(adv.dtype) + zero @ (c == 0).to(adv.dtype))


def targeted_objective(adv: torch.Tensor, codes: torch.Tensor, relevant: torch.Tensor, sigma: float,
                       z: float) -> torch.Tensor:
    """Per query ``mean_{r ∈ R_q} w(ĥ_q, r)·d̃_t(ĥ_q, r)`` with SDHA's weights ``w = (d_H + 1e-8)^(−z)``
    (:func:`attacks.sdha.ap_weights`); a query whose ``R_q`` is empty gives 0 (SAAT: the mean of
    nothing, NaN)."""
    rel = relevant.to(adv.dtype)
    terms = ap_weights(adv, codes, z) * targeted_distance(adv, codes, sigma)
    return (terms * rel).sum(dim=1) / rel.sum(dim=1).clamp(min=1)


class SDHATargeted(SDHA):
    """SDHA's targeted variant, as in SAAT's released code (``surrogate_func_targeted``).

    Paper: J. Lu, M. Chen, Y. Sun, W. Wang, Y. Wang, X. Yang. *A Smart Adversarial Attack on Deep
    Hashing Based Image Retrieval*. ICMR 2021; targeted variant: SAAT (X. Yuan, Z. Zhang, X. Wang,
    L. Wu, IEEE TIFS 2023), ``model/attack_model/sdha.py``.

    ``R_q`` is the set of training codes (attacked model) sharing a class with the query's
    *target* label.  With ``ĥ = f(x̂; α)``, :func:`targeted_distance` (sharpness σ) and the weights
    ``w = (d_H(sign ĥ_q, r) + 1e-8)^(−z)`` (z < 0: codes still far away pull harder), the loss
    minimised is ``MSE(x̂, x) + (λ/K)·mean_q mean_{r∈R_q} w·d̃_t(ĥ_q, r)``; a query whose target
    has no relevant training code keeps only the MSE term.  ``x̂`` (start ``x``) is optimised by
    Adam and projected onto the ε-ball and [0, 1] after every step.

    Parameters (SAAT's settings): ``sigma`` 10, ``z`` −0.3, ``distance_weight`` λ = 25,
    ``lr`` 0.01, ``betas`` (0.9, 0.999), ``iterations`` 1500 (SAAT's ``attack.py`` sets SDHA's
    iterations, targeted or not), ``alpha_schedule`` "proportional", ``epsilon`` 8/255,
    ``batch_size`` 128, ``output_image`` "last_forward" (as SDHA: the same ``adv_generator``).
    """

    name = "sdha-t"
    description = "targeted SDHA: Adam on the image towards the training codes relevant to the target label"
    paper = ("Lu, Chen, Sun, Wang, Wang, Yang. A Smart Adversarial Attack on Deep Hashing Based Image Retrieval. "
             "ICMR 2021; targeted variant: Yuan, Zhang, Wang, Wu. Semantic-Aware Adversarial Training for Reliable "
             "Deep Hashing Retrieval. IEEE TIFS 2023")
    targeted = True

    class Params(SDHA.Params):
        sigma: float = Field(10.0, gt=0, description="sharpness of the sigmoid in the surrogate distance")
        z: float = Field(-0.3, ge=-10, le=10, description="exponent of the weights (d_H + 1e-8)^(−z)")

    def perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None, ctx: AttackContext
    ) -> torch.Tensor:
        if target is None:
            raise ValueError(f"attack '{self.name}' is targeted: perturb needs one target label per query")
        p = self.params
        codes = ctx.train_codes.to(x.device, x.dtype)
        relevant = (target.to(x.device, x.dtype) @ ctx.train_labels.to(x.device, x.dtype).T) > 0
        scale = p.distance_weight / codes.shape[1]
        x_clean = x.detach()

        def objective(outputs: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
            distance = targeted_objective(outputs, codes, relevant, p.sigma, p.z)
            return F.mse_loss(x_adv, x_clean) + scale * distance.mean()

        config = PGDConfig(p.epsilon, p.lr, p.iterations, random_start=False, alpha_schedule=p.alpha_schedule,
                           optimizer="adam", betas=p.betas)
        return minimise_keeping(model, x, objective, config, ctx.generator, p.output_image)
