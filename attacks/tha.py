"""THA: the targeted hashing attack of ATRDH's paper (Wang, Zhang, Lu, Xu, SIGIR 2021; spec §2.4)."""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from hashbench.api.attack import Attack, AttackContext, AttackParams, PrepareSizes
from hashbench.api.params import MAX_BATCH_SIZE, MAX_EPOCHS, MAX_ITERATIONS
from hashbench.retrieval.adversarial_training import milestones
from hashbench.retrieval.pgd import PGDConfig, pgd
from hashbench.retrieval.prototype import (PrototypeNet, PrototypeParams, PrototypeTrainer, build_prototype_net,
                                           load_prototype_net, prototype_state, prototype_training_flops,
                                           sample_targets, target_candidates)
from hashbench.retrieval.training import TrainingDiverged

#: the state tensor holding the prototype net's mean training loss per epoch
HISTORY_KEY = "history.loss"


class THA(Attack):
    """Targeted PGD towards the prototype code ``sign(h(t))`` of the target label ``t``.

    Paper: X. Wang, Z. Zhang, G. Lu, Y. Xu. *Targeted Attack and Defense for Deep Hashing*.
    SIGIR 2021.

    ``prepare`` trains the prototype net ``h`` (:mod:`hashbench.retrieval.prototype`: circle loss +
    quantisation) against the attacked model's eval-mode training codes: ``epochs`` ×
    ``steps_per_epoch`` Adam steps on batches of ``proto_batch_size`` target labels drawn
    uniformly from the distinct database label vectors (the all-zero one too, unless
    ``proto_zero_label`` is off), lr ×0.1 after ½ and ¾ of the steps; the state is the net's
    tensors plus its mean loss per epoch (``history.loss``).
    ``perturb`` minimises ``−mean(f(x + δ; α) ⊙ sign h(t))`` by signed PGD in the L∞ ball.

    Parameters: ``epsilon`` 8/255, ``step_size`` 1/255, ``iterations`` 100, ``random_start``
    off, ``alpha_schedule`` "proportional" (SAAT's ten segments; "none" is [TAD]'s α = 1),
    ``batch_size`` 128 (queries), ``epochs`` 100, ``steps_per_epoch`` 300, ``proto_batch_size``
    32, and the prototype settings of :class:`~hashbench.retrieval.prototype.PrototypeParams`
    (``proto_hidden`` (4096, 512), ``proto_lr`` 1e-4, ``proto_betas`` (0.5, 0.999),
    ``circle_gamma`` 1, ``proto_quantization`` 1e-4, ``triangular_mask`` on, ``circle_softplus``
    off, ``proto_zero_label`` on).  These are [TAD]'s ``attack.py`` (the CgAT grids); SAAT's
    ``tha.py`` trains on ``args.batch_size`` = 128 labels a step and wraps the circle loss in
    softplus, so the ``saat`` grids set ``proto_batch_size`` 128 and ``circle_softplus`` on.
    """

    name = "tha"
    description = "targeted PGD towards a circle-loss prototype code of the target label"
    paper = "Wang, Zhang, Lu, Xu. Targeted Attack and Defense for Deep Hashing. SIGIR 2021"
    targeted = True

    class Params(AttackParams, PrototypeParams):
        step_size: float = Field(1 / 255, gt=0)
        iterations: int = Field(100, gt=0, le=MAX_ITERATIONS)
        random_start: bool = False
        alpha_schedule: Literal["none", "proportional", "bai"] = "proportional"
        epochs: int = Field(100, gt=0, le=MAX_EPOCHS, description="prototype-net training epochs")
        steps_per_epoch: int = Field(300, gt=0, le=MAX_ITERATIONS)
        proto_batch_size: int = Field(32, gt=0, le=MAX_BATCH_SIZE, description="target labels per prototype-net step")

    def prepare_flops(self, sizes: PrepareSizes) -> int | None:
        """The prototype net's training; no image passes (the training codes come encoded)."""
        if sizes.classes is None:
            return None
        p = self.params
        return prototype_training_flops(PrototypeNet, (sizes.classes, sizes.bits, tuple(p.proto_hidden)),
                                        classes=sizes.classes, bits=sizes.bits, batch=p.proto_batch_size,
                                        steps=p.epochs * p.steps_per_epoch, train=sizes.train)

    def prepare(self, model: nn.Module, ctx: AttackContext) -> dict[str, torch.Tensor]:
        p = self.params
        candidates = target_candidates(ctx.db_labels, zero_label=p.proto_zero_label)
        net = build_prototype_net(ctx.train_labels.shape[1], ctx.train_codes.shape[1], p.proto_hidden,
                                  ctx.generator, ctx.device)
        trainer = PrototypeTrainer(net, p)
        total = p.epochs * p.steps_per_epoch
        scheduler = torch.optim.lr_scheduler.MultiStepLR(trainer.optimizer, milestones(total, False), gamma=0.1)
        epoch_loss = torch.zeros(p.epochs)
        for epoch in range(p.epochs):
            for step in range(p.steps_per_epoch):
                targets = sample_targets(candidates, p.proto_batch_size, ctx.generator)
                _, losses = trainer.step(targets, ctx.train_codes, ctx.train_labels)
                value = float(losses["proto"])
                if not math.isfinite(value):
                    raise TrainingDiverged(f"tha prototype net: loss is {value} at epoch {epoch + 1}, step {step + 1}")
                epoch_loss[epoch] += value / p.steps_per_epoch
                scheduler.step()
        return {**prototype_state(net), HISTORY_KEY: epoch_loss}

    def perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None, ctx: AttackContext
    ) -> torch.Tensor:
        if target is None:
            raise ValueError("tha is a targeted attack and needs target labels")
        p = self.params
        net = load_prototype_net({k: v for k, v in ctx.state.items() if k != HISTORY_KEY}, x.device)
        with torch.no_grad():
            code = torch.sign(net(target.to(x.device).float()))
        config = PGDConfig(p.epsilon, p.step_size, p.iterations, p.random_start, p.alpha_schedule)
        return pgd(model, x, code, config, targeted=True, generator=ctx.generator)
