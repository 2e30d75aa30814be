"""``pretrain``: the backbone's supervised warm start (``BackboneParams.pretrain_epochs``)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from hashbench.harness.flops import checkpoint_bytes, forward_flops, plugin_param
from hashbench.harness.sizes import Sizes
from hashbench.harness.stages.base import ARTIFACT_OVERHEAD, StageKind, Work
from hashbench.harness.stages.context import (StageContext, autocast, backward_step, build_model, seeded_generator,
                                              training_data)
from hashbench.harness.stages.spec import PluginSpec, Stage, StageSpec, amp_field
from hashbench.harness.store import Artifact
from hashbench.retrieval.training import run_epochs


@dataclass(frozen=True)
class PretrainSpec(StageSpec):
    kind = "pretrain"
    backbone: PluginSpec
    seed: int
    amp: str | None = amp_field()


def run_pretrain(ctx: StageContext, stage: Stage) -> Artifact:
    """A linear head classifies the training split's labels (binary cross-entropy), Adam with a
    cosine decay; only the backbone is kept."""
    spec: PretrainSpec = stage.spec
    generator = seeded_generator(spec.seed)
    data = training_data(ctx, stage.inputs["split"])
    dataset = data.dataset
    classes = data.labels.shape[1]
    model = build_model(spec.backbone, classes, dataset.image_size)
    # a classifier head at nn.Linear's own scale: the hash layer's N(0, 0.01²) start starves the
    # backbone's gradient early on (on shapes its loss was twice as high after 20 epochs)
    model.hash_layer.reset_parameters()
    model = ctx.place(model)
    p = spec.backbone.params
    epochs, lr = p["pretrain_epochs"], p["pretrain_lr"]
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scaler = torch.amp.GradScaler(ctx.device.type) if spec.amp == "fp16" else None

    def before_epoch(epoch: int) -> None:
        for group in optimizer.param_groups:
            group["lr"] = 0.5 * lr * (1 + math.cos(math.pi * epoch / epochs))

    def step(x: torch.Tensor, y: torch.Tensor, pos: torch.Tensor) -> dict[str, torch.Tensor]:
        model.train()
        with autocast(ctx.device, spec.amp):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model.logits(x).float(), y)
        backward_step(loss, optimizer, scaler)
        return {"loss": loss.detach().float()}

    start = time.perf_counter()
    history = run_epochs(data, step, epochs=epochs, batch_size=p["pretrain_batch_size"], augment=True,
                         generator=generator, device=ctx.device, before_epoch=before_epoch,
                         reporter=ctx.reporter, description=f"pretrain {spec.backbone.name}")
    tensors = {f"backbone.{k}": v for k, v in model.backbone.state_dict().items()}
    return Artifact(tensors, {"history": history, "classes": classes, "wall_s": time.perf_counter() - start})


def pretrain_flops(stage: Stage, sizes: Sizes | None) -> int | None:
    """3 · pretrain_epochs · |train| passes, through a head of one output per class."""
    if sizes is None or not sizes.classes:
        return None
    backbone = stage.spec.backbone
    passes = 3 * plugin_param(backbone, "pretrain_epochs", 1) * sizes.train
    return forward_flops(backbone, sizes.image_size, sizes.classes) * passes


def pretrain_bytes(stage: Stage, sizes: Sizes | None) -> int | None:
    """A checkpoint of the backbone with a head of one output per class."""
    if sizes is None or not sizes.classes:
        return None
    return checkpoint_bytes(stage.spec.backbone, sizes.image_size, sizes.classes) + ARTIFACT_OVERHEAD


def pretrain_work(stage: Stage, sizes: Sizes) -> Work | None:
    if not sizes.classes:
        return None
    backbone = stage.spec.backbone
    return Work(backbone, min(plugin_param(backbone, "pretrain_batch_size", 64), sizes.train), "train")


def pretrain_images(stage: Stage, sizes: Sizes) -> tuple[int, bool]:
    return plugin_param(stage.spec.backbone, "pretrain_epochs", 1) * sizes.train, True


KIND = StageKind(PretrainSpec, run_pretrain, flops=pretrain_flops, bytes=pretrain_bytes, work=pretrain_work,
                 images_read=pretrain_images, gpu=True, trains=True)
