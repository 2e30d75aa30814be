"""Result records: one schema-versioned JSON file per evaluated cell, loaded as a tidy DataFrame.

A run is a folder ``<results_dir>/<run>/`` holding ``run.json`` (the run's manifest) and
``records/<cell-id>.json``.  Each record has the cell's coordinates, its resolved
parameters, its metrics (numbers as numbers; MAP as a fraction in [0, 1]), perturbation
statistics in pixel units of [0, 1] images, timings in seconds and provenance.

This module reads runs; :mod:`hashbench.results.schema` defines the record (version, columns,
one row per record) and :mod:`hashbench.results.records` builds one from a cell's stages.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from hashbench.api.registry import name_problem
from hashbench.errors import UserError
from hashbench.results.schema import COLUMNS, RECORD_SCHEMA_VERSION, flatten

if TYPE_CHECKING:
    import pandas as pd

#: the environment variable naming the results folder when none is given
RESULTS_ENV = "HASHBENCH_RESULTS"


def default_results_dir() -> Path:
    """The results folder when none is given: ``$HASHBENCH_RESULTS`` if set (and not empty), else ``results``."""
    return Path(os.environ.get(RESULTS_ENV) or "results")


def check_run_name(name: object, what: str = "run name", hint: str = "") -> str:
    """``name`` if it can name a run folder, else :class:`UserError` (exit 2) saying why.

    A run name is a name, never a path: the rule of dataset, grid and plugin names
    (:func:`hashbench.api.registry.name_problem`), so it cannot leave the results folder, name
    the folder itself or a parent, or exceed the file-name length limit.  ``hint`` (e.g. how
    to name the run otherwise) ends the message.
    """
    problem = name_problem(name)
    if problem is None:
        return str(name)
    if isinstance(name, str) and len(name) > 64:
        problem += f" (this one has {len(name)})"
    raise UserError(f"{what}: {problem}; a run name names a folder under the results folder, never a path"
                    + (f"; {hint}" if hint else ""))


def run_dir(run: str | Path, results_dir: str | Path | None = None) -> Path:
    """The folder of ``run``, for reading: ``<results_dir>/<run>`` for a run name (``results_dir``
    defaults to :func:`default_results_dir`), else ``run`` as the path of an existing run folder
    (one holding ``run.json``), made absolute.

    A valid run name always means the folder under ``results_dir``; anything else that is not
    a run folder is refused (:class:`UserError`), so no other folder is ever guessed.
    """
    if name_problem(str(run)) is None:
        return Path(results_dir or default_results_dir()) / str(run)
    path = Path(os.path.abspath(run))
    if path.is_dir() and (path / "run.json").is_file():
        return path
    check_run_name(str(run), "--run", "or give the path of a run folder (one holding run.json)")
    raise AssertionError("unreachable")  # check_run_name raised: the name is not valid


#: errors that say a folder cannot be written (rather than that its path is wrong)
READ_ONLY_ERRNOS = (errno.EROFS, errno.EACCES, errno.EPERM)


def check_results_path(root: str | Path) -> Path:
    """``root`` as a results folder path, missing or a folder; :class:`UserError` if it cannot be one
    (a file in the way, a file above it, a name too long).  Writes nothing."""
    root = Path(root)
    try:
        is_folder = stat.S_ISDIR(os.stat(root).st_mode)
    except FileNotFoundError:
        return root
    except OSError as exc:
        raise UserError(f"results folder {root}: {_os_reason(exc)}; nothing was run") from None
    if not is_folder:
        raise UserError(f"results folder {root} is a file, not a folder (check --results-dir and "
                        "$HASHBENCH_RESULTS); nothing was run")
    return root


def writable_results_dir(root: str | Path, *inside: str) -> str | None:
    """Create ``root`` if missing and check, by creating and removing a probe file, that files can
    be written in it and in the folders ``inside`` it that exist (e.g. ``store``, the run's folder).

    Returns ``None`` if they can, else why not (a read-only filesystem or folder).  A path that
    cannot be a results folder at all (a file in the way, a name too long, a folder that cannot
    be created) raises :class:`UserError`.
    """
    root = check_results_path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the results folder {root}: {_os_reason(exc)}; nothing was run") from None
    for folder in [root, *(root / name for name in inside)]:
        if folder != root and not os.path.isdir(folder):
            continue
        try:
            fd, probe = tempfile.mkstemp(prefix=".hashbench-probe-", dir=folder)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            if exc.errno in READ_ONLY_ERRNOS:
                return f"{folder} is read-only ({exc.strerror})"
            raise UserError(f"cannot write in the results folder {folder}: {_os_reason(exc)}; nothing was run") from None
    return None


def _os_reason(exc: OSError) -> str:
    """What an OS error says is wrong, in words (not a guess such as "disk full")."""
    reasons = {errno.ENOTDIR: "a part of the path is a file, not a folder",
               errno.EEXIST: "a file is in the way",
               errno.ENAMETOOLONG: "a file name in the path is too long for the filesystem",
               errno.EROFS: "read-only filesystem", errno.EACCES: "permission denied",
               errno.EPERM: "operation not permitted", errno.ENOSPC: "disk full"}
    return reasons.get(exc.errno, exc.strerror or str(exc))


def list_runs(results_dir: str | Path | None = None) -> list[str]:
    """Names of the runs under ``results_dir``, oldest first; folders whose names break the rule are ignored."""
    root = Path(results_dir or default_results_dir())
    if not root.is_dir():
        return []
    runs = [p for p in root.iterdir() if name_problem(p.name) is None and (p / "run.json").is_file()]
    return [p.name for p in sorted(runs, key=lambda p: (p / "run.json").stat().st_mtime)]


def latest_run(results_dir: str | Path | None = None) -> str:
    runs = list_runs(results_dir)
    if not runs:
        where = Path(results_dir or default_results_dir()).resolve()
        raise UserError(f"no runs found under {where}; run `hashbench run` first or pass --results-dir")
    return runs[-1]


def read_records(run: str | Path, results_dir: str | Path | None = None,
                 on_bad: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """The records of ``run``, in file order.

    A record file that cannot be used (not UTF-8 JSON, truncated, not a JSON object, an
    evaluated cell without its fields) raises :class:`UserError` naming the file, or, given
    ``on_bad``, is passed to it as one line and skipped.  A record of another schema version
    always raises: it is whole, but this hashbench cannot read it.
    """
    folder = run_dir(run, results_dir)
    if not (folder / "run.json").exists():
        known = ", ".join(list_runs(results_dir)) or "none"
        raise UserError(f"run '{run}' not found at {folder} (runs there: {known})")
    _read_json_object(folder / "run.json", "run manifest")
    records = []
    for path in sorted((folder / "records").glob("*.json")):
        try:
            record = _read_json_object(path, "record")
            version = record.get("schema_version")
            if version != RECORD_SCHEMA_VERSION:
                raise _SchemaMismatch(
                    f"{path}: record schema version {version}, this hashbench reads {RECORD_SCHEMA_VERSION}; "
                    "upgrade hashbench or re-run"
                )
            if is_evaluated(record):
                _check_row(path, record)
        except _SchemaMismatch:
            raise
        except UserError as exc:
            if on_bad is None:
                raise
            on_bad(f"{exc}; skipped")
            continue
        records.append(record)
    return records


def _check_row(path: Path, record: dict[str, Any]) -> None:
    """:class:`UserError` naming ``path`` unless ``record`` flattens into a row of the right types."""
    try:
        row = flatten(record)
    except (KeyError, TypeError, AttributeError, IndexError) as exc:
        raise UserError(f"{path}: not a complete record (missing or malformed field "
                        f"{_excerpt(str(exc))})") from None
    kinds = {**{k: str for k in ("dataset", "method", "backbone", "defense", "attack", "cell_id")},
             "bits": int, "seed": int, "map": (int, float)}
    for key, kind in kinds.items():
        if not isinstance(row[key], kind) or isinstance(row[key], bool):
            raise UserError(f"{path}: not a complete record ({key} is {_excerpt(repr(row[key]))})")
    if row["surrogate"] is not None and not isinstance(row["surrogate"], str):
        raise UserError(f"{path}: not a complete record (surrogate is {_excerpt(repr(row['surrogate']))})")


class _SchemaMismatch(UserError):
    """A whole record of a schema version this hashbench does not read."""


def _excerpt(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _read_json_object(path: Path, what: str) -> dict[str, Any]:
    """The JSON object in ``path``; :class:`UserError` naming the file if it holds anything else."""
    try:
        value = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise UserError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: the {what} is not UTF-8 (byte {exc.start})") from None
    except ValueError as exc:  # json.JSONDecodeError: truncated, empty, not JSON
        raise UserError(f"{path}: the {what} is not valid JSON ({_excerpt(str(exc))})") from None
    if not isinstance(value, dict):
        raise UserError(f"{path}: the {what} holds a JSON {type(value).__name__}, not an object")
    return value


def is_evaluated(record: dict[str, Any]) -> bool:
    """Whether ``record`` is an evaluated cell (metrics present), not a failed one."""
    return record.get("status") != "failed" and isinstance(record.get("metrics"), dict)


def read_manifest(run: str | Path, results_dir: str | Path | None = None) -> dict[str, Any]:
    """``run.json`` of ``run``; :class:`UserError` naming the file if it is missing or not a JSON object."""
    path = run_dir(run, results_dir) / "run.json"
    if not path.exists():
        raise UserError(f"run '{run}' not found at {path.parent}")
    return _read_json_object(path, "run manifest")


def load(run: str | Path, results_dir: str | Path | None = None) -> pd.DataFrame:
    """A tidy DataFrame with one row per evaluated cell of ``run`` (columns: :data:`COLUMNS`);
    ``results_dir`` defaults to ``$HASHBENCH_RESULTS``, else ``results`` (as the command line).

    Cells whose record says ``status: "failed"`` have no metrics and are left out.  A record
    file that cannot be used raises :class:`UserError` naming it.
    """
    import pandas as pd

    rows = [flatten(r) for r in read_records(run, results_dir) if is_evaluated(r)]
    return pd.DataFrame(rows, columns=COLUMNS)
