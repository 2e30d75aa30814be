"""Backbone plugins: a feature extractor mapping [0, 1] images to a feature vector.

``smallcnn`` is a fast four-convolution network for 32×32 images.  ``alexnet`` and ``vgg11``
follow the CgAT code (spec §1.1): torchvision's convolutional ``features``, then fc6 and fc7
with ImageNet weights kept; the new hash layer is added by :class:`HashModel`.  An adaptive
average pool to the torchvision grid (6×6 / 7×7) sits between them: it is the identity at
224×224 (as in the papers) and lets the same architecture run on smaller images.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

import torch
from pydantic import Field, field_validator
from torch import nn

from hashbench.api.backbone import Backbone, BackboneParams
from hashbench.api.params import MAX_EPOCHS, MAX_WIDTH
from hashbench.errors import ConfigError, UserError


class _SmallCNNNet(nn.Module):
    def __init__(self, width: int, out_features: int, image_size: int) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(3, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
            nn.Conv2d(w, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(inplace=True),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(4),
        )
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(2 * w * 16, out_features), nn.ReLU(inplace=True))
        self.out_features = out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


class SmallCNN(Backbone):
    """Four 3×3 convolutions with batch norm and one fully connected layer.

    It has no ImageNet weights, so by default it is warm-started by the ``pretrain`` stage
    (:class:`BackboneParams`): 30 epochs of supervised classification of the training split.
    Hashing losses trained from scratch learn slowly (a bank-based loss's gradient scales with
    bank codes that start at zero); on ``shapes`` the warm start lifts DPSH's MAP@1000 from a
    few points above random codes to far above them.
    """

    name = "smallcnn"
    description = "small 4-conv CNN for 32×32 images (fast CPU tests and demos), warm-started on the training labels"
    paper = "hashbench (not from a paper)"

    class Params(BackboneParams):
        width: int = 32
        features: int = 256
        pretrain_epochs: int = Field(30, ge=0, le=MAX_EPOCHS, description="epochs of the supervised warm start (0: none)")

        @field_validator("width", "features")
        @classmethod
        def _positive(cls, v: int) -> int:
            if v <= 0:
                raise ValueError("must be positive")
            if v > MAX_WIDTH:
                raise ValueError(f"must be at most {MAX_WIDTH}")
            return v

    def build(self, image_size: int) -> nn.Module:
        return _SmallCNNNet(self.params.width, self.params.features, image_size)


class _TorchvisionNet(nn.Module):
    """features → adaptive pool → flatten → fc6 → fc7 (dropout placed as torchvision does)."""

    def __init__(self, features: nn.Module, pool: int, head: nn.Sequential) -> None:
        super().__init__()
        self.features = features
        self.pool = nn.AdaptiveAvgPool2d(pool)
        self.head = head
        self.out_features = 4096

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.pool(self.features(x)), 1))


class _ImageNetParams(BackboneParams):
    #: "imagenet" (torchvision's weights: local cache or download), "none" (random init) or a path
    #: to a torchvision state_dict file, loaded with ``weights_only=True``.
    pretrained: str = "imagenet"


def _load_imagenet_state(arch: str, pretrained: str, weights_enum) -> dict[str, torch.Tensor]:
    if pretrained != "imagenet":
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise ConfigError(f"backbone {arch}: pretrained weights file {path} does not exist")
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise UserError(f"backbone {arch}: cannot read {path} as a state_dict ({exc})") from None
    weights = weights_enum.IMAGENET1K_V1
    try:
        return weights.get_state_dict(progress=False)
    except Exception as exc:
        cache = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
        raise UserError(
            f"backbone {arch}: ImageNet weights are not cached at {cache} and could not be downloaded "
            f"({type(exc).__name__}). Download {weights.url} there, or set `pretrained: /path/to/file.pth` "
            "for the backbone, or run with --pretrained none to train from scratch."
        ) from None


class _TorchvisionBackbone(Backbone):
    """A torchvision classifier cut after fc7: ``arch`` builds it, ``head`` picks fc6–fc7 from its classifier."""

    Params = _ImageNetParams
    pool: ClassVar[int]
    head: ClassVar[tuple[int, ...]]

    @staticmethod
    def architecture():
        """(constructor, weights enum) of the torchvision model."""
        raise NotImplementedError

    def build(self, image_size: int) -> nn.Module:
        constructor, weights = self.architecture()
        tv = constructor(weights=None)
        if self.params.pretrained != "none":
            tv.load_state_dict(_load_imagenet_state(self.name, self.params.pretrained, weights))
        return _TorchvisionNet(tv.features, self.pool, nn.Sequential(*(tv.classifier[i] for i in self.head)))


class AlexNet(_TorchvisionBackbone):
    """torchvision AlexNet: conv features, Dropout → fc6 → ReLU → Dropout → fc7 → ReLU."""

    name = "alexnet"
    description = "AlexNet (torchvision) with fc6–fc7, ImageNet weights; CgAT's FLICKR-25K backbone"
    paper = "Krizhevsky et al., NeurIPS 2012; used as in Wang et al., CgAT, WWW 2023"
    pool = 6
    head = (0, 1, 2, 3, 4, 5)  # classifier: Dropout, fc6, ReLU, Dropout, fc7, ReLU, fc8

    @staticmethod
    def architecture():
        from torchvision.models import AlexNet_Weights, alexnet

        return alexnet, AlexNet_Weights


class VGG11(_TorchvisionBackbone):
    """torchvision VGG11 (no BN): conv features, fc6 → ReLU → Dropout → fc7 → ReLU → Dropout."""

    name = "vgg11"
    description = "VGG11 (torchvision, no BN) with fc6–fc7, ImageNet weights; CgAT's NUS-WIDE/MS-COCO backbone"
    paper = "Simonyan & Zisserman, ICLR 2015; used as in Wang et al., CgAT, WWW 2023"
    pool = 7
    head = (0, 1, 2, 3, 4, 5)  # classifier: fc6, ReLU, Dropout, fc7, ReLU, Dropout, fc8

    @staticmethod
    def architecture():
        from torchvision.models import VGG11_Weights, vgg11

        return vgg11, VGG11_Weights
