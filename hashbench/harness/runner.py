"""The coordinator: runs a plan's stages once each, in dependency order, and writes records.

Only stages whose artifact is missing are run (a stage already in the store is a cache hit,
and nothing upstream of a cached stage is needed).  A stage becomes ready when its inputs
are in the store; ready stages go to an executor (this process, ``--workers N`` local
processes, or Ray) in plan order.  A stage another process is running (its lock is held:
another worker, another ``hashbench run`` on the same results folder) is skipped for now and
checked again shortly, so concurrent runs share the work instead of duplicating it.

A stage that fails (an exception, a diverged loss) fails the cells that depend on it: each
gets a record with ``status: "failed"``, the error and the stage kind; the other cells go
on.  Every artifact and record is written atomically, so a run killed at any moment resumes
where it stopped and ends with the same results.
"""

from __future__ import annotations

import heapq
import json
import os
import platform
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hashbench import __version__
from hashbench.errors import ArtifactError, UserError
from hashbench.harness.executors.base import Executor
from hashbench.harness.executors.local import InlineExecutor
from hashbench.harness.executors.parallel import PoolExecutor, threads_per_worker
from hashbench.harness.executors.ray import RayExecutor
from hashbench.harness.executors.worker import StageResult, WorkerConfig, resolve_device, store_root
from hashbench.harness.plan import Cell, Plan
from hashbench.harness.stages.spec import Stage
from hashbench.harness.store import ArtifactStore, StoreWriteError, write_json_atomic
from hashbench.progress import Reporter
from hashbench.results import check_run_name, writable_results_dir
from hashbench.results.records import failed_record, git_commit, now, ok_record

EXECUTOR_KINDS = ("local", "ray")
#: how often a stage that was missing or whose worker died is retried before it fails
MAX_ATTEMPTS = 3
_POLL_S = (0.1, 2.0)  # first and longest wait before looking again at a stage another process holds

__all__ = ["Runner", "RunSummary", "resolve_device", "EXECUTOR_KINDS"]


@dataclass
class RunSummary:
    run: str
    folder: Path
    executed: dict[str, int] = field(default_factory=dict)
    cached: dict[str, int] = field(default_factory=dict)
    failed: list[dict[str, str]] = field(default_factory=list)
    cells: int = 0
    wall_s: float = 0.0

    @property
    def executed_total(self) -> int:
        return sum(self.executed.values())

    @property
    def cached_total(self) -> int:
        return sum(self.cached.values())


class Runner:
    """Runs a :class:`Plan` with ``workers`` local processes (1: in this process) or on Ray.

    ``device`` is ``auto``, ``cpu``, ``cuda`` or a :class:`torch.device`; with Ray it is
    resolved on each worker.  ``channels_last`` is a speed setting (not part of keys).
    ``threads`` is the torch intra-op thread count of every process running stages (default:
    this process's with one worker, ``cores // workers`` with several); float reductions depend
    on it, so equal ``threads`` give bit-identical records whatever ``workers`` is.  With
    ``workers > 1``, a script must call :meth:`run` under ``if __name__ == "__main__":``, as
    for any multiprocessing start method but fork: worker processes import the main module.
    """

    def __init__(self, results_dir: str | Path, device: torch.device | str = "auto", reporter: Reporter | None = None,
                 *, workers: int = 1, executor: str = "local", address: str | None = None,
                 channels_last: bool = False, threads: int | None = None) -> None:
        if workers < 1:
            raise UserError(f"--workers must be at least 1 (got {workers})")
        if threads is not None and threads < 1:
            raise UserError(f"--threads must be at least 1 (got {threads})")
        if executor not in EXECUTOR_KINDS:
            raise UserError(f"--executor: unknown executor '{executor}' (allowed: {', '.join(EXECUTOR_KINDS)})")
        if address is not None and executor != "ray":
            raise UserError("--address is for --executor ray")
        self.results_dir = Path(results_dir)
        self.store = ArtifactStore(self.results_dir / "store")
        self.device_name = str(device)
        if executor == "local":
            resolve_device(self.device_name)  # a bad device fails before any work
        self.reporter = reporter or Reporter()
        self.workers = workers
        self.executor_kind = executor
        self.address = address
        self.channels_last = channels_last
        self.threads = threads

    def _threads(self) -> int | None:
        """The torch threads each process running stages uses (``None``: Ray's own processes decide)."""
        if self.threads is not None or self.executor_kind == "ray":
            return self.threads
        if self.workers == 1:
            return torch.get_num_threads()
        return threads_per_worker(self.workers)

    def _executor(self, plan: Plan) -> Executor:
        config = WorkerConfig(store_root(self.results_dir), self.device_name, self.channels_last, self._threads())
        if self.executor_kind == "ray":
            return RayExecutor(config, self.address)
        if self.workers == 1:
            return InlineExecutor(config, datasets=plan.datasets, reporter=self.reporter)
        return PoolExecutor(config, self.workers)

    def run(self, plan: Plan, run: str) -> RunSummary:
        """Run ``plan`` as run ``run`` (a name: its folder is ``<results_dir>/<run>``).

        Before any work: the name is checked, the results folder must be a folder that can be
        written, and every record's file name must fit the filesystem (:class:`UserError`).  A
        read-only results folder is accepted only if this run is already complete there with
        every cell cached: then nothing is written and the summary says so.
        """
        run = check_run_name(run)
        folder = self.results_dir / run  # a name, never a path: nothing outside results_dir
        self._check_file_names(plan, folder)
        read_only = writable_results_dir(self.results_dir, "store", run, f"{run}/records")
        if read_only is not None:
            unchanged = self._unchanged(plan, run)
            if unchanged is None:
                raise UserError(f"{read_only}: run '{run}' needs to write there and nothing was run; "
                                "make the results folder writable or pass another --results-dir")
            self.reporter.log(f"{read_only}; run {run} is complete and every cell is cached: nothing written")
            return unchanged
        start = time.perf_counter()
        commit = git_commit()
        device = resolve_device(self.device_name) if self.executor_kind == "local" else None
        manifest = {
            "run": run, "grid": plan.grid_name, "grids": plan.members, "profile": plan.profile_name,
            "created": now(), "finished": None, "status": "running", "hashbench_version": __version__,
            "git_commit": commit, "device": str(device) if device else self.device_name,
            "device_name": _device_name(device) if device else None, "python": platform.python_version(),
            "torch": torch.__version__, "platform": platform.platform(), "cells": len(plan.cells),
            "command": " ".join(sys.argv), "executor": self.executor_kind, "workers": self.workers,
            "threads": self._threads(),
            "amp": plan.options.amp, "amp_attacks": plan.options.amp_attacks, "channels_last": self.channels_last,
        }
        write_json_atomic(folder / "run.json", manifest)
        executor = None
        try:  # from here on run.json never stays "running": an interrupt or an error is written into it
            records = folder / "records"
            wanted = {c.cell_id for c in plan.cells}
            for stale in records.glob("*.json") if records.exists() else []:
                if stale.stem not in wanted:
                    stale.unlink()  # a record from an earlier version of this run's grid
            summary = RunSummary(run, folder, cells=len(plan.cells))
            ctx = _RunState(self, plan, run, folder, commit, summary)
            executor = self._executor(plan)
            with self.reporter.task(f"run {run}", len(plan.cells)) as advance:
                ctx.advance = advance
                ctx.schedule(executor)
            summary.executed, summary.cached = dict(ctx.executed), dict(ctx.cached)
            summary.wall_s = time.perf_counter() - start
            manifest.update(
                finished=now(), status="failed" if summary.failed else "complete", failed=summary.failed,
                stages={"executed": summary.executed_total, "cached": summary.cached_total,
                        "executed_by_kind": summary.executed, "cached_by_kind": summary.cached, "log": ctx.log},
                wall_s=summary.wall_s,
            )
            write_json_atomic(folder / "run.json", manifest)
        except BaseException as exc:  # disk full, Ctrl-C, SIGTERM: say so in run.json rather than "running"
            if isinstance(exc, KeyboardInterrupt) and executor is not None:
                executor.abort()  # workers stopped first: nothing is written after run.json says "interrupted"
            self._mark_stopped(folder, manifest, exc, time.perf_counter() - start)
            raise
        finally:
            if executor is not None:
                executor.close()
        return summary

    def _check_file_names(self, plan: Plan, folder: Path) -> None:
        """:class:`UserError` if a record's file name (or its temporary twin) exceeds the filesystem's limit."""
        probe = next((p for p in (folder, *folder.absolute().parents) if os.path.isdir(p)), Path("/"))
        try:
            limit = os.pathconf(probe, "PC_NAME_MAX")
        except (OSError, ValueError):
            limit = 255
        for cell in plan.cells:
            name = f"{cell.cell_id}.json"
            # write_json_atomic's temporary file: "." + name + "-" + 8 random characters
            if len(f".{name}-12345678".encode()) > limit:
                raise UserError(f"cell '{cell.cell_id[:60]}…' ({len(cell.cell_id)} characters): its record file name "
                                f"would exceed this filesystem's file-name limit ({limit} bytes); use shorter "
                                "dataset and plugin names")

    def _unchanged(self, plan: Plan, run: str) -> RunSummary | None:
        """The summary of ``run`` if it is complete for ``plan`` with every cell cached (a re-run would
        write nothing new: the same records, every evaluation in the store), else ``None``."""
        folder = self.results_dir / run
        records = folder / "records"
        try:
            manifest = json.loads((folder / "run.json").read_bytes())
            present = {p.stem for p in records.glob("*.json")} if records.is_dir() else set()
        except (OSError, ValueError):
            return None
        if not isinstance(manifest, dict) or manifest.get("status") != "complete":
            return None
        if present != {c.cell_id for c in plan.cells}:
            return None
        for cell in plan.cells:
            if not self.store.exists(cell.evaluate.kind, cell.evaluate.key):
                return None
            try:
                record = json.loads((records / f"{cell.cell_id}.json").read_bytes())
            except (OSError, ValueError):
                return None
            provenance = record.get("provenance") if isinstance(record, dict) else None
            keys = provenance.get("artifact_keys") if isinstance(provenance, dict) else None
            if record.get("status") != "ok" or not isinstance(keys, dict) or keys.get("evaluate") != cell.evaluate.key:
                return None
        evaluations = {c.evaluate.key: c.evaluate.kind for c in plan.cells}
        return RunSummary(run, folder, cached=dict(Counter(evaluations.values())), cells=len(plan.cells))

    @staticmethod
    def _mark_stopped(folder: Path, manifest: dict[str, Any], exc: BaseException, wall_s: float) -> None:
        """Best effort: ``run.json`` says the run was interrupted or aborted, and why."""
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "aborted"
        manifest.update(finished=now(), status=status, error=f"{type(exc).__name__}: {exc}", wall_s=wall_s)
        try:
            write_json_atomic(folder / "run.json", manifest)
        except StoreWriteError:
            pass  # the full disk that stopped the run may refuse this write too; the exception says why


class _RunState:
    """The bookkeeping of one run: which stages are needed, ready, in flight, done or failed."""

    def __init__(self, runner: Runner, plan: Plan, run: str, folder: Path, commit: str | None,
                 summary: RunSummary) -> None:
        self.runner, self.plan, self.run, self.folder, self.commit = runner, plan, run, folder, commit
        self.store = runner.store
        self.summary = summary
        self.order = {s.key: i for i, s in enumerate(plan.stages())}
        self.stages: dict[str, Stage] = {}
        self.dependents: dict[str, list[str]] = {}
        self.cells_of: dict[str, list[Cell]] = {}
        for cell in plan.cells:
            for stage in cell.stages.values():
                self.cells_of.setdefault(stage.key, []).append(cell)
        self.state: dict[str, str] = {}  # key → pending / done / failed
        self.ready: list[tuple[int, str]] = []
        self.in_flight: set[str] = set()
        self.busy: dict[str, tuple[float, int]] = {}  # key → (look again at, times found busy)
        self.attempts: Counter[str] = Counter()
        self.failures: dict[str, tuple[str, str, str | None]] = {}  # key → (message, failing stage kind, traceback)
        self.executed: Counter[str] = Counter()
        self.cached: Counter[str] = Counter()
        self.log: list[dict[str, Any]] = []
        self.metas: dict[str, dict[str, Any]] = {}  # key → stored meta, see _meta
        self.finished_cells: set[str] = set()
        self.advance = lambda n=1: None

    # -- the DAG -----------------------------------------------------------------------------
    def require(self, stage: Stage) -> None:
        """Mark ``stage`` needed: done if stored, else pending along with its missing inputs."""
        if self.state.get(stage.key) in ("pending", "done", "failed"):
            return
        self.stages[stage.key] = stage
        if self.store.exists(stage.kind, stage.key):
            self.state[stage.key] = "done"
            self.cached[stage.kind] += 1
            return
        self.state[stage.key] = "pending"
        for dep in stage.inputs.values():
            self.dependents.setdefault(dep.key, []).append(stage.key)
            self.require(dep)
        self._maybe_ready(stage.key)

    def _maybe_ready(self, key: str) -> None:
        stage = self.stages[key]
        if self.state.get(key) == "pending" and key not in self.in_flight and key not in self.busy \
                and all(self.state.get(d.key) == "done" for d in stage.inputs.values()):
            heapq.heappush(self.ready, (self.order.get(key, 0), key))

    def _done(self, key: str) -> None:
        self.state[key] = "done"
        self.metas.pop(key, None)  # made again in this run: read its new meta
        for dependent in self.dependents.get(key, []):
            self._maybe_ready(dependent)
        for cell in self.cells_of.get(key, []):
            if cell.evaluate.key == key:
                self._finish_cell(cell)

    def _fail(self, key: str, message: str, kind: str, tb: str | None) -> None:
        if self.state.get(key) == "failed":
            return
        self.state[key] = "failed"
        self.failures[key] = (message, kind, tb)
        for cell in self.cells_of.get(key, []):
            self._finish_cell(cell)
        for dependent in self.dependents.get(key, []):
            upstream = message if message.startswith("upstream ") else f"upstream {kind} stage failed: {message}"
            self._fail(dependent, upstream, kind, tb)

    # -- the loop ----------------------------------------------------------------------------
    def schedule(self, executor: Executor) -> None:
        for cell in self.plan.cells:
            self.require(cell.evaluate)
        for cell in self.plan.cells:  # cells whose evaluation is already stored
            if self.state.get(cell.evaluate.key) == "done":
                self._finish_cell(cell)
        while True:
            while self.ready and len(self.in_flight) < executor.slots:
                _, key = heapq.heappop(self.ready)
                if self.state.get(key) != "pending" or key in self.in_flight or key in self.busy:
                    continue  # a stale duplicate entry
                self.in_flight.add(key)
                executor.submit(self.stages[key])
            if not self.in_flight and not self.ready:
                if not self.busy:
                    break
                time.sleep(max(0.0, min(t for t, _ in self.busy.values()) - time.monotonic()))
                self._recheck_busy()
                continue
            timeout = None
            if self.busy:
                timeout = max(0.0, min(t for t, _ in self.busy.values()) - time.monotonic())
            for result in executor.wait(timeout):
                self.in_flight.discard(result.key)
                self._handle(result)
            self._recheck_busy()

    def _recheck_busy(self) -> None:
        moment = time.monotonic()
        for key, (when, _) in list(self.busy.items()):
            if when > moment:
                continue
            del self.busy[key]
            stage = self.stages[key]
            if self.store.exists(stage.kind, key):  # the other process finished it
                self.cached[stage.kind] += 1
                self._done(key)
            else:
                self._maybe_ready(key)

    def _handle(self, r: StageResult) -> None:
        stage = self.stages[r.key]
        if r.status in ("done", "failed"):
            self.log.append({"kind": r.kind, "key": r.key, "status": r.status, "wall_s": r.wall_s,
                             "peak_rss_mb": r.peak_rss_mb, "peak_gpu_mb": r.peak_gpu_mb, "device": r.device,
                             "worker": r.worker, **({"error": r.error} if r.error else {})})
        if r.status == "done":
            self.executed[r.kind] += 1
            self.runner.reporter.log(f"done  {stage.label}  {r.wall_s or 0.0:.1f}s")
            self._done(r.key)
        elif r.status == "cached":
            self.cached[r.kind] += 1
            self._done(r.key)
        elif r.status == "busy":
            _, times = self.busy.get(r.key, (0.0, 0))
            self.busy[r.key] = (time.monotonic() + min(_POLL_S[1], _POLL_S[0] * 2**times), times + 1)
        elif r.status == "failed":
            self.runner.reporter.log(f"FAILED {stage.label}: {r.error}")
            self._fail(r.key, r.error or "unknown error", r.kind, r.traceback)
        elif r.status in ("missing", "lost"):
            self.attempts[r.key] += 1
            if self.attempts[r.key] >= MAX_ATTEMPTS:
                why = "worker process died while running it (out of memory?)" if r.status == "lost" else r.error
                self._fail(r.key, f"gave up after {MAX_ATTEMPTS} attempts: {why}", r.kind, None)
                return
            for key in r.missing:  # an input vanished from the store (removed as corrupt): make it again
                self.state.pop(key, None)
                self.require(self.stages[key])
            self._maybe_ready(r.key)
        else:
            raise AssertionError(f"unknown stage status {r.status!r}")

    # -- records -----------------------------------------------------------------------------
    def _finish_cell(self, cell: Cell) -> None:
        if cell.cell_id in self.finished_cells:
            return
        path = self.folder / "records" / f"{cell.cell_id}.json"
        failed = [(k, s) for k, s in cell.stages.items() if self.state.get(s.key) == "failed"]
        if failed:
            _, stage = failed[0]
            message, kind, tb = self.failures[stage.key]
            self.summary.failed.append({"cell_id": cell.cell_id, "error": message, "stage": kind})
            write_json_atomic(path, self._failed_record(cell, message, kind, tb))
        else:
            try:
                record = self._record(cell)
            except ArtifactError as exc:  # the stored evaluation is unreadable: make it again
                self.store.remove(cell.evaluate.kind, cell.evaluate.key)
                self.state.pop(cell.evaluate.key, None)
                self.runner.reporter.log(f"recomputing {cell.evaluate.label}: {exc}")
                self.require(cell.evaluate)
                return
            write_json_atomic(path, record)
        self.finished_cells.add(cell.cell_id)
        self.advance(1)

    def _meta(self, stage: Stage) -> dict[str, Any] | None:
        """The stored meta of ``stage``, read once per run (cells share their split, model and defense)."""
        if stage.key not in self.metas:
            try:
                self.metas[stage.key] = self.store.load_meta(stage.kind, stage.key)
            except ArtifactError:
                return None  # not in the store (e.g. removed after its consumers were made)
        return self.metas[stage.key]

    def _failed_record(self, cell: Cell, message: str, kind: str, tb: str | None) -> dict[str, Any]:
        metas = {k: self._meta(s) if self.state.get(s.key) == "done" else None for k, s in cell.stages.items()}
        return failed_record(self.run, cell, metas, self.commit, message, kind, tb)

    def _record(self, cell: Cell) -> dict[str, Any]:
        metas = {kind: self._meta(stage) for kind, stage in cell.stages.items()}
        if metas["evaluate"] is None:
            raise ArtifactError(f"evaluation {cell.evaluate.key[:12]} is unreadable")
        return ok_record(self.run, cell, metas, self.commit, self.store)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()
