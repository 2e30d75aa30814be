"""The one PGD engine every signed-gradient attack and adversarial-training defense uses.

Projected gradient descent in the L∞ ball of radius ε around ``x`` (pixel units of [0, 1]
images): optional uniform random start, ``iterations`` signed steps of ``step_size``,
projection onto the ball and onto [0, 1] after every step, and a tanh-scale (``alpha``)
schedule.  The loss is minimised.  By default it is the relaxed inner product with a
target code ``c``: ``+mean(f(x') ⊙ c)`` pushes away from ``c`` (untargeted),
``−mean(f(x') ⊙ c)`` pulls towards it (targeted).  Gradients are taken with respect to
the perturbation only; model parameters never accumulate gradients.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch import nn

AlphaSchedule = Literal["none", "proportional", "bai"]

#: SAAT's proportional schedule: T split into ten equal segments (spec §2.0.3).
_PROPORTIONAL = (0.1, 0.1, 0.1, 0.1, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)


def alpha_at(schedule: AlphaSchedule, t: int, iterations: int) -> float:
    """The tanh scale at 0-based iteration ``t`` of ``iterations``."""
    if schedule == "none":
        return 1.0
    if schedule == "proportional":
        segment = min(9, (t * 10) // max(iterations, 1))
        return _PROPORTIONAL[segment]
    if schedule == "bai":  # Bai et al.'s 2000-iteration schedule, stretched to any length
        frac = t / max(iterations, 1)
        for bound, alpha in ((0.5, 0.1), (0.6, 0.2), (0.7, 0.3), (0.8, 0.5), (0.9, 0.7)):
            if frac < bound:
                return alpha
        return 1.0
    raise ValueError(f"unknown alpha schedule {schedule!r}; choose none, proportional or bai")


@dataclass(frozen=True)
class PGDConfig:
    epsilon: float
    step_size: float
    iterations: int
    random_start: bool = True
    alpha_schedule: AlphaSchedule = "none"


LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``loss(outputs, code) -> scalar`` to minimise; outputs are ``f(x', alpha)``."""


def inner_product_loss(targeted: bool) -> LossFn:
    sign = -1.0 if targeted else 1.0

    def loss(outputs: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        return sign * (outputs * code).mean()

    return loss


def project(x_adv: torch.Tensor, x: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Clip into the ε-ball around ``x`` and into [0, 1]."""
    return torch.min(torch.max(x_adv, x - epsilon), x + epsilon).clamp_(0.0, 1.0)


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    code: torch.Tensor,
    config: PGDConfig,
    *,
    targeted: bool = False,
    loss_fn: LossFn | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Run signed PGD from ``x`` against ``code``; returns the detached adversarial batch."""
    loss_fn = loss_fn or inner_product_loss(targeted)
    x = x.detach()
    code = code.detach().to(x.dtype)
    if config.random_start:
        noise = torch.rand(x.shape, generator=generator, device="cpu").to(x.device, x.dtype)
        x_adv = project(x + (2 * noise - 1) * config.epsilon, x, config.epsilon)
    else:
        x_adv = x.clone()
    for t in range(config.iterations):
        x_adv.requires_grad_(True)
        outputs = model(x_adv, alpha_at(config.alpha_schedule, t, config.iterations))
        (grad,) = torch.autograd.grad(loss_fn(outputs, code), x_adv)
        with torch.no_grad():
            x_adv = project(x_adv - config.step_size * grad.sign(), x, config.epsilon)
    return x_adv.detach()
