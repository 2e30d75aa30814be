"""Hashing methods, one file each; registered through the ``hashbench.methods`` entry points."""

from .base import HashMethod, TrainParams

__all__ = ["HashMethod", "TrainParams"]
