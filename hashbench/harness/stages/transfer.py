"""``transfer``: a victim model encodes the adversarial images a surrogate's attack crafted (black box)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from hashbench.errors import DataError
from hashbench.harness.flops import model_forward_flops
from hashbench.harness.sizes import Sizes
from hashbench.harness.stages.attack import attack_bytes
from hashbench.harness.stages.base import StageKind, Work, batches_of, of_model
from hashbench.harness.stages.context import StageContext, load_model, split_of
from hashbench.harness.stages.spec import EvaluatedAttack, Stage, StageSpec
from hashbench.harness.store import Artifact
from hashbench.retrieval.codes import encode_batches

#: what a transfer stage copies from its craft stage into its attack-shaped artifact
CRAFT_COPIED = ("linf", "l2", "mse", "examples_clean", "examples_adv")


@dataclass(frozen=True)
class TransferSpec(StageSpec):
    kind = "transfer"
    attack: EvaluatedAttack


def run_transfer(ctx: StageContext, stage: Stage) -> Artifact:
    """The victim model (``load_model`` puts an inference-time defense's purifier in front) encodes
    the crafted images.  The artifact has an attack stage's form (``query_codes``, the craft's norms
    and examples), so the evaluate stage reads it unchanged."""
    craft = ctx.artifact(stage.inputs["craft"])
    _, split = split_of(ctx, stage.inputs["split"])
    images = craft.tensors["images"]
    if images.shape[0] != len(split.query):  # the planner gives both models one split: this is a broken store
        raise DataError(f"craft {stage.inputs['craft'].key[:12]} holds {images.shape[0]} images for a split of "
                        f"{len(split.query)} queries")
    model = load_model(ctx, stage.inputs["model"])
    start = time.perf_counter()
    with ctx.reporter.task(f"transfer {stage.spec.attack.name}", len(images)) as advance:
        codes = encode_batches(model, len(images), images.__getitem__, ctx.device, advance)
    tensors = {"query_codes": codes, **{k: craft.tensors[k] for k in CRAFT_COPIED if k in craft.tensors}}
    meta = {**{k: craft.meta[k] for k in ("targeted", "bounded", "epsilon", "perturbation")},
            "craft_wall_s": craft.meta.get("wall_s"), "wall_s": time.perf_counter() - start}
    return Artifact(tensors, meta)


@of_model
def transfer_flops(stage: Stage, sizes: Sizes, train: Stage) -> int:
    """|query| forward passes (the victim encodes the crafted queries)."""
    return model_forward_flops(stage, sizes, train) * sizes.query


@of_model
def transfer_work(stage: Stage, sizes: Sizes, train: Stage) -> Work:
    return batches_of(train, None, sizes.query, "infer")


# reads its craft's images, not the dataset
KIND = StageKind(TransferSpec, run_transfer, flops=transfer_flops, bytes=attack_bytes, work=transfer_work, gpu=True)
