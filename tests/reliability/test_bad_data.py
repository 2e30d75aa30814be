"""Bad data in a list-file dataset: the error names the file and the line, before any work.

The list-file reader's unit tests (tests/test_data.py) cover each fault of the files
themselves; here the same faults go through ``hashbench run`` (exit code 2, one line,
nothing written), plus the faults found only while images load (the cells of that
dataset fail, naming the image and its list line; the other dataset's cells are kept),
and a few files the unit tests do not try.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Callable

import pytest

from hashbench.data.images import MODES
from hashbench.data.listfile import ListFile, UnlabeledItemsWarning
from hashbench.data.splits import make_split
from hashbench.errors import DataError
from hashbench.results import read_records

from .conftest import add_list_grid, assert_clear_error, invoke, write_list_dataset


def _replace_line(file: Path, line: int, text: str) -> None:
    lines = file.read_text().splitlines()
    lines[line - 1] = text
    file.write_text("\n".join(lines) + "\n")


def _drop_line(file: Path, line: int) -> None:
    lines = file.read_text().splitlines()
    del lines[line - 1]
    file.write_text("\n".join(lines) + "\n")


_SOCKETS: list[socket.socket] = []


def _bind_socket(path: Path) -> None:
    """A Unix socket at ``path`` (kept open until the test session ends)."""
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    _SOCKETS.append(sock)


# (case id, change to the dataset folder, substrings of the message)
FILE_FAULTS: list[tuple[str, Callable[[Path], None], tuple[str, ...]]] = [
    ("missing-image", lambda r: (r / "img/17.png").unlink(),
     ("test.txt:2: image", "17.png does not exist", "1 of 20 listed images are missing")),
    ("label-row-too-short", lambda r: _replace_line(r / "database.txt", 5, "img/4.png 1 0"),
     ("database.txt:5: 2 label values, expected 3",)),
    ("label-not-binary", lambda r: _replace_line(r / "train.txt", 3, "img/2.png 0 2 1"),
     ("train.txt:3: label value '2' in column 2 is not 0 or 1",)),
    ("label-not-a-number", lambda r: _replace_line(r / "test.txt", 1, "img/16.png 1 yes 0"),
     ("test.txt:1: label value 'yes' in column 2 is not 0 or 1",)),
    ("empty-split", lambda r: (r / "train.txt").write_text("\n\n"), ("train.txt: the train list is empty",)),
    # issue 19: a line repeated exactly (same path, same labels) is dropped with a warning (the CgAT
    # group's published lists repeat 504 train lines); the same path with other labels stays refused:
    # which label is right cannot be guessed, and keeping either would change the ground truth
    ("duplicated-path-other-labels", lambda r: _replace_line(r / "test.txt", 4, "img/16.png 0 1 0"),
     ("test.txt:4: image 'img/16.png' is listed twice in this file with different labels (also line 1)",)),
    ("path-with-dot-dot", lambda r: _replace_line(r / "test.txt", 2, "../outside.png 0 1 0"),
     ("test.txt:2: image path '../outside.png' contains '..'",)),
    ("absolute-path", lambda r: _replace_line(r / "database.txt", 1, "/etc/passwd 1 0 0"),
     ("database.txt:1: image path '/etc/passwd' is absolute",)),
    ("missing-list-file", lambda r: (r / "database.txt").unlink(), ("list files not found", "database.txt")),
    ("query-in-database", lambda r: _replace_line(r / "test.txt", 1, "img/3.png 1 1 0"),
     ("test.txt:1: query image 'img/3.png' is also in the database list at", "database.txt:4")),
    # issue 23: queries must be unseen, and the same file under another path is the same image
    ("query-in-train", lambda r: (_drop_line(r / "database.txt", 4), _replace_line(r / "test.txt", 1, "img/3.png 1 1 0")),
     ("test.txt:1: query image 'img/3.png' is also in the train list at", "train.txt:4", "queries must be unseen")),
    ("query-via-linked-folder", lambda r: ((r / "alias").symlink_to(r / "img"),
                                           _replace_line(r / "test.txt", 1, "alias/3.png 1 1 0")),
     ("test.txt:1: query image 'alias/3.png' is the same file as database image 'img/3.png' at", "database.txt:4")),
    ("query-hard-link", lambda r: (os.link(r / "img/3.png", r / "img/q.png"),
                                   _replace_line(r / "test.txt", 2, "img/q.png 1 1 0")),
     ("test.txt:2: query image 'img/q.png' is the same file as database image 'img/3.png' at", "database.txt:4")),
    ("same-file-twice-in-a-list", lambda r: ((r / "alias").symlink_to(r / "img"),
                                             _replace_line(r / "database.txt", 16, "alias/0.png 1 0 0")),
     ("database.txt:16: image 'alias/0.png' is the same file as 'img/0.png' at line 1",)),
    ("device-image", lambda r: ((r / "img/5.png").unlink(), (r / "img/5.png").symlink_to("/dev/null")),
     ("train.txt:6: image", "5.png is a character device, not a regular file")),
    ("socket-image", lambda r: ((r / "img/18.png").unlink(), _bind_socket(r / "img/18.png")),
     ("test.txt:3: image", "18.png is a socket, not a regular file")),
    ("folder-image", lambda r: ((r / "img/18.png").unlink(), (r / "img/18.png").mkdir()),
     ("test.txt:3: image", "18.png is a folder, not a regular file")),
]


@pytest.mark.parametrize(("fault", "needles"), [c[1:] for c in FILE_FAULTS], ids=[c[0] for c in FILE_FAULTS])
def test_bad_list_files_fail_the_run_before_any_work(write_registry, tmp_path: Path, fault, needles) -> None:
    root = write_list_dataset(tmp_path / "data")
    fault(root)
    registry = write_registry(lambda raw: add_list_grid(raw, root))
    results = tmp_path / "results"
    result = invoke("run", "--grid", "lists", "--registry", str(registry), "--results-dir", str(results), "--quiet")
    assert_clear_error(result, "datasets.lists: ", str(root), *needles)
    assert not results.exists()


@pytest.fixture(scope="module")
def corrupt_image_run(tmp_path_factory: pytest.TempPathFactory, project_registry: dict) -> tuple[Path, object]:
    """A run of shapes-tiny + a list dataset whose query image 17 is not an image at all."""
    import copy

    import yaml

    tmp = tmp_path_factory.mktemp("corrupt")
    root = write_list_dataset(tmp / "data")
    (root / "img/17.png").write_bytes(b"<html><body>404 Not Found</body></html>")
    raw = copy.deepcopy(project_registry)
    add_list_grid(raw, root)
    registry = tmp / "registry.yaml"
    registry.write_text(yaml.safe_dump(raw))
    results = tmp / "results"
    result = invoke("run", "--grid", "lists", "--registry", str(registry), "--results-dir", str(results),
                    "--quiet", "--no-report")
    return results, result


def test_an_unreadable_image_fails_only_its_cells(corrupt_image_run) -> None:
    results, result = corrupt_image_run
    assert result.exit_code == 1, result.output
    manifest = json.loads((results / "lists" / "run.json").read_text())
    failed = manifest["failed"]
    assert [f["cell_id"] for f in failed] == ["lists-dpsh-smallcnn-16-none-clean-s0"]
    error = failed[0]["error"]
    assert "img/17.png" in error and "test.txt:2" in error and "cannot read the image" in error
    # the other dataset's cell finished and its record is there
    kept = [r["cell_id"] for r in read_records("lists", results) if r.get("metrics")]
    assert "shapes-tiny-dpsh-smallcnn-16-none-clean-s0" in kept


def test_rerun_after_fixing_the_image_keeps_finished_work(corrupt_image_run, tmp_path: Path) -> None:
    results, _ = corrupt_image_run
    registry = results.parent / "registry.yaml"
    root = results.parent / "data"
    from PIL import Image

    Image.new("RGB", (32, 32), (10, 200, 30)).save(root / "img/17.png")
    result = invoke("run", "--grid", "lists", "--registry", str(registry), "--results-dir", str(results),
                    "--quiet", "--no-report")
    assert result.exit_code == 0, result.output
    manifest = json.loads((results / "lists" / "run.json").read_text())
    # the list dataset's model was trained before its encode stage hit the bad image: kept, as
    # is everything of shapes-tiny; only the failed stage and what follows it run again
    assert manifest["stages"]["executed_by_kind"] == {"encode": 1, "evaluate": 1}
    assert {r["cell_id"] for r in read_records("lists", results)} == {
        "shapes-tiny-dpsh-smallcnn-16-none-clean-s0", "lists-dpsh-smallcnn-16-none-clean-s0"}


def test_all_zero_label_rows_are_kept_with_a_warning_and_a_count(write_registry, tmp_path: Path) -> None:
    root = write_list_dataset(tmp_path / "data")
    _replace_line(root / "database.txt", 13, "img/12.png 0 0 0")
    _replace_line(root / "database.txt", 14, "img/13.png 0 0 0")
    registry = write_registry(lambda raw: add_list_grid(raw, root))
    # the CLI prints it as a Python warning on stderr; under pytest it is captured here
    with pytest.warns(UnlabeledItemsWarning, match=r"database.txt: 2 of 16 label rows are all zero .* drop_unlabeled"):
        result = invoke("plan", "--grid", "lists", "--registry", str(registry), "--results-dir", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    assert "2 cells" in result.output


# -- faults the unit tests do not try ----------------------------------------------------------

def _open(root: Path) -> ListFile:
    return ListFile.from_params({"root": str(root), "image_size": 32, "resize": 32})


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[:200]), "image file is truncated"),
        (lambda p: p.write_bytes(b""), "cannot identify image file"),
    ],
    ids=["truncated", "zero-bytes"],
)
def test_damaged_images_name_the_image_and_its_list_line(tmp_path: Path, damage, reason: str) -> None:
    root = write_list_dataset(tmp_path)
    damage(root / "img/18.png")
    data = _open(root)  # existence is checked up front, contents when loading
    with pytest.raises(DataError) as err:
        data.images([data.paths.index("img/18.png")])
    message = str(err.value)
    assert "img/18.png" in message and "test.txt:3" in message and reason in message
    assert "replace the file or remove it from the list" in message


def test_a_named_pipe_listed_as_an_image_is_refused_when_the_lists_are_checked(tmp_path: Path) -> None:
    """Reading a FIFO as an image would block for ever (the run hung); it fails at plan time.
    (Through ``hashbench run`` the same error is the one line of exit code 2, as for the device,
    socket and folder cases of test_bad_list_files_fail_the_run_before_any_work.)"""
    root = write_list_dataset(tmp_path)
    (root / "img/17.png").unlink()
    os.mkfifo(root / "img/17.png")
    with pytest.raises(DataError, match=r"test.txt:2: image .*img/17.png is a named pipe \(FIFO\), not a regular file"):
        _open(root)


def test_nul_byte_in_a_path(tmp_path: Path) -> None:
    root = write_list_dataset(tmp_path)
    _replace_line(root / "test.txt", 2, "img/1\x007.png 0 1 0")
    with pytest.raises(DataError, match=r"test.txt:2: image .* does not exist"):
        _open(root)


def test_unlabeled_rows_in_the_pair_format_name_the_label_file(tmp_path: Path) -> None:
    root = write_list_dataset(tmp_path)
    for stem in ("train", "test", "database"):
        rows = [line.split(" ", 1) for line in (root / f"{stem}.txt").read_text().splitlines()]
        (root / f"{stem}_img.txt").write_text("".join(p + "\n" for p, _ in rows))
        labels = ["0 0 0" if stem == "test" and i == 1 else lab for i, (_, lab) in enumerate(rows)]
        (root / f"{stem}_label.txt").write_text("".join(lab + "\n" for lab in labels))
        (root / f"{stem}.txt").unlink()
    with pytest.warns(UnlabeledItemsWarning, match=r"test_label.txt: 1 of 4 label rows are all zero"):
        data = _open(root)
    assert data.unlabeled_counts["query"] == 1


def test_queries_seen_in_training_are_refused_in_a_predefined_split() -> None:
    """Any dataset plugin's own split, not only list files: a query may not be a training item."""
    import numpy as np

    from hashbench.api.dataset import HashDataset, PredefinedSplit

    class Leaky(HashDataset):
        name = "leaky"
        labels = np.eye(3, dtype=np.uint8)[np.arange(12) % 3]

        def predefined_split(self) -> PredefinedSplit:
            return PredefinedSplit(train=np.arange(0, 6), query=np.array([5, 10]), database=np.arange(6, 10))

    with pytest.raises(DataError, match=r"predefined query and train splits share 1 items .*queries must be unseen"):
        make_split(Leaky(), num_query=2, num_train=6, seed=0)


# -- image modes (issue 23): one reader, an explicit table of modes -----------------------------

#: grey levels of a 4×32 test image, one per row block: the darkest, two in between, the brightest
GREY = [0.0, 0.25, 0.6, 1.0]


def _grey(rows: int = 32) -> np.ndarray:
    import numpy as np

    return np.repeat(np.array(GREY, dtype=np.float64), rows // len(GREY))[:, None].repeat(32, axis=1)


def _image_of_mode(mode: str):
    """A 32×32 image of ``mode`` whose true intensities are known, and those intensities (H×W in [0, 1],
    or H×W×3 for colour modes), or None where PIL's own 8-bit conversion defines them."""
    import numpy as np
    from PIL import Image

    grey = _grey()
    if mode in ("I;16", "I;16B"):
        values = np.round(grey * 65535).astype(np.uint16)
        img = Image.fromarray(values).convert(mode) if mode != "I;16" else Image.fromarray(values)
        if mode == "I;16B":
            img = Image.frombytes("I;16B", (32, 32), values.astype(">u2").tobytes())
        return img, values / 65535
    if mode == "I":
        values = np.round(grey * 65535).astype(np.int32)
        return Image.fromarray(values, mode="I"), values / 65535
    if mode == "F":
        values = grey.astype(np.float32)
        return Image.fromarray(values, mode="F"), values
    rgb = (np.stack([grey, 1 - grey, grey / 2], axis=-1) * 255).round().astype(np.uint8)
    return Image.fromarray(rgb).convert(mode), None


#: every accepted mode that an image file opens as (PIL makes RGBa, RGBX, I;16L and I;16N in memory only)
FILE_MODES = [m for m in MODES if m not in ("RGBa", "RGBX", "I;16N", "I;16L")]


@pytest.mark.parametrize("mode", FILE_MODES)
def test_each_accepted_mode_becomes_rgb_in_0_1(tmp_path: Path, mode: str) -> None:
    """16-bit grey is divided by 65535 (it used to become 99% white); 8-bit modes are what PIL's
    RGB conversion makes of them, / 255."""
    import numpy as np
    import torch
    from PIL import Image

    root = write_list_dataset(tmp_path)
    img, truth = _image_of_mode(mode)
    img.save(root / "img/18.tiff")
    _replace_line(root / "test.txt", 3, "img/18.tiff 0 0 1")
    assert Image.open(root / "img/18.tiff").mode == mode  # the file really holds this mode
    data = _open(root)
    x = data.images([data.paths.index("img/18.tiff")])[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and 0 <= float(x.min()) <= float(x.max()) <= 1
    if truth is None:
        with Image.open(root / "img/18.tiff") as opened:
            expected = torch.from_numpy(np.array(opened.convert("RGB"))).permute(2, 0, 1).float() / 255
    else:
        expected = torch.from_numpy(np.asarray(truth, dtype=np.float32))[None].expand(3, -1, -1)
    assert torch.allclose(x, expected, atol=1e-6), (x[0, ::8, 0], expected[0, ::8, 0])


def test_a_16_bit_png_keeps_its_grey_levels(tmp_path: Path) -> None:
    """The reported file: a 16-bit greyscale PNG (PIL mode I;16), resized and cropped like any image."""
    import numpy as np
    import torch
    from PIL import Image

    root = write_list_dataset(tmp_path)
    values = np.round(_grey(64) * 65535).astype(np.uint16)
    values = np.repeat(values[:, :1], 48, axis=1)  # 64 rows × 48 columns: resized to 42 × 32, then cropped
    Image.fromarray(values).save(root / "img/18.png")
    assert Image.open(root / "img/18.png").mode == "I;16"
    data = _open(root)
    x = data.images([data.paths.index("img/18.png")])[0]
    assert x.shape == (3, 32, 32)
    assert float((x > 0.99).float().mean()) < 0.3  # not 99% white
    column = x[0, :, 16].numpy()  # the crop keeps part of each band: 0, 0.25, 0.6 and 1 (bilinear between)
    assert column[0] == 0.0 and column[-1] == pytest.approx(1.0, abs=1e-6) and np.all(np.diff(column) >= 0)
    for level in (0.25, 0.6):
        assert np.any(np.abs(column - level) < 1e-4), (level, column)
    assert torch.equal(x[0], x[1]) and torch.equal(x[0], x[2])  # grey: three equal channels


@pytest.mark.parametrize(
    ("make", "needles"),
    [
        (lambda: _pil().new("LAB", (32, 32)), ("image mode 'LAB' is not supported", "accepted: 1, L, P")),
        (lambda: _pil().fromarray(_np().full((32, 32), 70000, dtype=_np().int32), mode="I"),
         ("image mode 'I' (32-bit integer)", "values in [0, 65535]", "values from 70000 to 70000")),
        (lambda: _pil().fromarray(_np().full((32, 32), 200.0, dtype=_np().float32), mode="F"),
         ("image mode 'F' (32-bit float) must hold values in [0, 1]", "values from 200 to 200")),
        (lambda: _pil().fromarray(_np().full((32, 32), _np().nan, dtype=_np().float32), mode="F"),
         ("image mode 'F'", "NaN or infinite values")),
    ],
    ids=["LAB", "I-beyond-16-bit", "F-beyond-1", "F-nan"],
)
def test_other_modes_are_refused_by_name_with_the_image_and_its_line(tmp_path: Path, make, needles) -> None:
    root = write_list_dataset(tmp_path)
    make().save(root / "img/18.tiff")
    _replace_line(root / "test.txt", 3, "img/18.tiff 0 0 1")
    data = _open(root)
    with pytest.raises(DataError) as err:
        data.images([data.paths.index("img/18.tiff")])
    message = str(err.value)
    assert "img/18.tiff (listed at" in message and "test.txt:3" in message, message
    for needle in needles:
        assert needle in message, (needle, message)


def _pil():
    from PIL import Image

    return Image


def _np():
    import numpy as np

    return np
