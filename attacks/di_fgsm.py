"""DI-FGSM in the hashing setting of SAAT: gradients through random resize-and-pad of the input.

Paper: C. Xie, Z. Zhang, Y. Zhou, S. Bai, J. Wang, Z. Ren, A. Yuille. *Improving Transferability of
Adversarial Examples with Input Diversity*. CVPR 2019; hashing setting and defaults: SAAT's
``DIFGSMGenerator`` (Yuan et al., IEEE TIFS 2023).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from attacks.transfer import SAAT, MomentumParams, TransferAttack


class DIParams(MomentumParams):
    random_start: bool = True
    decay: float = Field(0.0, ge=0, le=10, description="momentum decay factor μ (0: DI-FGSM, 1: M-DI²-FGSM)")
    diversity_prob: float = Field(0.5, ge=0, le=1, description="probability of transforming the input")
    resize: float = Field(0.9, gt=0, le=1, description="smallest resized side as a fraction of the image side")


class DIFGSM(TransferAttack):
    """Diverse-inputs FGSM: each model input is, with probability ``diversity_prob``, shrunk to a
    random side in [⌊resize·H⌋, H) and zero-padded back at a random offset
    (:func:`hashbench.retrieval.pgd.input_diversity`); optional momentum ``decay``.

    Loss and guide code as :class:`attacks.transfer.TransferAttack`.  Parameters (SAAT's
    generator): ``decay`` 0, ``diversity_prob`` 0.5, ``resize`` 0.9, ``random_start`` true,
    ``epsilon`` 8/255, ``step_size`` 1/255, ``iterations`` 100, ``alpha_schedule``
    "proportional", ``guide`` "mainstay", ``margin`` 0.5, ``batch_size`` 128.
    """

    name = "di-fgsm"
    description = "untargeted DI-FGSM (random resize and pad of the input) away from the guide code (SAAT's masked loss)"
    paper = (f"Xie, Zhang, Zhou, Bai, Wang, Ren, Yuille. Improving Transferability of Adversarial Examples with "
             f"Input Diversity. CVPR 2019; hashing setting: {SAAT}")
    Params: ClassVar[type[DIParams]] = DIParams

    def optimizer_options(self) -> dict[str, Any]:
        p = self.params
        return {"momentum_decay": p.decay, "diversity_prob": p.diversity_prob, "diversity_resize": p.resize}
