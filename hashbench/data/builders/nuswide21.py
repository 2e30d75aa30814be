"""NUS-WIDE, the 21 most frequent of its 81 concepts.

Layout of ``--from DIR``::

    DIR/ImageList/Imagelist.txt                  one image per line, e.g.
                                                 ``C:\\ImageData\\Flickr\\actor\\0001_2124494179.jpg``
    DIR/Groundtruth/AllLabels/Labels_<concept>.txt   one 0/1 per line, in image-list order (81 files)
    DIR/Flickr/<folder>/<image>.jpg              the images (or flat: DIR/images/<image>.jpg)

The 21 concepts with the most positive images are kept (columns in name order) and the images
that show at least one of them (195,834 in the full distribution).
"""

from __future__ import annotations

import posixpath
from pathlib import Path

import numpy as np

from hashbench.data.builders.layout import check_images, read_text, require
from hashbench.data.builders.source import Source
from hashbench.errors import DataError
from hashbench.progress import Reporter

TITLE = "NUS-WIDE"
NUM_CLASSES = 21
IMAGE_LIST = Path("ImageList") / "Imagelist.txt"
LABELS = Path("Groundtruth") / "AllLabels"
EXPECTED = f"DIR/{IMAGE_LIST}, DIR/{LABELS}/Labels_<concept>.txt and the images in DIR/Flickr/ (or DIR/images/)"


def _relative(line: str) -> str:
    """An image-list entry as a path below the ``Flickr`` folder (``actor/0001_2124494179.jpg``)."""
    parts = [p for p in line.strip().replace("\\", "/").split("/") if p]
    if "Flickr" in parts:
        parts = parts[len(parts) - parts[::-1].index("Flickr"):]
    return "/".join(parts)


def _read_column(path: Path, length: int) -> np.ndarray:
    tokens = read_text(path).split()
    if len(tokens) != length:
        raise DataError(f"{path}: {len(tokens)} values, expected {length} (one per line of {IMAGE_LIST}); "
                        "the label files and the image list must come from the same release")
    column = np.array(tokens) == "1"
    bad = ~column & (np.array(tokens) != "0")
    if bad.any():
        line = int(np.argmax(bad)) + 1
        raise DataError(f"{path}:{line}: {tokens[line - 1]!r} is not 0 or 1")
    return column


def _image_root(root: Path, first: str) -> tuple[Path, bool]:
    """The images' folder and whether it is flat (``images/<name>``) for the entry ``first``."""
    for folder, flat in ((root / "Flickr", False), (root / "images", True)):
        if (folder / (posixpath.basename(first) if flat else first)).is_file():
            return folder, flat
    raise DataError(f"not the {TITLE} layout: the first listed image {first} is neither "
                    f"{root / 'Flickr' / first} nor {root / 'images' / posixpath.basename(first)}; "
                    f"expected {EXPECTED}")


def read(root: Path, reporter: Reporter, skip_missing: bool = False) -> Source:
    """The images with at least one of the 21 most frequent concepts, and their 21-wide labels."""
    list_file = require(root / IMAGE_LIST, "the NUS-WIDE image list", TITLE, EXPECTED)
    label_dir = require(root / LABELS, "the 81 concepts' ground truth", TITLE, EXPECTED, folder=True)
    files = sorted(label_dir.glob("Labels_*.txt"))
    if len(files) < NUM_CLASSES:
        raise DataError(f"not the {TITLE} layout: {label_dir} holds {len(files)} Labels_<concept>.txt files, "
                        f"at least {NUM_CLASSES} are needed (81 in the distribution)")
    entries = [_relative(line) for line in read_text(list_file).splitlines() if line.strip()]
    if not entries:
        raise DataError(f"{list_file}: the image list is empty")
    columns = []
    with reporter.task("reading the concept files", len(files)) as advance:
        for path in files:
            columns.append(_read_column(path, len(entries)))
            advance(1)
    all_labels = np.stack(columns, axis=1)
    names = [p.stem.removeprefix("Labels_") for p in files]
    counts = all_labels.sum(axis=0)
    top = sorted(sorted(range(len(names)), key=lambda j: (-counts[j], names[j]))[:NUM_CLASSES], key=lambda j: names[j])
    labels = all_labels[:, top].astype(np.uint8)
    keep = labels.any(axis=1)
    notes = {"dropped: none of the 21 concepts": int((~keep).sum())}
    if len(files) != 81:
        notes["concept files read (81 in the distribution)"] = len(files)
    kept = np.flatnonzero(keep)
    if not len(kept):
        raise DataError(f"{label_dir}: no image has any of the 21 most frequent concepts")
    folder, flat = _image_root(root, entries[kept[0]])
    paths = [posixpath.basename(entries[i]) if flat else entries[i] for i in kept]
    present = check_images(folder, paths, skip_missing=skip_missing, reporter=reporter, source=str(list_file))
    if not present.all():
        notes["images missing (skipped)"] = int((~present).sum())
    paths = [p for p, ok in zip(paths, present, strict=True) if ok]
    return Source(paths, labels[kept][present], [names[j] for j in top], folder, f"{TITLE} (ImageList + Groundtruth)",
                  notes=notes)
