"""``prepare``: an attack's one-off state before it attacks (ProS-GAN's generator, THA's prototype net…)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from hashbench import plugins
from hashbench.harness.flops import attack_plugin_flops, prepare_sizes
from hashbench.harness.sizes import Sizes
from hashbench.harness.stages.attack import AttackSpec
from hashbench.harness.stages.base import StageKind, Work, batches_of, of_model
from hashbench.harness.stages.context import StageContext, attack_context, autocast, blame, load_model, seeded_generator
from hashbench.harness.stages.spec import Stage
from hashbench.harness.store import Artifact
from hashbench.models.purifier import attacked_model


@dataclass(frozen=True)
class PrepareSpec(AttackSpec):
    """The attack and seed of its prepare step (the fields of its attack stage's spec)."""

    kind = "prepare"


def run_prepare(ctx: StageContext, stage: Stage) -> Artifact:
    spec: PrepareSpec = stage.spec
    generator = seeded_generator(spec.seed)
    attack = plugins.attacks.create(spec.attack.name, dict(spec.attack.params))
    model = load_model(ctx, stage.inputs["model"])
    for p in model.parameters():
        p.requires_grad_(False)
    start = time.perf_counter()
    with autocast(ctx.device, spec.amp):
        with blame("attack", spec.attack, "prepare"):
            state = attack.prepare(attacked_model(model), attack_context(ctx, stage.inputs, attack, generator)) or {}
    return Artifact(state, {"wall_s": time.perf_counter() - start})


@of_model
def prepare_flops(stage: Stage, sizes: Sizes, train: Stage) -> int | None:
    """The attack's own count (:meth:`~hashbench.api.attack.Attack.prepare_flops`; unknown if it gives none)."""
    return attack_plugin_flops(stage.spec.attack, "prepare_flops", prepare_sizes(stage, sizes, train))


@of_model
def prepare_work(stage: Stage, sizes: Sizes, train: Stage) -> Work:
    return batches_of(train, stage.spec.attack, sizes.train)


# the state is the attack's own (a prototype net, a generator): its size is unknown; its reads too
KIND = StageKind(PrepareSpec, run_prepare, flops=prepare_flops, bytes=lambda stage, sizes: None, work=prepare_work,
                 gpu=True, trains=True)
