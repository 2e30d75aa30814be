"""``hashbench doctor``: findings per dataset, backbone, device and disk, each problem with its fix;
and the plan's duration format."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner, Result
from PIL import Image

from hashbench.cli.main import _fmt_seconds, main
from hashbench.harness.config import default_registry_path

#: item i is img/<i>.png; train 0–11, database 0–15, queries 16–19 (as tests/reliability's helper)
LABELS = ["1 0 0", "0 1 0", "0 0 1", "1 1 0"]
LISTS = {"train": range(0, 12), "test": range(16, 20), "database": range(0, 16)}


def write_lists(root: Path, unlabelled: int | None = None) -> Path:
    """20 random 32×32 PNGs under ``root/img`` and single-format list files; item ``unlabelled`` gets
    an all-zero label row."""
    (root / "img").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(20):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / "img" / f"{i}.png")
    for stem, items in LISTS.items():
        rows = (f"img/{i}.png {'0 0 0' if i == unlabelled else LABELS[i % 4]}\n" for i in items)
        (root / f"{stem}.txt").write_text("".join(rows))
    return root


def registry(tmp_path: Path, root: Path, name: str = "lists", backbone: str = "smallcnn",
             split: dict | None = None) -> Path:
    """The project's registry plus dataset ``name`` (list files under ``root``) and grid ``check``
    (that dataset, DPSH, ``backbone``, no defense, one attack)."""
    raw = yaml.safe_load(default_registry_path().read_text())
    raw["datasets"][name] = {"type": "listfile", "params": {"root": str(root), "image_size": 32, "resize": 32},
                             "split": split or {"num_query": 4, "num_train": 12}, "map_topk": None, "pn": [5]}
    params = {"backbones": {"smallcnn": {"width": 8, "features": 64}}} if backbone == "smallcnn" else {}
    raw["grids"]["check"] = {"profile": "smoke", "datasets": [name], "methods": ["dpsh"], "backbones": [backbone],
                             "bits": [16], "defenses": ["none"], "attacks": ["center"], "seeds": [0],
                             "params": params}
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def doctor(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, ["doctor", "--results-dir", str(tmp_path / "results"), *args], env=env)


def tree(path: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns) for p in path.rglob("*")}


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache: ImageNet weights are not there."""
    home = tmp_path / "torch"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


def test_demo_grid_can_run_and_names_the_device(tmp_path: Path) -> None:
    result = doctor(tmp_path, "--device", "cpu")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "dataset shapes: embedded" in out
    assert "backbone smallcnn: needs no ImageNet weights" in out
    assert f"device: CPU, {os.cpu_count()} cores" in out
    assert "disk: " in out and "the grid can run here" in out
    assert not (tmp_path / "results").exists()  # nothing written, not even the folder


def test_missing_root_names_the_root_and_the_build_command(tmp_path: Path) -> None:
    absent = tmp_path / "[bold]data[/]" / "flickr25k"  # printed as text, never read as markup
    reg = registry(tmp_path, absent, name="flickr25k")
    result = doctor(tmp_path, "--grid", "check", "--registry", str(reg))
    assert result.exit_code == 1, result.output
    assert f"problem dataset flickr25k: image root {absent} does not exist" in result.output
    assert f"fix: hashbench data build flickr25k --from DIR --out {absent} (DIR: " in result.output
    assert "1 problem" in result.output


def test_table1_without_its_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no data/ here
    result = doctor(tmp_path, "--grid", "table1", "--pretrained", "none")
    assert result.exit_code == 1, result.output
    assert "problem dataset flickr25k: image root data/flickr25k does not exist" in result.output
    assert "fix: hashbench data build flickr25k --from DIR (DIR: " in result.output
    assert "backbone alexnet: random initialisation" in result.output
    assert sorted(os.listdir(tmp_path)) == []


def test_present_list_dataset_reports_counts_samples_and_notes(tmp_path: Path) -> None:
    root = write_lists(tmp_path / "data", unlabelled=5)
    reg = registry(tmp_path, root, split={"num_query": 5, "num_train": 12})  # the files have 4 queries
    before = tree(tmp_path)
    result = doctor(tmp_path, "--grid", "check", "--registry", str(reg))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "dataset lists: 20 items; lists: query 4, train 12, database 16 (single format)" in out
    assert "differ in size from the registry's split: query 4 (declared 5)" in out
    assert "unlabelled rows (all-zero labels, relevant to no query): train 1, database 1" in out
    assert "drop_unlabeled: true" in out
    assert "sampled images decode (query 4/4, train 8/8, database 8/8)" in out
    assert tree(tmp_path) == before  # nothing written


def test_table1_on_a_built_miniature_flickr25k(tmp_path: Path) -> None:
    """``data build`` then ``doctor --grid table1``: green, and the miniature's split is named as
    differing from the paper's."""
    from test_data_builders import build, make_flickr

    out = tmp_path / "data" / "flickr25k"
    assert build("flickr25k", make_flickr(tmp_path / "src", n=48), out, "--num-query", "8",
                 "--num-train", "24").exit_code == 0
    raw = yaml.safe_load(default_registry_path().read_text())
    raw["datasets"]["flickr25k"]["params"].update(root=str(out), image_size=32, resize=32)
    reg = tmp_path / "registry.yaml"
    reg.write_text(yaml.safe_dump(raw, sort_keys=False))
    result = doctor(tmp_path, "--grid", "table1", "--registry", str(reg), "--pretrained", "none")
    assert result.exit_code == 0, result.output
    out_text = result.output
    assert "dataset flickr25k: 48 items; lists: query 8, train 24, database 40" in out_text
    assert "query 8 (declared 1,000), train 24 (declared 5,000), database 40 (declared 24,000)" in out_text
    assert "sampled images decode (query 8/8, train 8/8, database 8/8)" in out_text


def test_a_corrupt_sampled_image_names_the_image_and_its_list_line(tmp_path: Path) -> None:
    root = write_lists(tmp_path / "data")
    (root / "img" / "0.png").write_bytes(b"not a png")
    result = doctor(tmp_path, "--grid", "check", "--registry", str(registry(tmp_path, root)))
    assert result.exit_code == 1, result.output
    out = result.output
    assert f"{root / 'img' / '0.png'} (listed at {root / 'train.txt'}:1): cannot read the image" in out
    assert "1 of " in out and "sampled images do not decode" in out
    assert "fix: replace the file or remove its line" in out


def test_missing_list_files_or_images_are_named(tmp_path: Path) -> None:
    root = write_lists(tmp_path / "data")
    reg = registry(tmp_path, root)
    (root / "img" / "3.png").unlink()
    result = doctor(tmp_path, "--grid", "check", "--registry", str(reg))
    assert result.exit_code == 1, result.output
    assert f"problem dataset lists: cannot be opened: {root / 'train.txt'}:4: image {root / 'img' / '3.png'} " \
           "does not exist" in result.output
    (root / "test.txt").unlink()
    result = doctor(tmp_path, "--grid", "check", "--registry", str(reg))
    assert result.exit_code == 1, result.output
    assert f"cannot be opened: list files not found in {root}" in result.output
    assert f"fix: put the images and list files under {root}, or set datasets.lists.params.root" in result.output


def test_imagenet_weights_not_cached(tmp_path: Path, torch_home: Path) -> None:
    root = write_lists(tmp_path / "data")
    reg = registry(tmp_path, root, backbone="alexnet")
    cache = torch_home / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    result = doctor(tmp_path, "--grid", "check", "--registry", str(reg))
    assert result.exit_code == 1, result.output
    assert f"problem backbone alexnet: ImageNet weights are not in torch's cache ({cache})" in result.output
    assert "--pretrained none" in result.output and f"to {cache}" in result.output

    result = doctor(tmp_path, "--grid", "check", "--registry", str(reg), "--pretrained", "none")
    assert result.exit_code == 0, result.output
    assert "backbone alexnet: random initialisation" in result.output

    assert not torch_home.exists()  # looked up, never created
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"")
    result = doctor(tmp_path, "--grid", "check", "--registry", str(reg))
    assert result.exit_code == 0, result.output
    assert f"backbone alexnet: ImageNet weights cached at {cache}" in result.output


def test_too_little_disk_asks_for_space(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("hashbench.harness.doctor.free_bytes", lambda path: 1000)
    result = doctor(tmp_path)
    assert result.exit_code == 1, result.output
    assert "problem disk: 1000 B free" in result.output
    assert "fix: free 1 GiB there, or pass --results-dir on a larger disk" in result.output


def test_a_cuda_device_is_named_with_its_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from hashbench.harness.doctor import check_device

    monkeypatch.setattr("hashbench.harness.doctor.resolve_device", lambda name: torch.device("cuda", 0))
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda device: SimpleNamespace(name="NVIDIA H200", total_memory=140 * 2**30))
    finding, device = check_device("cuda")
    assert finding.ok and finding.detail == "CUDA NVIDIA H200, 140.0 GiB" and device == torch.device("cuda", 0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_a_problem(tmp_path: Path) -> None:
    result = doctor(tmp_path, "--device", "cuda")
    assert result.exit_code == 1, result.output
    assert "problem device: --device cuda: no CUDA device is available" in result.output


def test_unknown_grid_is_an_input_error(tmp_path: Path) -> None:
    result = doctor(tmp_path, "--grid", "nope")
    assert result.exit_code == 2, result.output
    assert result.output.startswith("hashbench: error: ") and "nope" in result.output
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("seconds, shown", [
    (None, "unknown"), (9.94, "9.9s"), (9.96, "10s"), (59.4, "59s"), (59.96, "1m 0s"), (61.2, "1m 1s"),
    (580, "9m 40s"), (869.7, "14m 30s"), (899.7, "15m 0s"), (3599.4, "59m 59s"), (3599.6, "1h 0m"),
    (7500, "2h 5m"), (86369, "23h 59m"), (86399.9, "1.0d"), (129600, "1.5d"),
])
def test_durations_round_once_and_never_show_60(seconds: float | None, shown: str) -> None:
    assert _fmt_seconds(seconds) == shown
