"""``encode``: a model's int8 ±1 codes of the database, training and query items."""

from __future__ import annotations

import time
from dataclasses import dataclass

from hashbench.harness.flops import model_forward_flops
from hashbench.harness.sizes import Sizes
from hashbench.harness.stages.base import ARTIFACT_OVERHEAD, StageKind, Work, batches_of, of_model
from hashbench.harness.stages.context import StageContext, load_model, split_of
from hashbench.harness.stages.spec import Stage, StageSpec
from hashbench.harness.store import Artifact
from hashbench.retrieval.chance import code_health
from hashbench.retrieval.codes import encode_images


@dataclass(frozen=True)
class EncodeSpec(StageSpec):
    """Nothing of its own: its model and split inputs say everything."""

    kind = "encode"


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


@of_model
def encode_flops(stage: Stage, sizes: Sizes, train: Stage) -> int:
    """|database| + |train| + |query| forward passes."""
    return model_forward_flops(stage, sizes, train) * (sizes.database + sizes.train + sizes.query)


@of_model
def encode_bytes(stage: Stage, sizes: Sizes, train: Stage) -> int:
    """(|database| + |train| + |query|) · bits (int8 codes)."""
    return (sizes.train + sizes.query + sizes.database) * train.spec.bits + ARTIFACT_OVERHEAD


@of_model
def encode_work(stage: Stage, sizes: Sizes, train: Stage) -> Work:
    return batches_of(train, None, sizes.database, "infer")


def encode_images_read(stage: Stage, sizes: Sizes) -> tuple[int, bool]:
    return sizes.database + sizes.train + sizes.query, False


KIND = StageKind(EncodeSpec, run_encode, flops=encode_flops, bytes=encode_bytes, work=encode_work,
                 images_read=encode_images_read, gpu=True)
