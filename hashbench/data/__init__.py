"""Datasets (plugins of kind ``dataset``), splits and target labels.

The built-in datasets ``shapes`` and ``listfile`` are loaded lazily through the
``hashbench.datasets`` entry points, not imported here.
"""

from hashbench.data.splits import Split, make_split, select_target_labels

__all__ = ["Split", "make_split", "select_target_labels"]
