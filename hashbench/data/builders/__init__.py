"""``hashbench data build``: the real datasets' list files from their original distributions.

One reader per dataset (:mod:`.flickr25k`, :mod:`.nuswide21`, :mod:`.mscoco`) turns an
extracted archive into items and labels; :mod:`.peer` reads a peer's ready list files instead.
:func:`build` draws the papers' split (:mod:`.split`), writes the lists, the images (a link or
copies) and ``build.json`` (:mod:`.output`), and prints counts against the papers (:mod:`.report`).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from hashbench.data.builders import flickr25k, mscoco, nuswide21, peer
from hashbench.data.builders.output import check_target, place_images, staged, write_lists, write_record
from hashbench.data.builders.report import counts_table, print_table
from hashbench.data.builders.source import Source
from hashbench.data.builders.split import draw_split
from hashbench.errors import DataError, UserError
from hashbench.progress import Reporter


@dataclass(frozen=True)
class DatasetSpec:
    """A buildable dataset: its reader and the papers' numbers (CgAT §4.1)."""

    title: str
    num_classes: int
    num_query: int
    num_train: int
    num_items: int
    read: Callable[..., Source]
    layout: str

    def paper_counts(self) -> dict[str, int]:
        return {"query": self.num_query, "database": self.num_items - self.num_query, "train": self.num_train,
                "items": self.num_items}


DATASETS: dict[str, DatasetSpec] = {
    "flickr25k": DatasetSpec(flickr25k.TITLE, 38, 1000, 5000, 25000, flickr25k.read, flickr25k.EXPECTED),
    "nuswide21": DatasetSpec(nuswide21.TITLE, 21, 2100, 10500, 195834, nuswide21.read, nuswide21.EXPECTED),
    "mscoco": DatasetSpec(mscoco.TITLE, 80, 5000, 10000, 122218, mscoco.read, mscoco.EXPECTED),
}


def build(name: str, source_dir: Path, *, out: Path | None = None, seed: int = 0, num_query: int | None = None,
          num_train: int | None = None, image_root: Path | None = None, images: str = "link",
          skip_missing: bool = False, force: bool = False, reporter: Reporter | None = None) -> Path:
    """Build dataset ``name`` from ``source_dir`` into ``out`` (default ``data/<name>``); the folder written.

    Prints the counts table and a summary line on stdout.
    """
    spec = DATASETS.get(name)
    if spec is None:
        raise UserError(f"unknown dataset {name!r}; buildable: {', '.join(DATASETS)}")
    reporter = reporter or Reporter()
    out = out or Path("data") / name
    try:
        source, counts, placed = _build(spec, name, source_dir, out, seed, num_query, num_train, image_root,
                                        images, skip_missing, force, reporter)
    finally:
        reporter.close()
    print_table(counts_table(f"{name}: {source.layout}", counts, spec.paper_counts(), source))
    split_note = "the lists' own split" if source.split else f"split drawn with seed {seed}"
    print(f"wrote {out}{os.sep}: train.txt, test.txt (queries), database.txt, build.json; images: {placed}; "
          f"{split_note}")
    return out


def _build(spec: DatasetSpec, name: str, source_dir: Path, out: Path, seed: int, num_query: int | None,
           num_train: int | None, image_root: Path | None, images: str, skip_missing: bool, force: bool,
           reporter: Reporter) -> tuple[Source, dict[str, int], str]:
    if not source_dir.is_dir():
        raise DataError(f"--from {source_dir} is not a folder; give the folder the {spec.title} archives were "
                        "extracted into")
    check_target(out, force)
    fmt = peer.detect(source_dir)
    if fmt is not None:
        if num_query is not None or num_train is not None:
            raise UserError("--num-query/--num-train draw a split; a peer's list files bring their own")
        source = peer.read(source_dir, fmt, spec.num_classes, image_root or source_dir, reporter, skip_missing)
    else:
        if image_root is not None:
            raise UserError(f"--image-root is for a peer's list files; {source_dir} holds none "
                            "(train.txt/test.txt/database.txt or *_img.txt + *_label.txt)")
        source = spec.read(source_dir, reporter, skip_missing)
    if len(set(source.paths)) != len(source.paths):
        twice = next(p for p, n in Counter(source.paths).items() if n > 1)
        raise DataError(f"{source_dir}: image {twice} is listed twice ({source.layout}); each image may appear once")
    if len(source.classes) != spec.num_classes:
        raise DataError(f"{source_dir}: {len(source.classes)} classes, but {name} has {spec.num_classes}")
    nq = spec.num_query if num_query is None else num_query
    nt = spec.num_train if num_train is None else num_train
    split = source.split or draw_split(len(source.paths), nq, nt, seed)
    counts = {"query": len(split["query"]), "database": len(split["database"]), "train": len(split["train"]),
              "items": len(source.paths)}
    with staged(out, force) as tmp:
        placed = place_images(tmp, source, images, reporter)
        digests = write_lists(tmp, source, split)
        write_record(tmp, {
            "dataset": name,
            "source": {"layout": source.layout, "from": str(source_dir.resolve()),
                       "image_root": str(source.image_root.resolve())},
            "split": "given by the lists" if source.split else "drawn",
            "seed": None if source.split else seed,
            "counts": counts,
            "paper": spec.paper_counts(),
            "notes": source.notes,
            "classes": source.classes,
            "images": placed,
            "files": digests,
        })
    return source, counts, placed
