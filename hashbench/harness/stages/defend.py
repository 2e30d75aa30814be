"""``defend``: a defense trains (or wraps) the clean model into the defended one."""

from __future__ import annotations

import time
from dataclasses import dataclass

from hashbench import plugins
from hashbench.api.defense import DefenseContext
from hashbench.harness.flops import model_forward_flops, plugin_flag, plugin_param
from hashbench.harness.sizes import Sizes
from hashbench.harness.stages.base import StageKind, Work, batches_of, of_model
from hashbench.harness.stages.context import (StageContext, autocast, blame, load_model, method_state, model_artifact,
                                              seeded_generator, training_data)
from hashbench.harness.stages.spec import PluginSpec, Stage, StageSpec, amp_field
from hashbench.harness.stages.train import model_bytes
from hashbench.harness.store import Artifact
from hashbench.models.purifier import PurifiedModel


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
    clean = ctx.artifact(stage.inputs["model"])
    model = load_model(ctx, stage.inputs["model"])
    method = plugins.methods.create(spec.method.name, dict(spec.method.params))
    method.load_state_tensors(method_state(clean))
    defense = plugins.defenses.create(spec.defense.name, dict(spec.defense.params))
    data = training_data(ctx, stage.inputs["split"])
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


@of_model
def defend_flops(stage: Stage, sizes: Sizes, train: Stage) -> int:
    """epochs · |train| · (6 + 3 · iterations) passes: clean and adversarial forward/backward, PGD steps."""
    defense = stage.spec.defense
    passes = plugin_param(defense, "epochs", 1) * sizes.train * (6 + 3 * plugin_param(defense, "iterations", 0))
    return model_forward_flops(stage, sizes, train) * passes


@of_model
def defend_work(stage: Stage, sizes: Sizes, train: Stage) -> Work:
    return batches_of(train, stage.spec.defense, sizes.train)


def defend_images(stage: Stage, sizes: Sizes) -> tuple[int, bool]:
    defense = stage.spec.defense
    return plugin_param(defense, "epochs", 1) * sizes.train, plugin_flag(defense, "augment", False)


KIND = StageKind(DefendSpec, run_defend, flops=defend_flops, bytes=model_bytes, work=defend_work,
                 images_read=defend_images, gpu=True, trains=True)
