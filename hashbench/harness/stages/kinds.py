"""Every stage kind, in run order: a stage's inputs are of kinds listed before its own."""

from __future__ import annotations

from hashbench.harness.stages import (attack, chance, craft, defend, encode, evaluate, prepare, pretrain, split, train,
                                      transfer)
from hashbench.harness.stages.base import StageKind

KINDS: dict[str, StageKind] = {m.KIND.name: m.KIND for m in (
    split, chance, pretrain, train, defend, encode, prepare, attack, craft, transfer, evaluate)}
#: the stage kinds in run order
STAGE_KINDS: tuple[str, ...] = tuple(KINDS)
