"""The hashing-method contract and the clean-training defaults every method shares."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field

from hashbench.api.params import MAX_BATCH_SIZE, MAX_EPOCHS, Params
from hashbench.api.plugin import Plugin
from hashbench.models.hash_model import HashInit
from hashbench.retrieval.banks import CodeBank


def pairwise_logistic(theta: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Element-wise negative log-likelihood ``log(1+e^{-|θ|}) + max(θ, 0) − s·θ`` of pairwise labels.

    It equals ``log(1 + e^θ) − s·θ`` written so that large ``|θ|`` cannot overflow; DPSH,
    HashNet and DSDH share it.
    """
    return torch.log1p(torch.exp(-theta.abs())) + theta.clamp(min=0) - s * theta


class SGDParams(Params):
    """Epochs, batch and SGD settings shared by clean training and adversarial training."""

    epochs: int = Field(100, gt=0, le=MAX_EPOCHS)
    batch_size: int = Field(64, gt=0, le=MAX_BATCH_SIZE)
    lr: float = Field(0.01, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    augment: bool = True


class TrainParams(SGDParams):
    """Clean training as in CgAT's ``hashing.py`` (spec §1.3), shared by every method.

    ``epochs`` 100, ``batch_size`` 64, SGD ``lr`` 0.01, ``momentum`` 0.9, ``weight_decay`` 5e-4,
    ``augment`` on, a step decay: lr × ``lr_decay`` (0.1) every ``lr_decay_every`` (1/3) of
    the epochs, and ``hash_init`` ``normal_0.01`` (the hash layer starts N(0, 0.01²), bias 0).
    SAAT's ``hashing.py`` differs: batch 32, no augmentation and ``pytorch_default`` (its
    AlexNet/VGG heads keep ``nn.Linear``'s initialisation); the ``saat`` grids set those.
    """

    lr_decay: float = Field(0.1, gt=0, le=1)
    lr_decay_every: float = Field(1 / 3, gt=0, le=1, description="fraction of the epochs between decays")
    lr_decay_at: Literal["epoch_end", "epoch_start"] = Field(
        "epoch_end", description="epoch_end: lr₀·decay^⌊e/P⌋ is set after epoch e, as CgAT's and SAAT's "
        "adjust_learning_rate (E=100: ×0.1 from epoch 35, 1-based); epoch_start: already during epoch e")
    hash_init: HashInit = Field("normal_0.01", description="hash layer start: normal_0.01 (N(0, 0.01²), bias 0) "
                                "or pytorch_default (nn.Linear's U(±1/√fan_in))")


class HashMethod(Plugin):
    """Base class of hashing methods (entry-point group ``hashbench.methods``).

    A method is a loss over the batch outputs ``u`` (already ``tanh``'ed), the batch labels
    ``y`` and the batch's training positions ``idx``.  Methods that compare the batch with
    the whole training set keep a :class:`CodeBank`, created in :meth:`setup`.  Defenses
    reuse the same loss on clean outputs, so a defense works with every method.
    """

    kind: ClassVar[str] = "method"
    uses_bank: ClassVar[bool] = False
    Params: ClassVar[type[TrainParams]] = TrainParams

    bank: CodeBank | None = None

    def setup(self, num_train: int, bits: int, train_labels: torch.Tensor, device: torch.device | str) -> None:
        """Prepare per-run state (memory banks) before the first epoch."""
        self.bits = bits
        self.bank = CodeBank(num_train, bits, train_labels, device) if self.uses_bank else None

    def loss(self, u: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def on_epoch_start(self, epoch: int) -> None:
        """Hook run before each epoch (DSDH's discrete update uses it)."""

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Tensors that belong to the trained model's artifact (e.g. CSQ's hash centres)."""
        return {}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`state_tensors` saved."""

    def optimizer(self, parameters) -> torch.optim.Optimizer:
        p = self.params
        return torch.optim.SGD(parameters, lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay)

    def lr_at_epoch(self, epoch: int) -> float:
        """The lr of 0-based epoch ``epoch``: the step schedule of spec §1.3, lr₀ · decay^⌊e′ / P⌋ with
        P = ⌊E·every⌋ and e′ = e − 1 (``lr_decay_at`` "epoch_end": the released codes set it after
        epoch e′, so E=100 trains epochs 0–33 at lr₀, 34–66 at lr₀/10) or e′ = e ("epoch_start")."""
        p = self.params
        period = max(1, int(p.epochs * p.lr_decay_every))
        done = max(epoch - 1, 0) if p.lr_decay_at == "epoch_end" else epoch
        return p.lr * p.lr_decay ** (done // period)
