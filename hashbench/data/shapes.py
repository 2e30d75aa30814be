"""``shapes``: the embedded, procedurally generated multi-label dataset.

Each image is a textured background (a random base colour, low-amplitude stripes of random
orientation and frequency, and pixel noise) with between ``min_shapes`` and ``max_shapes``
shapes of *distinct* classes drawn on it.  Every shape has a random colour (kept at a
luminance distance from the background so it stays visible), size and position; the shapes
sit in distinct cells of a jittered grid, so they may overlap partially but never hide each
other's centre.  The label is the multi-hot vector of the classes drawn, so relevance follows
the same "share at least one class" rule as FLICKR-25K, NUS-WIDE and MS-COCO.

The images depend only on the parameters (``seed`` is the seed of the content, not of the
split): construction is deterministic, needs no download, and takes well under a second for
the default 2,000 images at 32×32.  Images are stored as uint8 and returned as float32 in
[0, 1]; training augmentation is a random horizontal flip.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from typing import ClassVar

import numpy as np
import torch
from pydantic import Field, ValidationInfo, field_validator

from hashbench.api.dataset import HashDataset
from hashbench.api.params import Params, params_dict

FORMAT_VERSION = "shapes-v1"

# Shape masks on coordinates normalised by the shape's radius: (u, v) = (x - cx, y - cy) / r.
_MaskFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
_SHAPES: dict[str, _MaskFn] = {
    "square": lambda u, v: np.maximum(np.abs(u), np.abs(v)) <= 0.75,
    "circle": lambda u, v: u * u + v * v <= 1.0,
    "triangle": lambda u, v: (v <= 0.8) & (np.abs(u) <= (v + 1.0) / 2.0),
    "cross": lambda u, v: ((np.abs(u) <= 0.3) | (np.abs(v) <= 0.3)) & (np.maximum(np.abs(u), np.abs(v)) <= 1.0),
    "bar": lambda u, v: (np.abs(u) <= 1.0) & (np.abs(v) <= 0.35),
    "ring": lambda u, v: (u * u + v * v <= 1.0) & (u * u + v * v >= 0.3),
    "diamond": lambda u, v: np.abs(u) + np.abs(v) <= 1.0,
    "frame": lambda u, v: (np.maximum(np.abs(u), np.abs(v)) <= 0.8) & (np.maximum(np.abs(u), np.abs(v)) >= 0.45),
}
SHAPE_KINDS: tuple[str, ...] = tuple(_SHAPES)

# Geometry relative to a grid cell: centre jitter and radius range.  With these values a later
# shape can never cover an earlier one's centre: centres in adjacent cells are >= 0.6 cell apart
# and no shape reaches farther than ~0.57 cell (a frame's corner at the largest radius).
_JITTER = 0.2
_RADIUS = (0.25, 0.5)
_MIN_CELL_PX = 10

#: the most images, and the most bytes of images, a shapes dataset may generate (all are held in memory)
MAX_ITEMS = 1_000_000
MAX_IMAGE_BYTES = 4 << 30


def _grid_side(max_shapes: int) -> int:
    return math.ceil(math.sqrt(max_shapes))


class Shapes(HashDataset):
    """Procedural multi-label shapes: 1–3 shapes of distinct classes per image, no download."""

    name: ClassVar[str] = "shapes"
    description: ClassVar[str] = (
        "Embedded procedural multi-label dataset: coloured shapes of distinct classes on textured backgrounds"
    )
    paper: ClassVar[str] = "hashbench (synthetic)"

    class Params(Params):
        num_items: int = Field(2000, ge=1, le=MAX_ITEMS, description="number of images")
        num_classes: int = Field(6, ge=1, le=len(SHAPE_KINDS), description=f"shape classes, from {SHAPE_KINDS}")
        image_size: int = Field(32, ge=16, le=1024, description="side of the square images in pixels")
        min_shapes: int = Field(1, ge=1, description="fewest shapes per image")
        max_shapes: int = Field(3, ge=1, description="most shapes per image (at most num_classes)")
        seed: int = Field(0, ge=0, description="seed of the image content (not of the split)")

        @field_validator("image_size")
        @classmethod
        def _check_memory(cls, value: int, info: ValidationInfo) -> int:
            n = info.data.get("num_items")
            if n is not None and n * 3 * value * value > MAX_IMAGE_BYTES:
                raise ValueError(f"{n} images of {value}×{value} pixels need {n * 3 * value * value / (1 << 30):.1f} GiB "
                                 f"of memory; at most {MAX_IMAGE_BYTES >> 30} GiB: lower num_items or image_size")
            return value

        @field_validator("max_shapes")
        @classmethod
        def _check_max_shapes(cls, value: int, info: ValidationInfo) -> int:
            lo = info.data.get("min_shapes")
            if lo is not None and value < lo:
                raise ValueError(f"must be >= min_shapes ({lo})")
            classes = info.data.get("num_classes")
            if classes is not None and value > classes:
                raise ValueError(f"must be <= num_classes ({classes}): the shapes of an image have distinct classes")
            size = info.data.get("image_size")
            need = _grid_side(value) * _MIN_CELL_PX
            if size is not None and size < need:
                raise ValueError(f"{value} shapes per image need image_size >= {need} (got {size})")
            return value

    params: Shapes.Params

    def __init__(self, params: Shapes.Params | None = None) -> None:
        super().__init__(params)
        self._images, self._labels = _generate(self.params)
        self._images.setflags(write=False)

    @property
    def labels(self) -> np.ndarray:
        return self._labels

    @property
    def image_size(self) -> int:
        return self.params.image_size

    @property
    def class_names(self) -> tuple[str, ...]:
        """The shape kind of each label column."""
        return SHAPE_KINDS[: self.params.num_classes]

    def images(
        self, indices: np.ndarray, *, augment: bool = False, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Images of ``indices`` as N×3×S×S float32 in [0, 1]; ``augment`` flips half of them horizontally."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        x = torch.from_numpy(self._images[idx]).to(torch.float32).div_(255.0)
        if augment:
            flip = torch.rand(len(idx), generator=generator) < 0.5
            x[flip] = x[flip].flip(-1)
        return x

    def fingerprint(self) -> str:
        blob = json.dumps({"format": FORMAT_VERSION, "params": params_dict(self.params)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _generate(p: Shapes.Params) -> tuple[np.ndarray, np.ndarray]:
    """Images (N×3×S×S uint8) and labels (N×C uint8) for the parameters ``p``."""
    rng = np.random.default_rng(p.seed)
    n, s, c, m = p.num_items, p.image_size, p.num_classes, p.max_shapes
    rows = np.arange(n)

    counts = rng.integers(p.min_shapes, m + 1, size=n)
    classes = np.argsort(rng.random((n, c)), axis=1)[:, :m]  # distinct classes per image
    g = _grid_side(m)
    cells = np.argsort(rng.random((n, g * g)), axis=1)[:, :m]  # distinct grid cells per image
    cell = s / g
    cy = (cells // g + 0.5 + rng.uniform(-_JITTER, _JITTER, (n, m))) * cell
    cx = (cells % g + 0.5 + rng.uniform(-_JITTER, _JITTER, (n, m))) * cell
    radius = rng.uniform(*_RADIUS, (n, m)) * cell

    # Background: base colour + stripes + noise.
    base = rng.uniform(0.0, 1.0, (n, 3)).astype(np.float32)
    theta = rng.uniform(0.0, np.pi, n)
    freq = rng.uniform(1.5, 5.0, n)
    phase = rng.uniform(0.0, 2 * np.pi, n)
    amp = rng.uniform(0.0, 0.12, n)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) + 0.5
    proj = xx[None] * np.cos(theta)[:, None, None] + yy[None] * np.sin(theta)[:, None, None]
    stripes = (amp[:, None, None] * np.sin(2 * np.pi * freq[:, None, None] * proj / s + phase[:, None, None])).astype(
        np.float32
    )
    img = base[:, :, None, None] + stripes[:, None]

    # Shape colours: a random hue at a luminance 0.3–0.55 away from the background's.
    bg_lum = base.mean(axis=1, keepdims=True)
    raw = rng.uniform(0.0, 1.0, (n, m, 3)).astype(np.float32)
    offset = rng.uniform(0.3, 0.55, (n, m)).astype(np.float32)
    target = np.where(bg_lum < 0.5, bg_lum + offset, bg_lum - offset)
    colour = np.clip(raw - raw.mean(axis=2, keepdims=True) + target[:, :, None], 0.0, 1.0)

    labels = np.zeros((n, c), dtype=np.uint8)
    for j in range(m):
        active = counts > j
        labels[rows[active], classes[active, j]] = 1
        u = (xx[None] - cx[:, j, None, None]) / radius[:, j, None, None]
        v = (yy[None] - cy[:, j, None, None]) / radius[:, j, None, None]
        mask = np.zeros((n, s, s), dtype=bool)
        for k in range(c):
            sel = active & (classes[:, j] == k)
            if sel.any():
                mask[sel] = _SHAPES[SHAPE_KINDS[k]](u[sel], v[sel])
        img = np.where(mask[:, None], colour[:, j, :, None, None], img)

    img += rng.normal(0.0, 1.0, img.shape).astype(np.float32) * rng.uniform(0.01, 0.05, (n, 1, 1, 1)).astype(np.float32)
    images = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(images), labels
