"""MI-FGSM in the hashing setting of SAAT: momentum over L1-normalised gradients, signed steps.

Paper: Y. Dong, F. Liao, T. Pang, H. Su, J. Zhu, X. Hu, J. Li. *Boosting Adversarial Attacks with
Momentum*. CVPR 2018; hashing setting: SAAT (Yuan et al., IEEE TIFS 2023), whose generators share
these settings (SAAT ships no plain MI generator; its NI, SI-NI and VMI use μ = 1).
"""

from __future__ import annotations

from typing import Any, ClassVar

from attacks.transfer import SAAT, MomentumParams, TransferAttack


class MIFGSM(TransferAttack):
    """Momentum iterative FGSM: ``g ← μ·g + ∇L / mean|∇L|``, ``x ← clip_ε(x − η·sign g)``.

    Loss and guide code as :class:`attacks.transfer.TransferAttack`.  Parameters: ``decay`` μ 1.0
    (Dong et al.), ``epsilon`` 8/255, ``step_size`` 1/255, ``iterations`` 100, ``random_start``
    false, ``alpha_schedule`` "proportional", ``guide`` "mainstay", ``margin`` 0.5,
    ``batch_size`` 128.
    """

    name = "mi-fgsm"
    description = "untargeted MI-FGSM (momentum) away from the guide code (SAAT's masked loss)"
    paper = f"Dong, Liao, Pang, Su, Zhu, Hu, Li. Boosting Adversarial Attacks with Momentum. CVPR 2018; hashing setting: {SAAT}"
    Params: ClassVar[type[MomentumParams]] = MomentumParams

    def optimizer_options(self) -> dict[str, Any]:
        return {"momentum_decay": self.params.decay}
