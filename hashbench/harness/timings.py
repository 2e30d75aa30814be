"""Recorded stage timings: one JSON line per executed stage in ``<store>/timings.jsonl``.

Each line has the stage's key, kind and plugin, the device it ran on, its wall time, its
model FLOP count (:mod:`hashbench.harness.cost`) and its peak memory.  ``hashbench plan`` turns the
lines of this device into seconds per FLOP for its estimates; tests count the lines to check
that no stage ran twice.  Lines are appended under a lock, so concurrent runs on one store
do not interleave them.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
import warnings
from typing import Any

import torch

from hashbench.harness.stages.spec import Stage
from hashbench.harness.store import ArtifactStore

_FILE = "timings.jsonl"


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
    row = {"key": stage.key, "kind": stage.kind, "plugin": stage.spec.plugin, "device": dev.type,
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


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _well_formed(row: Any) -> bool:
    """A timing row as :func:`record_timing` writes it, as far as the estimates read it."""
    return (isinstance(row, dict) and isinstance(row.get("kind"), str) and _number(row.get("wall_s"))
            and isinstance(row.get("plugin", ""), str)
            and all(row.get(k) is None or isinstance(row[k], str) for k in ("device", "device_label"))
            and (row.get("flops") is None or _number(row["flops"])))


def read_timings(store: ArtifactStore) -> list[dict[str, Any]]:
    """Every well-formed line, for ``plan`` and ``run`` alike.

    A line torn by a killed process is skipped silently (it is expected); lines that are not
    UTF-8 JSON objects with a wall time and a kind (a damaged or overwritten file) are skipped
    with one warning that counts them.  The file is read line by line, so a huge one does not
    have to fit in memory as text.
    """
    path = store.root / _FILE
    if not path.exists():
        return []
    rows: list[dict[str, Any]] = []
    bad = torn = 0
    with open(path, "rb") as f:
        for raw in f:
            try:
                row = json.loads(raw.decode("utf-8"))
            except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
                row = None
            if not _well_formed(row):
                # only the last line can lack its newline: one a killed process left half-written,
                # which is expected and not worth a warning
                torn = 0 if raw.endswith(b"\n") else 1
                bad += 1
                continue
            rows.append(row)
    bad -= torn
    if bad:
        warnings.warn(f"{path}: skipped {bad} damaged line{'s' if bad != 1 else ''} (not UTF-8 JSON timing rows); "
                      "estimates use the other lines", stacklevel=2)
    return rows
