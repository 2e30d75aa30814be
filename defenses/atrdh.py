"""ATRDH: adversarial training against targeted attacks (Wang, Zhang, Lu, Xu, SIGIR 2021; spec §3)."""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field

from hashbench.api.defense import Defense, DefenseContext
from hashbench.api.method import HashMethod
from hashbench.api.params import MAX_EPOCHS
from hashbench.models.hash_model import HashModel
from hashbench.retrieval.adversarial_training import (AdversarialParams, clean_outputs, inner_attack, preinstall_bank,
                                                      train_adversarially)
from hashbench.retrieval.banks import CodeBank
from hashbench.retrieval.prototype import (AdamBetas, PrototypeParams, PrototypeTrainer, build_prototype_net,
                                           sample_targets, target_candidates)
from hashbench.retrieval.training import TrainData


class ATRDH(Defense):
    """Joint training of the model and an online prototype net against targeted adversaries.

    Paper: X. Wang, Z. Zhang, G. Lu, Y. Xu. *Targeted Attack and Defense for Deep Hashing*.
    SIGIR 2021 (in the form of SAAT's re-implementation, spec §3: the method's own clean loss, κ = 2).

    Per step (SAAT's ``atrdh.py`` order): ``u = f(x)``; write ``u`` into the binary bank ``B``;
    draw one target label per image uniformly from the distinct training label vectors (the
    all-zero one too, as the released codes' ``unique``; ``proto_zero_label``); one Adam step
    of the prototype net ``h`` on its circle loss + quantisation against ``B``
    (:mod:`hashbench.retrieval.prototype`); ``x_adv`` = PGD *towards* ``sign h(t)`` (the prototypes of
    that same forward, before the step); then, with ``U`` the bank of clean continuous outputs
    and ``S_ij = 2·1[y_i·l_j > 0] − 1``,

        ``L = L_hash(u) + κ · mean_ij((f(x_adv_i)·U_j / K − S_ij)²)``.

    ``B`` starts as the clean model's binary codes (the method's own bank when it keeps one);
    ``U`` starts at zero and fills as batches are seen (``recon_bank_init`` "zeros", the code;
    "clean": the clean model's continuous outputs).

    Parameters: ``epochs`` 100, ``batch_size`` 32, Adam ``lr`` 1e-4, ``betas`` (0.5, 0.999),
    ``weight_decay`` 0 (the code's 1e-5 is never passed to the optimiser), lr ×0.1 after ½ and
    ¾ of the iterations for both nets (``faithful_scheduler`` false: both fire), ``augment`` off,
    ``bank_init`` "eval", inner PGD ``epsilon`` 8/255, ``step_size`` 2/255, ``iterations`` 7,
    ``random_start`` on, ``pgd_mode`` "train", ``kappa`` κ = 2, ``recon_bank_init`` "zeros", and
    the prototype settings of :class:`~hashbench.retrieval.prototype.PrototypeParams` (``proto_hidden``
    (4096, 512), ``proto_lr`` 1e-4, ``proto_betas`` (0.5, 0.999), ``circle_gamma`` 1,
    ``proto_quantization`` 1e-4, ``triangular_mask`` on, ``circle_softplus`` off,
    ``proto_zero_label`` on).

    Target labels come from the training labels: a defense sees only the training split (the
    released code draws from the database labels, of which a drawn split's training set is a subset).
    """

    name = "atrdh"
    description = "adversarial training with targeted prototype-code PGD and similarity reconstruction"
    paper = "Wang, Zhang, Lu, Xu. Targeted Attack and Defense for Deep Hashing. SIGIR 2021"

    class Params(AdversarialParams, PrototypeParams):
        epochs: int = Field(100, gt=0, le=MAX_EPOCHS)
        augment: bool = False
        bank_init: Literal["train", "eval"] = "eval"
        lr: float = Field(1e-4, gt=0, description="Adam learning rate of the hash model")
        betas: AdamBetas = Field((0.5, 0.999), description="Adam betas of the hash model")
        weight_decay: float = Field(0.0, ge=0)
        kappa: float = Field(2.0, ge=0, description="κ, weight of the similarity reconstruction")
        recon_bank_init: Literal["zeros", "clean"] = "zeros"

    def fit(
        self, model: HashModel, method: HashMethod, data: TrainData, ctx: DefenseContext
    ) -> tuple[HashModel, dict[str, Any]]:
        p = self.params
        bank = preinstall_bank(model, method, data, ctx, p)
        recon = CodeBank(len(data), model.bits, data.labels, ctx.device)
        if p.recon_bank_init == "clean":
            recon.preinstall(clean_outputs(model, data, ctx, train_mode=False, augment=False))
        candidates = target_candidates(data.labels, zero_label=p.proto_zero_label)
        prototypes = PrototypeTrainer(
            build_prototype_net(data.labels.shape[1], model.bits, p.proto_hidden, ctx.generator, ctx.device), p)
        optimizer = torch.optim.Adam(model.parameters(), lr=p.lr, betas=p.betas, weight_decay=p.weight_decay)

        def loss_fn(x: torch.Tensor, y: torch.Tensor, pos: torch.Tensor) -> dict[str, torch.Tensor]:
            u = model(x)
            bank.update(pos, u)
            targets = sample_targets(candidates, x.shape[0], ctx.generator)
            h, proto_losses = prototypes.step(targets, bank.binary(), bank.labels)
            x_adv = inner_attack(model, x, torch.sign(h), p, ctx.generator, targeted=True)
            u_adv = model(x_adv)
            recon.update(pos, u)
            hash_loss = method.loss(u, y, pos)
            similarity = 2 * recon.similarity(y) - 1
            rec_loss = (u_adv @ recon.u.T / model.bits - similarity).pow(2).mean()
            loss = hash_loss + p.kappa * rec_loss
            return {"loss": loss, "hash": hash_loss, "rec": rec_loss, **proto_losses}

        log = train_adversarially(model, method, data, ctx, p, optimizer, loss_fn, description="defend atrdh",
                                  also_scheduled=[prototypes.optimizer])
        return model, log
