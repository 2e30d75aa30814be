"""Fabricated runs for the report tests: records (and example artifacts) written straight to disk.

No training and no torch models: records follow the runner's schema, with MAP values chosen
near the papers' numbers (plus a seed-dependent offset) so the paper-reference columns have
something to compare against.
"""

from __future__ import annotations

import hashlib
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hashbench.harness.store import Artifact, ArtifactStore
from hashbench.report import paper

RUN = "fake"
XSS = "<script>alert(1)</script>"
TARGETED = {"p2p", "dhta"}


def make_record(
    *,
    run: str = RUN,
    dataset: str = "shapes",
    method: str = "dpsh",
    backbone: str = "smallcnn",
    bits: int = 32,
    defense: str = "none",
    attack: str = "clean",
    seed: int = 0,
    map_: float = 0.5,
    t_map: float | None = None,
    cell_id: str | None = None,
    examples: dict[str, Any] | None = None,
    artifact_keys: dict[str, str] | None = None,
    chance: float | None = None,
    health: dict[str, Any] | None = None,
) -> dict[str, Any]:
    clean = attack == "clean"
    cell_id = cell_id or f"{dataset}-{method}-{backbone}-{bits}-{defense}-{attack}-s{seed}"
    metrics = {
        "map": map_, "t_map": t_map, "map_topk": 1000, "num_queries": 20, "num_database": 180,
        "pr_curve": {"recall": [0.1, 0.5, 1.0], "precision": [min(1.0, map_ + 0.3), map_, map_ / 2]},
        "p_at_n": {"n": [10, 20, 50], "precision": [min(1.0, map_ + 0.2), min(1.0, map_ + 0.1), map_]},
    }
    if examples is not None:
        metrics["examples"] = examples
    if chance is not None:  # the random-codes reference (MAP and t-MAP) of the cell's split
        metrics["chance"] = {"map": chance, "map_std": 0.001, "t_map": chance / 2, "draws": 5}
    if health is not None:
        metrics["code_health"] = {"items": 180, "bits": bits, **health}
    return {
        "schema_version": 1,
        "run": run,
        "cell_id": cell_id,
        "cell": {"dataset": dataset, "method": method, "backbone": backbone, "bits": bits,
                 "defense": defense, "attack": attack, "seed": seed},
        "targeted": t_map is not None,
        "params": {},
        "metrics": metrics,
        "perturbation": {
            "linf_max": None if clean else 8 / 255 - 0.001 * seed,
            "l2_mean": None if clean else 1.0 + seed,
            "mse_mean": None if clean else 0.0004 * (seed + 1),
            "epsilon": None if clean else 8 / 255,
        },
        "timing": {"attack_wall_s": None if clean else 10.0 + seed, "train_wall_s": 1.0, "evaluate_wall_s": 0.25},
        "provenance": {
            "hashbench_version": "0.1.0", "git_commit": "deadbeef", "python": "3.11.7", "torch": "2.5.0",
            "device": "cpu", "seeds": {"split": seed, "train": seed}, "split_hash": f"splithash{seed:07d}",
            "artifact_keys": artifact_keys or {"train": f"train-key-{seed}", "attack": f"attack-key-{attack}"},
            "plugins": {"defense": ["hashbench", "0.1.0"], "attack": ["hashbench-extra", "9.9"]},
            "peak_memory_mb": 512.0 + seed,
        },
    }


def write_run(root: Path, records: list[dict[str, Any]], *, run: str = RUN,
              manifest: dict[str, Any] | None = None) -> Path:
    folder = root / run
    (folder / "records").mkdir(parents=True)
    base = {"run": run, "grid": "demo-grid", "profile": "quick", "created": "2026-11-23T16:00:00Z",
            "finished": "2026-11-23T16:05:00Z", "hashbench_version": "0.1.0", "git_commit": "deadbeef",
            "device": "cpu", "python": "3.11.7", "torch": "2.5.0", "platform": "Linux-x86_64",
            "cells": len(records), "failed": [], "stages": {"executed": 7, "cached": 3}}
    (folder / "run.json").write_text(json.dumps(base if manifest is None else manifest))
    for record in records:
        name = re.sub(r"[^A-Za-z0-9._-]", "_", record["cell_id"])  # plugin names may hold "/" or "<"
        (folder / "records" / f"{name}.json").write_text(json.dumps(record))
    return folder


def _offset(*parts: object) -> float:
    """A deterministic offset in [-0.015, 0.015] (MAP fraction) per cell."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return (digest[0] / 255 - 0.5) * 0.03


def _paper_map(dataset: str, method: str, bits: int, defense: str, attack: str) -> float:
    numbers = paper.load()
    ref = numbers.lookup(dataset, method, bits, defense, attack)
    if ref is not None:
        return ref.value / 100
    # A setting the papers do not report: below the strongest reported attack.
    sdha = numbers.lookup(dataset, method, bits, defense, "sdha")
    return (sdha.value / 100 if sdha else 0.4) * 0.85


#: (dataset, method, backbone, bits, defenses, attacks) blocks of the paper-like run.
PAPER_LIKE = [
    ("flickr25k", "dpsh", "alexnet", (16, 32), ("none", "atrdh", "cgat"), ("clean", "p2p", "dhta", "sdha", "center")),
    ("nuswide21", "dpsh", "vgg11", (32,), ("none", "atrdh", "cgat"), ("clean", "p2p", "dhta", "sdha", "center")),
    ("nuswide21", "hashnet", "vgg11", (32,), ("none", "atrdh", "cgat"), ("clean", "p2p", "dhta", "sdha", "center")),
    ("flickr25k", "dph", "alexnet", (32,), ("none", "atrdh", "saat"), ("clean", "hag", "sdha", "mainstay", "p2p")),
]


def paper_like_records(seeds: tuple[int, ...] = (0, 1), run: str = RUN) -> list[dict[str, Any]]:
    """A run shaped like the papers' grids: CgAT Tables 1–5 and SAAT Tables I–II all apply."""
    records = []
    for dataset, method, backbone, bits_list, defenses, attacks in PAPER_LIKE:
        for bits in bits_list:
            for defense in defenses:
                for attack in attacks:
                    for seed in seeds:
                        value = _paper_map(dataset, method, bits, defense, attack) + _offset(
                            dataset, method, bits, defense, attack, seed)
                        t_map = None
                        if attack in TARGETED:
                            t_map = round(0.75 - 0.25 * (defense != "none") + _offset("t", dataset, bits, seed), 6)
                        records.append(make_record(
                            run=run, dataset=dataset, method=method, backbone=backbone, bits=bits, defense=defense,
                            attack=attack, seed=seed, map_=round(value, 6), t_map=t_map))
    return records


def _image(seed: int, size: int) -> np.ndarray:
    """A small deterministic RGB test pattern (uint8, CHW)."""
    rng = np.random.default_rng(seed)
    image = np.empty((3, size, size), dtype=np.uint8)
    image[:] = rng.integers(40, 220, size=(3, 1, 1), dtype=np.uint8)
    a, b = sorted(rng.integers(0, size, size=2))
    image[:, a:b + 2, a:b + 2] = rng.integers(0, 255, size=(3, 1, 1), dtype=np.uint8)
    return image


def add_examples(root: Path, records: list[dict[str, Any]], *, size: int = 24, k: int = 10,
                 attacks: tuple[str, ...] = ("clean", "dhta", "sdha")) -> None:
    """Give the seed-0 records of ``attacks`` (those the report's examples show by default) example
    rankings, and write their attack/evaluate artifacts into ``root/store``.

    Relevance drops under attack (fewer relevant items in the top ``k`` than for clean queries).
    """
    store = ArtifactStore(root / "store")
    for record in records:
        cell = record["cell"]
        if cell["seed"] != 0 or cell["attack"] not in attacks:
            continue
        clean = cell["attack"] == "clean"
        key = hashlib.sha256(record["cell_id"].encode()).hexdigest()
        top = [[(q * 37 + j * 11 + (0 if clean else 5)) % 180 for j in range(k)] for q in range(4)]
        relevant = [[(j + q) % (2 if clean else 4) == 0 for j in range(k)] for q in range(4)]
        record["metrics"]["examples"] = {"queries": [3, 5, 7, 9], "top": top, "relevant": relevant}
        thumbs = torch.from_numpy(np.stack([np.stack([_image(i, 16) for i in row]) for row in top]))
        store.save("evaluate", key, Artifact({"examples_top": thumbs}, {}))
        keys = {"evaluate": key}
        if not clean:
            x = np.stack([_image(100 + q, size) for q in range(4)])
            noise = np.random.default_rng(1).integers(-8, 9, size=x.shape)
            x_adv = np.clip(x.astype(int) + noise, 0, 255).astype(np.uint8)
            store.save("attack", key, Artifact({"examples_clean": torch.from_numpy(x),
                                                "examples_adv": torch.from_numpy(x_adv)}, {}))
            keys["attack"] = key
        record["provenance"]["artifact_keys"] = keys


class _TableParser(HTMLParser):
    """Collects every ``<table>`` of a page: the id of its enclosing element with one, and its rows."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[dict[str, Any]] = []
        self._ids: list[str | None] = []
        self._table: dict[str, Any] | None = None
        self._cell: dict[str, Any] | None = None
        self._tag_stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag not in ("img", "br", "input", "meta"):
            self._ids.append(attributes.get("id"))
            self._tag_stack.append(tag)
        if tag == "table" and self._table is None:
            owner = next((i for i in reversed(self._ids) if i), None)
            self._table = {"id": owner, "class": attributes.get("class", ""), "rows": []}
        elif tag == "tr" and self._table is not None:
            self._table["rows"].append([])
        elif tag in ("td", "th") and self._table is not None and self._table["rows"]:
            self._cell = {"tag": tag, "text": "", "class": attributes.get("class") or "",
                          "colspan": int(attributes.get("colspan") or 1), "bold": False}
        elif tag == "strong" and self._cell is not None:
            self._cell["bold"] = True

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self._cell["text"] = " ".join(self._cell["text"].split())
            self._table["rows"][-1].append(self._cell)
            self._cell = None
        elif tag == "table" and self._table is not None:
            self.tables.append(self._table)
            self._table = None
        if self._tag_stack and tag in self._tag_stack:
            while self._tag_stack:
                self._ids.pop()
                if self._tag_stack.pop() == tag:
                    break

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell["text"] += data


def html_tables(page: str) -> list[dict[str, Any]]:
    """Every table of ``page``: ``{"id", "class", "rows": [[{"tag", "text", "class", "colspan", "bold"}]]}``."""
    parser = _TableParser()
    parser.feed(page)
    return parser.tables


def first_number(text: str) -> float:
    """The first number of a cell's text (our value; the paper's follows it)."""
    match = re.search(r"[+\u2212-]?\d+\.\d+", text)
    assert match, text
    return float(match.group(0).replace("\u2212", "-"))
