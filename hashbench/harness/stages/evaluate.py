"""``evaluate``: a cell's retrieval metrics (MAP, t-MAP, PR and P@N curves) and example rankings."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from hashbench.api.dataset import HashDataset
from hashbench.data.splits import Split
from hashbench.harness.sizes import Sizes
from hashbench.harness.stages.attack import EXAMPLES
from hashbench.harness.stages.base import ARTIFACT_OVERHEAD, SMALL_ARTIFACT, StageKind, of_model
from hashbench.harness.stages.context import StageContext, split_of
from hashbench.harness.stages.spec import EvaluatedAttack, Stage, StageSpec
from hashbench.harness.store import Artifact
from hashbench.retrieval.chance import code_health
from hashbench.retrieval.metrics import retrieval_metrics

#: database items kept per example query (the report shows them before and after the attack)
EXAMPLE_TOP = 10
#: longest side, in pixels, of the stored thumbnails of those items
THUMBNAIL = 64


@dataclass(frozen=True)
class EvaluateSpec(StageSpec):
    """The attack whose codes are scored (``None``: the clean queries) and the dataset's evaluation
    rules: MAP@``map_topk``, the P@N points ``pn`` and the Hamming ``radius`` of precision."""

    kind = "evaluate"
    attack: EvaluatedAttack | None
    map_topk: int | None
    pn: list[int]
    radius: int


def run_evaluate(ctx: StageContext, stage: Stage) -> Artifact:
    spec: EvaluateSpec = stage.spec
    dataset, split = split_of(ctx, stage.inputs["split"])
    encode = ctx.artifact(stage.inputs["encode"])
    encoded = encode.tensors
    db_codes = encoded["database"]
    if spec.attack is None:
        query_codes = encoded["query"]
    else:
        query_codes = ctx.artifact(stage.inputs["codes"]).tensors["query_codes"]
    query_labels, db_labels = dataset.labels[split.query], dataset.labels[split.database]
    start = time.perf_counter()
    # clean: the t-MAP a targeted attack starts from
    targets = split.target_labels if spec.attack is None or spec.attack.targeted else None
    ranking = retrieval_metrics(query_codes, db_codes, query_labels, db_labels, topk=spec.map_topk, pn=spec.pn,
                                radius=spec.radius, target_labels=targets)
    metrics: dict[str, Any] = {
        "map": ranking.pop("map"),
        "t_map": ranking.pop("t_map"),
        "map_topk": spec.map_topk,
        "num_queries": len(split.query),
        "num_database": len(split.database),
        "chance": ctx.artifact(stage.inputs["chance"]).meta["chance"] if "chance" in stage.inputs else None,
        "code_health": encode.meta.get("code_health") or code_health(db_codes),  # older encode artifacts lack it
        **ranking,
    }
    metrics["examples"], thumbnails = example_rankings(dataset, split, query_codes, db_codes)
    return Artifact({"examples_top": thumbnails}, {"metrics": metrics, "wall_s": time.perf_counter() - start})


def example_rankings(dataset: HashDataset, split: Split, query_codes: torch.Tensor,
                     db_codes: torch.Tensor) -> tuple[dict[str, Any], torch.Tensor]:
    """The top :data:`EXAMPLE_TOP` database items of the first :data:`EXAMPLES` queries, for the report.

    Returns dataset indices (queries, retrieved items), the items' relevance to each query's true
    labels, and uint8 thumbnails of the retrieved items (longest side at most :data:`THUMBNAIL`),
    shaped ``queries × EXAMPLE_TOP × C × h × w``.  Hamming ranking, ties broken by database index.
    """
    q = query_codes[:EXAMPLES].float()
    distance = (db_codes.shape[1] - q @ db_codes.float().T) / 2
    order = torch.argsort(distance, dim=1, stable=True)[:, :EXAMPLE_TOP].numpy()
    top = split.database[order]
    relevant = (dataset.labels[split.query[: len(q)], None, :] * dataset.labels[top]).sum(-1) > 0
    images = dataset.images(top.reshape(-1))
    scale = THUMBNAIL / max(images.shape[-2:])
    if scale < 1:
        size = [max(1, round(side * scale)) for side in images.shape[-2:]]
        images = torch.nn.functional.interpolate(images, size=size, mode="bilinear", antialias=True)
    thumbnails = (images.clamp(0, 1) * 255).round().to(torch.uint8).reshape(*top.shape, *images.shape[1:])
    examples = {"queries": split.query[: len(q)].tolist(), "top": top.tolist(), "relevant": relevant.tolist()}
    return examples, thumbnails


@of_model
def evaluate_flops(stage: Stage, sizes: Sizes, train: Stage) -> int:
    """Hamming ranking: 2 · |query| · |database| · bits (no images)."""
    return 2 * sizes.query * sizes.database * train.spec.bits


# evaluations are the runs' sinks: nothing reads them back but the record writer, once
KIND = StageKind(EvaluateSpec, run_evaluate, flops=evaluate_flops,
                 bytes=lambda stage, sizes: SMALL_ARTIFACT + ARTIFACT_OVERHEAD, sink=True)
