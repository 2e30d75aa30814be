"""DHTA: targeted attack towards the component-vote anchor code of database items with the target label."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from hashbench.api.attack import Attack, AttackContext, AttackParams
from hashbench.api.params import MAX_BATCH_SIZE, MAX_ITERATIONS
from hashbench.retrieval.anchors import anchor_codes
from hashbench.retrieval.pgd import PGDConfig, pgd


class DHTA(Attack):
    """Deep Hashing Targeted Attack.

    Paper: J. Bai, B. Chen, Y. Li, D. Wu, W. Guo, S. Xia, E. Yang. *Targeted Attack for Deep
    Hashing Based Retrieval*. ECCV 2020 (cgat_spec §2.2, benchmarked in CgAT).

    Anchor code: draw ``anchors`` database items whose label vector equals the query's target
    label ``t`` and take the component-wise vote ``a = sign(Σ_j b_j)`` of their codes under the
    attacked model (:mod:`hashbench.retrieval.anchors`; draws use the run's generator).  Objective,
    minimised by signed PGD in the L∞ ball: ``−(1/K)·⟨f(x + δ; α), a⟩``.

    Target labels without an exact-match database item fall back to the database items with
    the highest Jaccard similarity to the target (the split's targets always have an exact
    match).  Draws are with replacement by default, as in the ProS-GAN, TAD and SAAT
    re-implementations; ``anchor_replacement: false`` draws without replacement as the official
    code, and a pool smaller than ``anchors`` then votes with all its items.

    Parameters (CgAT-faithful settings of cgat_spec §2.7): ``anchors`` 9, ``anchor_replacement``
    true, ``epsilon`` 8/255 (pixel space; the official code's 0.032 was in normalised space),
    ``step_size`` 1/255, ``iterations`` 2000, ``random_start`` false, ``alpha_schedule`` "bai"
    (Bai et al.'s tanh-scale continuation 0.1 → 1, stretched to ``iterations``),
    ``batch_size`` 128.
    """

    name = "dhta"
    description = "targeted PGD towards the vote of 9 database codes with the target label"
    paper = "Bai, Chen, Li, Wu, Guo, Xia, Yang. Targeted Attack for Deep Hashing Based Retrieval. ECCV 2020"
    targeted = True

    class Params(AttackParams):
        anchors: int = Field(9, ge=1, le=MAX_BATCH_SIZE, description="database codes in the anchor vote")
        anchor_replacement: bool = Field(True, description="draw anchors with replacement")
        step_size: float = Field(1 / 255, gt=0)
        iterations: int = Field(2000, gt=0, le=MAX_ITERATIONS)
        random_start: bool = False
        alpha_schedule: Literal["none", "proportional", "bai"] = "bai"

    def anchor_codes(self, target: torch.Tensor, ctx: AttackContext) -> torch.Tensor:
        """The anchor code (``B×K``, values ±1, 0 on a tied vote) of each target label."""
        p = self.params
        return anchor_codes(target, ctx.db_codes, ctx.db_labels, p.anchors, ctx.generator,
                            replace=p.anchor_replacement)

    def perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None, ctx: AttackContext
    ) -> torch.Tensor:
        if target is None:
            raise ValueError(f"attack '{self.name}' is targeted: perturb needs one target label per query")
        p = self.params
        anchors = self.anchor_codes(target, ctx).to(x.device)
        config = PGDConfig(p.epsilon, p.step_size, p.iterations, p.random_start, p.alpha_schedule)
        return pgd(model, x, anchors, config, targeted=True, generator=ctx.generator)
