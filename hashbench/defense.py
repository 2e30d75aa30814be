"""The defense contract: adversarial training from the clean model, with the method's own loss."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from .methods.base import HashMethod
from .models.hash_model import HashModel
from .plugin import Plugin
from .progress import Reporter
from .training import TrainData


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
    clean model is used as is.
    """

    kind: ClassVar[str] = "defense"
    identity: ClassVar[bool] = False

    def fit(
        self, model: HashModel, method: HashMethod, data: TrainData, ctx: DefenseContext
    ) -> tuple[HashModel, dict[str, Any]]:
        raise NotImplementedError
