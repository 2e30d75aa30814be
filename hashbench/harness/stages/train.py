"""``train``: a hashing method trains a hash model on the split's training items."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from hashbench import plugins
from hashbench.harness.flops import checkpoint_bytes, model_forward_flops, plugin_flag, plugin_param
from hashbench.harness.sizes import Sizes
from hashbench.harness.stages.base import ARTIFACT_OVERHEAD, StageKind, Work, batches_of, of_model
from hashbench.harness.stages.context import (StageContext, autocast, backward_step, build_model, model_artifact,
                                              prefixed, seeded_generator, training_data)
from hashbench.harness.stages.spec import PluginSpec, Stage, StageSpec, amp_field
from hashbench.harness.store import Artifact
from hashbench.retrieval.training import run_epochs


@dataclass(frozen=True)
class TrainSpec(StageSpec):
    kind = "train"
    method: PluginSpec
    backbone: PluginSpec
    bits: int
    seed: int
    amp: str | None = amp_field()


def run_train(ctx: StageContext, stage: Stage) -> Artifact:
    spec: TrainSpec = stage.spec
    generator = seeded_generator(spec.seed)
    data = training_data(ctx, stage.inputs["split"])
    dataset = data.dataset
    model = build_model(spec.backbone, spec.bits, dataset.image_size, pretrained="pretrain" not in stage.inputs,
                        method=spec.method)
    if "pretrain" in stage.inputs:  # the warm start replaces the backbone's initial weights
        warm = ctx.artifact(stage.inputs["pretrain"]).tensors
        model.backbone.load_state_dict(prefixed(warm, "backbone."))
    model = ctx.place(model)
    method = plugins.methods.create(spec.method.name, dict(spec.method.params))
    scaler = torch.amp.GradScaler(ctx.device.type) if spec.amp == "fp16" else None  # fp16 needs loss scaling
    method.setup(len(data), spec.bits, data.labels, ctx.device)
    optimizer = method.optimizer(model.parameters())
    p = method.params

    def before_epoch(epoch: int) -> None:
        for group in optimizer.param_groups:
            group["lr"] = method.lr_at_epoch(epoch)
        method.on_epoch_start(epoch)

    def step(x: torch.Tensor, y: torch.Tensor, pos: torch.Tensor) -> dict[str, torch.Tensor]:
        model.train()
        with autocast(ctx.device, spec.amp):
            loss = method.loss(model(x), y, pos)
        backward_step(loss, optimizer, scaler)
        return {"loss": loss.detach().float()}

    start = time.perf_counter()
    history = run_epochs(data, step, epochs=p.epochs, batch_size=p.batch_size, augment=p.augment,
                         generator=generator, device=ctx.device, before_epoch=before_epoch,
                         reporter=ctx.reporter, description=f"train {spec.method.name}")
    model.eval()
    meta = {"model_spec": {"backbone": spec.backbone.to_json(), "bits": spec.bits}, "image_size": dataset.image_size,
            "history": history, "wall_s": time.perf_counter() - start}
    return model_artifact(model, method, meta)


@of_model
def train_flops(stage: Stage, sizes: Sizes, train: Stage) -> int:
    """3 · epochs · |train| passes (a backward pass counts as two forwards)."""
    return model_forward_flops(stage, sizes, train) * 3 * plugin_param(stage.spec.method, "epochs", 1) * sizes.train


@of_model
def model_bytes(stage: Stage, sizes: Sizes, train: Stage) -> int:
    """A checkpoint: the hash model's state elements (counted on the meta device) × 4."""
    return checkpoint_bytes(train.spec.backbone, sizes.image_size, train.spec.bits) + ARTIFACT_OVERHEAD


@of_model
def train_work(stage: Stage, sizes: Sizes, train: Stage) -> Work:
    return batches_of(train, stage.spec.method, sizes.train)


def train_images(stage: Stage, sizes: Sizes) -> tuple[int, bool]:
    method = stage.spec.method
    return plugin_param(method, "epochs", 1) * sizes.train, plugin_flag(method, "augment", True)


KIND = StageKind(TrainSpec, run_train, flops=train_flops, bytes=model_bytes, work=train_work,
                 images_read=train_images, gpu=True, trains=True)
