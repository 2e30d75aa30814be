"""``split``: a dataset's train / query / database indices and the queries' target labels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hashbench.data.splits import make_split, own_split
from hashbench.errors import DataError
from hashbench.harness.sizes import Sizes
from hashbench.harness.stages.base import ARTIFACT_OVERHEAD, StageKind
from hashbench.harness.stages.context import StageContext
from hashbench.harness.stages.spec import DatasetSpec, Stage, StageSpec
from hashbench.harness.store import Artifact


@dataclass(frozen=True)
class SplitSpec(StageSpec):
    """The dataset, the split's sizes (and a non-default target rule, ``targets``), the dataset's
    fingerprint when planned (``None`` if it could not be opened) and the split seed."""

    kind = "split"
    dataset: DatasetSpec
    split: dict[str, Any]
    fingerprint: str | None
    seed: int


def run_split(ctx: StageContext, stage: Stage) -> Artifact:
    spec: SplitSpec = stage.spec
    dataset = ctx.dataset(spec.dataset)
    planned, found = spec.fingerprint, dataset.fingerprint()
    if planned != found:  # the files changed between planning and now: the key would lie
        raise DataError(f"dataset '{spec.dataset.name}' changed since the run was planned "
                        f"(fingerprint {planned} → {found}); start the run again")
    sizes = spec.split
    draw = sizes.get("mode") == "draw"
    targets = sizes.get("targets", {})  # the grid's TargetSpec when not the default
    split = make_split(dataset, num_query=sizes["num_query"], num_train=sizes["num_train"],
                       num_database=sizes.get("num_database"), seed=spec.seed, draw=draw,
                       target_min_count=targets.get("min_count", 1), target_zero_label=targets.get("zero_label", False))
    meta = {"seed": split.seed, "hash": split.hash(), "fingerprint": found, "sizes": {
        "train": len(split.train), "query": len(split.query), "database": len(split.database)},
        "source": "files" if own_split(dataset, draw) is not None else "drawn"}
    return Artifact(split.to_tensors(), meta)


def split_bytes(stage: Stage, sizes: Sizes | None) -> int | None:
    """8 bytes per index of every part, plus the queries' target labels."""
    if sizes is None:
        return None
    items = sizes.train + sizes.query + sizes.database
    return 8 * items + sizes.query * (sizes.classes or 0) + ARTIFACT_OVERHEAD


KIND = StageKind(SplitSpec, run_split, flops=lambda stage, sizes: 0, bytes=split_bytes)
