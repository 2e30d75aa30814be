"""Everything a report reads from a run folder: manifest, records, failures, the tidy frame, the store."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from hashbench.harness.store import ArtifactStore
from hashbench.report.tables import white_box
from hashbench.results import read_manifest, read_records, run_dir
from hashbench.results.schema import COLUMNS, flatten

#: Coordinates of a cell, in order (``seed`` last).
CELL_KEYS = ("dataset", "method", "backbone", "bits", "defense", "attack", "seed")


@dataclass
class Failure:
    """A cell that produced no result, and why."""

    cell_id: str
    error: str
    cell: dict[str, Any]
    stage: str | None = None  # the stage kind that failed, where recorded
    traceback: str | None = None


@dataclass
class RunData:
    """One run as the report sees it."""

    name: str
    folder: Path
    manifest: dict[str, Any]
    records: list[dict[str, Any]]  # evaluated cells only, in file order
    failures: list[Failure]
    frame: pd.DataFrame  # one row per evaluated white-box cell: ``results.schema.COLUMNS``
    store: ArtifactStore | None  # the run's artifact store, where present
    #: one line per record file that could not be used and was left out
    skipped: list[str] = field(default_factory=list)
    #: one row per evaluated transfer cell (a surrogate's queries against another model), same columns
    transfer: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=COLUMNS))

    def record(self, cell_id: str) -> dict[str, Any] | None:
        return self._by_id.get(cell_id)

    def __post_init__(self) -> None:
        self._by_id = {str(r.get("cell_id")): r for r in self.records}


def _is_failed(record: Mapping[str, Any]) -> bool:
    return record.get("status") == "failed" or not isinstance(record.get("metrics"), Mapping)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _failures(manifest: Mapping[str, Any], failed_records: list[dict[str, Any]]) -> list[Failure]:
    found: dict[str, Failure] = {}
    for record in failed_records:  # a failed record knows the cell's coordinates; prefer it
        cell_id = str(record.get("cell_id", "?"))
        cell = record.get("cell")
        found[cell_id] = Failure(cell_id, str(record.get("error") or "no error message recorded"),
                                 dict(cell) if isinstance(cell, Mapping) else {}, _text(record.get("failed_stage")),
                                 _text(record.get("traceback")))
    for item in manifest.get("failed") or []:
        if isinstance(item, Mapping):
            cell_id, error = str(item.get("cell_id", "?")), str(item.get("error") or "no error message recorded")
            stage = _text(item.get("stage"))
        else:
            cell_id, error, stage = "?", str(item), None
        found.setdefault(cell_id, Failure(cell_id, error, {}, stage))
    return list(found.values())


def load_run(run: str | Path, results_dir: str | Path | None = None,
             warn: Callable[[str], None] | None = None) -> RunData:
    """Read ``run`` (a name under ``results_dir`` or a run folder); raises ``UserError`` if unknown.

    Record files that cannot be used are left out, each reported to ``warn`` (one line naming
    the file) and listed in :attr:`RunData.skipped`.  The run's name is the name of its folder,
    never ``run.json``'s ``run`` field: a received folder's manifest cannot choose where its
    report is written.
    """
    skipped: list[str] = []

    def bad(message: str) -> None:
        skipped.append(message)
        if warn is not None:
            warn(message)

    manifest = read_manifest(run, results_dir)
    everything = read_records(run, results_dir, on_bad=bad)
    folder = run_dir(run, results_dir)
    records = [r for r in everything if not _is_failed(r)]
    tidy = pd.DataFrame([flatten(r) for r in records], columns=COLUMNS)
    tidy["bits"] = tidy["bits"].astype("int64")
    tidy["seed"] = tidy["seed"].astype("int64")
    frame = white_box(tidy)  # every table of a model's own robustness reads these
    transfer = tidy[tidy["surrogate"].notna()]
    store_root = folder.parent / "store"
    return RunData(
        name=folder.name,
        folder=folder,
        manifest=manifest,
        records=records,
        failures=_failures(manifest, [r for r in everything if _is_failed(r)]),
        frame=frame,
        store=ArtifactStore(store_root) if store_root.is_dir() else None,
        skipped=skipped,
        transfer=transfer,
    )
