"""BIM (I-FGSM) in the hashing setting of SAAT: signed steps from the clean image away from a guide code.

Paper: A. Kurakin, I. Goodfellow, S. Bengio. *Adversarial Examples in the Physical World*. ICLR
Workshop 2017; hashing setting and defaults: SAAT's ``BIMGenerator`` (Yuan et al., IEEE TIFS 2023).
"""

from __future__ import annotations

from attacks.transfer import SAAT, TransferAttack


class BIM(TransferAttack):
    """Basic Iterative Method: PGD without the random start.

    ``x ← clip_ε(x − η·sign ∇L)`` from the clean query, with SAAT's masked loss ``L`` against the
    guide code (:class:`attacks.transfer.TransferAttack`).  Parameters (SAAT's generator):
    ``epsilon`` 8/255, ``step_size`` 1/255, ``iterations`` 100, ``random_start`` false,
    ``alpha_schedule`` "proportional", ``guide`` "mainstay", ``margin`` 0.5, ``batch_size`` 128.
    """

    name = "bim"
    description = "untargeted BIM (PGD from the clean image) away from the guide code (SAAT's masked loss)"
    paper = f"Kurakin, Goodfellow, Bengio. Adversarial Examples in the Physical World. ICLR Workshop 2017; hashing setting: {SAAT}"
