"""The shared base of the transfer-attack optimisers (BIM, MI, DI, NI, SI-NI, VMI) in the hashing setting of SAAT.

Not an attack of its own: ``bim``, ``mi-fgsm``, ``di-fgsm``, ``ni-fgsm``, ``si-ni-fgsm`` and
``vmi-fgsm`` (one file each) subclass :class:`TransferAttack` and choose the optimiser options
of the shared engine (:class:`hashbench.retrieval.pgd.PGDConfig`).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

from attacks.mainstay import mainstay_loss
from hashbench.api.attack import Attack, AttackContext, AttackParams, PrepareSizes
from hashbench.api.params import MAX_ITERATIONS
from hashbench.retrieval.codes import center_codes, to_binary
from hashbench.retrieval.pgd import PGDConfig, pgd

#: SAAT's generators (``model/adv_generator/``), as SAAT: Yuan, Zhang, Wang, Wu, IEEE TIFS 2023.
SAAT = "Yuan, Zhang, Wang, Wu. Semantic-Aware Adversarial Training for Reliable Deep Hashing Retrieval. IEEE TIFS 2023"

Guide = Literal["mainstay", "center", "own"]


def guide_codes(guide: Guide, model: nn.Module, x: torch.Tensor, labels: torch.Tensor,
                ctx: AttackContext) -> torch.Tensor:
    """The code a transfer attack pushes the query away from (``B×K``, float on ``x``'s device).

    ``mainstay``: SAAT's DMFL code of the query's label over the attacked model's training codes;
    ``center``: CgAT's CHCM code (:func:`hashbench.retrieval.codes.center_codes`); ``own``: the query's own
    clean code ``sign f(x)`` (0 mapped to +1).
    """
    if guide == "own":
        with torch.no_grad():
            return to_binary(model(x)).to(x.dtype)
    weighting = "saat" if guide == "mainstay" else "cgat"
    return center_codes(labels, ctx.train_codes, ctx.train_labels, weighting=weighting).to(x.device, x.dtype)


class TransferParams(AttackParams):
    """What every transfer optimiser shares (SAAT's generator settings)."""

    step_size: float = Field(1 / 255, gt=0)
    iterations: int = Field(100, gt=0, le=MAX_ITERATIONS)
    random_start: bool = False
    alpha_schedule: Literal["none", "proportional", "bai"] = "proportional"
    guide: Guide = Field("mainstay", description="the code to push away from: mainstay (DMFL), center (CHCM) "
                                                 "or the query's own clean code")
    margin: float = Field(0.5, ge=0, le=1, description="agreement margin past which a bit leaves the loss")


class MomentumParams(TransferParams):
    """The optimisers with MI's momentum: its decay factor (1.0 in Dong et al. and in SAAT's generators)."""

    decay: float = Field(1.0, ge=0, le=10, description="momentum decay factor μ")


class TransferAttack(Attack):
    """Untargeted signed-gradient attack away from a guide code with SAAT's masked loss.

    With ``a = f(x + δ; α) ⊙ c`` (``c`` from :func:`guide_codes`), the objective minimised is SAAT's
    ``Σ_{a > −margin} (a + 2)·a / |{a > −margin}|`` (:func:`attacks.mainstay.mainstay_loss`), over
    the L∞ ball, by the shared engine with the optimiser options of :meth:`optimizer_options`.
    """

    targeted = False
    paper: ClassVar[str] = SAAT
    Params: ClassVar[type[TransferParams]] = TransferParams

    def optimizer_options(self) -> dict[str, Any]:
        """The :class:`~hashbench.retrieval.pgd.PGDConfig` transfer options of this optimiser (none: BIM)."""
        return {}

    def pgd_config(self) -> PGDConfig:
        """The shared engine's settings: the budget, the step and this optimiser's options."""
        p = self.params
        return PGDConfig(p.epsilon, p.step_size, p.iterations, p.random_start, p.alpha_schedule,
                         **self.optimizer_options())

    def perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None, ctx: AttackContext
    ) -> torch.Tensor:
        p = self.params
        codes = guide_codes(p.guide, model, x, y, ctx)
        return pgd(model, x, codes, self.pgd_config(), loss_fn=mainstay_loss(p.margin, targeted=False),
                   generator=ctx.generator)

    def perturb_flops(self, sizes: PrepareSizes) -> int | None:
        """Every iteration takes :attr:`~hashbench.retrieval.pgd.PGDConfig.passes_per_step` gradients (SI's
        copies, VMI's neighbours), each a forward and a backward; plus two forwards."""
        config = self.pgd_config()
        return (3 * config.iterations * config.passes_per_step + 2) * sizes.model_forward_flops
