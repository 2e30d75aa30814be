"""``craft``: a surrogate's white-box attack, keeping the adversarial images for other models (transfer)."""

from __future__ import annotations

from dataclasses import dataclass

from hashbench.harness.sizes import Sizes
from hashbench.harness.stages.attack import AttackSpec, attack_flops, attack_queries, attack_work, query_images
from hashbench.harness.stages.base import ARTIFACT_OVERHEAD, StageKind
from hashbench.harness.stages.context import StageContext
from hashbench.harness.stages.spec import Stage
from hashbench.harness.store import Artifact


@dataclass(frozen=True)
class CraftSpec(AttackSpec):
    """Exactly its surrogate's attack stage's spec (and inputs): only the kind differs."""

    kind = "craft"


def run_craft(ctx: StageContext, stage: Stage) -> Artifact:
    return attack_queries(ctx, stage, keep_images=True)


def craft_bytes(stage: Stage, sizes: Sizes | None) -> int | None:
    """|query| · (4 · 3 · side² + 12) + 2 · 4 · 3 · side² (float32 images, three norms, examples)."""
    if sizes is None:
        return None
    side2 = sizes.image_size**2
    return sizes.query * (4 * 3 * side2 + 12) + 2 * 4 * 3 * side2 + ARTIFACT_OVERHEAD


KIND = StageKind(CraftSpec, run_craft, flops=attack_flops, bytes=craft_bytes, work=attack_work,
                 images_read=query_images, gpu=True)
