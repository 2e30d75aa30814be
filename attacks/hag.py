"""HAG: untargeted attack that flips the query's own code bit by bit, optimised with SGD on the image."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from hashbench.api.attack import Attack, AttackContext, AttackParams
from hashbench.api.params import MAX_ITERATIONS
from hashbench.retrieval.pgd import Objective, PGDConfig, minimise

#: SAAT averages HAG's loss over batches of 128 queries, and its learning rate of 100 is tuned
#: for that.  Dividing the summed per-query losses by this constant instead gives every query
#: the same step whatever the batch size (identical to SAAT for full batches of 128).
REFERENCE_BATCH = 128


#: ``output_image`` values: the image of the last forward pass, or the one after the last update
OutputImage = Literal["last_forward", "last_step"]


def minimise_keeping(model: nn.Module, x: torch.Tensor, objective: Objective, config: PGDConfig,
                     generator: torch.Generator, output_image: OutputImage) -> torch.Tensor:
    """:func:`~hashbench.retrieval.pgd.minimise`, returning for ``"last_forward"`` the image that the last
    iteration evaluated, before its update: SAAT's HAG and SDHA (``adv_generator``) return
    ``sign`` of that forward's output as the adversarial code, so the code is that image's.
    ``"last_step"`` returns the image after every update."""
    seen = {"calls": 0, "image": None}

    def watched(outputs: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        seen["calls"] += 1
        if seen["calls"] == config.iterations:  # minimise updates x_adv in place afterwards
            seen["image"] = x_adv.detach().clone()
        return objective(outputs, x_adv)

    x_adv = minimise(model, x, watched, config, generator=generator)
    return seen["image"] if output_image == "last_forward" and seen["image"] is not None else x_adv


def hag_mask(adv: torch.Tensor, clean: torch.Tensor, tau: float) -> torch.Tensor:
    """Active bits ``m_k = (sign((1 + τ) − |ĥ_k − sign(h_k)|) + 1) / 2``: 1 while not flipped past the margin.

    An exact tie gives 0.5, as in the reference code.  No gradient flows through the mask.
    """
    with torch.no_grad():
        return (torch.sign((1 + tau) - (adv - torch.sign(clean)).abs()) + 1) / 2


def hag_loss(adv: torch.Tensor, clean: torch.Tensor, tau: float, beta: float) -> torch.Tensor:
    """Per-query HAG loss ``(Σ_k m_k ĥ_k h_k / (Σ_k m_k + 1e-8) + 1)² + β (mean_k m_k ĥ_k)²``."""
    mask = hag_mask(adv, clean, tau)
    masked = mask * adv
    agreement = (masked * (mask * clean)).sum(dim=1) / (mask.sum(dim=1) + 1e-8)
    return (agreement + 1).square() + beta * masked.mean(dim=1).square()


class HAG(Attack):
    """Hashing Adversarial Generation (untargeted).

    Paper: E. Yang, T. Liu, C. Deng, D. Tao. *Adversarial Examples for Hamming Space Search*.
    IEEE TCYB 2020; operational definition of the SAAT re-implementation (cgat_spec §2.5).

    With ``h = f(x)`` the query's clean continuous code (α = 1, fixed) and ``ĥ = f(x̂; α)``,
    the mask ``m`` of :func:`hag_mask` keeps the bits not yet flipped past the margin τ and
    the per-query loss is ``(Σ_k m_k ĥ_k h_k / Σ_k m_k + 1)² + β·(mean_k m_k ĥ_k)²``
    (agreement driven to −1, plus a bit-balance term).  The adversarial image ``x̂`` (start
    ``x``) is optimised by SGD on ``Σ_queries loss / 128`` and projected onto the ε-ball and
    [0, 1] after every step.

    Parameters (SAAT's settings): ``tau`` 0.5, ``beta`` 1.0, ``lr`` 100, ``momentum`` 0.9,
    ``iterations`` 2000, ``alpha_schedule`` "proportional" (ten segments 0.1 … 1.0),
    ``epsilon`` 8/255, ``batch_size`` 128, ``output_image`` "last_forward" (SAAT's code keeps
    the code of the last forward pass, before the final update; "last_step": the image after it).
    """

    name = "hag"
    description = "untargeted: SGD on the image away from the query's own code (masked agreement loss)"
    paper = "Yang, Liu, Deng, Tao. Adversarial Examples for Hamming Space Search. IEEE TCYB 2020"
    targeted = False

    class Params(AttackParams):
        tau: float = Field(0.5, ge=0, lt=1, description="margin past which a flipped bit leaves the loss")
        beta: float = Field(1.0, ge=0, description="weight of the bit-balance term")
        lr: float = Field(100.0, gt=0, description="SGD learning rate on the image")
        momentum: float = Field(0.9, ge=0, lt=1)
        iterations: int = Field(2000, gt=0, le=MAX_ITERATIONS)
        alpha_schedule: Literal["none", "proportional", "bai"] = "proportional"
        output_image: OutputImage = Field("last_forward", description="the adversarial image returned: the one of "
                                          "the last forward pass (SAAT's code) or the one after the last update")

    def perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None, ctx: AttackContext
    ) -> torch.Tensor:
        p = self.params
        with torch.no_grad():
            clean = model(x)

        def objective(outputs: torch.Tensor, _x_adv: torch.Tensor) -> torch.Tensor:
            return hag_loss(outputs, clean, p.tau, p.beta).sum() / REFERENCE_BATCH

        config = PGDConfig(p.epsilon, p.lr, p.iterations, random_start=False, alpha_schedule=p.alpha_schedule,
                           optimizer="sgd", momentum=p.momentum)
        return minimise_keeping(model, x, objective, config, ctx.generator, p.output_image)
