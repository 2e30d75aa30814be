"""Recorded stage timings, for the plan's cost estimate.

Every executed stage appends one line to ``<store>/timings.jsonl``; the estimate of a stage
not yet run is the median of earlier runs of the same stage kind and plugin on this device.
"""

from __future__ import annotations

import json
import statistics
from typing import Iterable

from .plan import Stage
from .store import ArtifactStore

_FILE = "timings.jsonl"


def stage_plugin(stage: Stage) -> str:
    for part in ("attack", "defense", "method", "dataset"):
        value = stage.spec.get(part)
        if isinstance(value, dict) and "name" in value:
            return value["name"]
    return ""


def record_timing(store: ArtifactStore, stage: Stage, wall_s: float, device: str) -> None:
    store.root.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"kind": stage.kind, "plugin": stage_plugin(stage), "device": device, "wall_s": wall_s})
    with open(store.root / _FILE, "a") as f:
        f.write(line + "\n")


def _history(store: ArtifactStore) -> dict[tuple[str, str], list[float]]:
    path = store.root / _FILE
    out: dict[tuple[str, str], list[float]] = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
            out.setdefault((row["kind"], row["plugin"]), []).append(float(row["wall_s"]))
        except (ValueError, KeyError, TypeError):
            continue  # a torn line from a killed run
    return out


def estimate_seconds(store: ArtifactStore, stages: Iterable[Stage]) -> float | None:
    """Sum of per-stage medians; ``None`` if any stage has no recorded history."""
    history = _history(store)
    total = 0.0
    for stage in stages:
        seen = history.get((stage.kind, stage_plugin(stage)))
        if not seen:
            return None
        total += statistics.median(seen)
    return total
