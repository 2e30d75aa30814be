"""ComDefend: an image-compression purifier in front of the unchanged hash model (Jia et al., CVPR 2019)."""

from __future__ import annotations

import math
from typing import Any

import torch
from pydantic import Field, field_validator

from hashbench.api.defense import DefenseContext, InferenceDefense, PurifierParams
from hashbench.api.params import MAX_BATCH_SIZE, MAX_EPOCHS, MAX_WIDTH
from hashbench.models.purifier import ComDefendNet, comdefend_loss
from hashbench.retrieval.training import TrainData, run_epochs


class ComDefend(InferenceDefense):
    """Compress every input to a binary code and reconstruct it before the hash model sees it.

    Paper: X. Jia, X. Wei, X. Cao, H. Foroosh. *ComDefend: An Efficient Image Compression Model
    to Defend Adversarial Examples*. CVPR 2019.  Facts from the paper and the authors' released
    code (``Train_comdefend_TF.py``, ``Train_comdefend_Torch.py``), see
    :class:`hashbench.models.purifier.ComDefendNet`.

    ComCNN maps ``x − 0.5`` through nine 3×3 convolutions (16, 32, 64, 128, 256, 128, 64, 32
    channels, ELU) to a 12-channel linear code ``c`` at full resolution; RecCNN maps a code
    through nine 3×3 convolutions (32, 64, 128, 256, 128, 64, 32, 16, 3; ELU, a final sigmoid)
    back to an image.  Training, on the clean training images only (the hash model is not
    touched, the hashing method not used): ``s = sigmoid(c − φ·n)``, n ~ N(0, 1) drawn from
    the run's generator, and

        ``L = mean((RecCNN(s) − x)²) + λ · mean(s²)``

    The noise makes the reconstruction robust to flipping code values only if they are far
    from the sigmoid's middle, so the code becomes (nearly) binary; the penalty keeps it
    compact (mostly 0).  At inference the code is binarised, ``b = 1[sigmoid(c) > 0.5]``, and
    the purified image is ``RecCNN(b)``: database images and queries, clean or adversarial,
    all go through it.  The released code adds noise at test time too (φ in the PyTorch
    script; σ 1 in the TensorFlow graph, whose noise variable is only fed while training);
    here inference is deterministic (no noise), so the same seed gives the same codes.

    Attacks see the purifier (``attack_sees_purifier`` true, white-box): they differentiate
    through RecCNN and ComCNN, the threshold's gradient taken as the identity with respect to
    ``c`` (straight-through / BPDA, :func:`hashbench.models.purifier.binarize`).  With
    ``attack_sees_purifier`` false (oblivious) attacks are crafted on the bare hash model and
    the purified model is evaluated on their examples.  The flag is part of the defense's
    parameters, hence of the defend stage's key: the oblivious run trains its own purifier,
    identical for the same seed.

    Parameters: ``hidden`` (16, 32, 64, 128, 256, 128, 64, 32) ComCNN's hidden widths (RecCNN
    uses them reversed), ``code_channels`` 12, ``noise`` φ = 20 (std of the Gaussian subtracted
    from the code while training; both releases), ``lam`` λ = 1e-4 (weight of the code
    penalty; both releases), ``epochs`` 10, ``batch_size`` 128, Adam ``lr`` 0.01 with
    ``beta1`` 0.5, ``beta2`` 0.999 (the PyTorch release; the TensorFlow one trains one epoch of
    CIFAR-10, batches of 20, with Adam's defaults 1e-3, 0.9), ``augment`` false (neither
    release augments), ``attack_sees_purifier`` true.
    """

    name = "comdefend"
    description = "inference-time input purifier: ComCNN binary compression + RecCNN reconstruction"
    paper = ("Jia, Wei, Cao, Foroosh. ComDefend: An Efficient Image Compression Model to Defend Adversarial "
             "Examples. CVPR 2019")

    class Params(PurifierParams):
        hidden: tuple[int, ...] = Field((16, 32, 64, 128, 256, 128, 64, 32),
                                        description="ComCNN's hidden widths; RecCNN uses them reversed")
        code_channels: int = Field(12, gt=0, le=MAX_WIDTH, description="channels (bits per pixel) of the code")
        noise: float = Field(20.0, ge=0, description="φ, std of the Gaussian subtracted from the code in training")
        lam: float = Field(1e-4, ge=0, description="λ, weight of the compact-code penalty mean(s²)")
        epochs: int = Field(10, gt=0, le=MAX_EPOCHS)
        batch_size: int = Field(128, gt=0, le=MAX_BATCH_SIZE)
        lr: float = Field(0.01, gt=0, description="Adam learning rate")
        beta1: float = Field(0.5, ge=0, lt=1)
        beta2: float = Field(0.999, ge=0, lt=1)
        augment: bool = False

        @field_validator("hidden")
        @classmethod
        def _widths(cls, value: tuple[int, ...]) -> tuple[int, ...]:
            if not value:
                raise ValueError("needs at least one hidden width")
            if any(w <= 0 or w > MAX_WIDTH for w in value):
                raise ValueError(f"widths must be between 1 and {MAX_WIDTH}")
            return value

    def build_purifier(self) -> ComDefendNet:
        return ComDefendNet(self.params.hidden, self.params.code_channels)

    def train_purifier(self, purifier: ComDefendNet, data: TrainData, ctx: DefenseContext) -> dict[str, Any]:
        p = self.params
        optimizer = torch.optim.Adam(purifier.parameters(), lr=p.lr, betas=(p.beta1, p.beta2))

        def step(x: torch.Tensor, y: torch.Tensor, pos: torch.Tensor) -> dict[str, torch.Tensor]:
            purifier.train()
            code = purifier.compress(x)
            noise = torch.randn(code.shape, generator=ctx.generator).to(code.device, code.dtype)
            soft = torch.sigmoid(code - p.noise * noise)
            losses = comdefend_loss(x, purifier.reconstruct(soft), soft, p.lam)
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            optimizer.step()
            return {name: value.detach() for name, value in losses.items()}

        history = run_epochs(data, step, epochs=p.epochs, batch_size=p.batch_size, augment=p.augment,
                             generator=ctx.generator, device=ctx.device, reporter=ctx.reporter,
                             description=f"defend {self.name}")
        purifier.eval()
        iterations = p.epochs * -(-len(data) // p.batch_size)
        return {"history": history, "iterations": iterations, **_code_stats(purifier, data, ctx.device)}


@torch.no_grad()
def _code_stats(purifier: ComDefendNet, data: TrainData, device: torch.device, items: int = 64) -> dict[str, float]:
    """On the first ``items`` training images: the inference path's reconstruction MSE and PSNR
    (dB), and the fraction of code bits that are 1 (the paper's compact code keeps it low)."""
    x = data.dataset.images(data.indices[:items]).to(device)
    mse = float((purifier(x) - x).pow(2).mean())
    return {"purified_mse": mse, "purified_psnr_db": 10 * math.log10(1.0 / max(mse, 1e-12)),
            "code_ones": float((purifier.compress(x) > 0).float().mean())}
