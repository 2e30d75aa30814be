"""The five plugin registries, one per kind, each fed by its entry-point group."""

from __future__ import annotations

from hashbench.api.attack import Attack
from hashbench.api.backbone import Backbone
from hashbench.api.dataset import HashDataset
from hashbench.api.defense import Defense
from hashbench.api.method import HashMethod
from hashbench.api.registry import PLUGIN_KINDS, Registry

methods: Registry[HashMethod] = Registry("method", "hashbench.methods", HashMethod)
backbones: Registry[Backbone] = Registry("backbone", "hashbench.backbones", Backbone)
datasets: Registry[HashDataset] = Registry("dataset", "hashbench.datasets", HashDataset)
attacks: Registry[Attack] = Registry("attack", "hashbench.attacks", Attack)
defenses: Registry[Defense] = Registry("defense", "hashbench.defenses", Defense)

_BY_GRID_KEY: dict[str, Registry] = {f"{r.kind}s": r for r in (methods, backbones, datasets, attacks, defenses)}

#: grid key → registry, in :data:`~hashbench.api.registry.PLUGIN_KINDS` order
BY_KIND: dict[str, Registry] = {kind: _BY_GRID_KEY[kind] for kind in PLUGIN_KINDS}
