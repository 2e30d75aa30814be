"""The one training loop: shuffled batches of the training split, per-step hooks, divergence checks.

Clean training (the ``train`` stage) and every defense drive their optimisation through
:func:`run_epochs`; they differ only in the step function they pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from hashbench.api.dataset import HashDataset
from hashbench.errors import HashbenchError
from hashbench.progress import Reporter


class TrainingDiverged(HashbenchError):
    """A loss became NaN or infinite; the message names the epoch and step (1-based)."""


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``x`` on ``device``; a CPU batch bound for CUDA goes through pinned memory (asynchronous copy)."""
    if device.type == "cuda" and x.device.type == "cpu":
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)


@dataclass
class TrainData:
    """The training split: dataset item indices, and their labels on the training device."""

    dataset: HashDataset
    indices: np.ndarray
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.indices)

    def batch(self, positions: torch.Tensor, *, augment: bool, generator: torch.Generator, device: torch.device):
        """(images, labels, positions) of training positions ``positions``."""
        items = self.indices[positions.numpy()]
        x = to_device(self.dataset.images(items, augment=augment, generator=generator), device)
        return x, self.labels[positions.to(self.labels.device)], positions.to(device)


StepFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]


def run_epochs(
    data: TrainData,
    step: StepFn,
    *,
    epochs: int,
    batch_size: int,
    augment: bool,
    generator: torch.Generator,
    device: torch.device,
    before_epoch: Callable[[int], None] | None = None,
    reporter: Reporter | None = None,
    description: str = "train",
) -> list[dict[str, float]]:
    """Run ``epochs`` passes; ``step(x, y, positions)`` does one optimisation step and returns its losses.

    Returns the per-epoch mean of every returned loss.  Raises :class:`TrainingDiverged` as
    soon as a loss is not finite.
    """
    reporter = reporter or Reporter()
    n = len(data)
    steps_per_epoch = math.ceil(n / batch_size)
    history: list[dict[str, float]] = []
    with reporter.task(description, epochs * steps_per_epoch) as advance:
        for epoch in range(epochs):
            if before_epoch is not None:
                before_epoch(epoch)
            order = torch.randperm(n, generator=generator)
            sums: dict[str, float] = {}
            for i in range(steps_per_epoch):
                positions = order[i * batch_size : (i + 1) * batch_size]
                x, y, pos = data.batch(positions, augment=augment, generator=generator, device=device)
                losses = step(x, y, pos)
                for name, value in losses.items():
                    v = float(value)
                    if not math.isfinite(v):
                        raise TrainingDiverged(
                            f"{description}: loss '{name}' is {v} at epoch {epoch + 1}, step {i + 1} "
                            "(lower the learning rate or check the data)"
                        )
                    sums[name] = sums.get(name, 0.0) + v
                advance(1)
            history.append({k: v / steps_per_epoch for k, v in sums.items()})
    return history
