"""``attack``: a white-box attack crafted on the model it attacks; the system's codes of its queries."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from hashbench import plugins
from hashbench.errors import PluginError
from hashbench.harness.flops import attack_plugin_flops, prepare_sizes
from hashbench.harness.sizes import Sizes
from hashbench.harness.stages.base import ARTIFACT_OVERHEAD, StageKind, Work, batches_of, of_model
from hashbench.harness.stages.context import (StageContext, attack_context, autocast, blame, item_labels, load_model,
                                              seeded_generator, split_of)
from hashbench.harness.stages.spec import PluginSpec, Stage, StageSpec, amp_field
from hashbench.harness.store import Artifact
from hashbench.models.purifier import attacked_model
from hashbench.retrieval.codes import to_binary
from hashbench.retrieval.training import to_device

#: clean and adversarial example images an attack stage keeps for the report
EXAMPLES = 4
#: slack for float rounding when checking that an attack stayed inside its ε-ball
BUDGET_TOLERANCE = 1e-5


@dataclass(frozen=True)
class AttackSpec(StageSpec):
    kind = "attack"
    attack: PluginSpec
    seed: int
    amp: str | None = amp_field()


def check_batch(name: str, origin: tuple[str, str] | list[str], bounded: bool, x: torch.Tensor, x_adv: Any,
                epsilon: float) -> None:
    """Raise :class:`PluginError` unless ``x_adv`` is a finite batch shaped like ``x``, in [0, 1],
    and (for a ``bounded`` attack) within ``epsilon`` of ``x`` in L∞."""
    who = f"attack '{name}' ({origin[0]} {origin[1]})"
    if not isinstance(x_adv, torch.Tensor) or x_adv.shape != x.shape:
        shape = tuple(x_adv.shape) if isinstance(x_adv, torch.Tensor) else type(x_adv).__name__
        raise PluginError(f"{who} returned {shape} for a batch of shape {tuple(x.shape)}")
    if not torch.isfinite(x_adv).all():
        raise PluginError(f"{who} returned non-finite values")
    lo, hi = float(x_adv.min()), float(x_adv.max())
    if lo < -BUDGET_TOLERANCE or hi > 1 + BUDGET_TOLERANCE:
        raise PluginError(f"{who} returned values in [{lo:.4f}, {hi:.4f}], outside [0, 1]")
    linf = float((x_adv - x).abs().max())
    if bounded and linf > epsilon + BUDGET_TOLERANCE:
        raise PluginError(f"{who} exceeded its budget: L∞ {linf:.5f} > ε {epsilon:.5f}")


def perturbation_summary(tensors: dict[str, torch.Tensor]) -> dict[str, float]:
    """The records' perturbation figures from an attack artifact's per-query tensors (kept in its
    meta, so that writing a record reads no tensors)."""
    return {"linf_max": float(tensors["linf"].max()), "l2_mean": float(tensors["l2"].mean()),
            "mse_mean": float(tensors["mse"].mean())}


def attack_queries(ctx: StageContext, stage: Stage, *, keep_images: bool) -> Artifact:
    """Run the stage's attack on every query of its split: the loop of both ``attack`` and ``craft``.

    Each batch is crafted on what the attacker sees (an oblivious attacker: the bare hash model)
    and checked (:func:`check_batch`).  The artifact holds the per-query perturbation norms, a few
    example images and either the system's codes of the adversarial queries (``query_codes``,
    an attack stage) or the adversarial images themselves, float32 (``images``, a craft stage,
    which other models encode later).
    """
    spec: AttackSpec = stage.spec
    generator = seeded_generator(spec.seed)
    name = spec.attack.name
    attack = plugins.attacks.create(name, dict(spec.attack.params))
    dataset, split = split_of(ctx, stage.inputs["split"])
    model = load_model(ctx, stage.inputs["model"])
    for p in model.parameters():
        p.requires_grad_(False)
    actx = attack_context(ctx, stage.inputs, attack, generator)
    query_labels = item_labels(dataset, split.query, ctx.device)
    targets = torch.as_tensor(split.target_labels, dtype=torch.float32, device=ctx.device)
    batch_size = attack.params.batch_size
    outputs, linf, l2, mse, examples = [], [], [], [], {}
    start = time.perf_counter()
    with ctx.reporter.task(f"{stage.kind} {name}", len(split.query)) as advance:
        for lo in range(0, len(split.query), batch_size):
            sl = slice(lo, lo + batch_size)
            x = to_device(dataset.images(split.query[sl]), ctx.device)
            target = targets[sl] if attack.targeted else None
            with autocast(ctx.device, spec.amp):  # attacks stay fp32 unless --amp-attacks
                with blame("attack", spec.attack, "perturb"):
                    # crafted on what the attacker sees (an oblivious one: the bare hash model), encoded by the system
                    x_adv = attack.perturb(attacked_model(model), x, query_labels[sl], target, actx)
            check_batch(name, spec.attack.origin, attack.bounded, x, x_adv, attack.params.epsilon)
            x_adv = x_adv.detach().clamp(0, 1)
            if keep_images:
                outputs.append(x_adv.float().cpu())
            else:
                with torch.no_grad():
                    outputs.append(to_binary(model(x_adv)).cpu())
            delta = (x_adv - x).flatten(1)
            linf.append(delta.abs().amax(1).cpu())
            l2.append(delta.norm(dim=1).cpu())
            mse.append(delta.pow(2).mean(1).cpu())
            if lo == 0:
                examples = {"examples_clean": (x[:EXAMPLES] * 255).round().to(torch.uint8).cpu(),
                            "examples_adv": (x_adv[:EXAMPLES] * 255).round().to(torch.uint8).cpu()}
            advance(x.shape[0])
    tensors = {"images" if keep_images else "query_codes": torch.cat(outputs), "linf": torch.cat(linf),
               "l2": torch.cat(l2), "mse": torch.cat(mse), **examples}
    meta = {"wall_s": time.perf_counter() - start, "targeted": attack.targeted, "bounded": attack.bounded,
            "epsilon": attack.params.epsilon, "perturbation": perturbation_summary(tensors)}
    return Artifact(tensors, meta)


def run_attack(ctx: StageContext, stage: Stage) -> Artifact:
    return attack_queries(ctx, stage, keep_images=False)


@of_model
def attack_flops(stage: Stage, sizes: Sizes, train: Stage) -> int | None:
    """|query| · the attack's own count per query (:meth:`~hashbench.api.attack.Attack.perturb_flops`;
    by default 3 · iterations + 2 passes)."""
    per_query = attack_plugin_flops(stage.spec.attack, "perturb_flops", prepare_sizes(stage, sizes, train))
    return None if per_query is None else sizes.query * per_query


@of_model
def attack_bytes(stage: Stage, sizes: Sizes, train: Stage) -> int:
    """|query| · (bits + 12) + 2 · 4 · 3 · side² (codes, three norms, two example batches)."""
    return sizes.query * (train.spec.bits + 12) + 2 * 4 * 3 * sizes.image_size**2 + ARTIFACT_OVERHEAD


@of_model
def attack_work(stage: Stage, sizes: Sizes, train: Stage) -> Work:
    return batches_of(train, stage.spec.attack, sizes.query)


def query_images(stage: Stage, sizes: Sizes) -> tuple[int, bool]:
    return sizes.query, False


KIND = StageKind(AttackSpec, run_attack, flops=attack_flops, bytes=attack_bytes, work=attack_work,
                 images_read=query_images, gpu=True)
