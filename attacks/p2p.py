"""P2P: targeted attack towards the code of one database item with the target label."""

from __future__ import annotations

from pydantic import Field, field_validator

from attacks.dhta import DHTA


class P2P(DHTA):
    """Point-to-point targeted attack: DHTA with a single anchor.

    Paper: J. Bai, B. Chen, Y. Li, D. Wu, W. Guo, S. Xia, E. Yang. *Targeted Attack for Deep
    Hashing Based Retrieval*. ECCV 2020 (the P2P baseline; cgat_spec §2.1).

    Anchor code: the code ``a = b_j`` of one database item drawn uniformly among those whose
    label vector equals the target label (fallback as :class:`attacks.dhta.DHTA`: the items
    with the highest Jaccard similarity to the target).  Objective, minimised by signed PGD in
    the L∞ ball: ``−(1/K)·⟨f(x + δ; α), a⟩``.

    Parameters: ``anchors`` 1 (fixed: use ``dhta`` for a vote), ``anchor_replacement`` true
    (irrelevant with one draw), ``epsilon`` 8/255, ``step_size`` 1/255, ``iterations`` 2000,
    ``random_start`` false, ``alpha_schedule`` "bai", ``batch_size`` 128.
    """

    name = "p2p"
    description = "targeted PGD towards the code of one database item with the target label"
    targeted = True

    class Params(DHTA.Params):
        anchors: int = Field(1, description="P2P uses exactly one anchor")

        @field_validator("anchors")
        @classmethod
        def _one_anchor(cls, v: int) -> int:
            if v != 1:
                raise ValueError("p2p uses exactly one anchor code; use the 'dhta' attack for a vote of several")
            return v
