"""Checks of an input folder's layout, with errors that name what is missing and where."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from hashbench.errors import DataError
from hashbench.progress import Reporter

_SHOWN = 3


def require(path: Path, what: str, dataset: str, expected: str, *, folder: bool = False) -> Path:
    """``path`` if it exists (a folder when ``folder``); else DataError naming it and the layout."""
    ok = path.is_dir() if folder else path.is_file()
    if not ok:
        kind = "folder" if folder else "file"
        raise DataError(f"not the {dataset} layout: missing {kind} {path} ({what}); expected {expected}")
    return path


def read_text(path: Path) -> str:
    """A text file's content; DataError naming the file when it is not UTF-8."""
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a text file ({exc.reason})") from None


def check_images(root: Path, paths: list[str], *, skip_missing: bool, reporter: Reporter,
                 source: str) -> np.ndarray:
    """A mask of the ``paths`` (relative to ``root``) that are files.

    A missing image is an error naming how many and which, unless ``skip_missing``: then it is
    left out (the caller counts it).
    """
    present = np.ones(len(paths), dtype=bool)
    with reporter.task(f"checking images under {root}", len(paths)) as advance:
        for i, rel in enumerate(paths):
            if not os.path.isfile(os.path.join(root, rel)):
                present[i] = False
            if i % 1000 == 999:
                advance(1000)
        advance(len(paths) % 1000)
    missing = [p for p, ok in zip(paths, present, strict=True) if not ok]
    if missing and not skip_missing:
        shown = ", ".join(missing[:_SHOWN]) + (", …" if len(missing) > _SHOWN else "")
        raise DataError(
            f"{len(missing)} of {len(paths)} images named by {source} are missing under {root}: {shown}; "
            "finish extracting the images, or pass --skip-missing to build without them"
        )
    return present
