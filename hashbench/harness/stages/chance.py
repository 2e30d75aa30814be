"""``chance``: the MAP and t-MAP of random balanced codes on a split, the floor every result is read against."""

from __future__ import annotations

import time
from dataclasses import dataclass

from hashbench.harness.sizes import Sizes
from hashbench.harness.stages.base import ARTIFACT_OVERHEAD, SMALL_ARTIFACT, StageKind
from hashbench.harness.stages.context import StageContext, split_of
from hashbench.harness.stages.spec import Stage, StageSpec
from hashbench.harness.store import Artifact
from hashbench.retrieval.chance import chance_map

#: random balanced code sets drawn by a ``chance`` stage (its MAP is their mean)
CHANCE_DRAWS = 5


@dataclass(frozen=True)
class ChanceSpec(StageSpec):
    kind = "chance"
    bits: int
    map_topk: int | None
    draws: int
    seed: int


def run_chance(ctx: StageContext, stage: Stage) -> Artifact:
    """The MAP (and t-MAP against the split's targets) of random balanced codes on this split."""
    spec: ChanceSpec = stage.spec
    dataset, split = split_of(ctx, stage.inputs["split"])
    start = time.perf_counter()
    figures = chance_map(dataset.labels[split.query], dataset.labels[split.database], spec.bits,
                         topk=spec.map_topk, draws=spec.draws, seed=spec.seed, target_labels=split.target_labels)
    return Artifact({}, {"chance": figures, "wall_s": time.perf_counter() - start})


def chance_flops(stage: Stage, sizes: Sizes | None) -> int | None:
    """No images: 2 · 2 · |query| · |database| · bits per draw (MAP and t-MAP of random codes)."""
    if sizes is None:
        return None
    return 2 * 2 * sizes.query * sizes.database * stage.spec.bits * stage.spec.draws


KIND = StageKind(ChanceSpec, run_chance, flops=chance_flops,
                 bytes=lambda stage, sizes: SMALL_ARTIFACT + ARTIFACT_OVERHEAD)
