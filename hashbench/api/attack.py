"""The attack contract: what an attack plugin gets, and what it must return."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from pydantic import Field
from torch import nn

from hashbench.api.params import MAX_BATCH_SIZE, Params
from hashbench.api.plugin import Plugin
from hashbench.progress import Reporter
from hashbench.retrieval.training import TrainData


class AttackParams(Params):
    """Settings every attack has: the L∞ budget in pixel units and the query batch size."""

    epsilon: float = Field(8 / 255, ge=0, le=1, description="L∞ budget on [0, 1] images")
    batch_size: int = Field(128, gt=0, le=MAX_BATCH_SIZE)


@dataclass(frozen=True)
class PrepareSizes:
    """What ``hashbench plan`` knows when it prices :meth:`Attack.prepare` and :meth:`Attack.perturb`,
    before any data is read.

    ``classes`` is ``None`` when neither the opened dataset nor its declaration says;
    ``model_forward_flops`` is one image's forward pass through the attacked hash model.
    """

    train: int
    image_size: int
    bits: int
    classes: int | None
    model_forward_flops: int


@dataclass
class AttackContext:
    """What the harness hands an attack: the attacked model's codes and a seeded generator.

    Codes are float tensors in ±1 on ``device``; labels are float multi-hot.  ``state`` is what
    :meth:`Attack.prepare` returned (tensors only, so it can be stored without pickling).
    ``train_data`` gives the training images by training position (for attacks that train on
    images, e.g. a generator); ``epsilon`` is ``None`` for an attack without a budget.
    """

    db_codes: torch.Tensor
    db_labels: torch.Tensor
    train_codes: torch.Tensor
    train_labels: torch.Tensor
    epsilon: float | None
    device: torch.device
    generator: torch.Generator
    state: dict[str, torch.Tensor] = field(default_factory=dict)
    train_data: TrainData | None = None
    reporter: Reporter | None = None


class Attack(Plugin):
    """Base class of attacks (entry-point group ``hashbench.attacks``).

    ``targeted`` attacks receive one target label per query (shared by every targeted
    attack of a split).  ``bounded`` attacks promise ``x_adv`` within ε of ``x``; the
    harness checks every batch either way and reports the measured perturbation.  The
    harness reads ``bounded`` on the instance, so an attack whose budget is optional may
    make it a property of its parameters.
    Attacks never compute metrics.
    """

    kind: ClassVar[str] = "attack"
    targeted: ClassVar[bool] = False
    bounded: ClassVar[bool] = True
    Params: ClassVar[type[AttackParams]] = AttackParams

    def prepare(self, model: nn.Module, ctx: AttackContext) -> dict[str, torch.Tensor] | None:
        """Per-model preparation (train a generator, a prototype net…); ``None`` if not needed."""
        return None

    def perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None, ctx: AttackContext
    ) -> torch.Tensor:
        """Adversarial versions of the query batch ``x`` (labels ``y``, target labels ``target``)."""
        raise NotImplementedError

    def prepare_flops(self, sizes: PrepareSizes) -> int | None:
        """FLOPs :meth:`prepare` spends, for the first-run estimate of ``hashbench plan`` (a
        backward pass counts as two forwards; :func:`hashbench.harness.cost.module_flops` counts a
        network's forward pass).  ``None``, the default, means unknown: the plan says so until
        the stage has run once on the device and its recorded time takes over."""
        return None

    def perturb_flops(self, sizes: PrepareSizes) -> int | None:
        """FLOPs :meth:`perturb` and the harness spend per query, for the first-run estimate of
        ``hashbench plan``.  The default suits an iterative attack: ``iterations`` forward +
        backward passes through the attacked model (a backward counts as two forwards), plus two
        forwards (the query's own code, and the harness encoding the adversarial query); an
        attack without ``iterations`` counts one of them.  Override it when each step does more
        (several gradients, another network)."""
        return (3 * getattr(self.params, "iterations", 1) + 2) * sizes.model_forward_flops

    @classmethod
    def has_prepare(cls) -> bool:
        return cls.prepare is not Attack.prepare
