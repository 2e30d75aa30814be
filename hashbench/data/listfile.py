"""``listfile``: images under a root folder, described by list files in the field's two formats.

* ``single``: one file per split, ``<stem>.txt``; each line is ``relative/path.jpg 0 1 0 … 1``.
* ``pair``: ``<stem>_img.txt`` (one relative path per line) and ``<stem>_label.txt`` (C
  whitespace-separated 0/1 values per line), in the same order (the CgAT / ProS-GAN layout).

The dataset's items are the union of the train, query and database lists, deduplicated by
path, and the lists define its split.  A folder with one full list instead, ``all.txt`` (or
``all_img.txt`` + ``all_label.txt``; the stem is ``all_list``), has no split of its own: the split
is drawn from the registry's declared sizes and the run's seed (:func:`~hashbench.data.splits.make_split`).
Everything but the pixels is checked at construction (widths, values, duplicates, paths that
escape the root, missing images) so that a bad file fails before any training starts, with the
file and the line to fix.  A line that repeats an earlier line of its list exactly (same path,
same labels; 504 of ProS-GAN's FLICKR-25K train lines do) is dropped with one warning that counts
them; the same path with other labels, or the same file under two paths, is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import ClassVar, Literal

import numpy as np
import torch
from PIL import Image
from pydantic import Field, ValidationInfo, field_validator

from hashbench.api.dataset import HashDataset, PredefinedSplit
from hashbench.api.params import Params, params_dict
from hashbench.data.images import open_image, to_tensor
from hashbench.errors import ConfigError, DataError

FORMAT_VERSION = "listfile-v1"
SPLITS: tuple[str, ...] = ("train", "query", "database")
#: the key of the one full list (a dataset without a split of its own)
ALL = "all"
DEFAULT_SPLIT_FILES: dict[str, str] = {"train": "train", "query": "test", "database": "database"}

_LABEL_TOKENS = {"0": 0, "1": 1}
_MISSING_SHOWN = 5
#: the largest image side (after resizing) a list-file dataset may ask for
MAX_IMAGE_SIZE = 4096


class UnlabeledItemsWarning(UserWarning):
    """A list file has label rows that are all zero (items relevant to no query)."""


class DuplicateLinesWarning(UserWarning):
    """A list file repeats lines exactly (same path, same labels); the repeats were dropped."""


@dataclass(frozen=True)
class _Row:
    path: str  # normalised relative path
    labels: bytes  # one byte (0 or 1) per class
    file: Path  # the list file that names the path
    label_file: Path  # the list file that holds the labels (== file in the single format)
    line: int  # 1-based, the same in both files of a pair


class ListFile(HashDataset):
    """Images read with PIL from ``root``; labels and splits from list files in ``list_dir``."""

    name: ClassVar[str] = "listfile"
    description: ClassVar[str] = (
        "Images under a root folder with list files: '<split>.txt' (path + labels) "
        "or '<split>_img.txt' + '<split>_label.txt'"
    )
    paper: ClassVar[str] = ""

    class Params(Params):
        root: str = Field(min_length=1, description="folder the listed image paths are relative to")
        list_dir: str | None = Field(None, min_length=1, description="folder of the list files (default: root)")
        format: Literal["single", "pair", "auto"] = Field(
            "auto", description="list-file format; auto: from the files present"
        )
        split_files: dict[str, str] = Field(
            default_factory=lambda: dict(DEFAULT_SPLIT_FILES),
            description="file stem of each split (train, query, database); keys left out keep their default",
        )
        all_list: str = Field(
            ALL, min_length=1,
            description="file stem of one full list, read when the split lists are absent; the split is then drawn",
        )
        num_classes: int | None = Field(None, ge=1, le=100_000, description="if given, the width every label row must have")
        image_size: int = Field(224, ge=1, le=MAX_IMAGE_SIZE, description="side of the (cropped) images")
        resize: int = Field(256, ge=1, le=MAX_IMAGE_SIZE, description="shorter side after resizing, before cropping")
        drop_unlabeled: bool = Field(False, description="drop items whose label row is all zero")

        @field_validator("split_files")
        @classmethod
        def _check_split_files(cls, value: dict[str, str]) -> dict[str, str]:
            unknown = sorted(set(value) - set(SPLITS))
            if unknown:
                raise ValueError(f"unknown split(s) {', '.join(unknown)} (allowed: {', '.join(SPLITS)})")
            empty = [k for k, v in value.items() if not v.strip()]
            if empty:
                raise ValueError(f"empty file stem for {', '.join(empty)}")
            return {split: value.get(split, DEFAULT_SPLIT_FILES[split]) for split in SPLITS}

        @field_validator("resize")
        @classmethod
        def _check_resize(cls, value: int, info: ValidationInfo) -> int:
            size = info.data.get("image_size")
            if size is not None and value < size:
                raise ValueError(f"must be >= image_size ({size}): the resized image is cropped to image_size")
            return value

    params: ListFile.Params

    def __init__(self, params: ListFile.Params | None = None) -> None:
        if params is None:
            raise ConfigError("the listfile dataset needs parameters: at least 'root', the folder of the images")
        super().__init__(params)
        p = self.params
        self._root = Path(os.path.expanduser(p.root))
        if not self._root.is_dir():
            raise DataError(
                f"image root {self._root} is not a directory; set 'root' to the folder that holds the images"
            )
        self._list_dir = Path(os.path.expanduser(p.list_dir)) if p.list_dir else self._root
        self._width: int | None = p.num_classes
        self._width_origin = "num_classes" if p.num_classes is not None else ""
        self._digests: list[tuple[str, str]] = []  # (file name, sha256) of every list file read

        self.format, files = self._resolve_files()
        self.unlabeled_counts: dict[str, int] = {}
        #: exact duplicate lines dropped, per list (train, query, database, or all)
        self.duplicate_counts: dict[str, int] = {}
        rows = {split: self._read_split(split, group) for split, group in files.items()}
        self._items, split_lists = self._merge(rows)
        self._check_disjoint(rows, split_lists)
        self._split = (PredefinedSplit(**{s: np.asarray(split_lists[s], dtype=np.int64) for s in SPLITS})
                       if ALL not in files else None)
        self._check_same_files(rows, split_lists, self._check_images_exist())
        width = self._width or 0
        self._labels = np.frombuffer(b"".join(r.labels for r in self._items), dtype=np.uint8).reshape(-1, width).copy()

    # -- the dataset contract -----------------------------------------------------------
    @property
    def labels(self) -> np.ndarray:
        return self._labels

    @property
    def image_size(self) -> int:
        return self.params.image_size

    @property
    def paths(self) -> list[str]:
        """Each item's image path relative to the root."""
        return [r.path for r in self._items]

    def predefined_split(self) -> PredefinedSplit | None:
        """The split of the train / test / database lists; ``None`` for one full list (the split is drawn)."""
        return self._split

    def images(
        self, indices: np.ndarray, *, augment: bool = False, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Images of ``indices`` (N×3×S×S float32 in [0, 1]).

        Test: Resize(resize) of the shorter side → CenterCrop(image_size).  Train (``augment``):
        Resize(resize) → RandomCrop(image_size) → RandomHorizontalFlip, drawn from ``generator``.
        """
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        s = self.params.image_size
        out = torch.empty((len(idx), 3, s, s), dtype=torch.float32)
        for k, i in enumerate(idx):
            out[k] = self._load(int(i), augment, generator)
        return out

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        meta = {"format": FORMAT_VERSION, "list_format": self.format, "params": params_dict(self.params)}
        h.update(json.dumps(meta, sort_keys=True).encode())
        for name, digest in self._digests:
            h.update(f"\n{name}\t{digest}".encode())
        return h.hexdigest()[:16]

    # -- reading the lists ------------------------------------------------------------
    def _candidates(self, fmt: str, layout: str = "split") -> dict[str, tuple[Path, ...]]:
        """The files of each list: the three splits (``layout="split"``) or the one full list (``"all"``)."""
        stems = self.params.split_files if layout == "split" else {ALL: self.params.all_list}
        if fmt == "single":
            return {s: (self._list_dir / f"{stem}.txt",) for s, stem in stems.items()}
        return {s: (self._list_dir / f"{stem}_img.txt", self._list_dir / f"{stem}_label.txt")
                for s, stem in stems.items()}

    def _complete(self, formats: tuple[str, ...], layout: str) -> list[str]:
        """The formats among ``formats`` whose files of ``layout`` are all present."""
        return [f for f in formats
                if all(path.is_file() for group in self._candidates(f, layout).values() for path in group)]

    def _resolve_files(self) -> tuple[str, dict[str, tuple[Path, ...]]]:
        """The list format and the files of each list: the three splits or, without them, one full list.

        DataError naming the files looked for if neither is complete, or if both are (which one is meant?).
        """
        fmt = self.params.format
        formats = ("single", "pair") if fmt == "auto" else (fmt,)
        split, whole = self._complete(formats, "split"), self._complete(formats, ALL)
        if split and whole:
            raise DataError(
                f"{self._list_dir} holds both split lists (train, test, database) and the full list "
                f"'{self.params.all_list}'; keep one: split lists are the split, a full list has its split drawn"
            )
        layout, complete = ("split", split) if split else (ALL, whole)
        if len(complete) == 2:
            raise DataError(
                f"{self._list_dir} holds complete list files of both formats ('single' <stem>.txt and 'pair' "
                f"<stem>_img.txt/<stem>_label.txt); set 'format' to the one to use"
            )
        if complete:
            return complete[0], self._candidates(complete[0], layout)
        missing = []
        for f in formats:
            absent = [str(p) for group in self._candidates(f).values() for p in group if not p.is_file()]
            missing.append(f"format '{f}': missing {', '.join(absent)}")
        stem = self.params.all_list
        raise DataError(
            f"list files not found in {self._list_dir} ({'; '.join(missing)}; nor one full list {stem}.txt or "
            f"{stem}_img.txt + {stem}_label.txt); check 'list_dir', 'split_files' and 'format'"
        )

    def _read_lines(self, path: Path) -> list[str]:
        data = path.read_bytes()
        self._digests.append((path.name, hashlib.sha256(data).hexdigest()))
        try:
            text = data.decode("utf-8-sig")  # tolerate a byte-order mark
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            raise DataError(
                f"{path}:{line}: not valid UTF-8 text ({exc.reason}); save the list file as UTF-8"
            ) from None
        # Split on "\n" only, so line numbers match what editors show (splitlines() also breaks on \f, \x1c, …).
        return [line.removesuffix("\r") for line in text.split("\n")]

    def _read_split(self, split: str, files: tuple[Path, ...]) -> list[_Row]:
        rows = self._read_single(files[0]) if len(files) == 1 else self._read_pair(files[0], files[1])
        label_file = files[-1]
        if not rows:
            raise DataError(f"{files[0]}: the {split} list is empty; every split needs at least one item")
        rows = self._drop_duplicates(split, rows)
        unlabeled = sum(1 for r in rows if not any(r.labels))
        self.unlabeled_counts[split] = unlabeled
        if unlabeled and self.params.drop_unlabeled:
            rows = [r for r in rows if any(r.labels)]
            if not rows:
                raise DataError(
                    f"{label_file}: the {split} list is empty after dropping its {unlabeled} unlabeled (all-zero) rows"
                )
        elif unlabeled:
            warnings.warn(
                f"{label_file}: {unlabeled} of {len(rows)} label rows are all zero "
                "(unlabeled items, relevant to no query); "
                "they are kept; set drop_unlabeled: true to drop them",
                UnlabeledItemsWarning,
                stacklevel=2,
            )
        return rows

    def _drop_duplicates(self, split: str, rows: list[_Row]) -> list[_Row]:
        """``rows`` without the lines that repeat an earlier line exactly (same path, same labels), with one
        warning that counts them; DataError if a path is listed again with other labels (which one is right?)."""
        first: dict[str, _Row] = {}
        kept: list[_Row] = []
        for row in rows:
            earlier = first.setdefault(row.path, row)
            if earlier is row:
                kept.append(row)
            elif earlier.labels != row.labels:
                raise DataError(
                    f"{row.label_file}:{row.line}: image {row.path!r} is listed twice in this file with different "
                    f"labels (also line {earlier.line}); an image has one label: remove the wrong line"
                )
        dropped = len(rows) - len(kept)
        self.duplicate_counts[split] = dropped
        if dropped:
            example = next(r for r in rows if r is not first[r.path])
            warnings.warn(
                f"{rows[0].file}: {dropped} of {len(rows)} lines repeat an earlier line exactly (same image, same "
                f"labels; e.g. line {example.line} repeats line {first[example.path].line}); they are dropped, "
                f"{len(kept)} remain",
                DuplicateLinesWarning,
                stacklevel=3,
            )
        return kept

    def _read_single(self, path: Path) -> list[_Row]:
        rows = []
        for line_no, line in enumerate(self._read_lines(path), 1):
            tokens = line.split()
            if not tokens:
                continue
            rel = self._check_path(tokens[0], path, line_no)
            rows.append(_Row(rel, self._parse_labels(tokens[1:], path, line_no), path, path, line_no))
        return rows

    def _read_pair(self, img_file: Path, label_file: Path) -> list[_Row]:
        paths = _strip_trailing_blank(self._read_lines(img_file))
        labels = _strip_trailing_blank(self._read_lines(label_file))
        # A blank line inside a pair would silently shift every later path against its labels.
        for f, lines in ((img_file, paths), (label_file, labels)):
            for line_no, line in enumerate(lines, 1):
                if not line.strip():
                    raise DataError(
                        f"{f}:{line_no}: blank line inside the list; "
                        "the two files of a pair are matched line by line, remove it"
                    )
        if len(paths) != len(labels):
            shorter, longer = (img_file, label_file) if len(paths) < len(labels) else (label_file, img_file)
            first_extra = min(len(paths), len(labels)) + 1
            raise DataError(
                f"{longer}:{first_extra}: no counterpart in {shorter} ({img_file.name} has {len(paths)} lines, "
                f"{label_file.name} has {len(labels)}); the two files must list the same items in the same order"
            )
        rows = []
        for line_no, (path_line, label_line) in enumerate(zip(paths, labels, strict=True), 1):
            rel = self._check_path(path_line.strip(), img_file, line_no)
            rows.append(
                _Row(rel, self._parse_labels(label_line.split(), label_file, line_no), img_file, label_file, line_no)
            )
        return rows

    def _check_path(self, raw: str, file: Path, line: int) -> str:
        """The normalised relative form of ``raw``; DataError for absolute paths and paths that leave the root."""
        if (
            PurePosixPath(raw).is_absolute()
            or PureWindowsPath(raw).is_absolute()
            or PureWindowsPath(raw).drive
            or raw.startswith("\\")
        ):
            raise DataError(f"{file}:{line}: image path {raw!r} is absolute; list paths relative to the image root")
        if ".." in raw.replace("\\", "/").split("/"):
            raise DataError(
                f"{file}:{line}: image path {raw!r} contains '..' and could leave the image root; "
                "list paths inside the root"
            )
        return posixpath.normpath(raw)

    def _parse_labels(self, tokens: list[str], file: Path, line: int) -> bytes:
        if not tokens:
            raise DataError(f"{file}:{line}: no label values; expected {self._width or 'C'} values, each 0 or 1")
        if self._width is None:
            self._width, self._width_origin = len(tokens), f"{file}:{line}"
        elif len(tokens) != self._width:
            raise DataError(
                f"{file}:{line}: {len(tokens)} label values, expected {self._width} "
                f"(the width set by {self._width_origin}); "
                f"every label row must have one 0/1 value per class"
            )
        values = [_LABEL_TOKENS.get(t) for t in tokens]
        if None in values:
            for column, token in enumerate(tokens, 1):
                values[column - 1] = _parse_label_value(token, file, line, column)
        return bytes(values)  # type: ignore[arg-type]

    def _merge(self, rows: dict[str, list[_Row]]) -> tuple[list[_Row], dict[str, list[int]]]:
        """Deduplicate the lists (each already free of repeated lines) by path into items; each list as
        item indices."""
        index: dict[str, int] = {}
        items: list[_Row] = []
        splits: dict[str, list[int]] = {}
        for split, split_rows in rows.items():
            members = []
            for row in split_rows:
                j = index.get(row.path)
                if j is None:
                    j = index[row.path] = len(items)
                    items.append(row)
                elif items[j].labels != row.labels:
                    first = items[j]
                    raise DataError(
                        f"{row.label_file}:{row.line}: image {row.path!r} has a different label than at "
                        f"{first.label_file}:{first.line}; an image must have one label in every list"
                    )
                members.append(j)
            splits[split] = members
        return items, splits

    @staticmethod
    def _check_disjoint(rows: dict[str, list[_Row]], splits: dict[str, list[int]]) -> None:
        """Queries must be unseen: none may be listed in the database or the train list."""
        if "query" not in rows:  # one full list: the drawn split keeps them apart
            return
        for other in ("database", "train"):
            members = set(splits[other])
            clashes = [row for row, j in zip(rows["query"], splits["query"], strict=True) if j in members]
            if clashes:
                first = clashes[0]
                where = next(r for r in rows[other] if r.path == first.path)
                raise DataError(
                    f"{first.file}:{first.line}: query image {first.path!r} is also in the {other} list at "
                    f"{where.file}:{where.line} ({len(clashes)} queries are); queries must be unseen: "
                    f"the query and {other} lists must be disjoint"
                )

    def _check_images_exist(self) -> list[tuple[int, int] | str]:
        """Every listed image is a regular file (after symbolic links); each item's identity.

        The identity is ``(st_dev, st_ino)``, or the resolved path where the filesystem reports
        no inode numbers.  A named pipe, a device or a socket is refused here, at plan time: reading
        one as an image would block or never end.
        """
        root = str(self._root)
        missing: list[_Row] = []
        identities: list[tuple[int, int] | str] = []
        for row in self._items:
            full = os.path.join(root, row.path)
            try:
                info = os.stat(full)
            except (OSError, ValueError):  # ValueError: a NUL byte in the path
                missing.append(row)
                identities.append(full)
                continue
            if not stat.S_ISREG(info.st_mode):
                raise DataError(
                    f"{row.file}:{row.line}: image {full} is {_file_kind(info.st_mode)}, not a regular file; "
                    "list image files only"
                )
            identities.append((info.st_dev, info.st_ino) if info.st_ino else os.path.realpath(full))
        if missing:
            first = missing[0]
            shown = ", ".join(r.path for r in missing[:_MISSING_SHOWN]) + (
                ", …" if len(missing) > _MISSING_SHOWN else ""
            )
            raise DataError(
                f"{first.file}:{first.line}: image {os.path.join(root, first.path)} does not exist "
                f"({len(missing)} of {len(self._items)} listed images are missing: {shown}); check 'root'"
            )
        return identities

    def _check_same_files(self, rows: dict[str, list[_Row]], splits: dict[str, list[int]],
                          identities: list[tuple[int, int] | str]) -> None:
        """The same file under two paths (a symbolic link, a linked folder, a hard link): listed
        twice in one list, or a query that is a database or train image, is refused."""
        first_of: dict[str, dict[tuple[int, int] | str, _Row]] = {}
        for split in rows:
            seen = first_of[split] = {}
            for row, j in zip(rows[split], splits[split], strict=True):
                earlier = seen.setdefault(identities[j], row)
                if earlier is not row:
                    raise DataError(
                        f"{row.file}:{row.line}: image {row.path!r} is the same file as {earlier.path!r} "
                        f"at line {earlier.line} (a link); an image may be listed once per list"
                    )
        if "query" not in rows:
            return
        for other in ("database", "train"):
            for row, j in zip(rows["query"], splits["query"], strict=True):
                twin = first_of[other].get(identities[j])
                if twin is not None:
                    raise DataError(
                        f"{row.file}:{row.line}: query image {row.path!r} is the same file as {other} image "
                        f"{twin.path!r} at {twin.file}:{twin.line} (a link); queries must be unseen: "
                        f"the query and {other} lists must be disjoint"
                    )

    # -- loading images -----------------------------------------------------------------
    def _load(self, i: int, augment: bool, generator: torch.Generator | None) -> torch.Tensor:
        row = self._items[i]
        full = os.path.join(str(self._root), row.path)
        try:
            img = open_image(full)  # RGB, or F for grey deeper than 8 bits; refuses unknown modes by name
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise DataError(
                f"{full} (listed at {row.file}:{row.line}): cannot read the image ({exc}); "
                "replace the file or remove it from the list"
            ) from None
        s = self.params.image_size
        img = _resize_shorter(img, self.params.resize)
        w, h = img.size
        if augment:
            top = int(torch.randint(0, h - s + 1, (1,), generator=generator))
            left = int(torch.randint(0, w - s + 1, (1,), generator=generator))
        else:
            top, left = int(round((h - s) / 2.0)), int(round((w - s) / 2.0))
        img = img.crop((left, top, left + s, top + s))
        if augment and float(torch.rand(1, generator=generator)) < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return to_tensor(img)


def _resize_shorter(img: Image.Image, size: int) -> Image.Image:
    """Resize so the shorter side is ``size`` (torchvision ``Resize(int)`` semantics, bilinear)."""
    w, h = img.size
    if w <= h:
        new_w, new_h = size, int(size * h / w)
    else:
        new_w, new_h = int(size * w / h), size
    if (new_w, new_h) == (w, h):
        return img
    return img.resize((new_w, new_h), Image.Resampling.BILINEAR)


def _parse_label_value(token: str, file: Path, line: int, column: int) -> int:
    try:
        value = float(token)
    except ValueError:
        value = float("nan")
    if value not in (0.0, 1.0):
        raise DataError(f"{file}:{line}: label value {token!r} in column {column} is not 0 or 1")
    return int(value)


def _file_kind(mode: int) -> str:
    """What a non-regular file is, for messages."""
    for test, kind in ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return kind
    return "not a regular file"


def _strip_trailing_blank(lines: list[str]) -> list[str]:
    end = len(lines)
    while end and not lines[end - 1].strip():
        end -= 1
    return lines[:end]
