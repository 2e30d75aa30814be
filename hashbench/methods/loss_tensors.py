"""Tensors that belong to a method's loss (a classifier, a codebook, a normalisation), kept with the model.

GreedyHash's classifier and Ortho's codebook and batch-norm affine are drawn when a run
starts, stored in the trained model's artifact, and reloaded by every defense, so adversarial
training sees exactly the loss of clean training.  Some of them are learned: they join the
optimiser of clean training (the ``train`` stage builds it through :meth:`HashMethod.optimizer`)
and stay fixed afterwards, since a defense optimises the network's parameters only.
"""

from __future__ import annotations

import torch

from hashbench.api.method import HashMethod


class LossTensors(HashMethod):
    """Mixin: named tensors of the loss, drawn in :meth:`setup` unless loaded, saved with the model.

    Subclasses give :meth:`tensor_shapes` and :meth:`draw_tensors`, and name the learned ones
    in :meth:`learned_tensors`.  The tensors live in ``self.tensors`` (on the run's device).
    """

    tensors: dict[str, torch.Tensor] | None = None

    def tensor_shapes(self, num_classes: int, bits: int) -> dict[str, tuple[int, ...]]:
        """The name and shape of every tensor for C classes and K bits."""
        raise NotImplementedError

    def draw_tensors(self, num_classes: int, bits: int) -> dict[str, torch.Tensor]:
        """Fresh tensors for a run that starts from scratch (float32, on the CPU)."""
        raise NotImplementedError

    def learned_tensors(self) -> tuple[str, ...]:
        """Names of the tensors that clean training optimises with the network."""
        return ()

    def setup(self, num_train: int, bits: int, train_labels: torch.Tensor, device: torch.device | str) -> None:
        """Draw the tensors unless they were loaded; loaded ones must fit this run's classes and bits."""
        super().setup(num_train, bits, train_labels, device)
        num_classes = train_labels.shape[1]
        if self.tensors is None:
            self.tensors = self.draw_tensors(num_classes, bits)
        else:
            for name, shape in self.tensor_shapes(num_classes, bits).items():
                found = tuple(self.tensors[name].shape)
                if found != shape:
                    raise ValueError(
                        f"{self.name}: the loaded '{name}' is {found}, but this run has {num_classes} classes "
                        f"and {bits} bits (expected {shape}); train the model again for this dataset and code length"
                    )
        # a copy: optimising in place must never touch an artifact's tensors
        self.tensors = {k: v.detach().to(device=device, dtype=torch.float32).clone() for k, v in self.tensors.items()}

    def optimizer(self, parameters) -> torch.optim.Optimizer:
        """The method's optimiser over the network's parameters and the learned loss tensors."""
        learned = [self.tensors[name].requires_grad_(True) for name in self.learned_tensors()]
        return super().optimizer([*parameters, *learned])

    def state_tensors(self) -> dict[str, torch.Tensor]:
        if self.tensors is None:
            return {}
        return {k: v.detach().cpu().clone() for k, v in self.tensors.items()}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        if not tensors:
            return
        missing = set(self.tensor_shapes(1, 1)) - set(tensors)
        if missing:
            raise ValueError(f"{self.name}: the model artifact lacks {', '.join(sorted(missing))}")
        self.tensors = {name: tensors[name].float() for name in self.tensor_shapes(1, 1)}
