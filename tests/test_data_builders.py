"""``hashbench data build``: each builder on a miniature of its original layout, generated here."""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner, Result
from PIL import Image

from hashbench import plugins
from hashbench.cli.data import NAMES
from hashbench.cli.main import main
from hashbench.data.builders import DATASETS
from hashbench.data.builders.flickr25k import ANNOTATIONS, CLASSES

COCO_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]  # 80 ids with gaps


def _jpeg(path: Path, seed: int, size: int = 32) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=70)


def make_flickr(root: Path, n: int = 40) -> Path:
    """im1…im<n>.jpg and the 38 concept files; the last two images have no concept."""
    for i in range(1, n + 1):
        _jpeg(root / "mirflickr" / f"im{i}.jpg", i)
    ann = root / ANNOTATIONS
    ann.mkdir(parents=True)
    (ann / "README.txt").write_text("MIRFLICKR-25K annotations\n")
    for j, concept in enumerate(CLASSES):
        members = [i for i in range(1, n - 1) if i % 38 == j or (i * 7) % 38 == j]
        (ann / f"{concept}.txt").write_text("".join(f"{i}\r\n" for i in members))
    return root


def make_nuswide(root: Path, n: int = 40) -> Path:
    """81 concepts c00…c80; c00…c20 are the frequent ones; the last 4 images only show rare concepts."""
    entries = []
    for i in range(n):
        folder = ("actor", "beach", "cat")[i % 3]
        entries.append(f"C:\\ImageData\\Flickr\\{folder}\\{i:04d}_{1000 + i}.jpg")
        _jpeg(root / "Flickr" / folder / f"{i:04d}_{1000 + i}.jpg", i)
    (root / "ImageList").mkdir()
    (root / "ImageList" / "Imagelist.txt").write_text("\r\n".join(entries) + "\r\n")
    labels = np.zeros((n, 81), dtype=int)
    for i in range(n - 4):
        labels[i, i % 21] = labels[i, (i + 5) % 21] = 1
    for k in range(4):
        labels[n - 4 + k, 21 + k] = 1
    gt = root / "Groundtruth" / "AllLabels"
    gt.mkdir(parents=True)
    for j in range(81):
        (gt / f"Labels_c{j:02d}.txt").write_text("".join(f"{v}\n" for v in labels[:, j]))
    return root


def make_coco(root: Path) -> Path:
    """train2014 (20 images, 3 unannotated) and val2014 (12, 2 unannotated), 80 categories."""
    ann_id = 0
    (root / "annotations").mkdir(parents=True)
    for part, n, bare in (("train2014", 20, 3), ("val2014", 12, 2)):
        images, annotations = [], []
        for k in range(n):
            image_id = 1000 * (part == "val2014") + k + 1
            name = f"COCO_{part}_{image_id:012d}.jpg"
            _jpeg(root / part / name, image_id)
            images.append({"id": image_id, "file_name": name, "width": 32, "height": 32})
            if k >= n - bare:
                continue
            for c in (COCO_IDS[k % 80], COCO_IDS[(3 * k + 1) % 80]):
                ann_id += 1
                annotations.append({"id": ann_id, "image_id": image_id, "category_id": c, "iscrowd": 0})
        categories = [{"id": c, "name": f"cat{c}", "supercategory": "x"} for c in COCO_IDS]
        data = {"images": images, "annotations": annotations, "categories": categories}
        (root / "annotations" / f"instances_{part}.json").write_text(json.dumps(data))
    return root


MAKERS = {"flickr25k": (make_flickr, 38), "nuswide21": (make_nuswide, 21), "mscoco": (make_coco, 80)}
#: (items kept, queries, train) of each miniature
SIZES = {"flickr25k": (40, 6, 10), "nuswide21": (36, 5, 12), "mscoco": (27, 4, 8)}


def build(name: str, src: Path, out: Path, *extra: str) -> Result:
    return CliRunner().invoke(main, ["data", "build", name, "--from", str(src), "--out", str(out), "--quiet", *extra])


def built(name: str, tmp_path: Path, *extra: str) -> Path:
    _, nq, nt = SIZES[name]
    src = MAKERS[name][0](tmp_path / "src")
    out = tmp_path / "out"
    result = build(name, src, out, "--num-query", str(nq), "--num-train", str(nt), *extra)
    assert result.exit_code == 0, (result.output, result.exception)
    return out


def open_lists(out: Path, classes: int):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FLICKR keeps its unlabelled images, as the paper's split does
        return plugins.datasets.create("listfile", {"root": str(out), "num_classes": classes,
                                                       "image_size": 16, "resize": 16})


def lines(out: Path, stem: str) -> list[str]:
    return (out / f"{stem}.txt").read_text().splitlines()


def test_the_command_knows_every_builder() -> None:
    assert set(NAMES) == set(DATASETS)


@pytest.mark.parametrize("name", list(MAKERS))
def test_builder_writes_the_papers_split_shape(name: str, tmp_path: Path) -> None:
    out = built(name, tmp_path)
    items, nq, nt = SIZES[name]
    classes = MAKERS[name][1]
    ds = open_lists(out, classes)
    assert ds.labels.shape == (items, classes)
    split = ds.predefined_split()
    query, database, train = set(split.query), set(split.database), set(split.train)
    assert (len(query), len(database), len(train)) == (nq, items - nq, nt)
    assert train <= database and not query & database
    assert all(len(line.split()) == classes + 1 for stem in ("train", "test", "database") for line in lines(out, stem))
    assert ds.images(np.arange(2)).shape == (2, 3, 16, 16)
    record = json.loads((out / "build.json").read_text())
    assert record["seed"] == 0 and record["split"] == "drawn" and record["dataset"] == name
    assert record["counts"] == {"query": nq, "database": items - nq, "train": nt, "items": items}
    assert len(record["classes"]) == classes
    assert (out / "images").is_symlink()


def test_flickr_keeps_38_columns_in_concept_file_order(tmp_path: Path) -> None:
    out = built("flickr25k", tmp_path)
    assert len(CLASSES) == 38 and sum(c.endswith("_r1") for c in CLASSES) == 14
    rows = {line.split()[0]: line.split()[1:] for stem in ("test", "database") for line in lines(out, stem)}
    # image 3: concept 3 (i % 38) and concept 21 ((i * 7) % 38)
    assert [j for j, v in enumerate(rows["images/im3.jpg"]) if v == "1"] == [3, 21]
    assert rows["images/im40.jpg"] == ["0"] * 38  # unlabelled images are kept (CgAT's 25,000)


def test_nuswide_keeps_the_21_most_frequent_and_drops_the_rest(tmp_path: Path) -> None:
    out = built("nuswide21", tmp_path)
    record = json.loads((out / "build.json").read_text())
    assert record["classes"] == [f"c{j:02d}" for j in range(21)]
    assert record["notes"]["dropped: none of the 21 concepts"] == 4
    paths = {line.split()[0] for stem in ("test", "database") for line in lines(out, stem)}
    assert "images/actor/0000_1000.jpg" in paths and not any("0036_" in p or "0039_" in p for p in paths)


def test_coco_maps_category_ids_in_order_and_drops_unannotated(tmp_path: Path) -> None:
    out = built("mscoco", tmp_path)
    rows = {line.split()[0]: line.split()[1:] for stem in ("test", "database") for line in lines(out, stem)}
    assert len(rows) == 27 and "images/train2014/COCO_train2014_000000000020.jpg" not in rows
    # train image k=1: categories COCO_IDS[1] and COCO_IDS[4] → columns 1 and 4
    assert [j for j, v in enumerate(rows["images/train2014/COCO_train2014_000000000002.jpg"]) if v == "1"] == [1, 4]


def test_same_seed_same_files_other_seed_other_split(tmp_path: Path) -> None:
    a = built("flickr25k", tmp_path / "a")
    b = built("flickr25k", tmp_path / "b")
    c = built("flickr25k", tmp_path / "c", "--seed", "1")
    for stem in ("train", "test", "database"):
        assert lines(a, stem) == lines(b, stem)
    assert lines(a, "test") != lines(c, "test")
    assert json.loads((c / "build.json").read_text())["seed"] == 1


def test_default_sizes_are_the_papers_and_the_table_says_so(tmp_path: Path) -> None:
    src = make_flickr(tmp_path / "src")
    result = build("flickr25k", src, tmp_path / "out")
    assert result.exit_code == 2 and "--num-query 1000 plus --num-train 5000" in result.output
    assert not (tmp_path / "out").exists()
    result = build("flickr25k", src, tmp_path / "out", "--num-query", "5", "--num-train", "10")
    assert result.exit_code == 0, result.output
    assert "1,000" in result.output and "24,000" in result.output and "differs" in result.output


def _remove(path: Path) -> None:
    import shutil

    shutil.rmtree(path) if path.is_dir() else path.unlink()


@pytest.mark.parametrize("name, missing", [
    ("flickr25k", ANNOTATIONS),
    ("flickr25k", f"{ANNOTATIONS}/sky.txt"),
    ("flickr25k", "mirflickr/im7.jpg"),
    ("nuswide21", "ImageList/Imagelist.txt"),
    ("nuswide21", "Groundtruth/AllLabels"),
    ("nuswide21", "Flickr/beach/0001_1001.jpg"),
    ("mscoco", "val2014"),
    ("mscoco", "annotations/instances_train2014.json"),
])
def test_a_bad_layout_is_refused_naming_what_is_missing(name: str, missing: str, tmp_path: Path) -> None:
    src = MAKERS[name][0](tmp_path / "src")
    _remove(src / missing)
    out = tmp_path / "data" / name
    result = build(name, src, out, "--num-query", "2", "--num-train", "4")
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("hashbench: error: ") and Path(missing).name in line, line
    assert not (tmp_path / "data").exists()


def test_skip_missing_builds_without_the_missing_images(tmp_path: Path) -> None:
    src = make_coco(tmp_path / "src")
    (src / "val2014" / "COCO_val2014_000000001001.jpg").unlink()
    result = build("mscoco", src, tmp_path / "out", "--num-query", "4", "--num-train", "8", "--skip-missing")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "out" / "build.json").read_text())["counts"]["items"] == 26


def test_an_existing_output_needs_force_and_copy_makes_it_standalone(tmp_path: Path) -> None:
    src = make_flickr(tmp_path / "src")
    out = tmp_path / "out"
    args = ("--num-query", "5", "--num-train", "10")
    assert build("flickr25k", src, out, *args).exit_code == 0
    before = lines(out, "test")
    result = build("flickr25k", src, out, *args, "--seed", "3")
    assert result.exit_code == 2 and "--force" in result.output and lines(out, "test") == before
    assert build("flickr25k", src, out, *args, "--seed", "3", "--force", "--images", "copy").exit_code == 0
    assert lines(out, "test") != before and (out / "images").is_dir() and not (out / "images").is_symlink()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left
    assert open_lists(out, 38).labels.shape == (40, 38)


def test_force_replaces_only_an_earlier_build(tmp_path: Path) -> None:
    src = make_flickr(tmp_path / "src")
    out = tmp_path / "out"
    out.mkdir()
    (out / "train.txt").write_text("mine 1\n")
    result = build("flickr25k", src, out, "--num-query", "5", "--num-train", "10", "--force")
    assert result.exit_code == 2 and "no build.json" in result.output
    assert (out / "train.txt").read_text() == "mine 1\n"


def _peer_lists(tmp_path: Path, fmt: str) -> tuple[Path, Path]:
    """A peer's FLICKR lists with a foreign path prefix, a duplicated train line, train ⊄ database."""
    images = make_flickr(tmp_path / "src") / "mirflickr"
    lists = tmp_path / "peer"
    lists.mkdir()
    rng = np.random.default_rng(0)
    label = {i: " ".join(str(v) for v in rng.integers(0, 2, 38)) for i in range(1, 41)}
    splits = {"test": range(1, 6), "database": range(6, 36), "train": [*range(20, 40), 20]}
    for stem, ids in splits.items():
        paths = [f"/dataset/flickr25k/mirflickr/im{i}.jpg" for i in ids]
        if fmt == "single":
            (lists / f"{stem}.txt").write_text("".join(f"{p} {label[i]}\n" for p, i in zip(paths, ids)))
        else:
            (lists / f"{stem}_img.txt").write_text("".join(f"{p}\n" for p in paths))
            (lists / f"{stem}_label.txt").write_text("".join(f"{label[i]}\n" for i in ids))
    return lists, images


@pytest.mark.parametrize("fmt", ["single", "pair"])
def test_a_peers_lists_keep_their_split(fmt: str, tmp_path: Path) -> None:
    lists, images = _peer_lists(tmp_path, fmt)
    out = tmp_path / "out"
    result = build("flickr25k", lists, out, "--image-root", str(images))
    assert result.exit_code == 0, result.output
    assert [line.split()[0] for line in lines(out, "test")] == [f"images/im{i}.jpg" for i in range(1, 6)]
    assert len(lines(out, "train")) == 20  # the duplicated line is dropped
    record = json.loads((out / "build.json").read_text())
    assert record["split"] == "given by the lists" and record["notes"]["duplicate lines (dropped)"] == 1
    assert record["notes"]["train images not in the database"] == 4
    ds = open_lists(out, 38)
    assert len(ds.predefined_split().train) == 20


def test_a_blank_line_inside_a_pair_is_refused(tmp_path: Path) -> None:
    lists, images = _peer_lists(tmp_path, "pair")
    text = (lists / "test_img.txt").read_text().splitlines(keepends=True)
    (lists / "test_img.txt").write_text("".join([*text[:2], "\n", *text[2:-1]]))
    result = build("flickr25k", lists, tmp_path / "out", "--image-root", str(images))
    assert result.exit_code == 2 and "test_img.txt:3: blank line" in result.output


def test_a_peers_lists_of_another_width_are_refused(tmp_path: Path) -> None:
    lists, images = _peer_lists(tmp_path, "single")
    result = build("nuswide21", lists, tmp_path / "out", "--image-root", str(images))
    assert result.exit_code == 2 and "38 label values, expected 21" in result.output
    assert not (tmp_path / "out").exists()


def test_build_then_run_a_grid_on_it(tmp_path: Path, config) -> None:
    """End to end: a miniature FLICKR-25K, built, then trained on and evaluated by `hashbench run`."""
    src = make_flickr(tmp_path / "src", n=48)
    out = tmp_path / "data" / "flickr25k"
    assert build("flickr25k", src, out, "--num-query", "8", "--num-train", "24").exit_code == 0
    raw = yaml.safe_load(Path(config.path).read_text())
    raw = copy.deepcopy(raw)
    raw["datasets"]["flickr25k"]["params"] = {"root": str(out), "num_classes": 38, "image_size": 32, "resize": 32}
    raw["datasets"]["flickr25k"]["map_topk"] = None
    raw["grids"]["mini-flickr"] = {
        "profile": "smoke", "datasets": ["flickr25k"], "methods": ["dpsh"], "backbones": ["smallcnn"],
        "bits": [16], "defenses": ["none"], "attacks": [], "seeds": [0],
        "params": {"backbones": raw["grids"]["smoke"]["params"]["backbones"]},
    }
    registry = tmp_path / "registry.yaml"
    registry.write_text(yaml.safe_dump(raw, sort_keys=False))
    result = CliRunner().invoke(main, ["run", "--grid", "mini-flickr", "--profile", "smoke", "--pretrained", "none",
                                       "--registry", str(registry), "--results-dir", str(tmp_path / "results"),
                                       "--quiet", "--no-report"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert (tmp_path / "results" / "mini-flickr" / "run.json").is_file()


def test_the_archives_to_table1_path(tmp_path: Path, config, monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's path, in the registry's own layout: `data build` of every dataset into data/<name>,
    `doctor` on the paper grids, then a slice of `table1` (AlexNet at 224, smoke profile) on the CPU."""
    monkeypatch.chdir(tmp_path)
    for name, args in (("flickr25k", ("6", "12")), ("nuswide21", ("5", "10")), ("mscoco", ("4", "8"))):
        src = MAKERS[name][0](tmp_path / f"src-{name}")
        result = CliRunner().invoke(main, ["data", "build", name, "--from", str(src), "--num-query", args[0],
                                           "--num-train", args[1], "--quiet"])
        assert result.exit_code == 0, (name, result.output, result.exception)
        assert (tmp_path / "data" / name / "test.txt").is_file()
    common = ["--registry", str(config.path), "--results-dir", str(tmp_path / "results")]
    for grid in ("table1", "table4"):
        result = CliRunner().invoke(main, ["doctor", "--grid", grid, "--pretrained", "none", *common])
        assert result.exit_code == 0, (grid, result.output, result.exception)
    result = CliRunner().invoke(main, ["run", "--grid", "table1", "--profile", "smoke", "--pretrained", "none",
                                       "--set", "bits=[16]", "--set", "defenses=[none]", "--set", "attacks=[p2p]",
                                       # no label vector of the miniature labels the 10 items DHTA's rule asks for
                                       "--set", "targets={min_count: 1}", "--quiet", "--no-report", *common])
    assert result.exit_code == 0, (result.output, result.exception)
    records = (tmp_path / "results" / "table1" / "run.json")
    assert records.is_file()
