"""FLOPs and checkpoint sizes of the networks a stage runs, from its specs (no weights, no data).

The forward FLOPs of a hash model are counted once per backbone configuration with
:func:`hashbench.api.flops.module_flops` on the meta device; an inference-time defense's
purifier is counted in every pass of the model behind it.  Each stage kind turns these into
its own count (the ``flops`` of its :class:`~hashbench.harness.stages.base.StageKind`).
"""

from __future__ import annotations

import functools
import json
from typing import Callable

import torch
from torch import nn

from hashbench import plugins
from hashbench.api.attack import PrepareSizes
from hashbench.api.defense import InferenceDefense
from hashbench.api.flops import module_flops
from hashbench.harness.sizes import Sizes
from hashbench.harness.stages.spec import PluginSpec, Stage
from hashbench.harness.store import canonical_json
from hashbench.models.hash_model import HashModel


def plugin_json(plugin: PluginSpec) -> str:
    """The cache key of a plugin configuration (its origin does not change the network)."""
    return canonical_json({"name": plugin.name, "params": dict(plugin.params)})


def hash_model_builder(backbone_json: str, image_size: int, bits: int) -> Callable[[], nn.Module]:
    """A function building the hash model of a backbone (``{"name", "params"}`` as JSON), without
    ImageNet weights (counting needs the architecture only)."""
    backbone = json.loads(backbone_json)
    params = dict(backbone["params"])
    if "pretrained" in params:
        params["pretrained"] = "none"
    plugin = plugins.backbones.create(backbone["name"], params)
    return lambda: HashModel(plugin.build(image_size), bits)


@functools.lru_cache(maxsize=64)
def cached_forward_flops(backbone_json: str, image_size: int, bits: int) -> int:
    """:func:`forward_flops` by the backbone's JSON, counted once per process."""
    return module_flops(hash_model_builder(backbone_json, image_size, bits), (1, 3, image_size, image_size))


@functools.lru_cache(maxsize=64)
def _state_numel(backbone_json: str, image_size: int, bits: int) -> int:
    build = hash_model_builder(backbone_json, image_size, bits)
    try:
        with torch.device("meta"):  # no memory, no weights: only the shapes
            net = build()
    except Exception:
        net = build()
    return sum(t.numel() for t in net.state_dict().values())


def checkpoint_bytes(backbone: PluginSpec, image_size: int, bits: int) -> int:
    """Bytes of a stored hash model: its state's element count (built on the meta device) × 4 (fp32)."""
    return 4 * _state_numel(plugin_json(backbone), image_size, bits)


def forward_flops(backbone: PluginSpec, image_size: int, bits: int) -> int:
    """FLOPs of one image's forward pass through the hash model (cached per backbone configuration)."""
    return cached_forward_flops(plugin_json(backbone), image_size, bits)


@functools.lru_cache(maxsize=64)
def _purifier_flops(defense_json: str, image_size: int) -> int:
    defense = json.loads(defense_json)
    plugin = plugins.defenses.create(defense["name"], defense["params"])
    return module_flops(plugin.build_purifier, (1, 3, image_size, image_size))


def purifier_flops(defense: PluginSpec, image_size: int) -> int:
    """FLOPs of one image's pass through an inference-time defense's purifier; 0 for a defense
    that trains the model instead."""
    if not issubclass(plugins.defenses.get(defense.name), InferenceDefense):
        return 0
    return _purifier_flops(plugin_json(defense), image_size)


def _upstream(stage: Stage, kinds: tuple[str, ...]) -> Stage | None:
    """The first stage of ``kinds`` on the chain of models ``stage`` reads (itself included)."""
    s: Stage | None = stage
    while s is not None and s.kind not in kinds:
        s = s.inputs.get("model") or s.inputs.get("encode")
    return s


def train_stage(stage: Stage) -> Stage | None:
    """The train stage of the model ``stage`` uses (its bits and backbone), if any."""
    return _upstream(stage, ("train",))


def defend_stage(stage: Stage) -> Stage | None:
    """The defend stage whose model ``stage`` uses, if any (the clean model has none)."""
    s = _upstream(stage, ("defend", "train"))
    return s if s is not None and s.kind == "defend" else None


def model_forward_flops(stage: Stage, sizes: Sizes, train: Stage) -> int:
    """One image's forward pass through the model ``stage`` encodes or attacks: the hash model of
    ``train``, behind the purifier of an inference-time defense."""
    f = forward_flops(train.spec.backbone, sizes.image_size, train.spec.bits)
    defend = defend_stage(stage) if stage.kind != "defend" else None
    return f + (purifier_flops(defend.spec.defense, sizes.image_size) if defend is not None else 0)


def plugin_flag(plugin: PluginSpec, name: str, default: bool) -> bool:
    """A boolean parameter of ``plugin``, ``default`` when absent or not a bool."""
    value = plugin.params.get(name)
    return value if isinstance(value, bool) else default


def plugin_param(plugin: PluginSpec | None, name: str, default: int) -> int:
    """An integer parameter of ``plugin`` (a bool counts as 0/1), ``default`` when absent or not a number."""
    value = (plugin.params if plugin is not None else {}).get(name)
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def attack_plugin_flops(attack: PluginSpec, hook: str, sizes: PrepareSizes) -> int | None:
    """The attack plugin's own count (``hook``: "prepare_flops" or "perturb_flops"); ``None`` if it
    gives none or fails (an estimate never fails a plan)."""
    try:
        flops = getattr(plugins.attacks.create(attack.name, dict(attack.params)), hook)(sizes)
    except Exception:
        return None
    return int(flops) if flops is not None else None


def prepare_sizes(stage: Stage, sizes: Sizes, train: Stage) -> PrepareSizes:
    """What an attack's cost hooks are told: split sizes, code length and the model's forward FLOPs."""
    return PrepareSizes(sizes.train, sizes.image_size, train.spec.bits, sizes.classes,
                        model_forward_flops(stage, sizes, train))
