"""``defend``: a defense trains (or wraps) the clean model into the defended one."""

from __future__ import annotations

import time
from dataclasses import dataclass

from hashbench import registries
from hashbench.defense import DefenseContext
from hashbench.harness.flops import model_forward_flops, plugin_param, train_stage
from hashbench.harness.sizes import Sizes
from hashbench.harness.stages.context import (StageContext, autocast, blame, item_labels, load_model, method_state,
                                              model_artifact, seeded_generator, split_of)
from hashbench.harness.stages.base import StageKind, Work
from hashbench.harness.stages.spec import PluginSpec, Stage, StageSpec, amp_field
from hashbench.harness.stages.train import model_bytes
from hashbench.models.purifier import PurifiedModel
from hashbench.store import Artifact
from hashbench.training import TrainData


@dataclass(frozen=True)
class DefendSpec(StageSpec):
    """The defense, and the hashing method of the clean model (a defense may train with its loss)."""

    kind = "defend"
    defense: PluginSpec
    method: PluginSpec
    seed: int
    amp: str | None = amp_field()


def run_defend(ctx: StageContext, stage: Stage) -> Artifact:
    spec: DefendSpec = stage.spec
    generator = seeded_generator(spec.seed)
    dataset, split = split_of(ctx, stage.inputs["split"])
    clean = ctx.artifact(stage.inputs["model"])
    model = load_model(ctx, stage.inputs["model"])
    method = registries.methods.create(spec.method.name, dict(spec.method.params))
    method.load_state_tensors(method_state(clean))
    defense = registries.defenses.create(spec.defense.name, dict(spec.defense.params))
    data = TrainData(dataset, split.train, item_labels(dataset, split.train, ctx.device))
    start = time.perf_counter()
    with autocast(ctx.device, spec.amp):  # fp16 defenses run without loss scaling: prefer bf16
        with blame("defense", spec.defense, "fit"):
            model, log = defense.fit(model, method, data, DefenseContext(ctx.device, generator, ctx.reporter))
    model.eval()
    meta = {**{k: clean.meta[k] for k in ("model_spec", "image_size")}, "log": log,
            "wall_s": time.perf_counter() - start}
    if isinstance(model, PurifiedModel):  # how load_model rebuilds the purifier
        meta["purifier"] = {"defense": spec.defense.name, "params": dict(spec.defense.params),
                            "attack_sees_purifier": model.attack_sees_purifier}
    return model_artifact(model, method, meta)


def defend_flops(stage: Stage, sizes: Sizes | None) -> int | None:
    """epochs · |train| · (6 + 3 · iterations) passes: clean and adversarial forward/backward, PGD steps."""
    train = train_stage(stage)
    if sizes is None or train is None:
        return None
    defense = stage.spec.defense
    passes = plugin_param(defense, "epochs", 1) * sizes.train * (6 + 3 * plugin_param(defense, "iterations", 0))
    return model_forward_flops(stage, sizes, train) * passes


def defend_work(stage: Stage, sizes: Sizes) -> Work | None:
    train = train_stage(stage)
    if train is None:
        return None
    batch = plugin_param(stage.spec.defense, "batch_size", 32)
    return Work(train.spec.backbone, max(1, min(batch, sizes.train)), "train")


def defend_images(stage: Stage, sizes: Sizes) -> tuple[int, bool]:
    defense = stage.spec.defense
    return plugin_param(defense, "epochs", 1) * sizes.train, bool(plugin_param(defense, "augment", 0))


KIND = StageKind(DefendSpec, run_defend, flops=defend_flops, bytes=model_bytes, work=defend_work,
                 images_read=defend_images, gpu=True, trains=True)
