"""Ortho: OrthoHash (Hoe, Ng, Zhang, Chan, Song, Xiang, NeurIPS 2021), in the form of SAAT's code."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from hashbench.api.method import TrainParams
from hashbench.methods.loss_tensors import LossTensors

#: batch-norm epsilon (``nn.BatchNorm1d``'s) and the cosine clamp of the arc margin (the original's)
BN_EPS = 1e-5
ARC_CLAMP = 0.99999


class Ortho(LossTensors):
    """One cross-entropy over scaled cosine similarities to fixed random binary class codes.

    Paper: J. T. Hoe, K. W. Ng, T. Zhang, C. S. Chan, Y.-Z. Song, T. Xiang. *One Loss for All:
    Deep Hashing with a Single Cosine Similarity based Learning Objective*. NeurIPS 2021.

    Loss (SAAT's ``ortho.py``): the batch is batch-normalised, ``z = γ ⊙ (u − mean_b u) /
    sqrt(var_b u + 1e-5) + β`` (batch statistics, biased variance), and compared with the class
    codebook ``O`` (C×K, ±1 entries drawn Bernoulli(½), the paper's random codebook) by cosine,
    ``c_ic = cos(z_i, o_c)``.  With the cosine margin the logits are ``s·(c_ic − m·y_ic)``, with the
    arc margin ``s·cos(arccos(c_ic) + m·y_ic)``; the loss is the cross-entropy against the label
    vector divided by its sum (label smoothing over an item's labels; plain cross-entropy on
    single-label data; an unlabelled item contributes 0), averaged over the batch, plus
    ``quan`` times a quantisation term on ``z`` against ``sign(z)`` (held constant): ``cs``
    ``1 − cos(z, sign z)``, ``l1`` ``|z − sign z|`` or ``l2`` ``(z − sign z)²``, averaged.

    The codebook is drawn from ``codebook_seed``; the batch norm's affine ``γ`` (1s) and ``β`` (0s)
    are learned with the network in clean training (SAAT trains them with the model), kept
    fixed by defenses, and stored with the model with the codebook.  As in SAAT, the batch norm
    exists only in the loss: retrieval codes are ``sign(u)`` of the network, and no running
    statistics are kept.  The loss is therefore blind to a per-bit offset of ``u`` that the
    codes are not: large steps can leave bits unbalanced (small ``shapes`` runs needed lr 0.001).
    A zero vector (a batch of one item) has cosine 0 with every code.

    Parameters: ``scale`` (s) 8, ``margin`` (m) 0.2, ``margin_type`` ``cos``, ``quan`` 0,
    ``quan_type`` ``cs``, ``codebook_seed`` 0, and the clean-training settings of :class:`TrainParams`.
    """

    name = "ortho"
    description = "cross-entropy of scaled cosines to random binary class codes after batch norm (OrthoHash)"
    paper = ("Hoe, Ng, Zhang, Chan, Song, Xiang. One Loss for All: Deep Hashing with a Single Cosine Similarity "
             "based Learning Objective. NeurIPS 2021")

    class Params(TrainParams):
        scale: float = Field(8.0, gt=0, description="scale s of the cosine logits")
        margin: float = Field(0.2, ge=0, description="margin m subtracted from (cos) or added to the angle of "
                              "(arc) the labels' logits")
        margin_type: Literal["cos", "arc"] = Field("cos", description="cosine or angular (arc) margin")
        quan: float = Field(0.0, ge=0, description="weight of the quantisation term (0: none, the default)")
        quan_type: Literal["cs", "l1", "l2"] = Field("cs", description="quantisation term: 1 − cosine, L1 or L2")
        codebook_seed: int = Field(0, ge=0, description="seed of the random class codebook")

    def tensor_shapes(self, num_classes: int, bits: int) -> dict[str, tuple[int, ...]]:
        return {"codebook": (num_classes, bits), "bn_weight": (bits,), "bn_bias": (bits,)}

    def draw_tensors(self, num_classes: int, bits: int) -> dict[str, torch.Tensor]:
        generator = torch.Generator().manual_seed(self.params.codebook_seed)
        codebook = torch.randint(0, 2, (num_classes, bits), generator=generator).float() * 2 - 1
        return {"codebook": codebook, "bn_weight": torch.ones(bits), "bn_bias": torch.zeros(bits)}

    def learned_tensors(self) -> tuple[str, ...]:
        return ("bn_weight", "bn_bias")

    def normalise(self, u: torch.Tensor) -> torch.Tensor:
        """The batch norm of the loss: batch statistics, biased variance, the learned affine."""
        centred = u - u.mean(dim=0, keepdim=True)
        z = centred / torch.sqrt(centred.pow(2).mean(dim=0, keepdim=True) + BN_EPS)
        return z * self.tensors["bn_weight"] + self.tensors["bn_bias"]

    def loss(self, u: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        p = self.params
        z = self.normalise(u.float())
        cos = F.normalize(z, dim=1) @ F.normalize(self.tensors["codebook"], dim=1).T
        y = y.float()
        if p.margin_type == "cos":
            logits = p.scale * (cos - p.margin * y)
        else:
            logits = p.scale * torch.cos(torch.acos(cos.clamp(-ARC_CLAMP, ARC_CLAMP)) + p.margin * y)
        target = y / y.sum(dim=1, keepdim=True).clamp(min=1)
        loss = -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
        if p.quan > 0:
            signs = torch.sign(z).detach()
            if p.quan_type == "cs":
                quantisation = 1 - F.cosine_similarity(z, signs, dim=1)
            elif p.quan_type == "l1":
                quantisation = (z - signs).abs()
            else:
                quantisation = (z - signs).pow(2)
            loss = loss + p.quan * quantisation.mean()
        return loss
