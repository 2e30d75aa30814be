"""DSDH-C: DSDH with the sliced-Wasserstein coordinate quantisation of Doan, Yang, Li (CVPR 2022)."""

from __future__ import annotations

import torch
from pydantic import Field

from hashbench.api.method import HashMethod
from hashbench.methods.dsdh import DSDH


def swd_coordinate_loss(u: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Sliced-Wasserstein-2 between the rows of ``u`` and of ``target`` along the K coordinate axes.

    Each column (bit) is a 1-D empirical distribution of b values; the squared 1-D Wasserstein-2
    distance between two such samples is the mean squared difference of their sorted values.
    Returns ``(1/(bK))·Σ_k Σ_i (sort(u[:, k])_i − sort(target[:, k])_i)²``.
    """
    if u.shape != target.shape or u.dim() != 2:
        raise ValueError(f"expected two b×K matrices, got {tuple(u.shape)} and {tuple(target.shape)}")
    diff = torch.sort(u, dim=0).values - torch.sort(target, dim=0).values
    return diff.pow(2).mean()


class SlicedWassersteinQuantisation(HashMethod):
    """Mixin of the methods with Doan et al.'s coordinate sliced-Wasserstein quantisation (DSDH-C, CSQ-C, HSWD).

    :meth:`swd_quantisation` is :func:`swd_coordinate_loss` of the batch against a fresh sample
    of balanced ±1 bits (the law of ``sign(N(0, 1))`` of the released code), drawn from a CPU
    ``torch.Generator`` created in :meth:`setup` and seeded from torch's global generator, which
    the harness seeds with the cell's seed before every train/defend stage: same seed, same
    targets, on any device.
    """

    generator: torch.Generator

    def setup(self, num_train: int, bits: int, train_labels: torch.Tensor, device: torch.device | str) -> None:
        super().setup(num_train, bits, train_labels, device)
        self.generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,))))

    def draw_target(self, shape: torch.Size, like: torch.Tensor) -> torch.Tensor:
        """A b×K sample of balanced ±1 bits, drawn on the CPU and moved to ``like``'s device and dtype."""
        bits = torch.randint(0, 2, tuple(shape), generator=self.generator)
        return (2 * bits - 1).to(device=like.device, dtype=like.dtype)

    def swd_quantisation(self, u: torch.Tensor) -> torch.Tensor:
        """``L_swdc(u)`` against a fresh target sample (unweighted)."""
        return swd_coordinate_loss(u, self.draw_target(u.shape, u))


class DSDHC(SlicedWassersteinQuantisation, DSDH):
    """DSDH plus a distributional quantisation term that matches each bit to a ±1 coin.

    Loss: ``L_DSDH(u, y, idx) + α·L_swdc(u)`` with
    ``L_swdc(u) = (1/(bK))·Σ_k Σ_i (sort(u[:, k])_i − sort(b̃[:, k])_i)²``, the sliced-Wasserstein-2
    distance between the batch outputs and a sample ``b̃`` (b×K) of the target distribution,
    sliced along the K coordinate axes (the "coordinate" variant: the K projections are the
    bits themselves, no random directions).  ``b̃`` is redrawn at every call, each entry ±1 with
    probability ½ (the law of ``sign(N(0, 1))`` used by the released code), so the loss pulls each
    bit towards balanced ±1 values (the draws: :class:`SlicedWassersteinQuantisation`).

    Parameters: ``quantization_alpha`` (α, 0.1) and every DSDH parameter (μ 1, ν 1, η 55,
    ``dcc_iter`` 10, the clean-training settings).
    """

    name = "dsdh-c"
    description = "DSDH + sliced-Wasserstein coordinate quantisation towards balanced ±1 bits"
    paper = (
        "Doan, Yang, Li. One Loss for Quantization: Deep Hashing with Discrete Wasserstein "
        "Distributional Matching. CVPR 2022 (applied to DSDH as in CgAT, WWW 2023)"
    )

    class Params(DSDH.Params):
        quantization_alpha: float = Field(0.1, ge=0, description="weight α of the sliced-Wasserstein quantisation")

    def loss(self, u: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        quantisation = self.swd_quantisation(u)
        return super().loss(u, y, idx) + self.params.quantization_alpha * quantisation
