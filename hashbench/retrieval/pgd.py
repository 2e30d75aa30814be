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

Transfer optimisers.  The signed optimiser also runs the gradient estimators of the
transfer-attack literature, composable through :class:`PGDConfig` (all off by default):

* MI (``momentum_decay`` μ > 0; Dong et al., CVPR 2018): ``g ← μ·g + ĝ / mean|ĝ|`` per image,
  step ``−η·sign(g)``;
* NI (``nesterov``; Lin et al., ICLR 2020): ``ĝ`` is taken at the look-ahead point
  ``x' − η·μ·g``;
* SI (``scales`` m > 1; Lin et al., ICLR 2020): ``ĝ`` is the mean over ``i < m`` of the gradient
  with respect to ``x'`` of the objective at ``x' / 2^i`` (so the i-th term carries the factor
  2^−i, as in the paper's ∇ₓJ(Sᵢ(x)));
* DI (``diversity_prob`` p > 0; Xie et al., CVPR 2019): each model input is, with probability
  p, shrunk to a random size in [⌊r·H⌋, H) and zero-padded back at a random offset
  (:func:`input_diversity`);
* VMI (``variance_samples`` N > 0; Wang & He, CVPR 2021): ``g ← μ·g + (ĝ + v)/mean|ĝ + v|``,
  then ``v ← mean_k ĝ(x' + r_k) − ĝ`` with ``r_k ~ U(−β·ε, β·ε)`` around the current iterate.

Every random draw (DI's sizes and offsets, VMI's neighbours) comes from the run's generator.
A zero gradient (e.g. every bit past a masked loss's margin) normalises to zero instead of NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal, get_args

import torch
import torch.nn.functional as F
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
    #: transfer optimisers of the signed optimiser (module docstring); the defaults turn them off
    momentum_decay: float = 0.0
    nesterov: bool = False
    scales: int = 1
    variance_samples: int = 0
    variance_bound: float = 1.5
    diversity_prob: float = 0.0
    diversity_resize: float = 0.9

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
        if not (math.isfinite(self.momentum_decay) and self.momentum_decay >= 0):
            raise ValueError(f"PGD momentum_decay must be a finite number >= 0, got {self.momentum_decay!r}")
        for name, low in (("scales", 1), ("variance_samples", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < low:
                raise ValueError(f"PGD {name} must be an integer >= {low}, got {value!r}")
        if not (math.isfinite(self.variance_bound) and self.variance_bound >= 0):
            raise ValueError(f"PGD variance_bound must be a finite number >= 0, got {self.variance_bound!r}")
        if not 0 <= self.diversity_prob <= 1:
            raise ValueError(f"PGD diversity_prob must be in [0, 1], got {self.diversity_prob!r}")
        if not 0 < self.diversity_resize <= 1:
            raise ValueError(f"PGD diversity_resize must be in (0, 1], got {self.diversity_resize!r}")
        if self.transfer and self.optimizer != "sign":
            raise ValueError(f"the transfer options (momentum_decay, nesterov, scales, variance_samples, "
                             f"diversity_prob) need optimizer='sign', not {self.optimizer!r}")

    @property
    def transfer(self) -> bool:
        """Whether any transfer optimiser (MI, NI, SI, DI, VMI) is on."""
        return (self.momentum_decay > 0 or self.nesterov or self.scales > 1 or self.variance_samples > 0
                or self.diversity_prob > 0)

    @property
    def passes_per_step(self) -> int:
        """Forward + backward passes through the model per iteration: SI's scaled copies, for the
        gradient at the point and for each of VMI's neighbours (1 with the defaults)."""
        return self.scales * (1 + self.variance_samples)


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


def input_diversity(x: torch.Tensor, prob: float, resize: float, generator: torch.Generator | None = None
                    ) -> torch.Tensor:
    """DI's random transform of a batch (Xie et al., CVPR 2019): with probability ``prob`` the
    batch is shrunk (bilinear) to ``h × w`` with ``h`` drawn from ``[⌊resize·H⌋, H)`` and ``w`` in
    proportion, then zero-padded back to ``H × W`` at a random offset; otherwise it is returned
    unchanged.  One draw per call, shared by the batch.  ``prob = 0`` draws nothing; an image too
    small to shrink (``⌊resize·H⌋ ≥ H``) is returned unchanged."""
    if prob <= 0:
        return x
    if float(torch.rand(1, generator=generator)) >= prob:
        return x
    height, width = x.shape[-2:]
    low = max(1, math.floor(resize * height))
    if low >= height:
        return x
    h = int(torch.randint(low, height, (1,), generator=generator))
    w = max(1, min(width, round(width * h / height)))
    top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
    left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
    shrunk = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    return F.pad(shrunk, (left, width - w - left, top, height - h - top), value=0.0)


def input_gradient(
    model: nn.Module,
    objective: Objective,
    x_adv: torch.Tensor,
    alpha: float,
    config: PGDConfig,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One gradient estimate ``ĝ`` of the objective at ``x_adv``: the mean over SI's ``scales``
    copies ``x_adv / 2^i`` (each through DI's :func:`input_diversity`) of the gradient with
    respect to ``x_adv``; the objective's second argument is ``x_adv`` itself.  With the defaults
    this is the plain gradient."""
    point = x_adv.detach().requires_grad_(True)
    total = torch.zeros_like(point)
    for i in range(config.scales):
        inputs = point / 2**i if i else point
        inputs = input_diversity(inputs, config.diversity_prob, config.diversity_resize, generator)
        (grad,) = torch.autograd.grad(objective(model(inputs, alpha), point), point)
        total += grad
    return total / config.scales if config.scales > 1 else total


def _normalised(grad: torch.Tensor) -> torch.Tensor:
    """``grad / mean|grad|`` per image (MI's L1 normalisation up to a constant); 0 stays 0."""
    scale = grad.abs().flatten(1).mean(dim=1).clamp_min(torch.finfo(grad.dtype).tiny)
    return grad / scale.view(-1, *([1] * (grad.dim() - 1)))


def _minimise_transfer(
    model: nn.Module,
    x: torch.Tensor,
    x_adv: torch.Tensor,
    objective: Objective,
    config: PGDConfig,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """:func:`minimise`'s loop for the transfer optimisers (module docstring), from ``x_adv``."""
    step, decay = config.step_size, config.momentum_decay
    momentum = torch.zeros_like(x_adv)
    variance = torch.zeros_like(x_adv)
    bound = config.variance_bound * config.epsilon
    for t in range(config.iterations):
        alpha = alpha_at(config.alpha_schedule, t, config.iterations)
        point = x_adv - step * decay * momentum if config.nesterov else x_adv
        grad = input_gradient(model, objective, point, alpha, config, generator)
        momentum = decay * momentum + _normalised(grad + variance if config.variance_samples else grad)
        if config.variance_samples:
            around = torch.zeros_like(x_adv)
            for _ in range(config.variance_samples):
                noise = torch.rand(x.shape, generator=generator, device="cpu").to(x.device, x.dtype)
                around += input_gradient(model, objective, x_adv + (2 * noise - 1) * bound, alpha, config, generator)
            variance = around / config.variance_samples - grad
        x_adv = project(x_adv - step * momentum.sign(), x, config.epsilon)
    return x_adv.detach()


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
    if config.transfer:
        return _minimise_transfer(model, x, start, objective, config, generator)
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
