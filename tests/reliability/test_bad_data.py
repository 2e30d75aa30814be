"""Bad data in a list-file dataset: the error names the file and the line, before any work.

The list-file reader's unit tests (tests/test_data.py) cover each fault of the files
themselves; here the same faults go through ``hashbench run`` (exit code 2, one line,
nothing written), plus the faults found only while images load (the cells of that
dataset fail, naming the image and its list line; the other dataset's cells are kept),
and a few files the unit tests do not try.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest

from hashbench.data.listfile import ListFile, UnlabeledItemsWarning
from hashbench.errors import DataError
from hashbench.results import read_records

from .conftest import add_list_grid, assert_clear_error, invoke, write_list_dataset


def _replace_line(file: Path, line: int, text: str) -> None:
    lines = file.read_text().splitlines()
    lines[line - 1] = text
    file.write_text("\n".join(lines) + "\n")


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
    ("duplicated-path", lambda r: _replace_line(r / "test.txt", 4, "img/16.png 1 0 0"),
     ("test.txt:4: image 'img/16.png' is listed twice in this file (also line 1)",)),
    ("path-with-dot-dot", lambda r: _replace_line(r / "test.txt", 2, "../outside.png 0 1 0"),
     ("test.txt:2: image path '../outside.png' contains '..'",)),
    ("absolute-path", lambda r: _replace_line(r / "database.txt", 1, "/etc/passwd 1 0 0"),
     ("database.txt:1: image path '/etc/passwd' is absolute",)),
    ("missing-list-file", lambda r: (r / "database.txt").unlink(), ("list files not found", "database.txt")),
    ("query-in-database", lambda r: _replace_line(r / "test.txt", 1, "img/3.png 1 1 0"),
     ("test.txt:1: query image 'img/3.png' is also in the database list at", "database.txt:4")),
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
        (lambda p: (p.unlink(), p.mkdir()), "Is a directory"),
    ],
    ids=["truncated", "zero-bytes", "directory"],
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
