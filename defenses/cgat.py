"""CgAT: center-guided adversarial training (Wang, Lin, Li, WWW 2023; spec §1.4–1.10)."""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field

from hashbench.adversarial_training import (
    AdversarialParams, inner_attack, milestones, preinstall_bank, train_adversarially,
)
from hashbench.banks import CodeBank
from hashbench.codes import center_codes
from hashbench.defense import Defense, DefenseContext
from hashbench.methods.base import HashMethod, SGDParams
from hashbench.params import MAX_BATCH_SIZE, MAX_EPOCHS
from hashbench.models.hash_model import HashModel
from hashbench.training import TrainData


def guide_codes(y: torch.Tensor, bank: CodeBank, weighting: str, zero_labels: str) -> torch.Tensor:
    """Center (CHCM) or mainstay (DMFL) codes of the batch labels ``y`` over ``sign(bank)``.

    ``zero_labels="negative"``: relevance is ``1[y·l > 0]``, so an unlabelled training item is a
    negative of every query and an unlabelled query's code is ``sign(−mean of the bank)``
    (CgAT's own code produces NaN there, spec §1.4).  ``"exclude"``: unlabelled training items
    are left out of the bank and unlabelled queries get the zero code (no adversarial signal).
    """
    codes, labels = bank.binary(), bank.labels
    if zero_labels == "exclude":
        labelled = labels.sum(dim=1) > 0
        codes, labels = codes[labelled], labels[labelled]
        if codes.shape[0] == 0:
            return torch.zeros(y.shape[0], bank.u.shape[1], device=y.device)
    c = center_codes(y, codes, labels, weighting=weighting).to(y.device)
    if zero_labels == "exclude":
        c[y.sum(dim=1) == 0] = 0
    return c


class CgAT(Defense):
    """Min-max training against adversaries that push codes away from their center codes.

    Paper: X. Wang, Y. Lin, Y. Li. *CgAT: Center-Guided Adversarial Training for Deep Hashing-Based
    Retrieval*. WWW 2023.

    Per step (the released code's order, spec §1.9): ``c_pre`` = center code of the batch labels
    over the binary training bank ``B = sign(U)``; ``x_adv`` = PGD minimising ``mean(f(x')⊙c_pre)``
    (ε 8/255, step 2/255, 7 iterations, random start, α = 1); forward ``x_adv`` then ``x``;
    write ``u = f(x)`` into the bank; ``c`` = center code again, after the update; loss

        ``L = L_hash(u) − λ·mean(f(x_adv) ⊙ c) + μ·mean((f(x_adv) − sign f(x_adv))²)``

    with ``L_hash`` the victim method's own loss on the clean outputs.  The bank is preinstalled
    with the clean model's binary codes (it is the method's own bank when the method keeps one).

    Parameters: ``epochs`` 30, ``batch_size`` 32, SGD ``lr`` 0.01, ``momentum`` 0.9,
    ``weight_decay`` 5e-4 on all parameters, ``augment`` (crop/flip) on, lr ×0.1 after S/2 and
    3S/4 iterations (``faithful_scheduler`` false: both fire; true: the original code, whose
    fractional 3S/4 milestone never fires), inner PGD ``epsilon`` 8/255, ``step_size`` 2/255,
    ``iterations`` 7, ``random_start`` on, ``pgd_mode`` "train", ``lam`` λ = 1, ``mu`` μ = 0
    (CgAT has no quantisation term), ``weighting`` "cgat" (CHCM: uniform means; "saat": DMFL),
    ``bank_init`` "train" (the code's augmented train-mode pass; "eval": eval mode),
    ``zero_labels`` "negative" (see :func:`guide_codes`; "exclude" leaves unlabelled images out).
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

    def milestones(self, total_steps: int) -> list[int]:
        return milestones(total_steps, self.params.faithful_scheduler)

    def fit(
        self, model: HashModel, method: HashMethod, data: TrainData, ctx: DefenseContext
    ) -> tuple[HashModel, dict[str, Any]]:
        p = self.params
        bank = preinstall_bank(model, method, data, ctx, p)
        optimizer = torch.optim.SGD(model.parameters(), lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay)

        def loss_fn(x: torch.Tensor, y: torch.Tensor, pos: torch.Tensor) -> dict[str, torch.Tensor]:
            c_pre = guide_codes(y, bank, p.weighting, p.zero_labels)
            x_adv = inner_attack(model, x, c_pre, p, ctx.generator, targeted=False)
            u_adv = model(x_adv)
            u = model(x)
            bank.update(pos, u)
            hash_loss = method.loss(u, y, pos)
            c = guide_codes(y, bank, p.weighting, p.zero_labels)
            adv_loss = -(u_adv * c).mean()
            quant_loss = (u_adv - torch.sign(u_adv)).pow(2).mean()
            loss = hash_loss + p.lam * adv_loss + p.mu * quant_loss
            return {"loss": loss, "hash": hash_loss, "adv": adv_loss, "quant": quant_loss}

        log = train_adversarially(model, method, data, ctx, p, optimizer, loss_fn, description=f"defend {self.name}")
        return model, log
