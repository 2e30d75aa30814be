"""``prepare``: an attack's one-off state before it attacks (ProS-GAN's generator, THA's prototype net…)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from hashbench import registries
from hashbench.harness.flops import attack_plugin_flops, plugin_param, prepare_sizes, train_stage
from hashbench.harness.sizes import Sizes
from hashbench.harness.stages.context import StageContext, attack_context, autocast, blame, load_model, seeded_generator
from hashbench.harness.stages.base import StageKind, Work
from hashbench.harness.stages.spec import PluginSpec, Stage, StageSpec, amp_field
from hashbench.models.purifier import attacked_model
from hashbench.store import Artifact


@dataclass(frozen=True)
class PrepareSpec(StageSpec):
    kind = "prepare"
    attack: PluginSpec
    seed: int
    amp: str | None = amp_field()


def run_prepare(ctx: StageContext, stage: Stage) -> Artifact:
    spec: PrepareSpec = stage.spec
    generator = seeded_generator(spec.seed)
    attack = registries.attacks.create(spec.attack.name, dict(spec.attack.params))
    model = load_model(ctx, stage.inputs["model"])
    for p in model.parameters():
        p.requires_grad_(False)
    start = time.perf_counter()
    with autocast(ctx.device, spec.amp):
        with blame("attack", spec.attack, "prepare"):
            state = attack.prepare(attacked_model(model), attack_context(ctx, stage.inputs, attack, generator)) or {}
    return Artifact(state, {"wall_s": time.perf_counter() - start})


def prepare_flops(stage: Stage, sizes: Sizes | None) -> int | None:
    """The attack's own count (:meth:`~hashbench.attack.Attack.prepare_flops`; unknown if it gives none)."""
    train = train_stage(stage)
    if sizes is None or train is None:
        return None
    return attack_plugin_flops(stage.spec.attack, "prepare_flops", prepare_sizes(stage, sizes, train))


def prepare_work(stage: Stage, sizes: Sizes) -> Work | None:
    train = train_stage(stage)
    if train is None:
        return None
    batch = plugin_param(stage.spec.attack, "batch_size", 32)
    return Work(train.spec.backbone, max(1, min(batch, sizes.train)), "train")


# the state is the attack's own (a prototype net, a generator): its size is unknown; its reads too
KIND = StageKind(PrepareSpec, run_prepare, flops=prepare_flops, bytes=lambda stage, sizes: None, work=prepare_work,
                 gpu=True, trains=True)
