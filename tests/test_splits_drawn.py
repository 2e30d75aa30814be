"""The papers' splits, drawn or checked (issue 19, part 2).

A list-file dataset given as one full list (``all.txt``), or declared with ``split: {mode: draw}``,
draws the declared sizes from the run's seed; a dataset's own split files that differ from the
declaration are named by ``plan``, ``doctor`` and the report; a line repeated exactly in a list is
dropped with one counting warning, a conflicting repeat is still refused.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner, Result
from PIL import Image

from hashbench.cli.main import main
from hashbench.data.listfile import DuplicateLinesWarning, ListFile
from hashbench.data.splits import make_split
from hashbench.errors import ConfigError, DataError
from hashbench.harness.config import SplitSpec, default_registry_path, load_config
from hashbench.harness.plan import build_plan
from hashbench.report.html import render_html

N = 30
LABELS = ["1 0 0", "0 1 0", "0 0 1", "1 1 0", "0 1 1"]
#: the dataset's own split files: 4 queries, 12 train ⊂ 26 database
OWN = {"test": range(26, 30), "train": range(0, 12), "database": range(0, 26)}


def _images(root: Path, n: int = N) -> None:
    (root / "img").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(root / "img" / f"{i}.png")


def _line(i: int) -> str:
    return f"img/{i}.png {LABELS[i % len(LABELS)]}\n"


def full_list(root: Path) -> Path:
    """``N`` images and one full list, ``all.txt``."""
    _images(root)
    (root / "all.txt").write_text("".join(_line(i) for i in range(N)))
    return root


def own_lists(root: Path) -> Path:
    """``N`` images and the three split lists of :data:`OWN`."""
    _images(root)
    for stem, items in OWN.items():
        (root / f"{stem}.txt").write_text("".join(_line(i) for i in items))
    return root


def _open(root: Path) -> ListFile:
    return ListFile.from_params({"root": str(root), "image_size": 8, "resize": 8})


def _split(data: ListFile, seed: int, draw: bool = False, **sizes: int):
    sizes = {"num_query": 5, "num_train": 10, **sizes}
    return make_split(data, seed=seed, draw=draw, **sizes)


# -- drawing ------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["full-list", "mode-draw"])
def test_a_drawn_split_has_the_declared_sizes_and_is_seeded(tmp_path: Path, layout: str) -> None:
    data = _open(full_list(tmp_path) if layout == "full-list" else own_lists(tmp_path))
    draw = layout == "mode-draw"
    assert (data.predefined_split() is None) == (not draw)
    split = _split(data, seed=3, draw=draw)
    assert (len(split.query), len(split.train), len(split.database)) == (5, 10, N - 5)
    assert set(split.train) <= set(split.database)
    assert not set(split.query) & set(split.database) and not set(split.query) & set(split.train)
    assert set(split.query) | set(split.database) == set(range(N))
    again = _split(data, seed=3, draw=draw)
    assert again == split and again.hash() == split.hash()
    other = _split(data, seed=4, draw=draw)
    assert other.hash() != split.hash() and not np.array_equal(other.query, split.query)


def test_a_drawn_split_takes_num_database(tmp_path: Path) -> None:
    split = _split(_open(full_list(tmp_path)), seed=0, num_database=12)
    assert (len(split.query), len(split.train), len(split.database)) == (5, 10, 12)


def test_own_split_files_are_kept_unless_drawn(tmp_path: Path) -> None:
    split = _split(_open(own_lists(tmp_path)), seed=0)
    assert (len(split.query), len(split.train), len(split.database)) == (4, 12, 26)


def test_a_pair_format_full_list(tmp_path: Path) -> None:
    _images(tmp_path)
    (tmp_path / "all_img.txt").write_text("".join(f"img/{i}.png\n" for i in range(N)))
    (tmp_path / "all_label.txt").write_text("".join(LABELS[i % 5] + "\n" for i in range(N)))
    data = _open(tmp_path)
    assert data.format == "pair" and len(data) == N and data.predefined_split() is None


def test_split_files_and_a_full_list_together_are_refused(tmp_path: Path) -> None:
    own_lists(tmp_path)
    (tmp_path / "all.txt").write_text("".join(_line(i) for i in range(N)))
    with pytest.raises(DataError, match="both split lists .* and the full list 'all'; keep one"):
        _open(tmp_path)


def test_missing_lists_name_the_full_list_too(tmp_path: Path) -> None:
    _images(tmp_path)
    with pytest.raises(DataError, match=r"nor one full list all\.txt or all_img\.txt \+ all_label\.txt"):
        _open(tmp_path)


# -- the declaration ----------------------------------------------------------------------

def test_split_mode_defaults_to_auto_and_keeps_earlier_stage_keys() -> None:
    spec = SplitSpec(num_query=5, num_train=10)
    assert spec.mode == "auto" and "mode" not in spec.stage_spec()  # old registries: same split keys
    assert SplitSpec(num_query=5, num_train=10, mode="draw").stage_spec()["mode"] == "draw"


def _registry(tmp_path: Path, root: Path, split: dict) -> Path:
    raw = yaml.safe_load(default_registry_path().read_text())
    raw["datasets"]["lists"] = {"type": "listfile", "params": {"root": str(root), "image_size": 8, "resize": 8},
                                "split": split, "map_topk": None, "pn": [5]}
    raw["grids"]["check"] = {"profile": "smoke", "datasets": ["lists"], "methods": ["dpsh"],
                             "backbones": ["smallcnn"], "bits": [16], "defenses": ["none"], "attacks": [],
                             "seeds": [0], "params": {"backbones": {"smallcnn": {"width": 8, "features": 64}}}}
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_an_unknown_split_mode_is_refused(tmp_path: Path) -> None:
    path = _registry(tmp_path, tmp_path, {"mode": "shuffle", "num_query": 5, "num_train": 10})
    with pytest.raises(ConfigError, match="datasets.lists.split.mode"):
        load_config(path)


def _plan(tmp_path: Path, root: Path, split: dict):
    config = load_config(_registry(tmp_path, root, split))
    return build_plan(config, "check", config.grid("check"))


def test_plan_prices_a_drawn_split_at_its_declared_sizes(tmp_path: Path) -> None:
    plan = _plan(tmp_path, own_lists(tmp_path / "data"), {"mode": "draw", "num_query": 5, "num_train": 10})
    sizes = next(iter(plan.sizes.values()))
    assert (sizes.query, sizes.train, sizes.database) == (5, 10, N - 5)
    assert plan.split_notes == {}


def test_a_drawn_split_that_cannot_fit_fails_at_plan_time(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="num_query .* must be smaller than the dataset"):
        _plan(tmp_path, own_lists(tmp_path / "data"), {"mode": "draw", "num_query": N, "num_train": 10})


def _cli(tmp_path: Path, *args: str) -> Result:
    return CliRunner().invoke(main, [*args, "--results-dir", str(tmp_path / "results")])


def test_plan_warns_when_own_split_files_differ_from_the_declaration(tmp_path: Path) -> None:
    reg = _registry(tmp_path, own_lists(tmp_path / "data"), {"num_query": 5, "num_train": 12})
    result = _cli(tmp_path, "plan", "--grid", "check", "--registry", str(reg), "--device", "cpu")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("warning: dataset lists")]
    assert len(lines) == 1, result.output
    assert "differ in size from the registry's split: query 4 (declared 5)" in lines[0]
    assert "split: {mode: draw}" in lines[0]
    as_json = _cli(tmp_path, "plan", "--grid", "check", "--registry", str(reg), "--device", "cpu", "--json")
    assert "query 4 (declared 5)" in json.loads(as_json.output)["split_notes"]["lists"]


def test_plan_is_quiet_when_own_split_files_match(tmp_path: Path) -> None:
    reg = _registry(tmp_path, own_lists(tmp_path / "data"), {"num_query": 4, "num_train": 12, "num_database": 26})
    result = _cli(tmp_path, "plan", "--grid", "check", "--registry", str(reg), "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output


# -- duplicated lines ----------------------------------------------------------------------

def _prosgan_like(root: Path) -> Path:
    """Pair-format lists whose train list repeats 3 lines exactly (as ProS-GAN's FLICKR-25K lists do)."""
    _images(root)
    train = [*range(0, 12), 2, 5, 2]
    for stem, items in {**OWN, "train": train}.items():
        (root / f"{stem}_img.txt").write_text("".join(f"img/{i}.png\n" for i in items))
        (root / f"{stem}_label.txt").write_text("".join(LABELS[i % 5] + "\n" for i in items))
    return root


def test_exact_duplicate_lines_are_dropped_with_a_counting_warning(tmp_path: Path) -> None:
    with pytest.warns(DuplicateLinesWarning) as caught:
        data = _open(_prosgan_like(tmp_path))
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "train_img.txt: 3 of 15 lines repeat an earlier line exactly" in message
    assert "line 13 repeats line 3" in message and "12 remain" in message
    assert len(data.predefined_split().train) == 12 and data.duplicate_counts["train"] == 3
    assert len(data) == N


def test_a_repeated_path_with_other_labels_is_refused_naming_both_lines(tmp_path: Path) -> None:
    own_lists(tmp_path)
    (tmp_path / "train.txt").write_text("".join(_line(i) for i in range(12)) + "img/4.png 1 1 1\n")
    with pytest.raises(DataError) as err:
        _open(tmp_path)
    assert "train.txt:13: image 'img/4.png' is listed twice in this file with different labels (also line 5)" in str(
        err.value)


def test_doctor_notes_dropped_lines_and_the_drawn_split(tmp_path: Path) -> None:
    reg = _registry(tmp_path, _prosgan_like(tmp_path / "data"), {"mode": "draw", "num_query": 5, "num_train": 10})
    result = _cli(tmp_path, "doctor", "--grid", "check", "--registry", str(reg), "--device", "cpu")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "lines that repeat an earlier line exactly were dropped: train 3" in text
    assert "the split (5 query / 10 train ⊂ database) is drawn from the 30 items with the run's seed" in text


# -- records and the report -----------------------------------------------------------------

def test_records_and_report_name_the_split_used(tmp_path: Path) -> None:
    reg = _registry(tmp_path, full_list(tmp_path / "data"), {"num_query": 5, "num_train": 10})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = _cli(tmp_path, "run", "--grid", "check", "--registry", str(reg), "--device", "cpu", "--quiet",
                      "--no-report")
    assert result.exit_code == 0, result.output
    records = list((tmp_path / "results" / "check").rglob("records/*.json"))
    assert records, sorted(p.name for p in (tmp_path / "results" / "check").rglob("*"))
    provenance = json.loads(records[0].read_text())["provenance"]
    assert provenance["split_sizes"] == {"train": 10, "query": 5, "database": 25}
    assert provenance["split_source"] == "drawn"
    html = render_html("check", tmp_path / "results")
    assert "split lists" in html
    assert f"5 query / 10 train / 25 database, drawn, hash {provenance['split_hash']}" in html
