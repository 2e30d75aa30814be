"""SI-NI-FGSM in the hashing setting of SAAT: Nesterov momentum over gradients averaged on scaled copies.

Paper: J. Lin, C. Song, K. He, L. Wang, J. E. Hopcroft. *Nesterov Accelerated Gradient and Scale
Invariance for Adversarial Attacks*. ICLR 2020; hashing setting and defaults: SAAT's
``SINIFGSMGenerator`` (Yuan et al., IEEE TIFS 2023).  SAAT's generator divides its copies
cumulatively (x, x/2, x/8, …) and differentiates with respect to each copy; this one follows the
paper: the mean over i < m of ∇ₓ L(x / 2^i) at the look-ahead point.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from attacks.ni_fgsm import LIN_2020
from attacks.transfer import SAAT, MomentumParams, TransferAttack
from hashbench.api.params import MAX_ITERATIONS


class SINIParams(MomentumParams):
    scales: int = Field(5, ge=1, le=MAX_ITERATIONS, description="scaled copies x / 2^i, i < scales")


class SINIFGSM(TransferAttack):
    """Scale-invariant Nesterov iterative FGSM: ``ĝ = mean_{i<m} ∇ₓ L(x̃ / 2^i)`` at the look-ahead
    point ``x̃ = x − η·μ·g``; ``g ← μ·g + ĝ / mean|ĝ|``, ``x ← clip_ε(x − η·sign g)``.

    Loss and guide code as :class:`attacks.transfer.TransferAttack`.  Parameters (SAAT's
    generator): ``decay`` 1.0, ``scales`` 5, ``random_start`` false, ``epsilon`` 8/255,
    ``step_size`` 1/255, ``iterations`` 100, ``alpha_schedule`` "proportional", ``guide``
    "mainstay", ``margin`` 0.5, ``batch_size`` 128.
    """

    name = "si-ni-fgsm"
    description = "untargeted SI-NI-FGSM (scale invariance + Nesterov momentum) away from the guide code (SAAT's masked loss)"
    paper = f"{LIN_2020}; hashing setting: {SAAT}"
    Params: ClassVar[type[SINIParams]] = SINIParams

    def optimizer_options(self) -> dict[str, Any]:
        return {"momentum_decay": self.params.decay, "nesterov": True, "scales": self.params.scales}
