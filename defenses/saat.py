"""SAAT: semantic-aware adversarial training with DMFL mainstay codes (saat_spec §2, §4)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from hashbench.api.params import MAX_EPOCHS

from .cgat import CgAT, GuideBank


class SAAT(CgAT):
    """Min-max training against adversaries that push codes away from their mainstay codes.

    Paper: X. Yuan, Z. Zhang, X. Wang, L. Wu. *Semantic-Aware Adversarial Training for Reliable
    Deep Hashing Retrieval*. IEEE TIFS 2023.

    The loop is CgAT's (spec §4.2 matches §1.9 step for step), with the mainstay code ``m`` of
    DMFL (cosine-weighted positives, uniform negatives; :func:`hashbench.retrieval.codes.center_codes`
    with ``weighting="saat"``) instead of CHCM, computed before the bank update for the inner
    PGD and again after it (``m'``) for the outer loss

        ``L = L_hash(h_ben) − λ·mean(h_adv ⊙ m') + μ·mean((h_adv − sign h_adv)²)``

    Parameters (the SAAT code's defaults): ``epochs`` 20, ``batch_size`` 32, SGD ``lr`` 0.05,
    ``momentum`` 0, ``weight_decay`` 1e-5, lr ×0.1 after ½ and ¾ of the iterations
    (``faithful_scheduler`` false: both fire), ``augment`` off, ``bank_init`` "eval" (the bank
    starts as the clean model's eval-mode codes), inner PGD ``epsilon`` 8/255, ``step_size``
    2/255, ``iterations`` 7, ``random_start`` on, ``pgd_mode`` "train", ``lam`` λ = 1, ``mu``
    μ = 1e-4, ``weighting`` "saat", ``zero_labels`` "negative" (unlabelled images are negatives
    of every query, as DMFL's cosine weights make them; "exclude" leaves them out),
    ``guide_bank`` "saat" and ``one_sided`` "other".  ``guide_bank``: SAAT's ``adv_training.py``
    aliases its bank with the model's (``U_ben.data = train_code.data``, ``model.U.data = …``)
    and writes ``sign(h_ben)`` into it before ``m'``; the DPH loss then writes ``h_ben`` into
    the same rows, so later codes see continuous rows (a method without a bank: binary rows).
    ``one_sided``: DMFL's normalised weights let the non-empty side decide alone.
    """

    name = "saat"
    description = "semantic-aware adversarial training (DMFL mainstay codes, 7-step PGD, quantisation)"
    paper = "Yuan, Zhang, Wang, Wu. Semantic-Aware Adversarial Training for Reliable Deep Hashing Retrieval. TIFS 2023"

    class Params(CgAT.Params):
        epochs: int = Field(20, gt=0, le=MAX_EPOCHS)
        lr: float = Field(0.05, gt=0)
        momentum: float = Field(0.0, ge=0, lt=1)
        weight_decay: float = Field(1e-5, ge=0)
        augment: bool = False
        bank_init: Literal["train", "eval"] = "eval"
        mu: float = Field(1e-4, ge=0, description="μ, weight of the adversarial outputs' quantisation")
        weighting: Literal["cgat", "saat"] = "saat"
        guide_bank: GuideBank = Field("saat", description="bank rows the guide codes use: cgat (continuous), "
                                      "saat (the batch as sign(u) for the outer code), binary (sign(U))")
        one_sided: Literal["zero", "other"] = Field(
            "other", description="code of a query without positives or negatives: zero (CHCM) or the other side's")
