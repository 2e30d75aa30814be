"""MS-COCO 2014 (train2014 + val2014), 80 categories.

Layout of ``--from DIR``::

    DIR/train2014/COCO_train2014_<id>.jpg
    DIR/val2014/COCO_val2014_<id>.jpg
    DIR/annotations/instances_train2014.json, instances_val2014.json

A label row has a 1 for every category with at least one instance in the image; category ids
map to columns 0…79 in sorted id order.  Images without any annotation are dropped (122,218
images keep at least one).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hashbench.data.builders.layout import check_images, require
from hashbench.data.builders.source import Source
from hashbench.errors import DataError
from hashbench.progress import Reporter

TITLE = "MS-COCO"
PARTS = ("train2014", "val2014")
EXPECTED = "DIR/train2014/, DIR/val2014/ and DIR/annotations/instances_{train,val}2014.json"


def _load(path: Path) -> dict:
    try:
        data = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    missing = [k for k in ("images", "annotations", "categories") if not isinstance(data, dict) or k not in data]
    if missing:
        raise DataError(f"{path}: not a COCO instances file: no {', '.join(repr(k) for k in missing)}")
    return data


def read(root: Path, reporter: Reporter, skip_missing: bool = False) -> Source:
    """The images with at least one annotation in either part, and their 80-wide labels."""
    files = {}
    for part in PARTS:
        require(root / part, f"the {part} images", TITLE, EXPECTED, folder=True)
        files[part] = require(root / "annotations" / f"instances_{part}.json", f"the {part} annotations",
                              TITLE, EXPECTED)
    categories: dict[int, str] = {}
    images: dict[tuple[str, int], str] = {}
    positives: dict[tuple[str, int], set[int]] = {}
    with reporter.task("reading the annotations", len(PARTS)) as advance:
        for part, path in files.items():
            data = _load(path)
            try:
                for c in data["categories"]:
                    categories.setdefault(int(c["id"]), str(c["name"]))
                for im in data["images"]:
                    images[(part, int(im["id"]))] = f"{part}/{im['file_name']}"
                for ann in data["annotations"]:
                    positives.setdefault((part, int(ann["image_id"])), set()).add(int(ann["category_id"]))
            except (KeyError, TypeError, ValueError) as exc:
                raise DataError(f"{path}: malformed COCO entry ({type(exc).__name__}: {exc})") from None
            advance(1)
    column = {cid: j for j, cid in enumerate(sorted(categories))}
    unknown = {c for cats in positives.values() for c in cats} - set(column)
    if unknown:
        raise DataError(f"{files['train2014'].parent}: annotations use category ids {sorted(unknown)[:5]} "
                        "that no 'categories' entry declares")
    orphans = set(positives) - set(images)
    if orphans:
        part, image_id = min(orphans)
        raise DataError(f"{files[part]}: annotations name image id {image_id}, which its 'images' list lacks")
    keys = sorted((k for k in images if k in positives), key=lambda k: images[k])
    labels = np.zeros((len(keys), len(column)), dtype=np.uint8)
    for row, key in enumerate(keys):
        labels[row, [column[c] for c in positives[key]]] = 1
    paths = [images[k] for k in keys]
    notes = {"dropped: no annotation": len(images) - len(keys)}
    present = check_images(root, paths, skip_missing=skip_missing, reporter=reporter, source="the instances files")
    if not present.all():
        notes["images missing (skipped)"] = int((~present).sum())
    paths = [p for p, ok in zip(paths, present, strict=True) if ok]
    return Source(paths, labels[present], [categories[c] for c in sorted(categories)], root,
                  f"{TITLE} 2014 (instances_*.json)", notes=notes)
