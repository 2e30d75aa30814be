"""The hash model: normalisation inside, backbone, a new linear hash layer and ``tanh(alpha·)``."""

from __future__ import annotations

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class HashModel(nn.Module):
    """Maps [0, 1] images to ``tanh(alpha · W·g(x))`` in (-1, 1)^K.

    Mean/std normalisation happens in ``forward`` so that an L∞ budget is in pixel units.
    The hash layer is initialised N(0, 0.01²) with zero bias (spec §1.1).  ``alpha`` is the
    tanh scale that attacks may anneal; it defaults to 1.
    """

    def __init__(self, backbone: nn.Module, bits: int, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> None:
        super().__init__()
        self.backbone = backbone
        self.bits = bits
        self.hash_layer = nn.Linear(backbone.out_features, bits)
        nn.init.normal_(self.hash_layer.weight, std=0.01)
        nn.init.zeros_(self.hash_layer.bias)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The hash layer's output before ``tanh`` (the ``pretrain`` stage trains it as a classifier)."""
        return self.hash_layer(self.backbone((x - self.mean) / self.std))

    def forward(self, x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
        return torch.tanh(alpha * self.logits(x))
