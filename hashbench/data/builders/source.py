"""What a dataset reader hands to the writer: items, labels, and optionally a given split."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Source:
    """Items read from one distribution, before the split is drawn.

    ``paths`` are relative to ``image_root``; ``labels`` is N×C uint8 (0/1), one row per path.
    ``split`` is ``None`` for an original layout (the builder draws one) or, for a peer's list
    files, each split's item indices in the peer's order.
    """

    paths: list[str]
    labels: np.ndarray
    classes: list[str]
    image_root: Path
    layout: str
    split: dict[str, list[int]] | None = None
    #: counts of what the reader left out or found odd, for the report ("dropped: no label": 12)
    notes: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.labels.shape != (len(self.paths), len(self.classes)):
            raise ValueError(f"labels {self.labels.shape} do not match "
                             f"{len(self.paths)} paths × {len(self.classes)} classes")
