"""The one engine every iterative attack and adversarial-training defense uses.

:func:`minimise` optimises the adversarial image itself inside the L∞ ball of radius ε
around ``x`` (pixel units of [0, 1] images): optional uniform random start, then
``iterations`` updates, each followed by projection onto the ball and onto [0, 1].  The
update is a signed-gradient step of ``step_size`` (PGD), or one step of SGD (with
momentum) or Adam on the image variable with learning rate ``step_size`` (HAG, SDHA).  The
model is called as ``model(x', alpha)`` with the tanh scale ``alpha`` taken from one of the
schedules of :func:`alpha_at`; the objective, a function of those outputs and of ``x'``,
is minimised.  Gradients are taken with respect to the image only; model parameters never
accumulate gradients.

:func:`pgd` is the common special case: signed PGD on the relaxed inner product with a
target code ``c``: ``+mean(f(x') ⊙ c)`` pushes away from ``c`` (untargeted),
``−mean(f(x') ⊙ c)`` pulls towards it (targeted), or any ``loss_fn(outputs, c)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, get_args

import torch
from torch import nn

AlphaSchedule = Literal["none", "proportional", "bai"]
Optimizer = Literal["sign", "sgd", "adam"]

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
    """Settings of :func:`minimise`.

    ``step_size`` is the signed step for ``optimizer="sign"`` and the learning rate for
    ``"sgd"`` (with ``momentum``) and ``"adam"`` (with ``betas``).
    """

    epsilon: float
    step_size: float
    iterations: int
    random_start: bool = True
    alpha_schedule: AlphaSchedule = "none"
    optimizer: Optimizer = "sign"
    momentum: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)

    def __post_init__(self) -> None:
        if not self.epsilon >= 0:
            raise ValueError(f"PGD epsilon must be >= 0, got {self.epsilon!r}")
        if not self.step_size > 0:
            raise ValueError(f"PGD step_size must be > 0, got {self.step_size!r}")
        if isinstance(self.iterations, bool) or int(self.iterations) != self.iterations or self.iterations < 0:
            raise ValueError(f"PGD iterations must be a non-negative integer, got {self.iterations!r}")
        if self.alpha_schedule not in get_args(AlphaSchedule):
            raise ValueError(f"unknown alpha schedule {self.alpha_schedule!r}; choose none, proportional or bai")
        if self.optimizer not in get_args(Optimizer):
            raise ValueError(f"unknown PGD optimizer {self.optimizer!r}; choose sign, sgd or adam")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"PGD momentum must be in [0, 1), got {self.momentum!r}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"PGD betas must be two numbers in [0, 1), got {self.betas!r}")


LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``loss(outputs, code) -> scalar`` to minimise; outputs are ``f(x', alpha)``."""

Objective = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``objective(outputs, x_adv) -> scalar`` to minimise; outputs are ``f(x_adv, alpha)``."""


def inner_product_loss(targeted: bool) -> LossFn:
    sign = -1.0 if targeted else 1.0

    def loss(outputs: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        return sign * (outputs * code).mean()

    return loss


def project(x_adv: torch.Tensor, x: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Clip into the ε-ball around ``x`` and into [0, 1]."""
    return torch.min(torch.max(x_adv, x - epsilon), x + epsilon).clamp_(0.0, 1.0)


def _image_optimizer(config: PGDConfig, x_adv: torch.Tensor) -> torch.optim.Optimizer | None:
    if config.optimizer == "sgd":
        return torch.optim.SGD([x_adv], lr=config.step_size, momentum=config.momentum)
    if config.optimizer == "adam":
        return torch.optim.Adam([x_adv], lr=config.step_size, betas=config.betas)
    return None


def minimise(
    model: nn.Module,
    x: torch.Tensor,
    objective: Objective,
    config: PGDConfig,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Minimise ``objective(model(x', alpha), x')`` over ``x'`` in the ε-ball; returns the detached batch."""
    x = x.detach()
    if config.random_start:
        noise = torch.rand(x.shape, generator=generator, device="cpu").to(x.device, x.dtype)
        start = project(x + (2 * noise - 1) * config.epsilon, x, config.epsilon)
    else:
        start = x.clone()
    x_adv = start.requires_grad_(True)
    optimizer = _image_optimizer(config, x_adv)
    for t in range(config.iterations):
        outputs = model(x_adv, alpha_at(config.alpha_schedule, t, config.iterations))
        (grad,) = torch.autograd.grad(objective(outputs, x_adv), x_adv)
        with torch.no_grad():
            if optimizer is None:
                x_adv.sub_(config.step_size * grad.sign())
            else:
                x_adv.grad = grad
                optimizer.step()
            x_adv.copy_(project(x_adv, x, config.epsilon))
    return x_adv.detach()


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
    """Run :func:`minimise` from ``x`` on ``loss_fn(outputs, code)`` (default: the inner product)."""
    loss_fn = loss_fn or inner_product_loss(targeted)
    code = code.detach().to(x.dtype)
    return minimise(model, x, lambda outputs, _x_adv: loss_fn(outputs, code), config, generator=generator)
