"""A peer's ready list files, reused with their exact split.

Two layouts of ``--from DIR``:

* DeepHash-pytorch: ``DIR/{train,test,database}.txt``, each line ``path l1 … lC``;
* CgAT / ProS-GAN: ``DIR/{train,test,database}_img.txt`` (one path per line) with
  ``DIR/{train,test,database}_label.txt`` (C values per line, same order).

The listed paths may carry a prefix of the peer's machine (``/dataset/flickr25k/mirflickr/im1.jpg``):
the images are looked up under ``--image-root``, dropping leading path components until the
first listed image is found there; every other path drops as many.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hashbench.data.builders.layout import check_images, read_text
from hashbench.data.builders.source import Source
from hashbench.errors import DataError
from hashbench.progress import Reporter

#: the peers' file stem of each split
STEMS = {"train": "train", "query": "test", "database": "database"}
Row = tuple[str, bytes, Path, int]  # path as listed, labels, file, line


def detect(root: Path) -> str | None:
    """``"single"`` or ``"pair"`` when ``root`` holds a peer's complete list files, else None."""
    if all((root / f"{s}.txt").is_file() for s in STEMS.values()):
        return "single"
    if all((root / f"{s}_{k}.txt").is_file() for s in STEMS.values() for k in ("img", "label")):
        return "pair"
    return None


def _labels(tokens: list[str], width: int, file: Path, line: int) -> bytes:
    if len(tokens) != width:
        raise DataError(f"{file}:{line}: {len(tokens)} label values, expected {width} (the dataset's classes); "
                        "are these the lists of another dataset?")
    if any(t not in ("0", "1") for t in tokens):
        raise DataError(f"{file}:{line}: label values must be 0 or 1, got {' '.join(tokens[:8])}")
    return bytes(int(t) for t in tokens)


def _lines(file: Path) -> list[str]:
    """The lines of one file of a pair, trailing blank lines removed; a blank line inside is an error
    (it would shift every later path against its labels)."""
    lines = read_text(file).splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    blank = next((i for i, line in enumerate(lines, 1) if not line.strip()), None)
    if blank is not None:
        raise DataError(f"{file}:{blank}: blank line inside the list; the two files of a pair are matched "
                        "line by line, remove it")
    return lines


def _read(root: Path, fmt: str, stem: str, width: int) -> list[Row]:
    if fmt == "single":
        file = root / f"{stem}.txt"
        rows = []
        for line_no, line in enumerate(read_text(file).splitlines(), 1):
            tokens = line.split()
            if tokens:
                rows.append((tokens[0], _labels(tokens[1:], width, file, line_no), file, line_no))
        return rows
    img_file, label_file = root / f"{stem}_img.txt", root / f"{stem}_label.txt"
    paths = [line.strip() for line in _lines(img_file)]
    labels = [line.split() for line in _lines(label_file)]
    if len(paths) != len(labels):
        raise DataError(f"{img_file} has {len(paths)} paths but {label_file} has {len(labels)} label rows; "
                        "the two files of a pair list the same items in the same order")
    return [(p, _labels(t, width, label_file, i), img_file, i) for i, (p, t) in enumerate(zip(paths, labels), 1)]


def _strip_count(first: Row, image_root: Path) -> int:
    """How many leading components to drop from the listed paths to find the images under ``image_root``."""
    parts = [p for p in first[0].replace("\\", "/").split("/") if p]
    for k in range(len(parts)):
        if (image_root / "/".join(parts[k:])).is_file():
            return k
    raise DataError(f"{first[2]}:{first[3]}: image {first[0]} is not under {image_root}, with or without its "
                    "leading folders; pass --image-root, the folder the listed images are in")


def read(root: Path, fmt: str, num_classes: int, image_root: Path, reporter: Reporter,
         skip_missing: bool = False) -> Source:
    """The union of the three lists as items, and the lists as the split."""
    lists = {split: _read(root, fmt, stem, num_classes) for split, stem in STEMS.items()}
    for split, rows in lists.items():
        if not rows:
            raise DataError(f"{root}: the {STEMS[split]} list is empty")
    k = _strip_count(lists["query"][0], image_root)
    index: dict[str, int] = {}
    paths: list[str] = []
    labels: list[bytes] = []
    origin: list[Row] = []
    split: dict[str, list[int]] = {}
    duplicates = 0
    for name, rows in lists.items():
        members: list[int] = []
        seen: set[int] = set()
        for row in rows:
            rel = "/".join([p for p in row[0].replace("\\", "/").split("/") if p][k:])
            j = index.get(rel)
            if j is None:
                j = index[rel] = len(paths)
                paths.append(rel)
                labels.append(row[1])
                origin.append(row)
            elif labels[j] != row[1]:
                raise DataError(f"{row[2]}:{row[3]}: image {row[0]} has another label than at "
                                f"{origin[j][2]}:{origin[j][3]}; an image has one label in every list")
            if j in seen:
                duplicates += 1
                continue
            seen.add(j)
            members.append(j)
        split[name] = members
    queries = set(split["query"])
    for other in ("database", "train"):
        clash = next((j for j in split[other] if j in queries), None)
        if clash is not None:
            row = origin[clash]
            raise DataError(f"{row[2]}:{row[3]}: query image {row[0]} is also in the {STEMS[other]} list; "
                            "queries must be unseen")
    notes = {}
    if duplicates:
        notes["duplicate lines (dropped)"] = duplicates
    outside = len(set(split["train"]) - set(split["database"]))
    if outside:
        notes["train images not in the database"] = outside
    label_array = np.frombuffer(b"".join(labels), dtype=np.uint8).reshape(len(paths), num_classes).copy()
    unlabeled = int((label_array.sum(axis=1) == 0).sum())
    if unlabeled:
        notes["unlabeled images (kept)"] = unlabeled
    present = check_images(image_root, paths, skip_missing=skip_missing, reporter=reporter,
                           source=f"the lists in {root}")
    if not present.all():
        notes["images missing (skipped)"] = int((~present).sum())
        renumber = np.cumsum(present) - 1
        split = {s: [int(renumber[j]) for j in m if present[j]] for s, m in split.items()}
        paths = [p for p, ok in zip(paths, present, strict=True) if ok]
        label_array = label_array[present]
    layout = "DeepHash-pytorch lists" if fmt == "single" else "CgAT/ProS-GAN lists (*_img.txt + *_label.txt)"
    classes = [f"class{c}" for c in range(num_classes)]
    return Source(paths, label_array, classes, image_root, layout, split=split, notes=notes)
