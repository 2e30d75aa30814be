"""The hash model: normalisation inside, backbone, a new linear hash layer and ``tanh(alpha·)``."""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: how the hash layer starts: N(0, 0.01²) weights and a zero bias (CgAT, spec §1.1), or
#: ``nn.Linear``'s own initialisation, U(±1/√fan_in) for weights and bias (SAAT's AlexNet and VGG heads)
HashInit = Literal["normal_0.01", "pytorch_default"]
HASH_INITS: tuple[str, ...] = get_args(HashInit)


class HashModel(nn.Module):
    """Maps [0, 1] images to ``tanh(alpha · W·g(x))`` in (-1, 1)^K.

    Mean/std normalisation happens in ``forward`` so that an L∞ budget is in pixel units.
    ``hash_init`` (:data:`HashInit`) starts the hash layer N(0, 0.01²) with zero bias (spec §1.1,
    the default) or as PyTorch's ``nn.Linear`` does.  ``alpha`` is the tanh scale that attacks
    may anneal; it defaults to 1.
    """

    def __init__(self, backbone: nn.Module, bits: int, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                 hash_init: HashInit = "normal_0.01") -> None:
        super().__init__()
        if hash_init not in HASH_INITS:
            raise ValueError(f"unknown hash_init '{hash_init}' (allowed: {', '.join(HASH_INITS)})")
        self.backbone = backbone
        self.bits = bits
        # nn.Linear draws its own initialisation first either way, so both choices consume the
        # global generator alike up to here (the default's numbers are those of earlier versions)
        self.hash_layer = nn.Linear(backbone.out_features, bits)
        if hash_init == "normal_0.01":
            nn.init.normal_(self.hash_layer.weight, std=0.01)
            nn.init.zeros_(self.hash_layer.bias)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The hash layer's output before ``tanh`` (the ``pretrain`` stage trains it as a classifier)."""
        return self.hash_layer(self.backbone((x - self.mean) / self.std))

    def forward(self, x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
        return torch.tanh(alpha * self.logits(x))
