"""Writing a built dataset: list files, images (linked or copied) and ``build.json``, all or nothing.

Everything goes into a hidden temporary folder beside ``--out`` that is renamed into place at
the end, so a failed or interrupted build leaves no half-written dataset.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from hashbench.data.builders.source import Source
from hashbench.data.listfile import DEFAULT_SPLIT_FILES, SPLITS
from hashbench.errors import UserError
from hashbench.progress import Reporter

#: the folder, inside the built dataset, that holds (or links to) the images
IMAGES = "images"
FORMAT = "hashbench-build-v1"


def check_target(out: Path, force: bool) -> None:
    """Refuse an existing, non-empty ``out`` unless it is an earlier build and ``force`` (before any work)."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise UserError(f"{out} exists and is not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()):
        if not (out / "build.json").is_file():
            raise UserError(f"{out} holds files that no 'hashbench data build' wrote (no build.json); "
                            "move them away or choose another --out: --force replaces only an earlier build")
        if not force:
            raise UserError(f"{out} already exists; pass --force to replace it, or choose another --out")


@contextlib.contextmanager
def staged(out: Path, force: bool) -> Iterator[Path]:
    """A temporary folder beside ``out`` that becomes ``out`` when the block ends without error."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.building-"))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's folder is private; the dataset is not
        yield tmp
        old = None
        if out.exists():
            check_target(out, force)
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
        tmp.rename(out)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def place_images(tmp: Path, source: Source, mode: str, reporter: Reporter) -> str:
    """Make ``tmp/images/<path>`` reach every image: a link to the image root, or copies (hard links when possible)."""
    root = source.image_root.resolve()
    if mode == "link":
        os.symlink(root, tmp / IMAGES, target_is_directory=True)
        return f"link -> {root}"
    with reporter.task("copying images", len(source.paths)) as advance:
        for rel in source.paths:
            target = tmp / IMAGES / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(root / rel, target)
            except OSError:
                shutil.copy2(root / rel, target)
            advance(1)
    return "copy"


def _rows(labels: np.ndarray) -> list[bytes]:
    """Each label row as b"0 1 … 1"."""
    n, c = labels.shape
    text = np.full((n, 2 * c - 1), ord(" "), dtype=np.uint8)
    text[:, 0::2] = labels + ord("0")
    return [row.tobytes() for row in text]


def write_lists(tmp: Path, source: Source, split: dict[str, list[int]]) -> dict[str, str]:
    """``train.txt``, ``test.txt`` (the queries), ``database.txt``; the sha256 of each."""
    rows = _rows(source.labels)
    digests = {}
    for name in SPLITS:
        data = b"".join(f"{IMAGES}/{source.paths[j]} ".encode() + rows[j] + b"\n" for j in split[name])
        file = f"{DEFAULT_SPLIT_FILES[name]}.txt"
        (tmp / file).write_bytes(data)
        digests[file] = hashlib.sha256(data).hexdigest()
    return digests


def write_record(tmp: Path, record: dict[str, Any]) -> None:
    (tmp / "build.json").write_text(json.dumps({"format": FORMAT, **record}, indent=2) + "\n")
