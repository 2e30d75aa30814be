"""How big a split is: the item counts and image side that costs and estimates scale with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hashbench.api.dataset import HashDataset


@dataclass(frozen=True)
class Sizes:
    """How many items a split has, and the image side."""

    train: int
    query: int
    database: int
    image_size: int
    classes: int | None = None


def dataset_sizes(dataset: HashDataset, split_spec: dict[str, Any]) -> Sizes:
    """Sizes of the split a ``split`` stage will draw (a predefined split wins, as in ``make_split``)."""
    predefined = None if split_spec.get("mode") == "draw" else dataset.predefined_split()
    if predefined is not None:
        return Sizes(len(predefined.train), len(predefined.query), len(predefined.database), dataset.image_size,
                     dataset.num_classes)
    query = split_spec["num_query"]
    database = split_spec.get("num_database") or max(0, len(dataset) - query)
    return Sizes(split_spec["num_train"], query, database, dataset.image_size, dataset.num_classes)


def declared_sizes(split_spec: dict[str, Any], num_items: int | None, image_size: int | None,
                   classes: int | None = None) -> Sizes | None:
    """Sizes from a dataset's declaration, for data that is not present; ``None`` if unknown."""
    if image_size is None or (num_items is None and split_spec.get("num_database") is None):
        return None
    query = split_spec["num_query"]
    database = split_spec.get("num_database") or max(0, (num_items or 0) - query)
    return Sizes(split_spec["num_train"], query, database, image_size, classes)
