"""CgAT: center-guided adversarial training (Wang, Lin, Li, WWW 2023; spec §1.4–1.10)."""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field

from hashbench.api.defense import Defense, DefenseContext
from hashbench.api.method import HashMethod, SGDParams
from hashbench.api.params import MAX_BATCH_SIZE, MAX_EPOCHS
from hashbench.models.hash_model import HashModel
from hashbench.retrieval.adversarial_training import (AdversarialParams, inner_attack, milestones, preinstall_bank,
                                                      train_adversarially)
from hashbench.retrieval.banks import CodeBank
from hashbench.retrieval.codes import center_codes
from hashbench.retrieval.training import TrainData

#: ``guide_bank`` values: which bank rows the center/mainstay codes are computed from (see CgAT.Params)
GuideBank = Literal["cgat", "saat", "binary"]


def guide_codes(y: torch.Tensor, bank: CodeBank, *, weighting: str, zero_labels: str, binary: bool,
                one_sided: str) -> torch.Tensor:
    """Center (CHCM) or mainstay (DMFL) codes of the batch labels ``y`` over the bank's rows
    ``bank.u`` as they are (``binary`` false) or over ``sign(bank.u)``.

    ``zero_labels="negative"``: relevance is ``1[y·l > 0]``, so an unlabelled training item is a
    negative of every query, and an unlabelled query has no positives: ``one_sided="zero"``
    gives it the zero code, as CgAT's ``hash_center_code`` does (its Jaccard weight is 0/0 =
    NaN against unlabelled items, but ``torch.sign(NaN)`` is 0, so they count as negatives and
    both sums are scaled by the empty side's count), ``"other"`` gives ``sign(−mean of the
    bank)`` as SAAT's DMFL.  ``"exclude"``: unlabelled training items are left out of the bank
    and unlabelled queries get the zero code (no adversarial signal).  ``one_sided`` also
    decides the code of a query that every bank item shares a class with (no negatives).
    """
    codes, labels = (bank.binary() if binary else bank.u), bank.labels
    if zero_labels == "exclude":
        labelled = labels.sum(dim=1) > 0
        codes, labels = codes[labelled], labels[labelled]
        if codes.shape[0] == 0:
            return torch.zeros(y.shape[0], bank.u.shape[1], device=y.device)
    c = center_codes(y, codes, labels, weighting=weighting, one_sided=one_sided).to(y.device)
    if zero_labels == "exclude":
        c[y.sum(dim=1) == 0] = 0
    return c


class CgAT(Defense):
    """Min-max training against adversaries that push codes away from their center codes.

    Paper: X. Wang, Y. Lin, Y. Li. *CgAT: Center-Guided Adversarial Training for Deep Hashing-Based
    Retrieval*. WWW 2023.

    Per step (the released code's order, spec §1.9): ``c_pre`` = center code of the batch labels
    over the training bank; ``x_adv`` = PGD minimising ``mean(f(x')⊙c_pre)`` (ε 8/255, step
    2/255, 7 iterations, random start, α = 1); forward ``x_adv`` then ``x``; write ``u = f(x)``
    into the bank; ``c`` = center code again, after the update; loss

        ``L = L_hash(u) − λ·mean(f(x_adv) ⊙ c) + μ·mean((f(x_adv) − sign f(x_adv))²)``

    with ``L_hash`` the victim method's own loss on the clean outputs.  The bank is preinstalled
    with the clean model's binary codes and every training label (it is the method's own bank
    when the method keeps one).  In CgAT's ``central_adv_train.py`` the sign bank ``B_ben`` and
    the continuous bank ``U_ben`` are assigned the same storage (``.data =``) and ``U_ben`` is
    written after ``B_ben``, so CHCM runs on the continuous outputs of the items visited so far
    and on the clean ±1 codes of the others: ``guide_bank`` "cgat".

    Parameters: ``epochs`` 30, ``batch_size`` 32, SGD ``lr`` 0.01, ``momentum`` 0.9,
    ``weight_decay`` 5e-4 on all parameters, ``augment`` (crop/flip) on, lr ×0.1 after S/2 and
    3S/4 iterations (``faithful_scheduler`` false: both fire; true: the original code, whose
    fractional 3S/4 milestone never fires), inner PGD ``epsilon`` 8/255, ``step_size`` 2/255,
    ``iterations`` 7, ``random_start`` on, ``pgd_mode`` "train", ``lam`` λ = 1, ``mu`` μ = 0
    (CgAT has no quantisation term), ``weighting`` "cgat" (CHCM: uniform means; "saat": DMFL),
    ``bank_init`` "train" (the code's augmented train-mode pass; "eval": eval mode),
    ``zero_labels`` "negative" (see :func:`guide_codes`; "exclude" leaves unlabelled images out),
    ``guide_bank`` "cgat" (codes on the bank as written: continuous rows; "saat": the batch's
    rows are written as ``sign(u)`` before the outer code and the method's loss, when it keeps
    the bank, writes ``u`` afterwards, as SAAT's ``adv_training.py``; "binary": over ``sign(U)``,
    the papers' binary codes), ``one_sided`` "zero" (a query without positives or negatives gets
    the zero code, as CHCM's count-scaled sums; "other": the non-empty side decides, as DMFL).
    """

    name = "cgat"
    description = "center-guided adversarial training (CHCM center codes, 7-step PGD)"
    paper = "Wang, Lin, Li. CgAT: Center-Guided Adversarial Training for Deep Hashing-Based Retrieval. WWW 2023"

    class Params(AdversarialParams, SGDParams):
        epochs: int = Field(30, gt=0, le=MAX_EPOCHS)
        batch_size: int = Field(32, gt=0, le=MAX_BATCH_SIZE)
        lam: float = Field(1.0, ge=0, description="λ, weight of the adversarial term")
        mu: float = Field(0.0, ge=0, description="μ, weight of the adversarial outputs' quantisation")
        weighting: Literal["cgat", "saat"] = "cgat"
        zero_labels: Literal["negative", "exclude"] = "negative"
        guide_bank: GuideBank = Field("cgat", description="bank rows the guide codes use: cgat (continuous), "
                                      "saat (the batch as sign(u) for the outer code), binary (sign(U))")
        one_sided: Literal["zero", "other"] = Field(
            "zero", description="code of a query without positives or negatives: zero (CHCM) or the other side's")

    def milestones(self, total_steps: int) -> list[int]:
        return milestones(total_steps, self.params.faithful_scheduler)

    def fit(
        self, model: HashModel, method: HashMethod, data: TrainData, ctx: DefenseContext
    ) -> tuple[HashModel, dict[str, Any]]:
        p = self.params
        bank = preinstall_bank(model, method, data, ctx, p)
        optimizer = torch.optim.SGD(model.parameters(), lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay)

        def guide(y: torch.Tensor) -> torch.Tensor:
            return guide_codes(y, bank, weighting=p.weighting, zero_labels=p.zero_labels,
                               binary=p.guide_bank == "binary", one_sided=p.one_sided)

        def loss_fn(x: torch.Tensor, y: torch.Tensor, pos: torch.Tensor) -> dict[str, torch.Tensor]:
            c_pre = guide(y)
            x_adv = inner_attack(model, x, c_pre, p, ctx.generator, targeted=False)
            u_adv = model(x_adv)
            u = model(x)
            if not bool(torch.isfinite(u).all()):  # diverged: the loop reports it (guide codes need finite rows)
                return {"loss": u.sum()}
            if p.guide_bank == "saat":  # U[idx] = sign(u), m' on it; a bank-keeping loss then writes u
                bank.update(pos, torch.sign(u))
                c = guide(y)
                hash_loss = method.loss(u, y, pos)
            else:
                bank.update(pos, u)
                hash_loss = method.loss(u, y, pos)
                c = guide(y)
            adv_loss = -(u_adv * c).mean()
            quant_loss = (u_adv - torch.sign(u_adv)).pow(2).mean()
            loss = hash_loss + p.lam * adv_loss + p.mu * quant_loss
            return {"loss": loss, "hash": hash_loss, "adv": adv_loss, "quant": quant_loss}

        log = train_adversarially(model, method, data, ctx, p, optimizer, loss_fn, description=f"defend {self.name}")
        return model, log
