"""Datasets (plugins of kind ``dataset``), splits and target labels.

The built-in datasets ``shapes`` and ``listfile`` are loaded lazily through the
``hashbench.datasets`` entry points, not imported here.
"""

from .base import HashDataset, PredefinedSplit
from .splits import Split, make_split, select_target_labels

__all__ = ["HashDataset", "PredefinedSplit", "Split", "make_split", "select_target_labels"]
