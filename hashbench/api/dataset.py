"""The dataset contract: labels up front, images on demand, as float NCHW tensors in [0, 1]."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from hashbench.api.plugin import Plugin


@dataclass(frozen=True)
class PredefinedSplit:
    """Item indices of a dataset that ships its own train / query / database lists."""

    train: np.ndarray
    query: np.ndarray
    database: np.ndarray


class HashDataset(Plugin):
    """Base class of dataset plugins (entry-point group ``hashbench.datasets``).

    A dataset knows every item's multi-hot label (``labels``, shape N×C, uint8) without
    loading images, and loads images for given item indices.  Images are float32 NCHW in
    [0, 1] at ``image_size`` × ``image_size``; normalisation happens inside the model.
    """

    kind: ClassVar[str] = "dataset"

    @property
    def labels(self) -> np.ndarray:
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        return int(self.labels.shape[1])

    @property
    def image_size(self) -> int:
        raise NotImplementedError

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def predefined_split(self) -> PredefinedSplit | None:
        """The dataset's own split, if its files define one; ``None`` means: draw one from a seed."""
        return None

    def images(self, indices: np.ndarray, *, augment: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """Images of ``indices`` (N×3×S×S float32 in [0, 1]); ``augment`` applies training augmentation."""
        raise NotImplementedError

    def fingerprint(self) -> str:
        """A short hash of what defines the data (parameters, file contents); part of cache keys."""
        raise NotImplementedError
