"""The five plugin registries, one per kind, each fed by its entry-point group."""

from __future__ import annotations

from .attack import Attack
from .data.base import HashDataset
from .defense import Defense
from .methods.base import HashMethod
from .models.backbones import Backbone
from .registry import PLUGIN_KINDS, Registry

methods: Registry[HashMethod] = Registry("method", "hashbench.methods", HashMethod)
backbones: Registry[Backbone] = Registry("backbone", "hashbench.backbones", Backbone)
datasets: Registry[HashDataset] = Registry("dataset", "hashbench.datasets", HashDataset)
attacks: Registry[Attack] = Registry("attack", "hashbench.attacks", Attack)
defenses: Registry[Defense] = Registry("defense", "hashbench.defenses", Defense)

_BY_GRID_KEY: dict[str, Registry] = {f"{r.kind}s": r for r in (methods, backbones, datasets, attacks, defenses)}

#: grid key → registry, in :data:`~hashbench.registry.PLUGIN_KINDS` order
BY_KIND: dict[str, Registry] = {kind: _BY_GRID_KEY[kind] for kind in PLUGIN_KINDS}
