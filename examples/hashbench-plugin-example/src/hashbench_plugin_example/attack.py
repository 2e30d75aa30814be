"""FGSM on the hash code: one signed-gradient step of size ε away from the query's own code."""

from __future__ import annotations

import torch
from torch import nn

from hashbench.api.attack import Attack, AttackContext, AttackParams
from hashbench.retrieval.codes import to_binary
from hashbench.retrieval.pgd import PGDConfig, pgd


class FGSM(Attack):
    """Untargeted one-step attack: the cheapest baseline a robust hash model should survive.

    Paper: I. Goodfellow, J. Shlens, C. Szegedy. *Explaining and Harnessing Adversarial
    Examples*. ICLR 2015 (the fast gradient sign method), applied to deep hashing as in the
    hashing-attack literature: the loss is the relaxed agreement with the query's own clean
    code instead of a classification loss.

    With ``b = sign(f(x))`` the clean code of the query (a zero output counts as +1), the
    attack takes one step ``x' = clip_[0,1](x − ε · sign(∇ₓ (1/K)·⟨f(x), b⟩))``, which lowers
    the agreement of the relaxed code with ``b`` and so moves the query away from its own
    neighbours in Hamming space.  It draws no random numbers.

    Parameters: ``epsilon`` (L∞ budget on [0, 1] images, default 8/255, also the step size)
    and ``batch_size`` (queries per batch, default 128), both from
    :class:`hashbench.api.attack.AttackParams`.
    """

    name = "fgsm"
    description = "one signed-gradient step of size ε away from the query's own code (untargeted)"
    paper = "Goodfellow, Shlens, Szegedy. Explaining and Harnessing Adversarial Examples. ICLR 2015"
    targeted = False
    bounded = True
    Params = AttackParams

    def perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None, ctx: AttackContext
    ) -> torch.Tensor:
        epsilon = self.params.epsilon
        if epsilon == 0:
            return x.detach().clone()  # an empty budget leaves the query as it is
        with torch.no_grad():
            own = to_binary(model(x)).to(x.dtype)
        # One PGD iteration with step ε, no random start, is exactly FGSM.
        config = PGDConfig(epsilon=epsilon, step_size=epsilon, iterations=1, random_start=False)
        return pgd(model, x, own, config, targeted=False, generator=ctx.generator)
