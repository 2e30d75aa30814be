"""Example adversarial queries: clean image, adversarial image, amplified perturbation, and the
top-10 database items retrieved before and after the attack (relevant ones marked).

The attack stage stores the first queries' clean and adversarial images; the evaluate stage
stores, for the same queries, the retrieved database indices with their relevance (in the
record) and thumbnails (in its artifact).  Images are read from the run's artifact store; where
the store or an artifact is missing, the example keeps the indices and says why the images are
absent.  Every distinct image is embedded once, as a ``data:`` URI in a CSS rule that the page's
image elements refer to by class (an :class:`ImagePool`): database items recur across rankings,
so this keeps the page small, and it stays self-contained.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from hashbench.errors import ArtifactError
from hashbench.report.data import RunData
from hashbench.report.names import CLEAN, label, model_label, ordered
from hashbench.report.tables import group_rows

#: Example queries shown per (model, attack); the evaluate stage stores up to 4.
MAX_QUERIES = 2
#: Images with a longer side than this are stored as JPEG (natural images), others as PNG.
JPEG_ABOVE = 48


@dataclass
class Retrieved:
    index: int  # dataset index
    relevant: bool
    image: str | None = None  # id in the ImagePool


@dataclass
class ExampleQuery:
    """One query of one model under one attack; images are ImagePool ids."""

    index: int  # dataset index of the query
    clean: str | None = None
    adversarial: str | None = None
    perturbation: str | None = None
    amplification: float | None = None  # how much the perturbation image is scaled up
    linf: float | None = None  # L∞ of the perturbation, in 1/255 units
    before: list[Retrieved] = field(default_factory=list)
    after: list[Retrieved] = field(default_factory=list)

    @staticmethod
    def precision(items: Sequence[Retrieved]) -> float | None:
        return sum(r.relevant for r in items) / len(items) if items else None


@dataclass
class DefenseRow:
    """One model's side of an example: the attack on it and its rankings, per query."""

    label: str
    queries: list[ExampleQuery]
    missing: list[str] = field(default_factory=list)  # why some images are absent


@dataclass
class Example:
    """One attack on one (dataset, method, backbone, bits) group: a row per defense."""

    title: str
    rows: list[DefenseRow]

    @property
    def num_queries(self) -> int:
        return max((len(r.queries) for r in self.rows), default=0)

    def clean(self, q: int) -> tuple[int | None, str | None]:
        """Dataset index and clean image of query ``q`` (the same query for every defense)."""
        for row in self.rows:
            if q < len(row.queries) and row.queries[q].clean:
                return row.queries[q].index, row.queries[q].clean
        indices = [row.queries[q].index for row in self.rows if q < len(row.queries)]
        return (indices[0] if indices else None), None


def data_uri(image: np.ndarray) -> str:
    """A ``data:`` URI of a uint8 image in CHW layout (1 or 3 channels)."""
    array = np.ascontiguousarray(np.transpose(image, (1, 2, 0)))
    picture = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
    buffer = io.BytesIO()
    if max(array.shape[:2]) > JPEG_ABOVE:
        picture.save(buffer, format="JPEG", quality=88)
        kind = "jpeg"
    else:
        picture.save(buffer, format="PNG", optimize=True)
        kind = "png"
    return f"data:image/{kind};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


class ImagePool:
    """Every distinct image once: a short id (``im0``, ``im1``, …) per image, its ``data:`` URI by id."""

    def __init__(self) -> None:
        self.uris: dict[str, str] = {}
        self._ids: dict[bytes, str] = {}

    def add(self, image: np.ndarray) -> str:
        digest = hashlib.sha256(repr(image.shape).encode() + np.ascontiguousarray(image).tobytes()).digest()
        if digest not in self._ids:
            self._ids[digest] = key = f"im{len(self._ids)}"
            self.uris[key] = data_uri(image)
        return self._ids[digest]


def amplified(clean: np.ndarray, adversarial: np.ndarray) -> tuple[np.ndarray, float, float]:
    """The perturbation as a mid-grey image scaled to use the full range; its factor and L∞ (1/255)."""
    delta = adversarial.astype(np.int16) - clean.astype(np.int16)
    linf = float(np.abs(delta).max())
    factor = 127.0 / linf if linf > 0 else 1.0
    image = np.clip(128 + delta * factor, 0, 255).round().astype(np.uint8)
    return image, factor, linf


#: what an artifact key looks like (store.artifact_key: a sha256 hex digest)
_KEY = re.compile(r"[0-9a-f]{64}")


class _Artifacts:
    """Tensors of stored artifacts, each read at most once; ``None`` when unavailable."""

    def __init__(self, run: RunData) -> None:
        self.store = run.store
        self._cache: dict[tuple[str, str], Mapping[str, Any] | None] = {}

    def tensors(self, stage: str, key: str | None) -> Mapping[str, Any] | None:
        # a key read from a record becomes a path in the store: only a hex digest can name one
        if self.store is None or not isinstance(key, str) or not _KEY.fullmatch(key):
            return None
        if (stage, key) not in self._cache:
            try:
                self._cache[(stage, key)] = self.store.load(stage, key).tensors
            except (ArtifactError, OSError):
                self._cache[(stage, key)] = None
        return self._cache[(stage, key)]


def _retrieved(examples: Mapping[str, Any], q: int, thumbnails: Any, pool: ImagePool) -> list[Retrieved]:
    items = []
    for k, (index, relevant) in enumerate(zip(examples["top"][q], examples["relevant"][q])):
        image = None
        if thumbnails is not None and q < thumbnails.shape[0] and k < thumbnails.shape[1]:
            image = pool.add(thumbnails[q, k].numpy())
        items.append(Retrieved(int(index), bool(relevant), image))
    return items


def _defense_row(run: RunData, artifacts: _Artifacts, pool: ImagePool, attacked: Mapping[str, Any],
                 clean: Mapping[str, Any] | None, max_queries: int) -> DefenseRow | None:
    after = (attacked.get("metrics") or {}).get("examples")
    if not after:
        return None  # recorded before the evaluate stage kept example rankings
    before = ((clean or {}).get("metrics") or {}).get("examples")
    keys = (attacked.get("provenance") or {}).get("artifact_keys") or {}
    clean_keys = ((clean or {}).get("provenance") or {}).get("artifact_keys") or {}
    attack_tensors = artifacts.tensors("attack", keys.get("attack"))
    after_thumbs = (artifacts.tensors("evaluate", keys.get("evaluate")) or {}).get("examples_top")
    before_thumbs = (artifacts.tensors("evaluate", clean_keys.get("evaluate")) or {}).get("examples_top")
    missing = []
    if run.store is None:
        missing.append("the run's artifact store is not available: only database indices are shown")
    elif attack_tensors is None or after_thumbs is None:
        missing.append("some artifacts are missing from the store: some images are not shown")
    if before is None:
        missing.append("no clean evaluation of this model: no ranking before the attack")
    queries = []
    for q, index in enumerate(after["queries"][:max_queries]):
        example = ExampleQuery(int(index))
        stored = attack_tensors is not None and "examples_clean" in attack_tensors
        if stored and q < attack_tensors["examples_clean"].shape[0]:
            x = attack_tensors["examples_clean"][q].numpy()
            x_adv = attack_tensors["examples_adv"][q].numpy()
            delta, factor, linf = amplified(x, x_adv)
            example.clean, example.adversarial, example.perturbation = pool.add(x), pool.add(x_adv), pool.add(delta)
            example.amplification, example.linf = factor, linf
        example.after = _retrieved(after, q, after_thumbs, pool)
        if before is not None and q < len(before["queries"]) and before["queries"][q] == index:
            example.before = _retrieved(before, q, before_thumbs, pool)
        queries.append(example)
    cell = attacked["cell"]
    return DefenseRow(model_label(cell["method"], cell["defense"]), queries, missing)


def examples(run: RunData, attacks_of: Mapping[tuple, Sequence[str]], pool: ImagePool,
             max_queries: int = MAX_QUERIES) -> list[Example]:
    """For each (dataset, method, backbone, bits) group and each attack in ``attacks_of[group]``, one
    :class:`Example` with a row per defense: the first seed's first ``max_queries`` queries; their
    images go into ``pool``."""
    artifacts = _Artifacts(run)
    frame = run.frame
    found = []
    for group, attacks in attacks_of.items():
        dataset, method, backbone, bits = group
        rows = group_rows(frame, group)
        for attack in attacks:
            defense_rows = []
            for defense in ordered("defense", rows["defense"]):
                cells = rows[(rows["attack"] == attack) & (rows["defense"] == defense)].sort_values("seed")
                if cells.empty:
                    continue
                first = cells.iloc[0]
                clean_rows = rows[(rows["attack"] == CLEAN) & (rows["defense"] == defense)
                                  & (rows["seed"] == first["seed"])]
                clean = run.record(str(clean_rows.iloc[0]["cell_id"])) if not clean_rows.empty else None
                row = _defense_row(run, artifacts, pool, run.record(str(first["cell_id"])), clean, max_queries)
                if row is not None:
                    defense_rows.append(row)
            if defense_rows:
                title = (f"{label('dataset', dataset)} · {label('method', method)} · "
                         f"{label('backbone', backbone)} · {bits} bits, under {label('attack', attack)}")
                found.append(Example(title, defense_rows))
    return found
