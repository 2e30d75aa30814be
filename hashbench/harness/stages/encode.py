"""``encode``: a model's int8 ±1 codes of the database, training and query items."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from hashbench.chance import code_health
from hashbench.codes import ENCODE_BATCH, to_binary
from hashbench.data.base import HashDataset
from hashbench.harness.flops import model_forward_flops, train_stage
from hashbench.harness.sizes import Sizes
from hashbench.harness.stages.context import StageContext, load_model, split_of
from hashbench.harness.stages.base import ARTIFACT_OVERHEAD, StageKind, Work
from hashbench.harness.stages.spec import Stage, StageSpec
from hashbench.models.hash_model import HashModel
from hashbench.store import Artifact
from hashbench.training import to_device


@dataclass(frozen=True)
class EncodeSpec(StageSpec):
    """Nothing of its own: its model and split inputs say everything."""

    kind = "encode"


@torch.no_grad()
def encode_batches(model: HashModel, count: int, images: Callable[[slice], torch.Tensor], device: torch.device,
                   advance: Callable[[int], None]) -> torch.Tensor:
    """int8 ±1 codes of ``count`` images that ``images(slice)`` gives :data:`ENCODE_BATCH` at a time (eval mode)."""
    model.eval()
    codes = []
    for start in range(0, count, ENCODE_BATCH):
        batch = images(slice(start, start + ENCODE_BATCH))
        codes.append(to_binary(model(to_device(batch, device))).cpu())
        advance(batch.shape[0])
    return torch.cat(codes) if codes else torch.zeros(0, model.bits, dtype=torch.int8)


def encode_images(model: HashModel, dataset: HashDataset, indices: np.ndarray, device: torch.device,
                  advance: Callable[[int], None] = lambda n: None) -> torch.Tensor:
    """int8 ±1 codes of dataset items (eval mode, no augmentation)."""
    return encode_batches(model, len(indices), lambda part: dataset.images(indices[part]), device, advance)


def run_encode(ctx: StageContext, stage: Stage) -> Artifact:
    dataset, split = split_of(ctx, stage.inputs["split"])
    model = load_model(ctx, stage.inputs["model"])
    start = time.perf_counter()
    total = len(split.database) + len(split.train) + len(split.query)
    with ctx.reporter.task("encode", total) as advance:
        tensors = {name: encode_images(model, dataset, getattr(split, name), ctx.device, advance)
                   for name in ("database", "train", "query")}
    # the model's code health, once per model (every evaluation of it copies it into its record)
    return Artifact(tensors, {"wall_s": time.perf_counter() - start, "code_health": code_health(tensors["database"])})


def encode_flops(stage: Stage, sizes: Sizes | None) -> int | None:
    """|database| + |train| + |query| forward passes."""
    train = train_stage(stage)
    if sizes is None or train is None:
        return None
    return model_forward_flops(stage, sizes, train) * (sizes.database + sizes.train + sizes.query)


def encode_bytes(stage: Stage, sizes: Sizes | None) -> int | None:
    """(|database| + |train| + |query|) · bits (int8 codes)."""
    train = train_stage(stage)
    if sizes is None or train is None:
        return None
    return (sizes.train + sizes.query + sizes.database) * train.spec.bits + ARTIFACT_OVERHEAD


def encode_work(stage: Stage, sizes: Sizes) -> Work | None:
    train = train_stage(stage)
    return None if train is None else Work(train.spec.backbone, max(1, min(ENCODE_BATCH, sizes.database)), "infer")


def encode_images_read(stage: Stage, sizes: Sizes) -> tuple[int, bool]:
    return sizes.database + sizes.train + sizes.query, False


KIND = StageKind(EncodeSpec, run_encode, flops=encode_flops, bytes=encode_bytes, work=encode_work,
                 images_read=encode_images_read, gpu=True)
