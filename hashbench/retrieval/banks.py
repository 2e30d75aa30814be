"""The training-set memory bank shared by bank-based losses and adversarial training.

Rows are addressed by *training position* (0..N-1, the order of the split's train
indices).  ``u`` holds the latest continuous outputs, ``labels`` the multi-hot labels (every
row from the start, unless a method fills them as its batches visit the items).  Clean
training starts from zeros; adversarial training "preinstalls" the clean model's outputs and
every label (spec §1.5) so the first batches already see meaningful codes.
"""

from __future__ import annotations

import torch


class CodeBank:
    """Continuous outputs U (N×K) and labels L (N×C) of every training item."""

    def __init__(self, num_items: int, bits: int, labels: torch.Tensor, device: torch.device | str = "cpu") -> None:
        self.u = torch.zeros(num_items, bits, device=device)
        # a copy: a bank that fills its labels as items are visited must not write into the caller's
        self.labels = labels.to(device=device, dtype=torch.float32, copy=True)

    def preinstall(self, u: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        """Fill the bank with outputs (and, when given, labels) of every training item, e.g. the clean model's."""
        if u.shape != self.u.shape:
            raise ValueError(f"preinstall expects {tuple(self.u.shape)}, got {tuple(u.shape)}")
        if labels is not None and labels.shape != self.labels.shape:
            raise ValueError(f"preinstall expects labels {tuple(self.labels.shape)}, got {tuple(labels.shape)}")
        self.u.copy_(u.detach())
        if labels is not None:
            self.labels.copy_(labels)

    def update(self, idx: torch.Tensor, u: torch.Tensor) -> None:
        self.u[idx] = u.detach().to(self.u.dtype)

    def update_labels(self, idx: torch.Tensor, labels: torch.Tensor) -> None:
        """Write the labels of rows ``idx`` (for a bank whose label rows start empty)."""
        self.labels[idx] = labels.to(self.labels.dtype)

    def binary(self) -> torch.Tensor:
        """sign(U) with torch semantics (an exact 0 stays 0, as in the original code)."""
        return torch.sign(self.u)

    def similarity(self, y: torch.Tensor) -> torch.Tensor:
        """s_ij = 1[y_i · l_j > 0] between batch labels and every bank item (float 0/1)."""
        return (y.float() @ self.labels.T > 0).float()
