"""Gaussian data augmentation: fine-tune the clean model on noisy copies of its training images."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from hashbench.api.defense import Defense, DefenseContext
from hashbench.api.method import HashMethod, SGDParams
from hashbench.models.hash_model import HashModel
from hashbench.retrieval.codes import encode_images
from hashbench.retrieval.training import TrainData, run_epochs


class GaussianNoiseTraining(Defense):
    """Fine-tunes the victim with its own hashing loss on images with added Gaussian noise.

    Paper: V. Zantedeschi, M.-I. Nicolae, A. Rawat. *Efficient Defenses Against Adversarial
    Attacks*. AISec 2017 (Gaussian data augmentation), transposed to deep hashing.  It is a
    cheap baseline, not a defense against adaptive attacks.

    Each step draws ``n ~ N(0, σ²)`` per pixel from the harness's seeded generator and
    minimises the method's own loss on the noisy batch,
    ``L_hash(f(clip_[0,1](x + n)), y)``, with SGD.  A method that keeps a training-set bank
    (DPSH, HashNet, …) gets it filled with the clean model's codes first, so the first
    batches compare against meaningful codes.

    Parameters (this example's choices; the paper trains classifiers, not hash models):
    ``sigma`` 0.05 (noise standard deviation, pixel units of [0, 1] images), ``epochs`` 10,
    ``batch_size`` 64, SGD ``lr`` 0.001, ``momentum`` 0.9, ``weight_decay`` 5e-4, ``augment``
    true (the dataset's own training augmentation, applied before the noise).
    """

    name = "noise-aug"
    description = "fine-tuning on Gaussian-noise-augmented images with the method's own loss"
    paper = "Zantedeschi, Nicolae, Rawat. Efficient Defenses Against Adversarial Attacks. AISec 2017"

    class Params(SGDParams):
        sigma: float = Field(0.05, gt=0, le=1, description="noise standard deviation in pixel units")
        epochs: int = Field(10, gt=0)
        lr: float = Field(0.001, gt=0)

    def fit(
        self, model: HashModel, method: HashMethod, data: TrainData, ctx: DefenseContext
    ) -> tuple[HashModel, dict[str, Any]]:
        p = self.params
        device = ctx.device
        method.setup(len(data), model.bits, data.labels, device)
        if method.bank is not None:
            clean = encode_images(model, data.dataset, data.indices, device)
            method.bank.preinstall(clean.to(device=device, dtype=torch.float32))
        optimizer = torch.optim.SGD(model.parameters(), lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay)

        def step(x: torch.Tensor, y: torch.Tensor, pos: torch.Tensor) -> dict[str, torch.Tensor]:
            model.train()
            noise = torch.randn(x.shape, generator=ctx.generator).to(device=x.device, dtype=x.dtype)
            loss = method.loss(model((x + p.sigma * noise).clamp(0, 1)), y, pos)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            return {"loss": loss.detach()}

        history = run_epochs(
            data, step, epochs=p.epochs, batch_size=p.batch_size, augment=p.augment,
            generator=ctx.generator, device=device, before_epoch=method.on_epoch_start,
            reporter=ctx.reporter, description="defend noise-aug",
        )
        model.eval()
        return model, {"history": history}
