"""Shared helpers of the reliability suite: bad inputs must fail clearly and lose nothing."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from click.testing import CliRunner, Result

from hashbench.cli.main import main

#: a fast end-to-end grid: the smoke grid cut down to one method, no defense, one attack
FAST = ["--grid", "smoke", "--set", "methods=[dpsh]", "--set", "defenses=[none]", "--set", "attacks=[center]"]


@pytest.fixture(scope="session")
def project_registry(config) -> dict[str, Any]:
    """The project's registry.yaml as plain data (copy before changing it)."""
    return yaml.safe_load(Path(config.path).read_text())


@pytest.fixture
def write_registry(tmp_path: Path, project_registry: dict[str, Any]) -> Callable[[Callable[[dict], Any]], Path]:
    """``write_registry(change)``: the project's registry with ``change(raw)`` applied, as a file."""

    def write(change: Callable[[dict], Any]) -> Path:
        raw = copy.deepcopy(project_registry)
        change(raw)
        path = tmp_path / "registry.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        return path

    return write


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results folder holding the finished FAST run ``smoke`` (copy it before changing it)."""
    results = tmp_path_factory.mktemp("finished") / "results"
    result = invoke("run", *FAST, "--results-dir", str(results), "--quiet", "--no-report")
    assert result.exit_code == 0, result.output
    return results


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env)


def assert_clear_error(result: Result, *needles: str) -> str:
    """Exit code 2 and exactly one line on stderr, ``hashbench: error: …`` containing ``needles``."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    line = lines[0]
    assert line.startswith("hashbench: error: "), line
    for needle in needles:
        assert needle in line, (needle, line)
    return line


# -- a small list-file dataset ---------------------------------------------------------------

#: item i is img/<i>.png; labels of 3 classes; train 0–11, database 0–15, queries 16–19
LIST_LABELS = ["1 0 0", "0 1 0", "0 0 1", "1 1 0"]
LIST_SPLITS = {"train": range(0, 12), "test": range(16, 20), "database": range(0, 16)}


def write_list_dataset(root: Path) -> Path:
    """20 random 32×32 PNG images under ``root/img`` and single-format list files; returns ``root``."""
    import numpy as np
    from PIL import Image

    (root / "img").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(20):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / "img" / f"{i}.png")
    for stem, items in LIST_SPLITS.items():
        (root / f"{stem}.txt").write_text("".join(f"img/{i}.png {LIST_LABELS[i % 4]}\n" for i in items))
    return root


def add_list_grid(raw: dict, root: Path) -> None:
    """Declare dataset ``lists`` (the files under ``root``) and grid ``lists``: shapes-tiny and lists,
    DPSH, no defense, clean evaluation only."""
    raw["datasets"]["lists"] = {
        "type": "listfile", "params": {"root": str(root), "image_size": 32, "resize": 32},
        "split": {"num_query": 4, "num_train": 12}, "map_topk": None, "pn": [5],
    }
    smoke = raw["grids"]["smoke"]
    raw["grids"]["lists"] = {
        "profile": "smoke", "datasets": ["shapes-tiny", "lists"], "methods": ["dpsh"],
        "backbones": ["smallcnn"], "bits": [16], "defenses": ["none"], "attacks": [], "seeds": [0],
        "params": {"backbones": smoke["params"]["backbones"]},
    }
