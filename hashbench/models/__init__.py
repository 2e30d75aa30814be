"""Hash models: a backbone plugin plus the hash layer (see :class:`~hashbench.models.hash_model.HashModel`),
the purifier wrapper of inference-time defenses, and the built-in backbones."""

from __future__ import annotations

from hashbench.models.hash_model import HashModel

__all__ = ["HashModel"]
