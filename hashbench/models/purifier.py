"""Inference-time defenses: a purifier in front of an unchanged hash model.

:class:`PurifiedModel` is what an inference-time defense (:class:`hashbench.api.defense.InferenceDefense`)
returns: every image, query or database item, passes through the purifier before the hash
model.  The defend stage stores the hash model's weights under ``model.`` (exactly the clean
model's) and the purifier's under ``purifier.``; loading rebuilds the purifier from the defense
plugin named in the artifact's meta (:func:`hashbench.harness.stages.load_model`).

``attack_sees_purifier`` chooses the threat model: white-box (``True``), attacks differentiate
through the purifier; oblivious (``False``), attacks are crafted on the bare hash model
(:func:`attacked_model`) and the purified model is evaluated on their examples.

The ComDefend networks (Jia et al., CVPR 2019) live here too: :class:`ComDefendNet` (ComCNN
and RecCNN), :func:`binarize` (the 0.5 threshold with a straight-through gradient) and
:func:`comdefend_loss`.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from hashbench.models.hash_model import HashModel


class PurifiedModel(HashModel):
    """``hash_model(purifier(x))``: a hash model behind an input purifier.

    A :class:`HashModel` to every consumer (attacks, encoding, the contract checks): it maps
    [0, 1] images to ``tanh(alpha · …)`` codes and has ``bits``.  It deliberately skips
    ``HashModel.__init__``: the layers it would build belong to ``hash_model``, which is kept
    whole (its ``state_dict`` is the clean model's).
    """

    def __init__(self, purifier: nn.Module, hash_model: HashModel, *, attack_sees_purifier: bool = True) -> None:
        nn.Module.__init__(self)
        self.purifier = purifier
        self.hash_model = hash_model
        self.bits = hash_model.bits
        self.attack_sees_purifier = attack_sees_purifier

    @property
    def backbone(self) -> nn.Module:  # type: ignore[override]
        return self.hash_model.backbone

    @property
    def hash_layer(self) -> nn.Linear:  # type: ignore[override]
        return self.hash_model.hash_layer

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.hash_model.logits(self.purifier(x))

    def forward(self, x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
        return self.hash_model(self.purifier(x), alpha)


def attacked_model(model: HashModel) -> HashModel:
    """The model an attack crafts its examples on: ``model`` itself, except the bare hash model
    of an oblivious :class:`PurifiedModel` (one whose ``attack_sees_purifier`` is false)."""
    if isinstance(model, PurifiedModel) and not model.attack_sees_purifier:
        return model.hash_model
    return model


class _StraightThroughThreshold(torch.autograd.Function):
    """Forward ``1[code > 0]``; backward passes the gradient through unchanged (identity)."""

    @staticmethod
    def forward(ctx, code: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return (code > 0).to(code.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return grad


def binarize(code: torch.Tensor) -> torch.Tensor:
    """ComDefend's test-time code: ``1[sigmoid(code) > 0.5]`` = ``1[code > 0]``, as 0/1 floats.

    The threshold has zero gradient almost everywhere; its backward is the identity with
    respect to ``code`` (the straight-through estimator, BPDA with g(c) = c), so a white-box
    attack gets a useful gradient through the purifier.  Going through the sigmoid's
    derivative instead would vanish: training with noise φ = 20 drives codes far from 0.
    A custom autograd function rather than ``code + (hard − code).detach()``: that sum is not
    exactly 0/1 in floating point once ``|code|`` is large.
    """
    return _StraightThroughThreshold.apply(code)


def _conv_stack(channels: Sequence[int], *, last: nn.Module | None) -> nn.Sequential:
    """3×3 convolutions (stride 1, padding 1, bias) through ``channels``, ELU between them;
    ``last`` (or nothing) after the final convolution."""
    layers: list[nn.Module] = []
    for i, (c_in, c_out) in enumerate(zip(channels[:-1], channels[1:])):
        layers.append(nn.Conv2d(c_in, c_out, kernel_size=3, padding=1))
        if i < len(channels) - 2:
            layers.append(nn.ELU())
    if last is not None:
        layers.append(last)
    return nn.Sequential(*layers)


class ComDefendNet(nn.Module):
    """ComCNN (compression) and RecCNN (reconstruction), full resolution throughout.

    ComCNN: ``x − 0.5`` → 3×3 convs 3 → ``hidden`` → ``code_channels`` (ELU between, none after
    the last): a linear code of ``code_channels`` maps, binarised at inference to
    ``code_channels`` bits per pixel (12 for the paper's 24-bit RGB pixels).  RecCNN: 3×3 convs
    ``code_channels`` → reversed ``hidden`` → 3, ELU between, a sigmoid at the end, so the
    purified image is in [0, 1].  The paper's ``hidden`` is (16, 32, 64, 128, 256, 128, 64,
    32): nine convolutions on each side.

    :meth:`forward` is the inference path (binarised code, see :func:`binarize`) in train and
    eval mode alike; training uses :meth:`compress` and :meth:`reconstruct` with the noisy
    sigmoid code (:class:`defenses.comdefend.ComDefend`).
    """

    def __init__(self, hidden: Sequence[int] = (16, 32, 64, 128, 256, 128, 64, 32), code_channels: int = 12) -> None:
        super().__init__()
        if not hidden or any(c <= 0 for c in hidden) or code_channels <= 0:
            raise ValueError(f"channel counts must be positive and hidden non-empty (got hidden={tuple(hidden)}, "
                             f"code_channels={code_channels})")
        self.code_channels = code_channels
        self.com = _conv_stack([3, *hidden, code_channels], last=None)
        self.rec = _conv_stack([code_channels, *reversed(hidden), 3], last=nn.Sigmoid())

    def compress(self, x: torch.Tensor) -> torch.Tensor:
        """The linear (pre-sigmoid) code of ``x`` in [0, 1]: ``N × code_channels × H × W``."""
        return self.com(x - 0.5)

    def reconstruct(self, code: torch.Tensor) -> torch.Tensor:
        """An image in [0, 1] from a code of 0/1 (or sigmoid) values."""
        return self.rec(code)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reconstruct(binarize(self.compress(x)))


def comdefend_loss(x: torch.Tensor, reconstruction: torch.Tensor, soft_code: torch.Tensor,
                   lam: float) -> dict[str, torch.Tensor]:
    """ComDefend's training loss: ``mean((rec − x)²) + λ · mean(soft_code²)``.

    ``soft_code`` is ``sigmoid(code − φ·n)``, n ~ N(0, 1): the penalty pushes the code's bits
    towards 0 (a compact code), the reconstruction term keeps the image.  Means over every
    element, as the released code (the paper writes sums; λ = 1e-4 goes with the means).
    Returns ``loss`` and its two terms ``mse`` and ``code``.
    """
    mse = (reconstruction - x).pow(2).mean()
    code = soft_code.pow(2).mean()
    return {"loss": mse + lam * code, "mse": mse, "code": code}
