"""CgAT's center-guided attack ("Ours" in Table 4 of Wang, Lin, Li, WWW 2023)."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from hashbench.api.attack import Attack, AttackContext, AttackParams
from hashbench.api.params import MAX_ITERATIONS
from hashbench.retrieval.codes import center_codes
from hashbench.retrieval.pgd import PGDConfig, pgd


class CenterAttack(Attack):
    """Untargeted PGD that pushes a query's code away from its center code.

    Paper: X. Wang, Y. Lin, Y. Li. *CgAT: Center-Guided Adversarial Training for Deep Hashing-Based
    Retrieval*. WWW 2023 (spec §1.12).

    The center code of a query with true label ``y`` is CHCM over the attacked model's
    training codes ``B`` (eval-mode forward) and training labels:
    ``c = sign(mean_{j relevant} b_j − mean_{j irrelevant} b_j)`` (:func:`hashbench.retrieval.codes.center_codes`).
    Objective, minimised by signed PGD in the L∞ ball: ``(1/K)·⟨f(x + δ; α), c⟩``.

    Parameters (test-time settings are not in the released code; these follow the same lab's
    SAAT attack, as the spec recommends): ``epsilon`` 8/255, ``step_size`` 1/255,
    ``iterations`` 100, ``random_start`` true, ``alpha_schedule`` proportional (SAAT's ten
    segments 0.1…1.0), ``weighting`` "cgat" (CHCM) or "saat" (DMFL), ``batch_size`` 128.
    """

    name = "center"
    description = "untargeted PGD away from the query's CHCM center code"
    paper = "Wang, Lin, Li. CgAT: Center-Guided Adversarial Training for Deep Hashing-Based Retrieval. WWW 2023"
    targeted = False

    class Params(AttackParams):
        step_size: float = Field(1 / 255, gt=0)
        iterations: int = Field(100, gt=0, le=MAX_ITERATIONS)
        random_start: bool = True
        alpha_schedule: Literal["none", "proportional", "bai"] = "proportional"
        weighting: Literal["cgat", "saat"] = "cgat"

    def perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None, ctx: AttackContext
    ) -> torch.Tensor:
        p = self.params
        centers = center_codes(y, ctx.train_codes, ctx.train_labels, weighting=p.weighting).to(x.device)
        config = PGDConfig(p.epsilon, p.step_size, p.iterations, p.random_start, p.alpha_schedule)
        return pgd(model, x, centers, config, targeted=False, generator=ctx.generator)
