"""VMI-FGSM in the hashing setting of SAAT: momentum corrected by the gradient variance of a neighbourhood.

Paper: X. Wang, K. He. *Enhancing the Transferability of Adversarial Attacks through Variance
Tuning*. CVPR 2021; hashing setting and defaults: SAAT's ``VMIFGSMGenerator`` (Yuan et al., IEEE
TIFS 2023).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from attacks.transfer import SAAT, MomentumParams, TransferAttack
from hashbench.api.params import MAX_ITERATIONS


class VMIParams(MomentumParams):
    samples: int = Field(5, ge=1, le=MAX_ITERATIONS, description="N: neighbours sampled per step")
    bound: float = Field(1.5, ge=0, le=100, description="β: neighbours drawn from U(−β·ε, β·ε)")


class VMIFGSM(TransferAttack):
    """Variance-tuning MI-FGSM: ``g ← μ·g + (∇L + v)/mean|∇L + v|``, ``x ← clip_ε(x − η·sign g)``,
    then ``v ← mean_k ∇L(x + r_k) − ∇L(x)`` with ``r_k ~ U(−β·ε, β·ε)`` (N draws from the run's
    generator).

    Loss and guide code as :class:`attacks.transfer.TransferAttack`.  Parameters (SAAT's
    generator): ``decay`` 1.0, ``samples`` N = 5, ``bound`` β = 1.5, ``random_start`` false,
    ``epsilon`` 8/255, ``step_size`` 1/255, ``iterations`` 100, ``alpha_schedule``
    "proportional", ``guide`` "mainstay", ``margin`` 0.5, ``batch_size`` 128.
    """

    name = "vmi-fgsm"
    description = "untargeted VMI-FGSM (variance-tuned momentum) away from the guide code (SAAT's masked loss)"
    paper = (f"Wang, He. Enhancing the Transferability of Adversarial Attacks through Variance Tuning. CVPR 2021; "
             f"hashing setting: {SAAT}")
    Params: ClassVar[type[VMIParams]] = VMIParams

    def optimizer_options(self) -> dict[str, Any]:
        p = self.params
        return {"momentum_decay": p.decay, "variance_samples": p.samples, "variance_bound": p.bound}
