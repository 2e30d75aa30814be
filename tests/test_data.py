"""Datasets (shapes, listfile), splits and target-label selection; offline, CPU."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hashbench.api.dataset import HashDataset, PredefinedSplit
from hashbench.data import Split, make_split, select_target_labels
from hashbench.data.listfile import ListFile, UnlabeledItemsWarning
from hashbench.data.shapes import SHAPE_KINDS, Shapes
from hashbench.errors import ArtifactError, ConfigError, DataError

# -- shapes ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shapes() -> Shapes:
    return Shapes.from_params({"num_items": 300})


def test_shapes_is_deterministic_for_its_params(shapes: Shapes) -> None:
    again = Shapes.from_params({"num_items": 300})
    idx = np.arange(len(shapes))
    assert shapes.images(idx).numpy().tobytes() == again.images(idx).numpy().tobytes()
    assert np.array_equal(shapes.labels, again.labels)
    assert shapes.fingerprint() == again.fingerprint()


def test_shapes_another_seed_gives_other_content(shapes: Shapes) -> None:
    other = Shapes.from_params({"num_items": 300, "seed": 1})
    idx = np.arange(len(shapes))
    assert not torch.equal(shapes.images(idx), other.images(idx))
    assert not np.array_equal(shapes.labels, other.labels)
    assert shapes.fingerprint() != other.fingerprint()


def test_shapes_default_images_and_labels() -> None:
    data = Shapes()
    assert isinstance(data, HashDataset)
    assert len(data) == 2000 and data.num_classes == 6 and data.image_size == 32
    x = data.images(np.arange(50))
    assert x.shape == (50, 3, 32, 32) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    labels = data.labels
    assert labels.dtype == np.uint8 and set(np.unique(labels)) <= {0, 1}
    per_image = labels.sum(axis=1)
    assert per_image.min() == 1 and per_image.max() == 3  # no all-zero row
    assert (labels.mean(axis=0) > 0.2).all()  # every class is common
    assert data.predefined_split() is None
    assert data.class_names == SHAPE_KINDS[:6]


def test_shapes_size_count_and_classes_are_configurable() -> None:
    data = Shapes.from_params(
        {"num_items": 40, "image_size": 48, "num_classes": len(SHAPE_KINDS), "min_shapes": 2, "max_shapes": 4}
    )
    assert len(data) == 40 and data.labels.shape == (40, len(SHAPE_KINDS))
    assert data.images([0, 5, 39]).shape == (3, 3, 48, 48)
    assert data.labels.sum(axis=1).min() >= 2 and data.labels.sum(axis=1).max() <= 4


def test_shapes_accepts_index_lists_and_tensors(shapes: Shapes) -> None:
    a = shapes.images(np.array([3, 1]))
    assert torch.equal(a, shapes.images([3, 1]))
    assert torch.equal(a, shapes.images(torch.tensor([3, 1])))


def test_shapes_augmentation_is_a_seeded_horizontal_flip(shapes: Shapes) -> None:
    idx = np.arange(64)
    plain = shapes.images(idx)
    a = shapes.images(idx, augment=True, generator=torch.Generator().manual_seed(7))
    b = shapes.images(idx, augment=True, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    flipped = torch.tensor(
        [torch.equal(a[i], plain[i].flip(-1)) and not torch.equal(a[i], plain[i]) for i in range(64)]
    )
    kept = torch.tensor([torch.equal(a[i], plain[i]) for i in range(64)])
    assert bool((flipped | kept).all()) and 10 < int(flipped.sum()) < 54
    c = shapes.images(idx, augment=True, generator=torch.Generator().manual_seed(8))
    assert not torch.equal(a, c)


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"num_classes": 0}, "num_classes"),
        ({"num_classes": len(SHAPE_KINDS) + 1}, "num_classes"),
        ({"num_items": 0}, "num_items"),
        ({"image_size": 8}, "image_size"),
        ({"min_shapes": 3, "max_shapes": 2}, "max_shapes"),
        ({"num_classes": 2, "max_shapes": 3}, "max_shapes"),
        ({"max_shapes": 5, "num_classes": 6, "image_size": 16}, "max_shapes"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_shapes_rejects_bad_params(values: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        Shapes.from_params(values)


def test_shapes_fingerprint_depends_on_every_param(shapes: Shapes) -> None:
    base = {"num_items": 300}
    prints = {
        Shapes.from_params({**base, **extra}).fingerprint() for extra in ({}, {"max_shapes": 2}, {"image_size": 24})
    }
    assert len(prints) == 3 and shapes.fingerprint() in prints
    assert re.fullmatch(r"[0-9a-f]{16}", shapes.fingerprint())


# -- listfile ----------------------------------------------------------------------------

STEMS = {"train": "train", "query": "test", "database": "database"}
ROWS = {
    "train": [("img/a.png", "1 0 0"), ("img/b.png", "0 1 0"), ("img/c.png", "0 0 1")],
    "query": [("img/q1.png", "1 1 0"), ("img/q2.png", "0 0 1")],
    "database": [("img/a.png", "1 0 0"), ("img/b.png", "0 1 0"), ("img/c.png", "0 0 1"), ("img/d.png", "1 0 1")],
}


def _write_image(path: Path, size: tuple[int, int] = (40, 30), seed: int = 0) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return pixels


def _write_lists(list_dir: Path, fmt: str, rows: dict[str, list[tuple[str, str]]]) -> None:
    list_dir.mkdir(parents=True, exist_ok=True)
    for split, stem in STEMS.items():
        if fmt == "single":
            (list_dir / f"{stem}.txt").write_text("".join(f"{p} {lab}\n" for p, lab in rows[split]))
        else:
            (list_dir / f"{stem}_img.txt").write_text("".join(f"{p}\n" for p, _ in rows[split]))
            (list_dir / f"{stem}_label.txt").write_text("".join(f"{lab}\n" for _, lab in rows[split]))


def _make(tmp_path: Path, fmt: str = "single", rows: dict | None = None, images: bool = True) -> Path:
    rows = rows if rows is not None else ROWS
    if images:
        for i, path in enumerate(
            sorted({p for lst in rows.values() for p, _ in lst if not p.startswith("/") and ".." not in p})
        ):
            _write_image(tmp_path / path, seed=i)
    _write_lists(tmp_path, fmt, rows)
    return tmp_path


def _open(root: Path, **params) -> ListFile:
    return ListFile.from_params({"root": str(root), "image_size": 16, "resize": 20, **params})


@pytest.mark.parametrize("fmt", ["single", "pair"])
def test_listfile_reads_labels_and_splits(tmp_path: Path, fmt: str) -> None:
    data = _open(_make(tmp_path, fmt))
    assert data.format == fmt
    assert data.paths == ["img/a.png", "img/b.png", "img/c.png", "img/q1.png", "img/q2.png", "img/d.png"]
    assert data.labels.dtype == np.uint8 and data.num_classes == 3 and len(data) == 6
    assert data.labels.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 0, 1], [1, 0, 1]]
    split = data.predefined_split()
    assert isinstance(split, PredefinedSplit)
    assert (
        split.train.tolist() == [0, 1, 2] and split.query.tolist() == [3, 4] and split.database.tolist() == [0, 1, 2, 5]
    )
    x = data.images(np.arange(6))
    assert x.shape == (6, 3, 16, 16) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0


def test_listfile_both_formats_give_the_same_dataset(tmp_path: Path) -> None:
    single = _open(_make(tmp_path / "s", "single"))
    pair = _open(_make(tmp_path / "p", "pair"))
    assert np.array_equal(single.labels, pair.labels) and single.paths == pair.paths
    assert torch.equal(single.images(np.arange(6)), pair.images(np.arange(6)))


def test_listfile_list_dir_split_files_and_explicit_format(tmp_path: Path) -> None:
    root = tmp_path / "images"
    _make(root, "pair")
    lists = tmp_path / "lists"
    lists.mkdir()
    for name in ("train", "database"):
        for part in ("img", "label"):
            (root / f"{name}_{part}.txt").rename(lists / f"{name}_{part}.txt")
    for part in ("img", "label"):
        (root / f"test_{part}.txt").rename(lists / f"query_{part}.txt")
    data = _open(root, list_dir=str(lists), format="pair", split_files={"query": "query"})
    assert len(data.predefined_split().query) == 2
    with pytest.raises(DataError, match=r"lists/query\.txt") as err:
        _open(root, list_dir=str(lists), format="single", split_files={"query": "query"})
    assert "format 'pair'" not in str(err.value)


def test_listfile_center_crop_matches_torchvision_semantics(tmp_path: Path) -> None:
    # 40×20 image, resize 20: the shorter side already is 20, so the output is a pure centre crop.
    pixels = _write_image(tmp_path / "img/a.png", size=(40, 20))
    _write_image(tmp_path / "img/q.png")
    _write_lists(
        tmp_path,
        "single",
        {"train": [("img/a.png", "1 0")], "query": [("img/q.png", "0 1")], "database": [("img/a.png", "1 0")]},
    )
    x = _open(tmp_path).images([0])[0]
    expected = torch.from_numpy(pixels[2:18, 12:28]).permute(2, 0, 1).float() / 255
    assert torch.allclose(x, expected)


def test_listfile_augmentation_is_a_seeded_random_crop_and_flip(tmp_path: Path) -> None:
    pixels = _write_image(tmp_path / "img/a.png", size=(40, 20))
    _write_image(tmp_path / "img/q.png")
    _write_lists(
        tmp_path,
        "single",
        {"train": [("img/a.png", "1 0")], "query": [("img/q.png", "0 1")], "database": [("img/a.png", "1 0")]},
    )
    data = _open(tmp_path)
    idx = np.zeros(12, dtype=np.int64)
    a = data.images(idx, augment=True, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, data.images(idx, augment=True, generator=torch.Generator().manual_seed(3)))
    full = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255
    candidates = {
        (top, left, flip): window.flip(-1) if flip else window
        for top in range(5)
        for left in range(25)
        for flip in (False, True)
        for window in [full[:, top : top + 16, left : left + 16]]
    }
    found = [next(key for key, w in candidates.items() if torch.equal(a[k], w)) for k in range(12)]  # each is a window
    assert len(set(found)) > 2 and {flip for *_, flip in found} == {False, True}


def test_listfile_test_transform_equals_torchvision(tmp_path: Path) -> None:
    transforms = pytest.importorskip("torchvision.transforms")
    sizes = {"img/a.png": (37, 29), "img/q.png": (29, 53), "img/d.png": (100, 61)}
    for i, (path, size) in enumerate(sizes.items()):
        _write_image(tmp_path / path, size=size, seed=i)
    rows = {"train": [("img/a.png", "1 0")], "query": [("img/q.png", "0 1")], "database": [("img/d.png", "1 1")]}
    _write_lists(tmp_path, "single", rows)
    ours = _open(tmp_path).images(np.arange(3))
    reference = transforms.Compose([transforms.Resize(20), transforms.CenterCrop(16), transforms.ToTensor()])
    for k, path in enumerate(sizes):
        assert torch.equal(ours[k], reference(Image.open(tmp_path / path).convert("RGB")))


def test_listfile_auto_with_both_formats_asks_for_format(tmp_path: Path) -> None:
    root = _make(tmp_path, "single")
    _write_lists(root, "pair", ROWS)
    with pytest.raises(DataError, match="set 'format'"):
        _open(root)
    assert _open(root, format="pair").format == "pair"


def test_listfile_missing_list_file_names_what_was_looked_for(tmp_path: Path) -> None:
    root = _make(tmp_path, "pair")
    (root / "database_label.txt").unlink()
    with pytest.raises(DataError) as err:
        _open(root)
    assert "database_label.txt" in str(err.value) and "database.txt" in str(err.value)
    with pytest.raises(DataError, match="database_label.txt"):
        _open(root, format="pair")


def _error(tmp_path: Path, fmt: str, rows: dict, **params) -> str:
    with pytest.raises(DataError) as err:
        _open(_make(tmp_path, fmt, rows), **params)
    return str(err.value)


def _with(split: str, rows: list[tuple[str, str]]) -> dict:
    return {**ROWS, split: rows}


@pytest.mark.parametrize("fmt", ["single", "pair"])
def test_listfile_label_row_of_wrong_width(tmp_path: Path, fmt: str) -> None:
    msg = _error(tmp_path, fmt, _with("query", [("img/q1.png", "1 1 0"), ("img/q2.png", "0 1")]))
    name = "test.txt" if fmt == "single" else "test_label.txt"
    assert f"{name}:2" in msg and "2 label values, expected 3" in msg


def test_listfile_num_classes_sets_the_width(tmp_path: Path) -> None:
    msg = _error(tmp_path, "single", ROWS, num_classes=4)
    assert "train.txt:1" in msg and "num_classes" in msg


@pytest.mark.parametrize("fmt", ["single", "pair"])
@pytest.mark.parametrize("value", ["2", "-1", "x", "0.5"])
def test_listfile_label_value_not_0_or_1(tmp_path: Path, fmt: str, value: str) -> None:
    msg = _error(tmp_path, fmt, _with("database", [*ROWS["database"][:2], ("img/c.png", f"0 0 {value}")]))
    name = "database.txt" if fmt == "single" else "database_label.txt"
    assert f"{name}:3" in msg and repr(value) in msg and "column 3" in msg


def test_listfile_float_zero_one_labels_are_accepted(tmp_path: Path) -> None:
    rows = _with("query", [("img/q1.png", "1.0 1.0 0.0"), ("img/q2.png", "0 0 1")])
    assert _open(_make(tmp_path, "single", rows)).labels[3].tolist() == [1, 1, 0]


@pytest.mark.parametrize("fmt", ["single", "pair"])
def test_listfile_empty_split(tmp_path: Path, fmt: str) -> None:
    msg = _error(tmp_path, fmt, _with("train", []))
    assert ("train.txt" if fmt == "single" else "train_img.txt") in msg and "empty" in msg


@pytest.mark.parametrize("fmt", ["single", "pair"])
def test_listfile_same_path_twice_in_one_file_with_other_labels(tmp_path: Path, fmt: str) -> None:
    """Refused (which label is right?); an exact repeat is dropped instead (tests/test_splits_drawn.py)."""
    msg = _error(tmp_path, fmt, _with("database", [*ROWS["database"], ("img/./b.png", "1 1 0")]))
    name = "database.txt" if fmt == "single" else "database_label.txt"
    assert f"{name}:5" in msg and "line 2" in msg and "img/b.png" in msg and "different labels" in msg


def test_listfile_same_path_with_different_labels(tmp_path: Path) -> None:
    msg = _error(
        tmp_path, "single", _with("database", [("img/a.png", "1 0 0"), ("img/b.png", "1 1 0"), ("img/d.png", "1 0 1")])
    )
    assert "database.txt:2" in msg and "train.txt:2" in msg and "img/b.png" in msg


def test_listfile_query_in_database(tmp_path: Path) -> None:
    msg = _error(tmp_path, "single", _with("database", [*ROWS["database"], ("img/q2.png", "0 0 1")]))
    assert "test.txt:2" in msg and "database.txt:5" in msg and "disjoint" in msg


@pytest.mark.parametrize("fmt", ["single", "pair"])
@pytest.mark.parametrize(
    "bad", ["/etc/passwd", "../outside.png", "img/../../outside.png", "C:\\images\\a.png", "\\\\server\\a.png"]
)
def test_listfile_rejects_paths_outside_the_root(tmp_path: Path, fmt: str, bad: str) -> None:
    msg = _error(tmp_path, fmt, _with("query", [("img/q1.png", "1 1 0"), (bad, "0 0 1")]))
    name = "test.txt" if fmt == "single" else "test_img.txt"
    assert f"{name}:2" in msg and repr(bad) in msg


def test_listfile_missing_image(tmp_path: Path) -> None:
    root = _make(tmp_path, "single")
    (root / "img/d.png").unlink()
    with pytest.raises(DataError) as err:
        _open(root)
    assert "database.txt:4" in str(err.value) and "d.png" in str(err.value) and "1 of 6" in str(err.value)


def test_listfile_corrupt_image_fails_when_loaded(tmp_path: Path) -> None:
    root = _make(tmp_path, "single")
    (root / "img/q2.png").write_bytes(b"not a png at all")
    data = _open(root)  # existence is checked up front, contents only when loading
    data.images([0, 1])
    with pytest.raises(DataError) as err:
        data.images([4])
    assert "q2.png" in str(err.value) and "test.txt:2" in str(err.value)


def test_listfile_pair_files_of_different_length(tmp_path: Path) -> None:
    root = _make(tmp_path, "pair")
    with (root / "train_label.txt").open("a") as f:
        f.write("1 1 1\n")
    with pytest.raises(DataError) as err:
        _open(root)
    assert "train_label.txt:4" in str(err.value) and "train_img.txt" in str(err.value)


def test_listfile_blank_line_inside_pair_file(tmp_path: Path) -> None:
    root = _make(tmp_path, "pair")
    (root / "test_img.txt").write_text("img/q1.png\n\nimg/q2.png\n")
    with pytest.raises(DataError, match=r"test_img.txt:2: blank line"):
        _open(root)


def test_listfile_tolerates_bom_and_crlf_but_not_bad_utf8(tmp_path: Path) -> None:
    root = _make(tmp_path, "single")
    (root / "test.txt").write_bytes(b"\xef\xbb\xbfimg/q1.png 1 1 0\r\nimg/q2.png 0 0 1\r\n")
    assert _open(root).paths[3:5] == ["img/q1.png", "img/q2.png"]
    (root / "test.txt").write_bytes(b"img/q1.png 1 1 0\nimg/q\xff.png 0 0 1\n")
    with pytest.raises(DataError, match=r"test.txt:2: not valid UTF-8"):
        _open(root)


def test_listfile_unlabeled_rows_are_kept_and_warned_about(tmp_path: Path) -> None:
    rows = _with("database", [*ROWS["database"], ("img/e.png", "0 0 0")])
    root = _make(tmp_path, "single", rows)
    with pytest.warns(UnlabeledItemsWarning, match=r"database.txt: 1 of 5 label rows are all zero"):
        data = _open(root)
    assert len(data) == 7 and not data.labels[6].any()
    assert data.unlabeled_counts == {"train": 0, "query": 0, "database": 1}


def test_listfile_drop_unlabeled(tmp_path: Path) -> None:
    rows = _with("database", [*ROWS["database"], ("img/e.png", "0 0 0")])
    root = _make(tmp_path, "single", rows)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = _open(root, drop_unlabeled=True)
    assert len(data) == 6 and "img/e.png" not in data.paths and data.labels.sum(axis=1).min() > 0


def test_listfile_fingerprint_follows_list_contents_and_params(tmp_path: Path) -> None:
    root = _make(tmp_path, "single")
    first = _open(root).fingerprint()
    assert _open(root).fingerprint() == first
    assert _open(root, image_size=12).fingerprint() != first
    _write_image(root / "img/a.png", seed=99)  # image contents are not part of it
    assert _open(root).fingerprint() == first
    with (root / "database.txt").open("a") as f:
        f.write("img/q1.png 1 1 0\n".replace("q1", "a2"))
    _write_image(root / "img/a2.png")
    assert _open(root).fingerprint() != first


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"resize": 10}, "resize"),
        ({"split_files": {"val": "val"}}, "split_files"),
        ({"format": "csv"}, "format"),
        ({"num_classes": 0}, "num_classes"),
    ],
)
def test_listfile_rejects_bad_params(tmp_path: Path, values: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        _open(tmp_path, **values)


def test_listfile_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a directory"):
        _open(tmp_path / "nope")


# -- splits ------------------------------------------------------------------------------


def test_make_split_sizes_and_disjointness(shapes: Shapes) -> None:
    split = make_split(shapes, num_query=50, num_train=100, seed=0)
    assert (len(split.query), len(split.database), len(split.train)) == (50, 250, 100)
    assert np.intersect1d(split.query, split.database).size == 0
    assert np.isin(split.train, split.database).all()
    for arr in (split.train, split.query, split.database):
        assert arr.dtype == np.int64 and np.all(np.diff(arr) > 0)
    assert split.target_labels.shape == (50, shapes.num_classes) and split.target_labels.dtype == np.uint8
    limited = make_split(shapes, num_query=50, num_train=20, seed=0, num_database=120)
    assert len(limited.database) == 120 and np.isin(limited.train, limited.database).all()


def test_make_split_is_deterministic(shapes: Shapes) -> None:
    a = make_split(shapes, num_query=50, num_train=100, seed=3)
    b = make_split(Shapes.from_params({"num_items": 300}), num_query=50, num_train=100, seed=3)
    assert a == b and a.hash() == b.hash() and re.fullmatch(r"[0-9a-f]{16}", a.hash())
    c = make_split(shapes, num_query=50, num_train=100, seed=4)
    assert not np.array_equal(a.query, c.query) and a.hash() != c.hash() and a != c


def test_split_hash_is_a_pure_function_of_the_arrays() -> None:
    split = Split(train=[0, 2], query=[1], database=[0, 2, 3], target_labels=[[0, 1]], seed=5)
    assert (
        split.hash()
        == Split(train=np.array([0, 2]), query=[1], database=[0, 2, 3], target_labels=[[0, 1]], seed=9).hash()
    )
    assert split.hash() == "e6d807718bbd47f5"  # pinned: results record it, so it must not drift
    assert split.hash() != Split(train=[0, 2], query=[1], database=[0, 2, 3], target_labels=[[1, 0]], seed=5).hash()
    with pytest.raises(AttributeError):
        split.seed = 1  # frozen


def test_split_tensor_round_trip(shapes: Shapes) -> None:
    split = make_split(shapes, num_query=20, num_train=30, seed=1)
    tensors = split.to_tensors()
    assert tensors["train"].dtype == torch.int64 and tensors["target_labels"].dtype == torch.uint8
    back = Split.from_tensors(tensors, seed=1)
    assert back == split and back.hash() == split.hash()
    with pytest.raises(ArtifactError, match="query"):
        Split.from_tensors({**tensors, "query": tensors["query"].to(torch.int32)}, seed=1)
    with pytest.raises(ArtifactError, match="target_labels"):
        Split.from_tensors({k: v for k, v in tensors.items() if k != "target_labels"}, seed=1)


def test_target_labels_share_no_class_with_their_query(shapes: Shapes) -> None:
    split = make_split(shapes, num_query=100, num_train=50, seed=2)
    query_labels = shapes.labels[split.query]
    assert not (query_labels & split.target_labels).any()
    present = {row.tobytes() for row in shapes.labels[split.database]}
    assert all(t.any() and t.tobytes() in present for t in split.target_labels)


def test_select_target_labels_fallback_and_uniformity() -> None:
    query = np.array([[1, 1, 1], [1, 0, 0], [0, 1, 1]], dtype=np.uint8)
    database = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0], [1, 0, 0]], dtype=np.uint8)
    targets, fallbacks = select_target_labels(query, database, np.random.default_rng(0))
    assert fallbacks == 1
    assert targets[0].sum() == 1  # fewest shared classes: [1,0,0] or [0,1,0], never [1,1,0]
    assert targets[1].tolist() == [0, 1, 0] and targets[2].tolist() == [1, 0, 0]
    again, _ = select_target_labels(query, database, np.random.default_rng(0))
    assert np.array_equal(targets, again)
    picks = select_target_labels(np.repeat(query[:1], 400, axis=0), database, np.random.default_rng(1))[0]
    share = picks[:, 0].mean()
    assert 0.4 < share < 0.6 and picks.sum(axis=1).max() == 1


def test_select_target_labels_needs_a_labelled_database() -> None:
    with pytest.raises(DataError, match="no database item has a label"):
        select_target_labels(np.ones((2, 3), np.uint8), np.zeros((4, 3), np.uint8), np.random.default_rng(0))


@pytest.mark.parametrize(
    ("sizes", "key"),
    [
        ({"num_query": 300, "num_train": 10}, "num_query"),
        ({"num_query": 250, "num_train": 100}, "num_train"),
        ({"num_query": 100, "num_train": 10, "num_database": 250}, "num_database"),
        ({"num_query": 100, "num_train": 60, "num_database": 50}, "num_train"),
        ({"num_query": 0, "num_train": 10}, "num_query"),
        ({"num_query": 10, "num_train": 0}, "num_train"),
    ],
)
def test_make_split_rejects_impossible_sizes(shapes: Shapes, sizes: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        make_split(shapes, seed=0, **sizes)


def test_make_split_keeps_a_predefined_split_and_draws_targets(tmp_path: Path) -> None:
    data = _open(_make(tmp_path, "single"))
    split = make_split(data, num_query=1000, num_train=5000, seed=0)  # sizes ignored
    assert (
        split.train.tolist() == [0, 1, 2] and split.query.tolist() == [3, 4] and split.database.tolist() == [0, 1, 2, 5]
    )
    # q1 = [1,1,0] can only get [0,0,1]; q2 = [0,0,1] gets [1,0,0] or [0,1,0].
    assert split.target_labels[0].tolist() == [0, 0, 1]
    seen = {tuple(make_split(data, num_query=1, num_train=1, seed=s).target_labels[1]) for s in range(20)}
    assert seen == {(1, 0, 0), (0, 1, 0)}
