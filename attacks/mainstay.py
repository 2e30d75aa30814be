"""SAAT's mainstay attack: PGD away from (or, targeted, towards) the DMFL mainstay code, with a margin-masked loss."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from attacks.center import CenterAttack
from hashbench.api.attack import AttackContext
from hashbench.retrieval.codes import center_codes
from hashbench.retrieval.pgd import LossFn, PGDConfig, pgd


def mainstay_loss(margin: float, targeted: bool) -> LossFn:
    """SAAT's masked quadratic loss on the agreement ``a = f(x') ⊙ m`` of a whole batch.

    Untargeted: active set ``A = {a > −margin}``, loss ``Σ_A (a + 2)·a / |A|`` (drives agreement
    to −1; bits flipped past the margin drop out).  Targeted: ``A = {a < margin}``, loss
    ``−Σ_A (a + 2)·a / |A|`` (drives agreement to +1).  An empty ``A`` gives 0 (SAAT: 0/0).
    """

    def loss(outputs: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        agreement = outputs * code
        with torch.no_grad():
            active = (agreement < margin) if targeted else (agreement > -margin)
            active = active.to(agreement.dtype)
        value = (active * (agreement + 2) * agreement).sum() / active.sum().clamp(min=1)
        return -value if targeted else value

    return loss


class MainstayAttack(CenterAttack):
    """SAAT's mainstay attack (untargeted).

    Paper: X. Yuan, Z. Zhang, X. Wang, L. Wu. *Semantic-Aware Adversarial Training for
    Reliable Deep Hashing Retrieval*. IEEE TIFS 2023 (saat_spec §2–§3).

    The mainstay code of label ``y`` is DMFL over the attacked model's training codes
    (:func:`hashbench.retrieval.codes.center_codes` with ``weighting="saat"``:
    ``m = sign(Σ_P s_j b_j / Σ_P s − mean_N b_j)``, ``s_j`` the label cosine); ``y`` is the
    query's true label.  Objective, minimised by signed PGD in the L∞ ball, with
    ``a = f(x + δ; α) ⊙ m``: ``Σ_{a > −margin} (a + 2)·a / |{a > −margin}|``
    (:func:`mainstay_loss`, over the whole batch).

    Parameters (SAAT's settings): ``margin`` 0.5, ``weighting`` "saat" (DMFL; "cgat" gives
    CHCM codes), ``epsilon`` 8/255, ``step_size`` 1/255, ``iterations`` 100, ``random_start``
    true, ``alpha_schedule`` "proportional" (ten segments 0.1 … 1.0), ``batch_size`` 128.
    """

    name = "mainstay"
    description = "untargeted PGD away from the query's DMFL mainstay code (SAAT's masked loss)"
    paper = "Yuan, Zhang, Wang, Wu. Semantic-Aware Adversarial Training for Reliable Deep Hashing Retrieval. IEEE TIFS 2023"
    targeted = False

    class Params(CenterAttack.Params):
        weighting: Literal["cgat", "saat"] = "saat"
        margin: float = Field(0.5, ge=0, le=1, description="agreement margin past which a bit leaves the loss")

    def perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None, ctx: AttackContext
    ) -> torch.Tensor:
        p = self.params
        if self.targeted and target is None:
            raise ValueError(f"attack '{self.name}' is targeted: perturb needs one target label per query")
        labels = target if self.targeted else y
        codes = center_codes(labels, ctx.train_codes, ctx.train_labels, weighting=p.weighting).to(x.device)
        config = PGDConfig(p.epsilon, p.step_size, p.iterations, p.random_start, p.alpha_schedule)
        loss = mainstay_loss(p.margin, self.targeted)
        return pgd(model, x, codes, config, loss_fn=loss, generator=ctx.generator)


class TargetedMainstayAttack(MainstayAttack):
    """SAAT's mainstay attack, targeted: PGD towards the mainstay code of the target label.

    Paper: as :class:`MainstayAttack` (saat_spec §3.1–3.2).  The code is DMFL of the split's
    target label ``t``; with ``a = f(x + δ; α) ⊙ m(t)`` the objective minimised is
    ``−Σ_{a < margin} (a + 2)·a / |{a < margin}|``.  Parameters and defaults as the untargeted
    attack: ``margin`` 0.5, ``weighting`` "saat", ``epsilon`` 8/255, ``step_size`` 1/255,
    ``iterations`` 100, ``random_start`` true, ``alpha_schedule`` "proportional",
    ``batch_size`` 128.
    """

    name = "mainstay-t"
    description = "targeted PGD towards the DMFL mainstay code of the target label (SAAT's masked loss)"
    targeted = True
