"""The defense contract: adversarial training from the clean model, with the method's own loss,
or (:class:`InferenceDefense`) a purifier trained in front of the unchanged model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from pydantic import Field
from torch import nn

from hashbench.api.method import HashMethod
from hashbench.api.params import Params
from hashbench.api.plugin import Plugin
from hashbench.models.hash_model import HashModel
from hashbench.models.purifier import PurifiedModel
from hashbench.progress import Reporter
from hashbench.retrieval.training import TrainData


@dataclass
class DefenseContext:
    """What the harness hands a defense: device, a seeded generator and a progress reporter."""

    device: torch.device
    generator: torch.Generator
    reporter: Reporter


class Defense(Plugin):
    """Base class of defenses (entry-point group ``hashbench.defenses``).

    :meth:`fit` starts from the clean model and returns the defended one plus a log
    (per-epoch losses) stored in the artifact.  ``method`` is a fresh instance of the
    victim's hashing method: a defense replaces only the clean loss's surroundings, so it
    works with every method.  ``identity`` defenses (``none``) are not run at all: the
    clean model is used as is.  ``inference_time`` defenses leave the model's weights alone
    and put a purifier in front of it (:class:`InferenceDefense`).
    """

    kind: ClassVar[str] = "defense"
    identity: ClassVar[bool] = False
    inference_time: ClassVar[bool] = False

    def fit(
        self, model: HashModel, method: HashMethod, data: TrainData, ctx: DefenseContext
    ) -> tuple[HashModel, dict[str, Any]]:
        raise NotImplementedError


class PurifierParams(Params):
    """Settings every inference-time defense has: the threat model of the attacks run against it."""

    attack_sees_purifier: bool = Field(
        True, description="white-box: attacks differentiate through the purifier; false: oblivious, attacks are "
        "crafted on the bare hash model and the purified model is evaluated on them")


class InferenceDefense(Defense):
    """Base class of inference-time defenses: a purifier trained on clean training images,
    placed in front of the unchanged hash model.

    Subclasses implement :meth:`build_purifier` (the untrained network, from the parameters
    alone: loading a defended model rebuilds it this way and loads the stored weights) and
    :meth:`train_purifier`.  :meth:`fit` returns a :class:`PurifiedModel`; the hashing method
    is not used.  Parameters extend :class:`PurifierParams`.
    """

    inference_time: ClassVar[bool] = True
    Params: ClassVar[type[Params]] = PurifierParams

    def build_purifier(self) -> nn.Module:
        """The purifier network, untrained: images in [0, 1] to images in [0, 1] of the same shape."""
        raise NotImplementedError

    def train_purifier(self, purifier: nn.Module, data: TrainData, ctx: DefenseContext) -> dict[str, Any]:
        """Train ``purifier`` (on ``ctx.device``) on the clean training images; return the log."""
        raise NotImplementedError

    def fit(
        self, model: HashModel, method: HashMethod, data: TrainData, ctx: DefenseContext
    ) -> tuple[HashModel, dict[str, Any]]:
        purifier = self.build_purifier().to(ctx.device)
        log = self.train_purifier(purifier, data, ctx)
        for p in model.parameters():  # the hash model is the clean one and stays so
            p.requires_grad_(False)
        defended = PurifiedModel(purifier, model, attack_sees_purifier=self.params.attack_sees_purifier)
        return defended.eval(), log
