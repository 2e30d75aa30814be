"""MIRFLICKR-25K from its two archives.

Layout of ``--from DIR`` (the archives extracted side by side)::

    DIR/mirflickr/im1.jpg … im25000.jpg          (or the images directly in DIR)
    DIR/mirflickr25k_annotations_v080/<concept>.txt, <concept>_r1.txt, README.txt

Each concept file lists the (1-based) numbers of the images showing the concept.  The 38
classes are the 24 "potential labels" and the 14 "relevant" (``_r1``) variants, in file-name
order: the 38 files DeepHash-pytorch and CgAT read.  Every image is kept, labelled or not
(CgAT's 1,000 / 24,000 split covers all 25,000).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from hashbench.data.builders.layout import require
from hashbench.data.builders.source import Source
from hashbench.errors import DataError
from hashbench.progress import Reporter

TITLE = "MIRFLICKR-25K"
ANNOTATIONS = "mirflickr25k_annotations_v080"
POTENTIAL = ("animals", "baby", "bird", "car", "clouds", "dog", "female", "flower", "food", "indoor", "lake",
             "male", "night", "people", "plant_life", "portrait", "river", "sea", "sky", "structures", "sunset",
             "transport", "tree", "water")
RELEVANT = ("baby", "bird", "car", "clouds", "dog", "female", "flower", "male", "night", "people", "portrait",
            "river", "sea", "tree")
#: the 38 classes, in the order of their files' names
CLASSES: tuple[str, ...] = tuple(sorted([*POTENTIAL, *(f"{c}_r1" for c in RELEVANT)]))
EXPECTED = f"DIR/mirflickr/im<N>.jpg and DIR/{ANNOTATIONS}/<concept>.txt (the 38 concept files)"
_IMAGE = re.compile(r"im([1-9][0-9]*)\.jpg")


def _image_folder(root: Path) -> tuple[Path, dict[int, str]]:
    """The folder of the ``im<N>.jpg`` files and their names by number."""
    for folder in (root / "mirflickr", root):
        if folder.is_dir():
            found = {int(m.group(1)): m.group(0) for m in map(_IMAGE.fullmatch, _names(folder)) if m}
            if found:
                return folder, found
    raise DataError(f"not the {TITLE} layout: no im<N>.jpg images in {root / 'mirflickr'} or {root}; "
                    f"expected {EXPECTED}")


def _names(folder: Path) -> list[str]:
    with os.scandir(folder) as entries:
        return [e.name for e in entries]


def read(root: Path, reporter: Reporter, skip_missing: bool = False) -> Source:
    """The images and 38-wide labels of a MIRFLICKR-25K folder."""
    annotations = next((d for d in (root / ANNOTATIONS, root / "mirflickr" / ANNOTATIONS) if d.is_dir()), None)
    if annotations is None:
        require(root / ANNOTATIONS, "the annotation archive, 38 concept files", TITLE, EXPECTED, folder=True)
    assert annotations is not None
    missing = [f"{c}.txt" for c in CLASSES if not (annotations / f"{c}.txt").is_file()]
    if missing:
        raise DataError(f"not the {TITLE} layout: {len(missing)} of the 38 concept files are missing in "
                        f"{annotations}: {', '.join(missing[:5])}{', …' if len(missing) > 5 else ''}")
    folder, by_number = _image_folder(root)
    numbers = sorted(by_number)
    row_of = {n: i for i, n in enumerate(numbers)}
    labels = np.zeros((len(numbers), len(CLASSES)), dtype=np.uint8)
    absent: set[int] = set()
    with reporter.task("reading the concept files", len(CLASSES)) as advance:
        for column, concept in enumerate(CLASSES):
            path = annotations / f"{concept}.txt"
            for line_no, token in enumerate(path.read_text(encoding="utf-8-sig").split(), 1):
                if not token.isdigit():
                    raise DataError(f"{path}: {token!r} is not an image number (item {line_no}); "
                                    "each line of a concept file is one image number")
                row = row_of.get(int(token))
                if row is None:
                    absent.add(int(token))
                else:
                    labels[row, column] = 1
            advance(1)
    notes = {}
    if absent:
        if not skip_missing:
            shown = ", ".join(f"im{n}.jpg" for n in sorted(absent)[:3])
            raise DataError(f"{len(absent)} images named by {annotations} are missing in {folder}: {shown}"
                            f"{', …' if len(absent) > 3 else ''}; finish extracting the images, "
                            "or pass --skip-missing to build without them")
        notes["images missing (skipped)"] = len(absent)
    unlabeled = int((labels.sum(axis=1) == 0).sum())
    if unlabeled:
        notes["unlabeled images (kept)"] = unlabeled
    paths = [by_number[n] for n in numbers]
    return Source(paths, labels, list(CLASSES), folder, f"{TITLE} ({ANNOTATIONS})", notes=notes)
