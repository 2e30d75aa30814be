"""NI-FGSM in the hashing setting of SAAT: momentum with a Nesterov look-ahead gradient.

Paper: J. Lin, C. Song, K. He, L. Wang, J. E. Hopcroft. *Nesterov Accelerated Gradient and Scale
Invariance for Adversarial Attacks*. ICLR 2020; hashing setting and defaults: SAAT's
``NIFGSMGenerator`` (Yuan et al., IEEE TIFS 2023).
"""

from __future__ import annotations

from typing import Any, ClassVar

from attacks.transfer import SAAT, MomentumParams, TransferAttack

LIN_2020 = ("Lin, Song, He, Wang, Hopcroft. Nesterov Accelerated Gradient and Scale Invariance for Adversarial "
            "Attacks. ICLR 2020")


class NIFGSM(TransferAttack):
    """Nesterov iterative FGSM: the gradient is taken at ``x − η·μ·g``, then
    ``g ← μ·g + ∇L / mean|∇L|`` and ``x ← clip_ε(x − η·sign g)``.

    Loss and guide code as :class:`attacks.transfer.TransferAttack`.  Parameters (SAAT's
    generator): ``decay`` 1.0, ``random_start`` false, ``epsilon`` 8/255, ``step_size`` 1/255,
    ``iterations`` 100, ``alpha_schedule`` "proportional", ``guide`` "mainstay", ``margin`` 0.5,
    ``batch_size`` 128.
    """

    name = "ni-fgsm"
    description = "untargeted NI-FGSM (Nesterov momentum) away from the guide code (SAAT's masked loss)"
    paper = f"{LIN_2020}; hashing setting: {SAAT}"
    Params: ClassVar[type[MomentumParams]] = MomentumParams

    def optimizer_options(self) -> dict[str, Any]:
        return {"momentum_decay": self.params.decay, "nesterov": True}
