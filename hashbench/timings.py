"""Recorded stage timings: one JSON line per executed stage in ``<store>/timings.jsonl``.

Each line has the stage's key, kind and plugin, the device it ran on, its wall time, its
model FLOP count (:mod:`hashbench.cost`) and its peak memory.  ``hashbench plan`` turns the
lines of this device into seconds per FLOP for its estimates; tests count the lines to check
that no stage ran twice.  Lines are appended under a lock, so concurrent runs on one store
do not interleave them.
"""

from __future__ import annotations

import json
import os
import platform
import time
from typing import Any

import torch

from .plan import Stage
from .store import ArtifactStore

_FILE = "timings.jsonl"


def stage_plugin(stage: Stage) -> str:
    for part in ("attack", "defense", "method", "dataset"):
        value = stage.spec.get(part)
        if isinstance(value, dict) and "name" in value:
            return value["name"]
    return ""


def device_label(device: torch.device) -> str:
    """The device type and model, e.g. ``cuda NVIDIA H100 80GB HBM3`` or ``cpu x86_64``."""
    if device.type == "cuda":
        return f"cuda {torch.cuda.get_device_name(device)}"
    return f"{device.type} {platform.machine()}"


def record_timing(store: ArtifactStore, stage: Stage, wall_s: float, device: torch.device | str, *,
                  flops: int | None = None, peak_rss_mb: float | None = None,
                  peak_gpu_mb: float | None = None) -> None:
    """Append one line for an executed stage."""
    dev = torch.device(device)
    row = {"key": stage.key, "kind": stage.kind, "plugin": stage_plugin(stage), "device": dev.type,
           "device_label": device_label(dev), "wall_s": wall_s, "flops": flops, "peak_rss_mb": peak_rss_mb,
           "peak_gpu_mb": peak_gpu_mb, "pid": os.getpid(), "time": time.time()}
    with store.file_lock(_FILE):
        with open(store.root / _FILE, "a+b") as f:
            # a process killed in the middle of an append left a line without its newline: end
            # that line first, or this row would be glued to it and lost with it
            end = f.seek(0, os.SEEK_END)
            if end:
                f.seek(end - 1)
                if f.read(1) != b"\n":
                    f.write(b"\n")
            f.write((json.dumps(row) + "\n").encode())
            f.flush()
            os.fsync(f.fileno())


def read_timings(store: ArtifactStore) -> list[dict[str, Any]]:
    """Every well-formed line (a line torn by a killed process is skipped)."""
    path = store.root / _FILE
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
            float(row["wall_s"]), row["kind"]
        except (ValueError, KeyError, TypeError):
            continue
        rows.append(row)
    return rows
