"""The backbone contract: a feature extractor mapping [0, 1] images to a feature vector, and the
settings every backbone shares."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from torch import nn

from hashbench.api.params import MAX_BATCH_SIZE, MAX_EPOCHS, Params
from hashbench.api.plugin import Plugin


class BackboneParams(Params):
    """The settings every backbone shares: the supervised warm start of the ``pretrain`` stage.

    With ``pretrain_epochs`` > 0 the backbone first learns to classify the training split: a
    linear head on its features, multi-label binary cross-entropy on the labels, Adam at
    ``pretrain_lr`` with a cosine decay to 0, batches of ``pretrain_batch_size`` and the
    dataset's training augmentation.  The hashing method then trains from those weights (the
    head is dropped).  It gives a network trained from scratch what ImageNet weights give the
    papers' AlexNet and VGG11, on any dataset with labels.  0 skips the stage.
    """

    pretrain_epochs: int = Field(0, ge=0, le=MAX_EPOCHS, description="epochs of the supervised warm start (0: none)")
    pretrain_lr: float = Field(1e-3, gt=0, le=1, description="Adam learning rate of the warm start")
    pretrain_batch_size: int = Field(64, gt=0, le=MAX_BATCH_SIZE, description="batch size of the warm start")


class Backbone(Plugin):
    """Base class of backbone plugins (entry-point group ``hashbench.backbones``)."""

    kind: ClassVar[str] = "backbone"

    def build(self, image_size: int) -> nn.Module:
        """A module mapping normalised N×3×S×S images to N×F features; it has ``out_features``."""
        raise NotImplementedError
